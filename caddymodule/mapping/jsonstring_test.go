package mapping

import (
	"bytes"
	"math/rand/v2"
	"testing"
	"unicode/utf8"
)

// TestAppendJSONStringMatchesRunes: the byte-table path gives exactly the
// bytes of the rune-by-rune path on valid UTF-8, including every character
// it treats specially and the bytes around them.
func TestAppendJSONStringMatchesRunes(t *testing.T) {
	alphabet := []rune{'a', ' ', '"', '\\', '/', '\n', '\r', '\t', 0, 0x1f, 0x7f, 0x80, 'é', '中',
		0x2027, 0x2028, 0x2029, 0x202A, 0x20AC, 0xE000, 0xFFFD, 0x1F389, '<', '&'}
	rng := rand.New(rand.NewPCG(3, 4))
	check := func(s string) {
		t.Helper()
		if got, want := appendJSONString([]byte("x"), s), appendJSONStringRunes([]byte("x"), s); !bytes.Equal(got, want) {
			t.Fatalf("%q: %s, rune path %s", s, got, want)
		}
	}
	for _, r := range alphabet {
		check(string(r))
		check("ab" + string(r) + "cd")
	}
	for range 20000 {
		var b []byte
		for n := rng.IntN(12); n > 0; n-- {
			b = utf8.AppendRune(b, alphabet[rng.IntN(len(alphabet))])
		}
		check(string(b))
	}
	for _, s := range []string{"\xe2", "\xe2\x80", "a\xe2\x80\xa8", "\xe2\x80\xa8\xe2\x80\xa9"} {
		if utf8.ValidString(s) {
			check(s)
		}
	}
}

func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "plain", "中文\u2028\u2029\"\\\x01", "bad\xffutf8\xe2\x80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := appendJSONString(nil, s), appendJSONStringRunes(nil, s); !bytes.Equal(got, want) {
			t.Fatalf("%q: %s, rune path %s", s, got, want)
		}
	})
}
