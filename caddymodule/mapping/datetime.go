package mapping

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Datetime patterns are Java-style (what the platform's peers write):
// yyyy MM dd HH mm ss SSS, 'quoted' literals, anything else that is not a
// letter is literal. They compile to a token list with fixed-width numeric
// fields instead of a Go layout, because Go layouts cannot express the
// platform's "HH:mm:ss:SSS" (milliseconds after a colon) and Go's parser is
// lenient about widths. The keyword RFC3339 selects RFC 3339 with an offset.

const rfc3339Keyword = "RFC3339"

type dtKind uint8

const (
	dtLit dtKind = iota
	dtYear
	dtMonth
	dtDay
	dtHour
	dtMinute
	dtSecond
	dtMilli
)

var dtLetters = map[string]dtKind{
	"yyyy": dtYear, "MM": dtMonth, "dd": dtDay,
	"HH": dtHour, "mm": dtMinute, "ss": dtSecond, "SSS": dtMilli,
}

func (k dtKind) width() int {
	switch k {
	case dtYear:
		return 4
	case dtMilli:
		return 3
	}
	return 2
}

type dtTok struct {
	kind dtKind
	lit  string
}

// dtLayout is a compiled datetime pattern.
type dtLayout struct {
	pattern string
	rfc3339 bool
	toks    []dtTok
}

var errPattern = errors.New("bad datetime pattern")

// compileDatetime compiles a Java-style pattern or the RFC3339 keyword.
func compileDatetime(p string) (*dtLayout, error) {
	if p == rfc3339Keyword {
		return &dtLayout{pattern: p, rfc3339: true}, nil
	}
	l := &dtLayout{pattern: p}
	seen := map[dtKind]bool{}
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			l.toks = append(l.toks, dtTok{kind: dtLit, lit: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(p); {
		c := p[i]
		switch {
		case c == '\'':
			end := strings.IndexByte(p[i+1:], '\'')
			if end < 0 {
				return nil, fmt.Errorf("%w: unterminated quote", errPattern)
			}
			if end == 0 {
				lit.WriteByte('\'') // '' is a literal quote
			}
			lit.WriteString(p[i+1 : i+1+end])
			i += end + 2
		case isLetter(c):
			j := i
			for j < len(p) && p[j] == c {
				j++
			}
			run := p[i:j]
			kind, ok := dtLetters[run]
			if !ok {
				return nil, fmt.Errorf("%w: unsupported letters %q (use yyyy MM dd HH mm ss SSS, 'quoted' text, or RFC3339)", errPattern, run)
			}
			if seen[kind] {
				return nil, fmt.Errorf("%w: %q appears twice", errPattern, run)
			}
			seen[kind] = true
			flush()
			l.toks = append(l.toks, dtTok{kind: kind})
			i = j
		default:
			lit.WriteByte(c)
			i++
		}
	}
	flush()
	if !seen[dtYear] || !seen[dtMonth] || !seen[dtDay] {
		return nil, fmt.Errorf("%w: needs yyyy, MM and dd", errPattern)
	}
	return l, nil
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

// parse reads s exactly (fixed widths, literal text verbatim) as a time in
// zone; RFC 3339 carries its own offset.
func (l *dtLayout) parse(s string, zone *time.Location) (time.Time, bool) {
	if l.rfc3339 {
		t, err := time.Parse(time.RFC3339Nano, s)
		return t, err == nil
	}
	v := [dtMilli + 1]int{dtMonth: 1, dtDay: 1}
	for _, tok := range l.toks {
		if tok.kind == dtLit {
			if !strings.HasPrefix(s, tok.lit) {
				return time.Time{}, false
			}
			s = s[len(tok.lit):]
			continue
		}
		w := tok.kind.width()
		if len(s) < w {
			return time.Time{}, false
		}
		n := 0
		for i := range w {
			c := s[i]
			if c < '0' || c > '9' {
				return time.Time{}, false
			}
			n = n*10 + int(c-'0')
		}
		v[tok.kind] = n
		s = s[w:]
	}
	if s != "" || v[dtHour] > 23 || v[dtMinute] > 59 || v[dtSecond] > 59 {
		return time.Time{}, false
	}
	mo := time.Month(v[dtMonth])
	t := time.Date(v[dtYear], mo, v[dtDay], v[dtHour], v[dtMinute], v[dtSecond], v[dtMilli]*int(time.Millisecond), zone)
	// time.Date normalises 2019-02-30 to March; refuse instead.
	if t.Month() != mo || t.Day() != v[dtDay] {
		return time.Time{}, false
	}
	return t, true
}

// appendTo formats t. Patterns have no offset, so t is first moved into
// zone; RFC 3339 keeps t's own offset.
func (l *dtLayout) appendTo(buf []byte, t time.Time, zone *time.Location) []byte {
	if l.rfc3339 {
		return t.AppendFormat(buf, time.RFC3339Nano)
	}
	t = t.In(zone)
	for _, tok := range l.toks {
		switch tok.kind {
		case dtLit:
			buf = append(buf, tok.lit...)
		case dtYear:
			buf = appendPadded(buf, t.Year(), 4)
		case dtMonth:
			buf = appendPadded(buf, int(t.Month()), 2)
		case dtDay:
			buf = appendPadded(buf, t.Day(), 2)
		case dtHour:
			buf = appendPadded(buf, t.Hour(), 2)
		case dtMinute:
			buf = appendPadded(buf, t.Minute(), 2)
		case dtSecond:
			buf = appendPadded(buf, t.Second(), 2)
		case dtMilli:
			buf = appendPadded(buf, t.Nanosecond()/int(time.Millisecond), 3)
		}
	}
	return buf
}

func appendPadded(buf []byte, n, width int) []byte {
	var tmp [8]byte
	i := len(tmp)
	for n > 0 || i > len(tmp)-width {
		i--
		tmp[i] = byte('0' + n%10)
		n /= 10
		if i == 0 {
			break
		}
	}
	return append(buf, tmp[i:]...)
}

// defaultZone is China Standard Time. A fixed +08:00 is exact for every date
// since 1992 and needs no tzdata in a scratch container.
var defaultZone = time.FixedZone("Asia/Shanghai", 8*60*60)

// loadZone resolves a timezone setting: an IANA name or a ±HH:MM offset.
func loadZone(name string) (*time.Location, error) {
	switch name {
	case "Asia/Shanghai", "PRC", "+08:00":
		return defaultZone, nil
	case "UTC", "Z", "+00:00":
		return time.UTC, nil
	}
	if len(name) == 6 && (name[0] == '+' || name[0] == '-') && name[3] == ':' {
		t, err := time.Parse("-07:00", name)
		if err == nil {
			_, off := t.Zone()
			return time.FixedZone(name, off), nil
		}
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("unknown timezone %q (use an IANA name such as Asia/Shanghai or an offset such as +08:00)", name)
	}
	return loc, nil
}
