package mapping_test

// A small model of a request body for rearranging genuine signed samples
// without changing V (DESIGN §1.2): the body is rebuilt compactly from the
// parsed tree (indentation between elements is not signed), so text can be
// moved between leaves, wrapped, split or left loose while V stays put.
// TestBoundaryShifts and FuzzSignedRearrangements use it.

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/antchfx/xmlquery"

	"github.com/caddy-gongbao/gongbao/caddymodule/mapping"
	"github.com/caddy-gongbao/gongbao/caddymodule/protocol"
)

type xkind uint8

const (
	xElem    xkind = iota
	xText          // character data, escaped on output
	xCDATA         // a CDATA section
	xRef           // one character written as a character reference
	xComment       // a comment (not signed)
)

type xnode struct {
	kind   xkind
	name   string // elements
	text   string // text, CDATA, reference, comment
	kids   []*xnode
	parent *xnode
}

// genuine is one signed sample with what the shipped mapping makes of it.
type genuine struct {
	file, root     string
	before, after  string // the message around the body's content
	body           *xquery
	v, json        []byte
	rules          *mapping.Rules
	known          map[string]string // element path (any spelling) → canonical mapping path
	knownLeafPaths []string          // canonical paths of the rows' value elements
}

// xquery keeps the parsed body so each use can build a fresh model.
type xquery struct{ node *xmlquery.Node }

func loadGenuine(t testing.TB, set *mapping.Set, file string) *genuine {
	t.Helper()
	data := readSampleTB(t, file)
	env, err := protocol.Parse(data, protocol.Limits{})
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	if _, ok := protocol.VerifyAny(env.SignedValue(), env.Sign, []string{testKey}); !ok {
		t.Fatalf("%s: not signed with the test key", file)
	}
	rules := set.Inbound[env.Root].Request
	out, err := rules.XMLToJSON(env.Body, fixedVars)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	open, close := []byte("<requestBody>"), []byte("</requestBody>")
	i, j := bytes.Index(data, open), bytes.LastIndex(data, close)
	if i < 0 || j < 0 || bytes.Count(data, open) != 1 {
		t.Fatalf("%s: no single <requestBody>…</requestBody>", file)
	}
	g := &genuine{file: file, root: env.Root, before: string(data[:i+len(open)]), after: string(data[j:]),
		body: &xquery{env.Body}, v: env.SignedValue(), json: out, rules: rules, known: map[string]string{}}
	for _, row := range rules.Rows() {
		if row.XML == "" || row.Fields != nil {
			continue
		}
		g.knownLeafPaths = append(g.knownLeafPaths, row.XML)
		g.known[row.XML] = row.XML
		dir := row.XML[:strings.LastIndexByte(row.XML, '/')+1]
		for _, a := range row.Aliases() {
			g.known[dir+a] = row.XML
		}
	}
	return g
}

func readSampleTB(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(messagesDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// model builds a fresh tree of the body: containers keep their elements
// (and any non-blank loose text), leaves their text and CDATA pieces.
func (g *genuine) model() *xnode {
	var build func(n *xmlquery.Node, parent *xnode) *xnode
	build = func(n *xmlquery.Node, parent *xnode) *xnode {
		x := &xnode{kind: xElem, name: n.Data, parent: parent}
		container := false
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			container = container || c.Type == xmlquery.ElementNode
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			switch {
			case c.Type == xmlquery.ElementNode:
				x.kids = append(x.kids, build(c, x))
			case c.Type == xmlquery.TextNode && !(container && blank(c.Data)):
				x.kids = append(x.kids, &xnode{kind: xText, text: c.Data, parent: x})
			case c.Type == xmlquery.CharDataNode && !(container && blank(c.Data)):
				x.kids = append(x.kids, &xnode{kind: xCDATA, text: c.Data, parent: x})
			}
		}
		return x
	}
	return build(g.body.node, nil)
}

func blank(s string) bool { return strings.Trim(s, " \t\r\n") == "" }

// message renders the model inside the genuine head.
func (g *genuine) message(body *xnode) []byte {
	var b strings.Builder
	b.WriteString(g.before)
	for _, k := range body.kids {
		renderX(&b, k)
	}
	b.WriteString(g.after)
	return []byte(b.String())
}

func renderX(b *strings.Builder, n *xnode) {
	switch n.kind {
	case xElem:
		if len(n.kids) == 0 {
			b.WriteString("<" + n.name + "/>")
			return
		}
		b.WriteString("<" + n.name + ">")
		for _, k := range n.kids {
			renderX(b, k)
		}
		b.WriteString("</" + n.name + ">")
	case xText:
		r := strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", "\r", "&#xD;")
		b.WriteString(r.Replace(n.text))
	case xCDATA:
		b.WriteString("<![CDATA[" + n.text + "]]>")
	case xRef:
		r, _ := utf8.DecodeRuneInString(n.text)
		fmt.Fprintf(b, "&#x%X;", r)
	case xComment:
		b.WriteString("<!--" + n.text + "-->")
	}
}

// path is the element's path under the body, as written.
func (n *xnode) path() string {
	var segs []string
	for e := n; e != nil && e.parent != nil; e = e.parent {
		segs = append(segs, e.name)
	}
	slices.Reverse(segs)
	return strings.Join(segs, "/")
}

func (n *xnode) isLeaf() bool {
	return n.kind == xElem && !slices.ContainsFunc(n.kids, func(k *xnode) bool { return k.kind == xElem })
}

// elements lists the elements under n in document order (leaves: only
// those without element children).
func elements(n *xnode, leavesOnly bool) []*xnode {
	var out []*xnode
	var walk func(*xnode)
	walk = func(e *xnode) {
		for _, k := range e.kids {
			if k.kind != xElem {
				continue
			}
			if !leavesOnly || k.isLeaf() {
				out = append(out, k)
			}
			walk(k)
		}
	}
	walk(n)
	return out
}

func (n *xnode) index() int { return slices.Index(n.parent.kids, n) }

func (n *xnode) insertAt(i int, k *xnode) {
	k.parent = n
	n.kids = slices.Insert(n.kids, i, k)
}

// textPiece is a leaf's first or last piece of signed text, or nil.
func textPiece(leaf *xnode, last bool) *xnode {
	kids := slices.Clone(leaf.kids)
	if last {
		slices.Reverse(kids)
	}
	for _, k := range kids {
		if k.kind == xText || k.kind == xCDATA || k.kind == xRef {
			return k
		}
	}
	return nil
}

// takeRunes removes up to k runes from the end (or start) of the leaf's
// last (first) text piece and returns them ("" if it has none).
func takeRunes(leaf *xnode, k int, fromEnd bool) string {
	p := textPiece(leaf, fromEnd)
	if p == nil || p.text == "" || k <= 0 {
		return ""
	}
	r := []rune(p.text)
	k = min(k, len(r))
	var taken string
	if fromEnd {
		taken, p.text = string(r[len(r)-k:]), string(r[:len(r)-k])
	} else {
		taken, p.text = string(r[:k]), string(r[k:])
	}
	if p.kind == xRef || p.kind == xCDATA && strings.Contains(taken, "]]>") {
		p.kind = xText
	}
	if p.text == "" {
		leaf.kids = slices.DeleteFunc(leaf.kids, func(x *xnode) bool { return x == p })
	}
	return taken
}

// putRunes adds s at the end (or start) of the leaf's text.
func putRunes(leaf *xnode, s string, atEnd bool) {
	if s == "" {
		return
	}
	k := &xnode{kind: xText, text: s}
	if atEnd {
		leaf.insertAt(len(leaf.kids), k)
	} else {
		leaf.insertAt(0, k)
	}
}

// canonical names a leaf by its mapping path ("" when the mapping does
// not read it).
func (g *genuine) canonical(n *xnode) string { return g.known[n.path()] }

// judge runs the rearranged message through the parser and the shipped
// mapping. It fails the test if V changed (the rearrangement was not one
// an attacker could sign); it returns whether the message was refused and,
// if accepted, the JSON the core would get.
func (g *genuine) judge(t *testing.T, msg []byte) (refused bool, out []byte) {
	t.Helper()
	env, err := protocol.Parse(msg, protocol.Limits{})
	if err != nil {
		return true, nil
	}
	if !bytes.Equal(env.SignedValue(), g.v) {
		t.Fatalf("%s: the rearrangement changed V\n got %q\nwant %q\n%s", g.file, env.SignedValue(), g.v, msg)
	}
	if _, ok := protocol.VerifyAny(env.SignedValue(), env.Sign, []string{testKey}); !ok {
		t.Fatalf("%s: same V, but the signature does not verify", g.file)
	}
	out, err = g.rules.XMLToJSON(env.Body, fixedVars)
	if err != nil {
		fzCheckFieldError(t, g.file, err)
		return true, nil
	}
	return false, out
}
