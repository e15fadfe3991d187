package caddymodule

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"strings"

	"github.com/caddy-gongbao/gongbao/caddymodule/protocol"
)

// The dry run's output is what the sidecar's own builders produce — the
// executor's JSON, the protocol package's XML — indented by the standard
// library for reading, with personal data masked. It has no writer of its
// own, so it cannot drift from what is sent.

// dryRunMask masks a value found at an output path (without [n]); nil
// when masking is off.
type dryRunMask func(path, v string) (string, bool)

// maskFunc masks by the kind of the row that wrote the path (the mapping
// file's pii tags), with the project's one policy (internal/pii, through
// mapping.PII). The paths come from the lineage, so only the values those
// rows wrote are masked — not every value under a key of the same name,
// as a body masker (pii.BodyMasker) would.
func (r *dryRunResult) maskFunc() dryRunMask {
	if !r.maskedOut {
		return nil
	}
	return func(path, v string) (string, bool) {
		if kind, ok := r.piiPaths[path]; ok {
			return kind.Mask(v), true
		}
		return v, false
	}
}

// prettyJSON is the core JSON as the executor wrote it (members in their
// order, numbers as written), personal data masked, indented.
func (r *dryRunResult) prettyJSON() string {
	var b bytes.Buffer
	if err := json.Indent(&b, dryRunMaskJSON(r.jsonOut, r.maskFunc()), "", "  "); err != nil {
		// Not expected: the executor writes valid JSON. Show it as is.
		return string(r.jsonOut)
	}
	return b.String()
}

// outputXML is the reply or callback body as the protocol package builds
// it, personal data masked, without its head (requestUUID and sign are
// added when it is signed), indented.
func (r *dryRunResult) outputXML() string {
	els := dryRunMaskElements(r.xmlOut, "", r.maskFunc())
	var msg []byte
	if r.kind == "event" {
		// Built as a request; its head (a sign over no key) is dropped.
		msg, _ = protocol.Build(protocol.RequestMessage, r.root, "", els, "")
	} else {
		msg = protocol.BuildUnsignedResponse(r.root, "", els)
	}
	return dryRunIndentXML(msg)
}

// dryRunMaskElements copies els with the values at personal-data paths
// masked.
func dryRunMaskElements(els []protocol.Element, path string, mask dryRunMask) []protocol.Element {
	if mask == nil {
		return els
	}
	out := make([]protocol.Element, len(els))
	for i, e := range els {
		p := e.Name
		if path != "" {
			p = path + "/" + e.Name
		}
		out[i] = e
		if len(e.Children) > 0 {
			out[i].Children = dryRunMaskElements(e.Children, p, mask)
		} else if e.Text != "" {
			out[i].Text, _ = mask(p, e.Text)
		}
	}
	return out
}

// dryRunIndentXML re-indents a built message for reading, leaving out
// the XML declaration and the head.
func dryRunIndentXML(msg []byte) string {
	var b strings.Builder
	dec := xml.NewDecoder(bytes.NewReader(msg))
	enc := xml.NewEncoder(&b)
	enc.Indent("", "  ")
	depth := 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return string(msg) // not expected: the builder writes valid XML
		}
		switch t := tok.(type) {
		case xml.ProcInst:
			continue
		case xml.StartElement:
			depth++
			if depth == 2 && (t.Name.Local == "requestHead" || t.Name.Local == "responseHead") {
				if err := dec.Skip(); err != nil {
					return string(msg)
				}
				depth--
				continue
			}
		case xml.EndElement:
			depth--
		}
		if err := enc.EncodeToken(xml.CopyToken(tok)); err != nil {
			return string(msg)
		}
	}
	if err := enc.Flush(); err != nil {
		return string(msg)
	}
	return b.String() + "\n"
}

// dryRunMaskJSON masks the scalar values at personal-data paths of a JSON
// document (a masked value is written as a string), leaving every other
// byte as the executor wrote it. It selects by full path, which
// pii.BodyMasker (by key name) cannot; the masking itself is mask's.
func dryRunMaskJSON(data []byte, mask dryRunMask) []byte {
	if mask == nil {
		return data
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var (
		out     []byte
		copied  int64
		keys    []string // object keys from the root to the current value
		objects []bool   // open containers: true for an object
		wantKey bool
	)
	valueDone := func() {
		if n := len(objects); n > 0 && objects[n-1] {
			keys, wantKey = keys[:len(keys)-1], true
		}
	}
	for {
		before := dec.InputOffset()
		tok, err := dec.Token()
		if err != nil {
			break
		}
		if d, ok := tok.(json.Delim); ok {
			switch d {
			case '{', '[':
				objects, wantKey = append(objects, d == '{'), d == '{'
			default:
				objects, wantKey = objects[:len(objects)-1], false
				valueDone()
			}
			continue
		}
		if wantKey {
			keys, wantKey = append(keys, tok.(string)), false
			continue
		}
		if masked, ok := mask(strings.Join(keys, "."), dryRunScalar(tok)); ok && tok != nil {
			// The token's bytes follow the separators Token consumed.
			end := dec.InputOffset()
			seg := data[before:end]
			start := before + int64(len(seg)-len(bytes.TrimLeft(seg, " \t\r\n,:")))
			out = append(append(out, data[copied:start]...), dryRunQuote(masked)...)
			copied = end
		}
		valueDone()
	}
	return append(out, data[copied:]...)
}

// dryRunScalar is a scalar JSON token as text.
func dryRunScalar(tok json.Token) string {
	switch t := tok.(type) {
	case string:
		return t
	case json.Number:
		return t.String()
	case nil:
		return "null"
	}
	return fmt.Sprint(tok)
}
