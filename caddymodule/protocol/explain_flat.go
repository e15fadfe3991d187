package protocol

// The message body read the ways Explain needs it: flattened into pieces
// (each leaf's text in four readings), with each element's span, and the
// source byte spans the tree cannot give back.

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/antchfx/xmlquery"
)

// piece is one unit of character data under the body: a leaf's text, a
// run of mixed content, or the white space between elements.
type piece struct {
	text  string // decoded, as signed
	ent   string // entity references as written, CDATA unwrapped
	cdata string // entities decoded, CDATA with its markup
	raw   string // as written in the source
	name  string // the leaf's element name; "" for character data in a container
	blank bool   // white space between elements: not part of V
	key   []seg  // path of (name, element number) pairs, for per-level sorting
}

type seg struct {
	name string
	n    int // preorder number of the element, keeping repeated siblings apart
}

// elem is one element under the body and the pieces its subtree holds.
type elem struct {
	path, name string
	first, end int // pieces[first:end]
	size       int // bytes it adds to V
}

// flat is the body as a sequence of pieces, in document order.
type flat struct {
	pieces []piece
	elems  []elem
	src    sourceMap
	next   int // next raw text in src.raws to hand out
}

func flatten(env *Envelope, src sourceMap) *flat {
	f := &flat{src: src}
	f.children(env.Body, "", nil)
	if f.next != len(src.raws) {
		f.src.ok = false // the two readings disagree: don't trust the raw texts
	}
	return f
}

// children flattens n's children with container semantics (signature.go).
func (f *flat) children(n *xmlquery.Node, path string, key []seg) {
	counts := map[string]int{}
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		if c.Type == xmlquery.ElementNode {
			counts[c.Data]++
		}
	}
	seen := map[string]int{}
	var run piece
	flush := func() {
		if run.text != "" || run.raw != "" {
			run.blank = isBlank([]byte(run.text))
			run.key = key
			f.pieces = append(f.pieces, run)
		}
		run = piece{}
	}
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		switch {
		case isCharData(c):
			f.addCharData(&run, c)
		case c.Type == xmlquery.ElementNode:
			flush()
			seen[c.Data]++
			name := c.Data
			if counts[name] > 1 {
				name = fmt.Sprintf("%s[%d]", name, seen[c.Data])
			}
			p := name
			if path != "" {
				p = path + "/" + name
			}
			f.element(c, p, append(slices.Clip(key), seg{c.Data, len(f.elems)}))
		}
	}
	flush()
}

func (f *flat) element(n *xmlquery.Node, path string, key []seg) {
	idx := len(f.elems)
	f.elems = append(f.elems, elem{path: path, name: n.Data, first: len(f.pieces)})
	if hasElementChild(n) {
		f.children(n, path, key)
	} else {
		leaf := piece{name: n.Data, key: key}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			if isCharData(c) {
				f.addCharData(&leaf, c)
			}
		}
		f.pieces = append(f.pieces, leaf)
	}
	e := &f.elems[idx]
	e.end = len(f.pieces)
	for _, p := range f.pieces[e.first:e.end] {
		if !p.blank {
			e.size += len(p.text)
		}
	}
}

// addCharData adds one text or CDATA node to p in its four readings.
func (f *flat) addCharData(p *piece, c *xmlquery.Node) {
	raw := c.Data
	if f.next < len(f.src.raws) {
		raw = f.src.raws[f.next]
	}
	f.next++
	p.text += c.Data
	p.raw += raw
	if c.Type == xmlquery.CharDataNode {
		p.ent += c.Data
		p.cdata += raw
	} else {
		p.ent += raw
		p.cdata += c.Data
	}
}

// Piece selections for join.
const (
	signed     = false // the pieces in V
	everything = true  // white space between elements too
)

// join concatenates get(p) over the selected pieces.
func (f *flat) join(all bool, get func(*piece) string) []byte {
	var out []byte
	for i := range f.pieces {
		if p := &f.pieces[i]; all || !p.blank {
			out = append(out, get(p)...)
		}
	}
	return out
}

// textVia reads a piece's text through fn.
func textVia(fn func(string) string) func(*piece) string {
	return func(p *piece) string { return fn(p.text) }
}

func pieceText(p *piece) string  { return p.text }
func pieceEnt(p *piece) string   { return p.ent }
func pieceCDATA(p *piece) string { return p.cdata }
func pieceRaw(p *piece) string   { return p.raw }

// signedPieces returns the pieces V is made of, in document order.
func (f *flat) signedPieces() []*piece {
	ps := make([]*piece, 0, len(f.pieces))
	for i := range f.pieces {
		if !f.pieces[i].blank {
			ps = append(ps, &f.pieces[i])
		}
	}
	return ps
}

// appendWithout appends V with the pieces of a (and b, if not nil) left out.
func (f *flat) appendWithout(dst []byte, a elem, b *elem) []byte {
	for i := range f.pieces {
		p := &f.pieces[i]
		if p.blank || (a.first <= i && i < a.end) || (b != nil && b.first <= i && i < b.end) {
			continue
		}
		dst = append(dst, p.text...)
	}
	return dst
}

func joinPieces(ps []*piece, sep string, get func(*piece) string) []byte {
	var out []byte
	for i, p := range ps {
		if i > 0 {
			out = append(out, sep...)
		}
		out = append(out, get(p)...)
	}
	return out
}

func byName(fold bool) func(a, b *piece) int {
	return func(a, b *piece) int { return compareNames(a.name, b.name, fold) }
}

// byLevel orders pieces as a recursively sorted tree would: by the name at
// each level, repeated siblings kept apart by their document position.
func byLevel(fold bool) func(a, b *piece) int {
	return func(a, b *piece) int {
		for i := 0; i < len(a.key) && i < len(b.key); i++ {
			if c := compareNames(a.key[i].name, b.key[i].name, fold); c != 0 {
				return c
			}
			if c := a.key[i].n - b.key[i].n; c != 0 {
				return c
			}
		}
		return len(a.key) - len(b.key)
	}
}

func compareNames(a, b string, fold bool) int {
	if fold {
		if c := strings.Compare(strings.ToLower(a), strings.ToLower(b)); c != 0 {
			return c
		}
	}
	return strings.Compare(a, b)
}

func escapeMarkup(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

func escapeAll(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;", "'", "&apos;").Replace(s)
}

func nullIfEmpty(s string) string {
	if s == "" {
		return "null"
	}
	return s
}

// appendCompact serialises n compactly (no white space between elements,
// & < > escaped), as a sender's XML library would before indenting.
func appendCompact(dst []byte, n *xmlquery.Node, selfClose bool) []byte {
	name := n.Data
	if n.Prefix != "" {
		name = n.Prefix + ":" + n.Data
	}
	dst = append(append(dst, '<'), name...)
	if !hasElementChild(n) {
		text := leafText(n)
		if text == "" && selfClose {
			return append(dst, "/>"...)
		}
		dst = appendText(append(dst, '>'), text, true)
		return append(append(append(dst, "</"...), name...), '>')
	}
	dst = append(dst, '>')
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		if c.Type == xmlquery.ElementNode {
			dst = appendCompact(dst, c, selfClose)
		}
	}
	return append(append(append(dst, "</"...), name...), '>')
}

func compactInner(body *xmlquery.Node) []byte {
	var dst []byte
	for c := body.FirstChild; c != nil; c = c.NextSibling {
		if c.Type == xmlquery.ElementNode {
			dst = appendCompact(dst, c, false)
		}
	}
	return dst
}

// sourceMap locates, in the message bytes, what the tree cannot give back:
// each character-data token under the body as written (entity references,
// CDATA markup), the body element and the sign's text.
type sourceMap struct {
	raws  []string
	body  [2]int // <requestBody>…</requestBody>
	inner [2]int // between the body's tags
	sign  [2]int // the sign's text
	ok    bool
}

func (m sourceMap) span(data []byte, s [2]int) []byte { return data[s[0]:s[1]] }

// withoutSign returns the message with the sign's text removed.
func (m sourceMap) withoutSign(data []byte) []byte {
	if m.sign == [2]int{} {
		return nil
	}
	return append(slices.Clip(data[:m.sign[0]]), data[m.sign[1]:]...)
}

// scanSource reads data again, token by token, with the decoder settings
// Parse uses, so its character-data tokens are the tree's text nodes, in
// the same order.
func scanSource(data []byte, t MessageType) sourceMap {
	var m sourceMap
	d := xml.NewDecoder(bytes.NewReader(data))
	d.Strict = true
	d.CharsetReader = refuseCharset
	depth := 0
	var inBody, inHead, inSign, sawBody bool
	for {
		off := int(d.InputOffset())
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return sourceMap{}
		}
		switch tk := tok.(type) {
		case xml.StartElement:
			depth++
			switch {
			case depth == 2 && tk.Name.Local == t.bodyName():
				inBody, sawBody = true, true
				m.body[0], m.inner[0] = off, int(d.InputOffset())
			case depth == 2 && tk.Name.Local == t.headName():
				inHead = true
			case depth == 3 && inHead && tk.Name.Local == "sign":
				inSign = true
				m.sign[0] = int(d.InputOffset())
			}
		case xml.EndElement:
			switch {
			case depth == 2 && inBody:
				inBody = false
				m.inner[1], m.body[1] = off, int(d.InputOffset())
			case depth == 2:
				inHead = false
			case depth == 3 && inSign:
				inSign = false
				m.sign[1] = off
			}
			depth--
		case xml.CharData:
			if inBody {
				m.raws = append(m.raws, string(data[off:d.InputOffset()]))
			}
		}
	}
	m.ok = sawBody
	return m
}

// errCharset is returned by our CharsetReader so a declared non-UTF-8
// encoding is recognisable in the decoder's wrapped error.
var errCharset = errors.New("only UTF-8 is accepted")

// refuseCharset is the decoders' CharsetReader: it is only consulted when
// the declaration names an encoding other than UTF-8, and it always refuses,
// so no transcoding (and no GBK "lookalike" input) ever reaches the DOM.
func refuseCharset(string, io.Reader) (io.Reader, error) { return nil, errCharset }
