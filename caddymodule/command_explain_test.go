package caddymodule

import (
	"bytes"
	"strings"
	"testing"

	"github.com/caddy-gongbao/gongbao/caddymodule/protocol"
)

// TestExplainVerify runs the --explain printer on the shipped sample and
// on copies spoiled the ways senders spoil them: the verdict line, the
// exit status and the absence of any key in the output.
func TestExplainVerify(t *testing.T) {
	const misprinted = "MeTKJnC3flAxeer8erADRTIJ" // the spec's ambiguous glyphs read the other way
	sample := readSample(t, "claimRequest.xml")
	env, err := protocol.Parse(sample, protocol.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	glyphs, err := protocol.Resign(sample, misprinted, "")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		data   []byte
		keys   []string
		code   int
		prefix string
	}{
		{"valid", sample, []string{cliTestKey}, 0, "OK claimRequest " + env.RequestUUID + ": valid"},
		{"lower-case hex", bytes.Replace(sample, []byte(env.Sign), []byte(strings.ToLower(env.Sign)), 1),
			[]string{cliTestKey}, 0, "OK claimRequest " + env.RequestUUID + ": valid_lowercase"},
		{"rotation: second key", sample, []string{"Q7vR2xK9pLw4Zt8N", cliTestKey}, 0, "OK claimRequest"},
		{"misprinted key", glyphs, []string{cliTestKey}, 2, "FAIL claimRequest " + env.RequestUUID + ": key_variant/glyph_confusion"},
		{"body changed", bytes.Replace(sample, []byte("13631292501"), []byte("13631292502"), 1),
			[]string{cliTestKey}, 2, "FAIL claimRequest " + env.RequestUUID + ": mismatch"},
		{"not a message", []byte("not xml"), []string{cliTestKey}, 1, "ERROR: unparsable"},
		{"no key", sample, nil, 1, "ERROR: no_key"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			code := explainVerify(&out, tc.data, tc.keys)
			lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
			if code != tc.code || len(lines) != 3 || !strings.HasPrefix(lines[0], tc.prefix) {
				t.Fatalf("exit %d, want %d; output:\n%s", code, tc.code, out.String())
			}
			if !strings.HasPrefix(lines[1], "en: ") || !strings.HasPrefix(lines[2], "zh: ") {
				t.Errorf("explanation lines: %q", lines[1:])
			}
			for _, key := range []string{cliTestKey, misprinted} {
				for i := 0; i+6 <= len(key); i++ {
					if strings.Contains(out.String(), key[i:i+6]) {
						t.Fatalf("the output contains %q, part of a key", key[i:i+6])
					}
				}
			}
		})
	}
}

// TestVerdictLineQuotes: message text that would break the one-line
// verdict is quoted.
func TestVerdictLineQuotes(t *testing.T) {
	got := verdictLine(protocol.Diagnosis{Cause: protocol.CauseMismatch, Root: "r", RequestUUID: "a\nb"})
	if got != `FAIL r "a\nb": mismatch` {
		t.Errorf("%q", got)
	}
}
