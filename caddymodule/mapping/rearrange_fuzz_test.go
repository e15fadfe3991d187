package mapping_test

// FuzzSignedRearrangements takes a genuine signed sample and rearranges
// its markup in ways that keep V, the signed text: a value split by a
// child element, empty or text-bearing elements inserted between fields,
// text left loose in a container, comments, CDATA and character references
// inside values, elements renamed or wrapped, a field split in two, text
// moved between adjacent fields. It asserts that V is unchanged (so the
// signature still verifies) and that the message is then either refused
// (parse or field error) or mapped to exactly the JSON of the genuine
// message. Moves between the residualPairs of boundary_test.go, which no
// check can tell, are left out.
//
// Run: go test -run x -fuzz FuzzSignedRearrangements -fuzztime 3m ./caddymodule/mapping/

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/caddy-gongbao/gongbao/caddymodule/protocol"
)

// rearrangeSetup loads every request sample and the pool of element
// names the fuzzer renames and inserts with: every name of every sample,
// every alias of the shipped mappings, and a few strangers.
func rearrangeSetup(t testing.TB) ([]*genuine, []string) {
	set, err := loadShipped()
	if err != nil {
		t.Fatal(err)
	}
	var gs []*genuine
	names := []string{"x", "Mobile", "value", "requestBody", "ProjectType", "dateInfo", "startDate"}
	for _, file := range []string{"claimRequest.xml", "correctRequest.xml", "insureRequest.xml",
		"invoiceRequest.electronic.xml", "invoiceRequest.xml", "surrendRequest.xml"} {
		g := loadGenuine(t, set, file)
		gs = append(gs, g)
		for _, e := range elements(g.model(), false) {
			names = append(names, e.name)
		}
	}
	for _, in := range set.Inbound {
		for _, row := range in.Request.Rows() {
			names = append(names, row.Aliases()...)
		}
	}
	slices.Sort(names)
	return gs, slices.Compact(names)
}

// residual reports a move of text between fields a and b that the fuzzer
// leaves alone: one of them takes part in a residualPairs entry, so moves
// involving it, alone or chained with others, may pass unnoticed (the
// boundary test checks those exhaustively).
func residual(root, a, b string) bool {
	return involved(root, a) || involved(root, b)
}

func involved(root, field string) bool {
	if field == "" {
		return false
	}
	for _, entry := range residualPairs[root] {
		if slices.Contains(strings.Split(entry, " | "), field) {
			return true
		}
	}
	return false
}

func FuzzSignedRearrangements(f *testing.F) {
	gs, names := rearrangeSetup(f)
	for i := range gs {
		f.Add(uint8(i), []byte{})
		for op := range byte(rearrangeOps) {
			f.Add(uint8(i), []byte{op, 3, 7})
			f.Add(uint8(i), []byte{op, 1, 200, 8, 2, 1})
		}
	}
	f.Fuzz(func(t *testing.T, which uint8, ops []byte) {
		g := gs[int(which)%len(gs)]
		body := g.model()
		if len(ops) > 3*maxRearrangements {
			ops = ops[:3*maxRearrangements] // each is checked with a parse; keep runs (and minimising) quick
		}
		for ; len(ops) >= 3; ops = ops[3:] {
			before := clone(body, nil)
			rearrange(g, body, names, ops[0], int(ops[1]), int(ops[2]))
			if !g.keepsV(body) { // e.g. a split left a blank run, which is not signed
				body = before
			}
		}
		msg := g.message(body)
		refused, out := g.judge(t, msg)
		if !refused && string(out) != string(g.json) {
			t.Fatalf("%s: a rearrangement that keeps the signature changes what the core gets\n%s\n got %s\nwant %s",
				g.file, msg, out, g.json)
		}
	})
}

const (
	rearrangeOps      = 11 // kinds of rearrangement
	maxRearrangements = 12 // per run
)

// rearrange applies one V-keeping change chosen by op, a and b.
func rearrange(g *genuine, body *xnode, names []string, op byte, a, b int) {
	leaves := elements(body, true)
	all := elements(body, false)
	if len(leaves) == 0 {
		return
	}
	leaf := leaves[a%len(leaves)]
	name := names[b%len(names)]
	k := 1 + b%3
	switch op % rearrangeOps {
	case 0: // wrap part of a value in a child element
		p := textPiece(leaf, b%2 == 0)
		if p == nil || p.kind == xRef {
			return
		}
		r := []rune(p.text)
		i := a % (len(r) + 1)
		j := i + b%(len(r)-i+1)
		child := &xnode{kind: xElem, name: name}
		putRunes(child, string(r[i:j]), true)
		split(p, string(r[:i]), child, string(r[j:]))
	case 1: // insert an empty element
		parent := containerOf(body, all, a)
		parent.insertAt(b%(len(parent.kids)+1), &xnode{kind: xElem, name: name})
	case 2: // move a value's last (first) characters into a new element after (before) it
		atEnd := a%2 == 0
		moved := &xnode{kind: xElem, name: name}
		at := leaf.index()
		if atEnd {
			at++
		}
		leaf.parent.insertAt(at, moved)
		if residual(g.root, g.canonical(leaf), g.canonical(moved)) {
			leaf.parent.kids = slices.Delete(leaf.parent.kids, at, at+1)
			return
		}
		putRunes(moved, takeRunes(leaf, k, atEnd), true)
	case 3: // leave a value's last (first) characters loose in its container
		atEnd := a%2 == 0
		text := takeRunes(leaf, k, atEnd)
		if blank(text) { // a blank loose run is not signed: V would change
			putRunes(leaf, text, atEnd)
			return
		}
		at := leaf.index()
		if atEnd {
			at++
		}
		leaf.parent.insertAt(at, &xnode{kind: xText, text: text})
	case 4, 5, 6: // a comment, a CDATA section or a character reference inside a value
		p := textPiece(leaf, b%2 == 0)
		if p == nil || p.kind != xText || p.text == "" {
			return
		}
		r := []rune(p.text)
		i := a % len(r)
		switch op % rearrangeOps {
		case 4:
			split(p, string(r[:i]), &xnode{kind: xComment, text: "c"}, string(r[i:]))
		case 5:
			j := i + 1 + b%(len(r)-i)
			if strings.Contains(string(r[i:j]), "]]>") {
				return
			}
			split(p, string(r[:i]), &xnode{kind: xCDATA, text: string(r[i:j])}, string(r[j:]))
		case 6:
			split(p, string(r[:i]), &xnode{kind: xRef, text: string(r[i])}, string(r[i+1:]))
		}
	case 7: // rename an element
		e := all[a%len(all)]
		before := g.canonical(e)
		old := e.name
		e.name = name
		if e.isLeaf() && residual(g.root, before, g.canonical(e)) {
			e.name = old
		}
	case 8: // move characters across the boundary of two adjacent values
		i := a % len(leaves)
		if i+1 >= len(leaves) || textBetween(body, leaves[i], leaves[i+1]) ||
			residual(g.root, g.canonical(leaves[i]), g.canonical(leaves[i+1])) {
			return
		}
		if b%2 == 0 {
			putRunes(leaves[i+1], takeRunes(leaves[i], k, true), false)
		} else {
			putRunes(leaves[i], takeRunes(leaves[i+1], k, false), true)
		}
	case 9: // wrap a value element in a new element
		at := leaf.index()
		parent := leaf.parent
		wrapper := &xnode{kind: xElem, name: name, parent: parent}
		wrapper.insertAt(0, leaf)
		parent.kids[at] = wrapper
	case 10: // split a value into two elements of its name
		p := textPiece(leaf, true)
		if p == nil || p.kind == xRef {
			return
		}
		r := []rune(p.text)
		i := a % (len(r) + 1)
		p.text = string(r[:i])
		twin := &xnode{kind: xElem, name: leaf.name}
		putRunes(twin, string(r[i:]), true)
		for _, after := range slices.Clone(leaf.kids[slices.Index(leaf.kids, p)+1:]) {
			twin.insertAt(len(twin.kids), after)
		}
		leaf.kids = leaf.kids[:slices.Index(leaf.kids, p)+1]
		leaf.parent.insertAt(leaf.index()+1, twin)
	}
}

// split replaces piece p by pre, mid and post (pre and post as p's kind).
func split(p *xnode, pre string, mid *xnode, post string) {
	leaf := p.parent
	at := slices.Index(leaf.kids, p)
	var repl []*xnode
	if pre != "" {
		repl = append(repl, &xnode{kind: p.kind, text: pre, parent: leaf})
	}
	mid.parent = leaf
	repl = append(repl, mid)
	if post != "" {
		repl = append(repl, &xnode{kind: p.kind, text: post, parent: leaf})
	}
	if p.kind == xRef { // a reference holds one character; its pieces are text
		for _, r := range repl {
			if r != mid {
				r.kind = xText
			}
		}
	}
	leaf.kids = slices.Replace(leaf.kids, at, at+1, repl...)
}

// containerOf picks the body or one of its containers.
func containerOf(body *xnode, all []*xnode, a int) *xnode {
	var cs []*xnode
	cs = append(cs, body)
	for _, e := range all {
		if !e.isLeaf() {
			cs = append(cs, e)
		}
	}
	return cs[a%len(cs)]
}

// textBetween reports signed text between the end of x and the start of
// y (earlier rearrangements may have left some): moving characters from x
// to y would then reorder V.
func textBetween(body, x, y *xnode) bool {
	state := 0 // 0: before x ends, 1: between, 2: y reached
	found := false
	var walk func(n *xnode)
	walk = func(n *xnode) {
		for _, k := range n.kids {
			if state == 2 {
				return
			}
			if k == y {
				state = 2
				return
			}
			if state == 1 && k.kind != xElem && k.kind != xComment {
				found = true
			}
			if k.kind == xElem {
				walk(k)
				if k == x {
					state = 1
				}
			}
		}
	}
	walk(body)
	return found
}

// keepsV reports whether the rendered body still parses to the genuine V
// (a body that no longer parses counts: it is refused either way).
func (g *genuine) keepsV(body *xnode) bool {
	env, err := protocol.Parse(g.message(body), protocol.Limits{})
	return err != nil || bytes.Equal(env.SignedValue(), g.v)
}

func clone(n, parent *xnode) *xnode {
	c := &xnode{kind: n.kind, name: n.name, text: n.text, parent: parent}
	for _, k := range n.kids {
		c.kids = append(c.kids, clone(k, c))
	}
	return c
}
