package protocol

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/antchfx/xmlquery"
)

// parseDOMSlab builds the checked tree of one message with the scanner
// (scanDOMSlab), the one XML parser of platform input, and returns it
// with its node slab, for Envelope.Release.
func parseDOMSlab(data []byte, lim Limits) (*xmlquery.Node, []xmlquery.Node, error) {
	doc, slab, err := scanDOMSlab(data, lim)
	if err != nil {
		return nil, nil, err
	}
	return doc, slab, nil
}

// addPseudoAttrs records name="value" pairs of a processing instruction as
// attributes, as xmlquery does (fields split at white space, a pair needs a
// name before its '=', quotes trimmed, the first of a repeated name kept),
// with the attribute slice allocated once. xmlquery.AddAttr checks for a
// repeated name by a linear search, which made a 1 MiB instruction of
// distinct names cost minutes; past a few names a set does it.
func addPseudoAttrs(n *xmlquery.Node, inst string) {
	count := 0
	for pair := range strings.FieldsSeq(inst) {
		if strings.IndexByte(pair, '=') > 0 {
			count++
		}
	}
	if count == 0 {
		return
	}
	n.Attr = make([]xmlquery.Attr, 0, count)
	var seen map[string]bool
	if count > 8 {
		seen = make(map[string]bool, count)
	}
	for pair := range strings.FieldsSeq(inst) {
		i := strings.IndexByte(pair, '=')
		if i <= 0 {
			continue
		}
		key, val := pair[:i], strings.Trim(pair[i+1:], `"'`)
		if seen == nil {
			xmlquery.AddAttr(n, key, val)
			continue
		}
		if !seen[key] {
			seen[key] = true
			n.Attr = append(n.Attr, xmlquery.Attr{Name: pseudoAttrName(key), Value: val})
		}
	}
}

// pseudoAttrName is the name xmlquery.AddAttr gives key: split at the
// first ':' unless it leads. Distinct keys give distinct names, so a set
// of keys finds exactly the repeats AddAttr's search finds.
func pseudoAttrName(key string) xml.Name {
	if i := strings.IndexByte(key, ':'); i > 0 {
		return xml.Name{Space: key[:i], Local: key[i+1:]}
	}
	return xml.Name{Local: key}
}

func limitError(msg, unit, what string, max int) *Error {
	return newError(KindTooLarge,
		fmt.Sprintf("%s(最多%d%s)", msg, max, unit),
		fmt.Sprintf("%s exceeds %d", what, max))
}

var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// checkBytes runs the checks that need no tokenising at all.
func checkBytes(data []byte, lim Limits) ([]byte, error) {
	if len(bytes.TrimLeft(data, " \t\r\n")) == 0 {
		return nil, newError(KindMalformed, msgEmpty, "empty message")
	}
	if len(data) > lim.MaxBytes {
		return nil, limitError(msgTooBig, "字节", "message size", lim.MaxBytes)
	}
	// A UTF-8 byte-order mark is legal XML; encoding/xml would see it as
	// text before the root, so drop it here.
	data = bytes.TrimPrefix(data, utf8BOM)
	if !utf8.Valid(data) {
		return nil, newError(KindEncoding, msgEncoding, "invalid UTF-8")
	}
	return data, nil
}

// isBlank reports whether b holds only XML white space (space, tab, CR, LF).
func isBlank(b []byte) bool {
	for _, c := range b {
		if c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			return false
		}
	}
	return true
}
