package mapping

import (
	"regexp"
	"strconv"
	"strings"

	"github.com/antchfx/xmlquery"
	"gopkg.in/yaml.v3"
)

// This file makes signed text mean exactly one thing.
//
// The platform signs V, the concatenated text of every element under the
// body with no separator and no element names (DESIGN §1.2). One genuine
// signed message therefore lets anyone rearrange the markup around its
// text without touching V: split a value with a child element
// (<sumAmount>40000<x>.</x>00</sumAmount> reaches the core as 4000000.00),
// move text into an element no row reads, or leave it loose inside a
// container. The rows alone cannot see this: each reads the element it
// knows and ignores the rest.
//
// So every request body is also walked once against its shape, the element
// structure the mapping file declares, compiled at load: which names may
// occur under which element, which are values (leaves: text only, no child
// elements), which are containers (child elements and blank text only),
// which may repeat, and which spellings (aliases) are one field. Anything
// else is refused, unless the file declares it: ignore: lists elements
// (leaves) that may occur and whose text is only signed, never sent to the
// core; unknown_elements: ignore lets any unknown element through.

// unknownPolicy is what a file's unknown_elements: says.
type unknownPolicy uint8

const (
	unknownRefuse unknownPolicy = iota // default: an unknown element is refused
	unknownIgnore                      // unknown elements are signed and otherwise skipped
)

// shapeNode is a container element of the body (or the body itself): the
// elements it may hold.
type shapeNode struct {
	path string // mapping path, "" for the body
	kids []*shapeKid
}

// shapeKid is one spelling of one element a container may hold.
type shapeKid struct {
	name     string         // the spelling (canonical or alias)
	path     string         // canonical mapping path, for messages
	leaf     bool           // a value: text only
	repeated bool           // may occur more than once (items of a repeat: row)
	ignored  bool           // declared by ignore: (never read by a row)
	node     *shapeNode     // the kid's own shape, for containers
	alts     []int          // indexes (in the parent's kids) of its other spellings
	line     int            // first row or ignore entry that declared it
	pattern  *regexp.Regexp // ignored values: the shape their whole text must have
}

// shape is the compiled structure of one request body.
type shape struct {
	root    shapeNode
	unknown unknownPolicy
}

// maxShapeKids bounds the kids of one container so the walk's seen-set
// lives on the stack. No protocol message comes near it.
const maxShapeKids = 256

// compileShape builds the shape of rules plus the ignore: entries, or
// reports at file:line why the declarations contradict each other.
func (p *parser) compileShape(rules *Rules, ignore []ignoreEntry, unknown unknownPolicy) *shape {
	if rules == nil {
		return nil
	}
	s := &shape{unknown: unknown}
	p.addRows(&s.root, rules, "")
	for _, e := range ignore {
		p.addIgnored(&s.root, e)
	}
	p.linkAlts(&s.root)
	return s
}

// addRows declares the elements the rows read, under node; prefix is the
// mapping path of node's item for rows of a repeated item ("" at the top).
func (p *parser) addRows(node *shapeNode, rules *Rules, prefix string) {
	for _, row := range rules.rows {
		if len(row.src) == 0 { // const: and var: rows read no element
			continue
		}
		parent := node
		for i, seg := range row.src[:len(row.src)-1] {
			parent = p.container(parent, seg, joinPrefix(prefix, row.src[:i+1]), joinPrefix(prefix, row.src), row.Line, false)
			if parent == nil {
				break
			}
		}
		if parent == nil {
			continue
		}
		leaf := row.Fields == nil
		path := joinPrefix(prefix, row.src)
		var kid *shapeKid
		for _, name := range append([]string{row.src[len(row.src)-1]}, row.aliases...) {
			kid = p.element(parent, name, path, path, leaf, row.repeated(), false, row.Line)
		}
		if kid != nil && row.Fields != nil {
			p.addRows(kid.node, row.Fields, path)
		}
	}
}

func joinPrefix(prefix string, segs []string) string {
	p := strings.Join(segs, "/")
	if prefix == "" {
		return p
	}
	return prefix + "/" + p
}

// container finds or adds the container kid name of parent; whole is the
// path of the row or entry that needs it, for messages.
func (p *parser) container(parent *shapeNode, name, path, whole string, line int, ignored bool) *shapeNode {
	kid := p.element(parent, name, path, whole, false, false, ignored, line)
	if kid == nil {
		return nil
	}
	return kid.node
}

// element finds or adds one spelling under parent, refusing a spelling
// that would be a value in one place and a container in another. path is
// the element's own path, whole the declaring row's or entry's.
func (p *parser) element(parent *shapeNode, name, path, whole string, leaf, repeated, ignored bool, line int) *shapeKid {
	for _, k := range parent.kids {
		if k.name != name {
			continue
		}
		switch {
		case ignored && !k.ignored && k.leaf:
			p.errAt(line, "ignore entry %q is also a mapped field (line %d)", path, k.line)
			return nil
		case ignored && !k.ignored && leaf:
			p.errAt(line, "ignore entry %q holds mapped fields (line %d); list the extra elements inside it instead", path, k.line)
			return nil
		case k.leaf && !leaf:
			p.errAt(line, "xml path %q goes inside %q, which is a value at line %d", whole, k.path, k.line)
			return nil
		case !k.leaf && leaf:
			p.errAt(line, "xml path %q is a value, but line %d puts elements inside it", path, k.line)
			return nil
		case k.path != path:
			p.errAt(line, "element %q is both %q and %q (line %d); one spelling can name one field only", name, path, k.path, k.line)
			return nil
		}
		k.repeated = k.repeated || repeated
		return k
	}
	if len(parent.kids) == maxShapeKids {
		p.errAt(line, "more than %d different elements under %q", maxShapeKids, parent.path)
		return nil
	}
	k := &shapeKid{name: name, path: path, leaf: leaf, repeated: repeated, ignored: ignored, line: line}
	if !leaf {
		k.node = &shapeNode{path: path}
	}
	parent.kids = append(parent.kids, k)
	return k
}

// ignoreEntry is one path of a file's ignore: list.
type ignoreEntry struct {
	path    string
	segs    []string
	line    int
	pattern *regexp.Regexp
}

// addIgnored declares an ignored leaf and, where they are not known
// already, its containers (ignored too).
func (p *parser) addIgnored(root *shapeNode, e ignoreEntry) {
	node := root
	for i, seg := range e.segs[:len(e.segs)-1] {
		path := strings.Join(e.segs[:i+1], "/")
		ignored := true
		for _, k := range node.kids {
			if k.name != seg || k.ignored {
				continue
			}
			if k.leaf {
				p.errAt(e.line, "ignore entry %q goes inside %q, a mapped value (line %d)", e.path, k.path, k.line)
				return
			}
			ignored = false // a mapped container may hold ignored elements
		}
		if node = p.container(node, seg, path, e.path, e.line, ignored); node == nil {
			return
		}
	}
	if k := p.element(node, e.segs[len(e.segs)-1], e.path, e.path, true, false, true, e.line); k != nil {
		k.pattern = e.pattern
	}
}

// linkAlts records, for each kid, its other spellings (same path), so the
// walk can refuse a field given twice under two names.
func (p *parser) linkAlts(node *shapeNode) {
	for i, k := range node.kids {
		for j, o := range node.kids {
			if i != j && o.path == k.path {
				k.alts = append(k.alts, j)
			}
		}
		if k.node != nil {
			p.linkAlts(k.node)
		}
	}
}

var ignoreKeys = []string{"xml", "pattern"}

// ignoreList reads ignore: [paths under the body]. An entry is a path, or
// {xml: path, pattern: regexp} when the element's text has a known shape:
// no row reads an ignored element, so without a shape text can be moved
// into or out of it unnoticed (e.g. the first digit of the next field's
// amount). An ignored element with a pattern: must match it whole, empty
// text included.
func (p *parser) ignoreList(f kv) []ignoreEntry {
	if f.v.Kind != yaml.SequenceNode {
		p.errf(f.v, "ignore: must be a list of element paths under the body, e.g. [ProjectType, dateInfo/startDate]")
		return nil
	}
	var out []ignoreEntry
	seen := map[string]int{}
	for _, n := range f.v.Content {
		n = resolve(n)
		e := ignoreEntry{line: n.Line}
		pathNode := kv{f.k, n}
		if n.Kind == yaml.MappingNode {
			fs := p.fields(n, "ignore entry", ignoreKeys)
			xf, ok := fs["xml"]
			if !ok {
				p.errf(n, "ignore entry needs xml: (the element path under the body)")
				continue
			}
			pathNode = xf
			if pf, ok := fs["pattern"]; ok {
				e.pattern = p.pattern(pf)
			}
		}
		e.path, e.segs = p.xmlPath(pathNode)
		if e.segs == nil {
			continue
		}
		if line, dup := seen[e.path]; dup {
			p.errf(n, "ignore entry %q repeats line %d", e.path, line)
			continue
		}
		seen[e.path] = n.Line
		out = append(out, e)
	}
	return out
}

// unknownElements reads unknown_elements: refuse | ignore.
func (p *parser) unknownElements(f kv) unknownPolicy {
	s, ok := p.str(f)
	switch {
	case !ok:
	case s == "refuse":
		return unknownRefuse
	case s == "ignore":
		return unknownIgnore
	default:
		p.errf(f.v, "unknown_elements must be refuse or ignore, not %q", s)
	}
	return unknownRefuse
}

// unread collects the elements of a body that no row reads: those ignore:
// declares and, under unknown_elements: ignore, unknown ones. A nil
// *unread records nothing. names holds distinct paths (mapping paths, no
// [n]; an unknown element is its known parent's path plus its own name,
// which the sender chose), at most max of them (0: no bound). all is the
// dry run's mode: it also lists the unknown elements the file refuses,
// instead of stopping at the first, and records how each is handled.
type unread struct {
	names []string
	how   []Disposition // all only
	max   int
	all   bool
}

// add records path once.
func (u *unread) add(path string, how Disposition) {
	if u == nil {
		return
	}
	for _, n := range u.names {
		if n == path {
			return
		}
	}
	if u.max > 0 && len(u.names) >= u.max {
		return
	}
	u.names = append(u.names, path)
	if u.all {
		u.how = append(u.how, how)
	}
}

// check walks the body once, recording in u (when not nil) what no row
// reads. It allocates only to report a problem or an unread element.
func (s *shape) check(body *xmlquery.Node, u *unread) *FieldError {
	if s == nil || body == nil {
		return nil
	}
	fe := s.checkNode(&s.root, body, u)
	if fe != nil && fe.Path == "" {
		fe.Path = body.Data // the body itself: "requestBody"
	}
	return fe
}

// checkNode checks the children of el, an element of shape node.
func (s *shape) checkNode(node *shapeNode, el *xmlquery.Node, u *unread) *FieldError {
	var seen [maxShapeKids / 64]uint64
	for c := el.FirstChild; c != nil; c = c.NextSibling {
		switch c.Type {
		case xmlquery.TextNode, xmlquery.CharDataNode:
			if !isBlank(c.Data) {
				return looseTextErr(node.path)
			}
			continue
		case xmlquery.ElementNode:
		default:
			continue // comments and processing instructions are neither signed nor read
		}
		i := node.find(c)
		if i < 0 {
			if s.unknown == unknownIgnore || (u != nil && u.all) {
				how := PassedUnknown
				if s.unknown != unknownIgnore {
					how = RefusedUnknown
				}
				u.add(unknownPath(node.path, c), how)
				continue
			}
			return unknownErr(node.path, c)
		}
		kid := node.kids[i]
		if fe := kid.once(&seen, i); fe != nil {
			return fe
		}
		if kid.ignored && kid.leaf {
			u.add(kid.path, IgnoredDeclared)
		}
		if fe := s.checkKid(kid, c, u); fe != nil {
			return fe
		}
	}
	return nil
}

// unknownPath is the path an unknown element is listed under.
func unknownPath(parent string, el *xmlquery.Node) string {
	name := el.Data
	if el.Prefix != "" {
		name = el.Prefix + ":" + name
	}
	if parent == "" {
		return name
	}
	return parent + "/" + name
}

// find returns the index of the kid spelled like el, or -1. A prefixed
// element (p:name) is never known: its prefix is sender-chosen and the
// rows match local names only.
func (node *shapeNode) find(el *xmlquery.Node) int {
	if el.Prefix != "" {
		return -1
	}
	for i, k := range node.kids {
		if k.name == el.Data {
			return i
		}
	}
	return -1
}

// once marks spelling i as seen and refuses a second occurrence of a
// field that does not repeat, and any field given under two spellings
// (the rows would read one and drop the other).
func (k *shapeKid) once(seen *[maxShapeKids / 64]uint64, i int) *FieldError {
	has := func(j int) bool { return seen[j/64]&(1<<(j%64)) != 0 }
	if has(i) && !k.repeated {
		return duplicateErr(k.path)
	}
	for _, j := range k.alts {
		if has(j) {
			return duplicateErr(k.path)
		}
	}
	seen[i/64] |= 1 << (i % 64)
	return nil
}

// checkKid checks one known element.
func (s *shape) checkKid(kid *shapeKid, el *xmlquery.Node, u *unread) *FieldError {
	if kid.leaf {
		for c := el.FirstChild; c != nil; c = c.NextSibling {
			if c.Type == xmlquery.ElementNode {
				if kid.repeated {
					return nestedErr(itemPath(kid.path, el))
				}
				return nestedErr(kid.path)
			}
		}
		if kid.pattern != nil && !kid.pattern.MatchString(textOf(el)) {
			return &FieldError{Path: kid.path, Reason: ReasonPattern, Detail: "does not match the ignore entry's pattern"}
		}
		return nil
	}
	fe := s.checkNode(kid.node, el, u)
	if fe != nil && kid.repeated {
		fe.Path = itemPath(kid.path, el) + strings.TrimPrefix(fe.Path, kid.path)
	}
	return fe
}

// itemPath numbers the repeated item el as the executor does: 1-based
// among the non-empty items of its spelling.
func itemPath(path string, el *xmlquery.Node) string {
	n := 0
	for c := el; c != nil; c = c.PrevSibling {
		if c.Type == xmlquery.ElementNode && c.Data == el.Data && !isEmptyElement(c) {
			n++
		}
	}
	return path + "[" + strconv.Itoa(n) + "]"
}

// The structure errors. None quotes the input: the reply that carries
// Message() is signed, and signing sender-chosen text would hand out
// signatures (STYLE §18).

func looseTextErr(container string) *FieldError {
	return &FieldError{Path: container, Reason: ReasonLooseText, Detail: "text directly inside a container element"}
}

func nestedErr(leaf string) *FieldError {
	return &FieldError{Path: leaf, Reason: ReasonNested, Detail: "value element holds elements"}
}

func duplicateErr(path string) *FieldError {
	return &FieldError{Path: path, Reason: ReasonDuplicate, Detail: "element occurs more than once"}
}

// unknownErr names the known parent in Path, and so in Message() and
// Error(), and carries the sender's element name in Element only. An
// element name is sender-chosen text: a signed reply quoting it would be
// a signature over text of the sender's choosing (a signature oracle), and
// Error() is kept free of input text so it is always safe to log. The
// handler logs and journals Element explicitly.
func unknownErr(parent string, el *xmlquery.Node) *FieldError {
	name := el.Data
	if el.Prefix != "" {
		name = el.Prefix + ":" + name
	}
	where := parent
	if where == "" {
		where = "the body"
	}
	return &FieldError{Path: parent, Reason: ReasonUnknown, Element: name,
		Detail: "element unknown to the mapping under " + where + " (name in FieldError.Element)"}
}
