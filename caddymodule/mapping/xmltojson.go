package mapping

import (
	"strconv"
	"strings"
	"sync"

	"github.com/antchfx/xmlquery"
)

// scratch is the per-call working memory of XMLToJSON, pooled: buf holds the
// JSON fragments of the rows and then the assembled objects; spans is a
// stack of per-row fragment positions (nested repeats push onto it).
type scratch struct {
	buf   []byte
	spans []span
	tr    *tracer // nil except in TraceXMLToJSON (never pooled)
	un    unread  // the shape walk's record; its names go to the caller
}

// span locates a row's JSON fragment in scratch.buf; start < 0 means absent.
type span struct{ start, end int }

// maxPooledBuf keeps one huge message from pinning its buffer in the pool.
const maxPooledBuf = 256 << 10

var scratchPool = sync.Pool{New: func() any {
	return &scratch{buf: make([]byte, 0, 4096), spans: make([]span, 0, 64)}
}}

// XMLToJSON maps a request body element (requestBody; nil = empty body) to
// one compact JSON object, members in row order with shared prefixes
// grouped. It returns the first failing row in row order as *FieldError.
func (r *Rules) XMLToJSON(body *xmlquery.Node, vars Vars) ([]byte, error) {
	out, _, err := r.XMLToJSONUnmapped(body, vars)
	return out, err
}

// MaxUnmapped bounds the names XMLToJSONUnmapped reports for one body.
const MaxUnmapped = 32

// XMLToJSONUnmapped is XMLToJSON that also returns the paths of the body's
// elements no row reads and the file lets through (ignore: entries and,
// under unknown_elements: ignore, unknown elements), distinct, in document
// order, at most MaxUnmapped; nil, without allocating, when there are
// none. On an error they are those seen before it. Unknown elements' names
// are sender-chosen text: log or journal them, never put them in a reply.
func (r *Rules) XMLToJSONUnmapped(body *xmlquery.Node, vars Vars) ([]byte, []string, error) {
	if r == nil || r.dir != xmlToJSON {
		return nil, nil, ErrWrongDirection
	}
	sc := scratchPool.Get().(*scratch)
	defer func() {
		if cap(sc.buf) <= maxPooledBuf {
			sc.buf, sc.spans = sc.buf[:0], sc.spans[:0]
			scratchPool.Put(sc)
		}
	}()
	if fe := r.object(body, vars, sc); fe != nil {
		return nil, nil, fe
	}
	// The rows passed; the body must also have no element, text or
	// nesting they did not read (shape.go), or signed text could reach
	// the core rearranged.
	// The record lives in the pooled scratch: a local would escape.
	sc.un = unread{max: MaxUnmapped}
	fe := r.shape.check(body, &sc.un)
	names := sc.un.names
	sc.un = unread{} // the caller owns names now
	if fe != nil {
		return nil, names, fe
	}
	out := make([]byte, len(sc.buf))
	copy(out, sc.buf)
	return out, names, nil
}

// object evaluates every row against node (nil: all absent) and appends the
// resulting JSON object to sc.buf, replacing the row fragments it used.
func (r *Rules) object(node *xmlquery.Node, vars Vars, sc *scratch) *FieldError {
	mark, base := len(sc.buf), len(sc.spans)
	for range r.rows {
		sc.spans = append(sc.spans, span{-1, -1})
	}
	for i, row := range r.rows {
		start := len(sc.buf)
		present, fe := row.evalXML(node, vars, sc)
		if sc.tr != nil {
			sc.tr.xmlRow(row, node, vars, sc.buf[start:], present, fe)
		}
		if fe != nil {
			return fe
		}
		if present {
			sc.spans[base+i] = span{start, len(sc.buf)}
		}
	}
	objStart := len(sc.buf)
	sc.buf = append(sc.buf, '{')
	sc.buf, _ = writeMembers(sc.buf, r.tree, sc.spans[base:])
	sc.buf = append(sc.buf, '}')
	n := copy(sc.buf[mark:], sc.buf[objStart:])
	sc.buf = sc.buf[:mark+n]
	sc.spans = sc.spans[:base]
	return nil
}

// writeMembers appends the members of one object level; objects whose
// members are all absent are left out.
func writeMembers(buf []byte, nodes []*outNode, spans []span) ([]byte, bool) {
	wrote := false
	for _, n := range nodes {
		save := len(buf)
		if wrote {
			buf = append(buf, ',')
		}
		buf = append(buf, n.key...)
		if n.row >= 0 {
			sp := spans[n.row]
			if sp.start < 0 {
				buf = buf[:save]
				continue
			}
			buf = append(buf, buf[sp.start:sp.end]...)
			wrote = true
			continue
		}
		buf = append(buf, '{')
		var some bool
		buf, some = writeMembers(buf, n.kids, spans)
		if !some {
			buf = buf[:save]
			continue
		}
		buf = append(buf, '}')
		wrote = true
	}
	return buf, wrote
}

// evalXML appends row's JSON fragment to sc.buf and reports whether the
// row produced a value.
func (row *Row) evalXML(node *xmlquery.Node, vars Vars, sc *scratch) (bool, *FieldError) {
	switch {
	case row.hasConst:
		sc.buf = append(sc.buf, row.constOut...)
		return true, nil
	case row.Var != "":
		return row.valueXML(vars[row.Var], sc)
	case row.repeated():
		return row.repeatXML(node, vars, sc)
	}
	el, fe := row.findXML(node)
	if fe != nil {
		return false, fe
	}
	if el == nil {
		return row.valueXML("", sc)
	}
	text := textOf(el)
	if row.noEmpty && isBlank(text) {
		// allow_empty: false. An optional element that is present must
		// hold a value: emptied, its signed text could have moved into a
		// neighbour unnoticed.
		if row.pattern != nil {
			return false, row.patternErr()
		}
		return false, row.fieldErr(ReasonInvalid, "present but empty")
	}
	return row.valueXML(text, sc)
}

// valueXML converts s, or applies default/required when s is blank.
func (row *Row) valueXML(s string, sc *scratch) (bool, *FieldError) {
	if isBlank(s) {
		if row.hasDefault {
			sc.buf = append(sc.buf, row.defaultOut...)
			return true, nil
		}
		if row.Required {
			return false, row.fieldErr(ReasonMissing, "required value missing")
		}
		return false, nil
	}
	var fe *FieldError
	sc.buf, fe = row.appendFromXML(sc.buf, s)
	return fe == nil, fe
}

// findXML walks the source path by child names. A path segment that
// occurs twice is refused: which one the core should see is ambiguous.
func (row *Row) findXML(node *xmlquery.Node) (*xmlquery.Node, *FieldError) {
	parent, fe := row.parentXML(node)
	if parent == nil || fe != nil {
		return nil, fe
	}
	last := len(row.src) - 1
	el, dup := childElement(parent, row.src[last])
	if dup {
		return nil, row.dupErr(last, row.src[last])
	}
	if el != nil {
		return el, nil
	}
	for _, alias := range row.aliases {
		el, dup = childElement(parent, alias)
		if dup {
			return nil, row.dupErr(last, alias)
		}
		if el != nil {
			return el, nil
		}
	}
	return nil, nil
}

// parentXML finds the element holding the last path segment (nil: absent).
func (row *Row) parentXML(node *xmlquery.Node) (*xmlquery.Node, *FieldError) {
	for i, name := range row.src[:len(row.src)-1] {
		if node == nil {
			return nil, nil
		}
		var dup bool
		node, dup = childElement(node, name)
		if dup {
			return nil, row.dupErr(i, name)
		}
	}
	return node, nil
}

func (row *Row) dupErr(i int, name string) *FieldError {
	path := strings.Join(append(row.src[:i:i], name), "/")
	e := row.fieldErr(ReasonDuplicate, "element occurs more than once")
	e.Path = path
	return e
}

// childElement returns the child element called name and whether there is
// more than one.
func childElement(parent *xmlquery.Node, name string) (*xmlquery.Node, bool) {
	if parent == nil {
		return nil, false
	}
	var found *xmlquery.Node
	for c := parent.FirstChild; c != nil; c = c.NextSibling {
		if c.Type == xmlquery.ElementNode && c.Data == name {
			if found != nil {
				return found, true
			}
			found = c
		}
	}
	return found, false
}

// textOf returns the element's own character data (text and CDATA
// children, as decoded, untrimmed). The common single-text case does not
// allocate.
func textOf(el *xmlquery.Node) string {
	var first *xmlquery.Node
	multi := false
	for c := el.FirstChild; c != nil; c = c.NextSibling {
		if c.Type == xmlquery.TextNode || c.Type == xmlquery.CharDataNode {
			if first != nil {
				multi = true
				break
			}
			first = c
		}
	}
	if first == nil {
		return ""
	}
	if !multi {
		return first.Data
	}
	var b strings.Builder
	for c := first; c != nil; c = c.NextSibling {
		if c.Type == xmlquery.TextNode || c.Type == xmlquery.CharDataNode {
			b.WriteString(c.Data)
		}
	}
	return b.String()
}

// isEmptyElement: no element children and blank text, i.e. absent.
func isEmptyElement(el *xmlquery.Node) bool {
	for c := el.FirstChild; c != nil; c = c.NextSibling {
		switch c.Type {
		case xmlquery.ElementNode:
			return false
		case xmlquery.TextNode, xmlquery.CharDataNode:
			if !isBlank(c.Data) {
				return false
			}
		}
	}
	return true
}

// repeatXML maps every item element to a JSON array. Empty items are
// absent and neither mapped nor counted; zero items means the row is absent.
func (row *Row) repeatXML(node *xmlquery.Node, vars Vars, sc *scratch) (bool, *FieldError) {
	parent, fe := row.parentXML(node)
	if fe != nil {
		return false, fe
	}
	name := row.itemName(parent)
	count := 0
	for c := firstChild(parent); c != nil; c = c.NextSibling {
		if c.Type == xmlquery.ElementNode && c.Data == name && !isEmptyElement(c) {
			count++
		}
	}
	if fe := row.checkCount(count); fe != nil {
		return false, fe
	}
	if count == 0 {
		return false, nil
	}
	sc.buf = append(sc.buf, '[')
	idx := 0
	for c := parent.FirstChild; c != nil; c = c.NextSibling {
		if c.Type != xmlquery.ElementNode || c.Data != name || isEmptyElement(c) {
			continue
		}
		idx++
		if idx > 1 {
			sc.buf = append(sc.buf, ',')
		}
		item := func() string { return row.srcPath + "[" + strconv.Itoa(idx) + "]" }
		if row.Fields != nil {
			if fe := row.Fields.object(c, vars, sc); fe != nil {
				return false, fe.withPrefix(item(), "/")
			}
			continue
		}
		var fe *FieldError
		if sc.buf, fe = row.appendFromXML(sc.buf, textOf(c)); fe != nil {
			fe.Path = item()
			return false, fe
		}
	}
	sc.buf = append(sc.buf, ']')
	return true, nil
}

// itemName picks the spelling of the repeated element: the canonical name
// if any such element exists, else the first alias that does.
func (row *Row) itemName(parent *xmlquery.Node) string {
	canonical := row.src[len(row.src)-1]
	if len(row.aliases) == 0 || parent == nil {
		return canonical
	}
	if el, _ := childElement(parent, canonical); el != nil {
		return canonical
	}
	for _, name := range row.aliases {
		if el, _ := childElement(parent, name); el != nil {
			return name
		}
	}
	return canonical
}

func firstChild(n *xmlquery.Node) *xmlquery.Node {
	if n == nil {
		return nil
	}
	return n.FirstChild
}

func (row *Row) checkCount(n int) *FieldError {
	switch {
	case n > row.Max:
		e := row.fieldErr(ReasonTooMany, "too many items: max "+strconv.Itoa(row.Max)+", got "+strconv.Itoa(n))
		e.limit, e.actual = row.Max, n
		return e
	case n < row.Min:
		e := row.fieldErr(ReasonTooFew, "too few items: min "+strconv.Itoa(row.Min)+", got "+strconv.Itoa(n))
		e.limit, e.actual = row.Min, n
		return e
	}
	return nil
}
