package caddymodule

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"strings"
	"time"
)

// Formatting for people: the console and the command line's text view
// show bodies, durations and times through these, so both read the same.

// humanDuration is a duration to the precision a person reads: 850µs,
// 35ms, 1.2s, 2m5s.
func humanDuration(d time.Duration) string {
	switch {
	case d <= 0:
		return "0s"
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	default:
		return d.Round(time.Second).String()
	}
}

// displayTime is a time as the platform and the insurer speak of it:
// China Standard Time, to the millisecond.
func displayTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.In(shanghai).Format("2006-01-02 15:04:05.000")
}

// prettyBody indents an XML or JSON body for reading. A body that is
// neither (a clipped unverified request, a core's HTML error page) is
// returned as it is: the evidence is shown, never hidden by a formatter.
func prettyBody(b []byte) string {
	trimmed := bytes.TrimSpace(b)
	switch {
	case len(trimmed) == 0:
		return ""
	case trimmed[0] == '{' || trimmed[0] == '[':
		var out bytes.Buffer
		if json.Indent(&out, trimmed, "", "  ") == nil {
			return out.String()
		}
	case trimmed[0] == '<':
		if s, err := indentXML(trimmed); err == nil {
			return s
		}
	}
	return string(b)
}

// indentXML writes one element per line, leaves on one line with their
// text (<name>value</name>), two spaces per level. Text is escaped again
// (CDATA shows as escaped text); whitespace between elements is dropped.
func indentXML(b []byte) (string, error) {
	dec := xml.NewDecoder(bytes.NewReader(b))
	dec.Strict = true
	var out strings.Builder
	depth := 0
	open := false   // a start tag is written and its line not ended
	var text []byte // character data of the open element
	for {
		tok, err := dec.RawToken()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return "", err
		}
		switch t := tok.(type) {
		case xml.ProcInst:
			out.WriteString("<?" + t.Target + " " + string(t.Inst) + "?>\n")
		case xml.StartElement:
			if open {
				out.WriteString("\n")
			}
			out.WriteString(strings.Repeat("  ", depth) + "<" + qualified(t.Name))
			for _, a := range t.Attr {
				out.WriteString(" " + qualified(a.Name) + `="`)
				xml.EscapeText(&out, []byte(a.Value))
				out.WriteString(`"`)
			}
			out.WriteString(">")
			open, text, depth = true, text[:0], depth+1
		case xml.CharData:
			if open {
				text = append(text, t...)
			}
		case xml.EndElement:
			depth--
			if open {
				xml.EscapeText(&out, text)
			} else {
				out.WriteString(strings.Repeat("  ", depth))
			}
			out.WriteString("</" + qualified(t.Name) + ">\n")
			open = false
		}
	}
	if depth != 0 {
		return "", errors.New("unclosed element")
	}
	return strings.TrimRight(out.String(), "\n"), nil
}

func qualified(n xml.Name) string {
	if n.Space != "" {
		return n.Space + ":" + n.Local
	}
	return n.Local
}
