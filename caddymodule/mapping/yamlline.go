package mapping

import (
	"bytes"
	"errors"
	"io"
	"regexp"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// yamlSyntaxLine is the line a syntax problem is on. yaml.v3 reports some
// problems (did not find expected key, did not find expected '-'
// indicator) at the start of the block they break, which can be many lines
// above the slip. A YAML file cut after any line is still well formed
// unless the cut keeps the slip, so the first prefix of the file that fails
// with the same problem ends on the problem's line. reported is yaml.v3's
// line, kept when no prefix says otherwise (and as a lower bound: the
// problem cannot be above the block it breaks).
func yamlSyntaxLine(data []byte, reported int, problem string) int {
	const maxScan = 5000 // lines; mapping files are a few hundred
	if reported <= 0 {
		return reported
	}
	ends := lineEnds(data)
	if len(ends) > maxScan {
		return reported
	}
	for n := reported; n <= len(ends); n++ {
		dec := yaml.NewDecoder(bytes.NewReader(data[:ends[n-1]]))
		var doc yaml.Node
		err := dec.Decode(&doc)
		for err == nil {
			err = dec.Decode(&doc)
		}
		if errors.Is(err, io.EOF) {
			continue
		}
		if m := yamlLine.FindStringSubmatch(err.Error()); m != nil && m[2] == problem {
			return n
		}
	}
	return reported
}

// lineEnds are the offsets just past each line's end (LF), the last line
// ending at len(data).
func lineEnds(data []byte) []int {
	var ends []int
	for i, c := range data {
		if c == '\n' {
			ends = append(ends, i+1)
		}
	}
	if len(data) > 0 && data[len(data)-1] != '\n' {
		ends = append(ends, len(data))
	}
	return ends
}

// yaml.v3 leaves the line out of three kinds of error: those on the first
// line (it counts lines from 0 and omits line 0), an alias of an unknown
// anchor, and bytes its reader cannot decode. A mapping error must still
// say where it is, so yamlProblemLine locates them in the file.

var yamlUnknownAnchor = regexp.MustCompile(`^unknown anchor '(.*)' referenced$`)

// yamlReaderProblems are the messages of yaml.v3's reader (readerc.go),
// raised before any token exists.
var yamlReaderProblems = []string{
	"invalid leading UTF-8 octet", "incomplete UTF-8 octet sequence",
	"invalid trailing UTF-8 octet", "invalid length of a UTF-8 sequence",
	"invalid Unicode character", "control characters are not allowed",
	"incomplete UTF-16 character", "unexpected low surrogate area",
	"incomplete UTF-16 surrogate pair", "expected low surrogate area",
	"input error",
}

// yamlProblemLine is the 1-based line of a yaml.v3 problem reported
// without one (0 when it cannot be told, e.g. in a UTF-16 file).
func yamlProblemLine(msg string, data []byte) int {
	if m := yamlUnknownAnchor.FindStringSubmatch(msg); m != nil {
		return lineAt(data, bytes.Index(data, []byte("*"+m[1])))
	}
	for _, p := range yamlReaderProblems {
		if strings.HasPrefix(msg, p) {
			return lineAt(data, firstUndecodable(data))
		}
	}
	return 1
}

// firstUndecodable is the offset of the first byte yaml.v3's reader
// refuses in UTF-8 input: invalid UTF-8, or a character outside YAML's
// printable set. -1 when there is none or the input is UTF-16.
func firstUndecodable(data []byte) int {
	if bytes.HasPrefix(data, []byte{0xFF, 0xFE}) || bytes.HasPrefix(data, []byte{0xFE, 0xFF}) {
		return -1
	}
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError && size == 1 || !yamlPrintable(r) {
			return i
		}
		i += size
	}
	return -1
}

func yamlPrintable(r rune) bool {
	return r == '\t' || r == '\n' || r == '\r' || r >= 0x20 && r <= 0x7E || r == 0x85 ||
		r >= 0xA0 && r <= 0xD7FF || r >= 0xE000 && r <= 0xFFFD || r >= 0x10000 && r <= utf8.MaxRune
}

// lineAt is the 1-based line of offset off, counting line breaks as YAML
// does (CR LF, CR, LF, NEL, LS, PS); 0 for a negative offset.
func lineAt(data []byte, off int) int {
	if off < 0 {
		return 0
	}
	line := 1
	s := string(data[:off])
	for i, r := range s {
		switch r {
		case '\r':
			if i+1 < len(s) && s[i+1] == '\n' {
				continue // CR LF is one break, counted at the LF
			}
			line++
		case '\n', '\u0085', '\u2028', '\u2029':
			line++
		}
	}
	return line
}
