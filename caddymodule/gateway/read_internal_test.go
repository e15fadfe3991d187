package gateway

import (
	"bytes"
	"strings"
	"testing"
	"testing/iotest"
)

// TestReadUpTo: the declared length only sizes the buffer; what is read
// is bounded by max whether the declaration is right, short, long or
// absent, and however the body arrives (here one byte per read).
func TestReadUpTo(t *testing.T) {
	body := strings.Repeat("x", 100)
	for _, c := range []struct {
		name          string
		declared, max int64
		want          int
	}{
		{"declared exactly", 100, 1000, 100},
		{"declared short", 10, 1000, 100},
		{"declared long", 500, 1000, 100},
		{"not declared", -1, 1000, 100},
		{"over max, declared", 100, 51, 51},
		{"over max, declared short", 10, 51, 51},
		{"over max, not declared", 0, 51, 51},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := readUpTo(iotest.OneByteReader(strings.NewReader(body)), c.declared, c.max)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != c.want || !bytes.Equal(got, []byte(body[:c.want])) {
				t.Fatalf("read %d bytes, want %d", len(got), c.want)
			}
		})
	}
}
