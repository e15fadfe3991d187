package pii

import (
	"encoding/json"
	"html"
	"regexp"
	"sort"
	"strings"
)

// BodyMasker masks the values of named fields in stored bodies: the text of
// XML elements and the string values of JSON keys, each by the kind of its
// name. Build it once (NewBodyMasker) and share it; it is safe for
// concurrent use. The zero BodyMasker masks nothing.
type BodyMasker struct {
	xmlRE, jsonRE     *regexp.Regexp
	xmlKind, jsonKind map[string]Kind
}

// NewBodyMasker compiles a masker for XML elements and JSON keys named in
// xmlNames and jsonKeys, whose values are masked by the kind given.
func NewBodyMasker(xmlNames, jsonKeys map[string]Kind) BodyMasker {
	m := BodyMasker{xmlKind: xmlNames, jsonKind: jsonKeys}
	if len(xmlNames) > 0 {
		// A value is plain text or CDATA sections (DESIGN §1.3).
		m.xmlRE = regexp.MustCompile(`(<(` + alternatives(xmlNames) + `)>)((?:[^<]+|<!\[CDATA\[(?s:.*?)\]\]>)*)(</)`)
	}
	if len(jsonKeys) > 0 {
		m.jsonRE = regexp.MustCompile(`("(` + alternatives(jsonKeys) + `)"\s*:\s*")((?:[^"\\]|\\.)*)(")`)
	}
	return m
}

// Merge notes that name carries personal data of kind k in names. A name
// met with two different kinds is masked as Other, the strictest.
func Merge(names map[string]Kind, name string, k Kind) {
	if old, ok := names[name]; ok && old != k {
		k = Other
	}
	names[name] = k
}

// XML returns b with the text of the masker's elements masked.
func (m BodyMasker) XML(b []byte) []byte {
	if m.xmlRE == nil || b == nil {
		return b
	}
	return replaceValues(m.xmlRE, b, func(name, raw string) string {
		return html.EscapeString(m.xmlKind[name].Mask(xmlText(raw)))
	})
}

// JSON returns b with the string values of the masker's keys masked.
func (m BodyMasker) JSON(b []byte) []byte {
	if m.jsonRE == nil || b == nil {
		return b
	}
	return replaceValues(m.jsonRE, b, func(name, raw string) string {
		var v string
		if json.Unmarshal([]byte(`"`+raw+`"`), &v) != nil {
			return hideAll(raw)
		}
		quoted, _ := json.Marshal(m.jsonKind[name].Mask(v))
		return string(quoted[1 : len(quoted)-1])
	})
}

// replaceValues rewrites group 3 (the value) of every match of re, given
// group 2 (the name); groups 1 and 4 are kept.
func replaceValues(re *regexp.Regexp, b []byte, mask func(name, raw string) string) []byte {
	matches := re.FindAllSubmatchIndex(b, -1)
	if matches == nil {
		return b
	}
	out := make([]byte, 0, len(b))
	last := 0
	for _, g := range matches {
		out = append(out, b[last:g[6]]...)
		out = append(out, mask(string(b[g[4]:g[5]]), string(b[g[6]:g[7]]))...)
		last = g[7]
	}
	return append(out, b[last:]...)
}

// xmlText is the character data of an element's content: CDATA sections
// unwrapped, references resolved.
func xmlText(raw string) string {
	var b strings.Builder
	for raw != "" {
		start := strings.Index(raw, "<![CDATA[")
		if start < 0 {
			b.WriteString(html.UnescapeString(raw))
			break
		}
		b.WriteString(html.UnescapeString(raw[:start]))
		raw = raw[start+len("<![CDATA["):]
		end := strings.Index(raw, "]]>")
		if end < 0 {
			end = len(raw)
		}
		b.WriteString(raw[:end])
		raw = strings.TrimPrefix(raw[end:], "]]>")
	}
	return b.String()
}

func alternatives(names map[string]Kind) string {
	quoted := make([]string, 0, len(names))
	for n := range names {
		quoted = append(quoted, regexp.QuoteMeta(n))
	}
	sort.Strings(quoted) // one regexp for one set of names
	return strings.Join(quoted, "|")
}
