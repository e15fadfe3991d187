package protocol

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/antchfx/xmlquery"
)

// scanDOMSlab builds the checked tree of one message: a hand-written
// scanner for the subset of XML the protocol's messages use, in one pass,
// with a handful of allocations instead of several per token:
//   - the input is copied into one string, and element names, comments,
//     processing instructions and every text or attribute value without a
//     reference or a CR are substrings of it;
//   - the texts that do need decoding are decoded into one pooled buffer
//     that becomes a single string at the end;
//   - nodes come from one slab sized from the number of '<' in the input
//     (reused if a caller gave one back with Envelope.Release).
//
// Strings in the tree therefore share their backing memory with each
// other, for as long as any of them is referenced (the tree itself keeps
// it all anyway).
//
// It is the only XML parser platform input meets. It reads XML 1.0 as
// encoding/xml (Strict) does and builds the tree xmlquery would, except
// that it refuses, with KindStructure, what the protocol never uses:
// namespaces (a ':' in a name, xmlns attributes) and names with letters
// outside ASCII (DESIGN §1.3). Every other refusal has the Kind
// encoding/xml's reading would have; its detail and line are the
// scanner's own and never quote the input. The encoding/xml-based
// reference builder lives on in the tests (parseDOMStd):
// FuzzScanMatchesDecoder holds the two together.
//
// It returns the tree and its first node slab, for Envelope.Release, or
// the refusal. data must be valid UTF-8 (checkBytes) and lim have its
// defaults.
func scanDOMSlab(data []byte, lim Limits) (*xmlquery.Node, []xmlquery.Node, *Error) {
	sc := scanPool.Get().(*scanScratch)
	defer sc.release()
	markup := bytes.Count(data, ltByte)
	first := getSlab(markup + markup/2 + 2)
	x := scanner{
		in:   data,
		s:    string(data),
		lim:  lim,
		sc:   sc,
		slab: first,
		more: markup/2 + 16,
	}
	doc, kind := x.run()
	if doc == nil {
		putSlab(first)
		if x.err == nil { // every refusal records itself; this is a safety net
			x.err = newError(kind, msgMalformed, "not well-formed XML")
		}
		return nil, nil, x.err
	}
	if len(sc.fix) > 0 {
		decoded := string(sc.dec)
		for _, f := range sc.fix {
			*f.dst = decoded[f.start:f.end]
		}
	}
	return doc, first, nil
}

// Node slabs given back by Envelope.Release. Slabs above maxPooledNodes
// are left to the collector, so one huge message doesn't pin its slab.
const maxPooledNodes = 512

var slabPool sync.Pool // of *[]xmlquery.Node, zeroed, len == cap

// getSlab returns n zeroed nodes, from the pool when a slab there is big
// enough.
func getSlab(n int) []xmlquery.Node {
	if p, _ := slabPool.Get().(*[]xmlquery.Node); p != nil {
		if s := *p; len(s) >= n {
			return s
		}
		slabPool.Put(p) // too small for this message; fine for others
	}
	return make([]xmlquery.Node, n)
}

// putSlab zeroes a slab no tree uses any more and pools it.
func putSlab(s []xmlquery.Node) {
	s = s[:cap(s)]
	if len(s) == 0 || len(s) > maxPooledNodes {
		return
	}
	clear(s)
	slabPool.Put(&s)
}

var ltByte = []byte{'<'}

// scanner is the state of one scanDOMSlab call.
type scanner struct {
	in   []byte // the message
	s    string // the same bytes as a string, for zero-copy substrings
	lim  Limits
	sc   *scanScratch
	slab []xmlquery.Node // unused nodes
	more int             // size of the next slab, if this one runs out

	at              int            // end of the token being handled, for locating a refusal
	err             *Error         // the refusal, once one is found
	cur             *xmlquery.Node // element (or document) receiving new children
	depth, elements int
	runTokens       int   // tokens in the current run of character data
	runFirst        value // its first token
	runChars        int   // its characters, counted from the second token on
}

// scanScratch is pooled working memory: decoded texts, where they go,
// and the attributes of the start tag being read.
type scanScratch struct {
	dec   []byte
	fix   []fixup
	attrs []pendingAttr
}

// fixup says that *dst is dec[start:end] once dec is a string.
type fixup struct {
	dst        *string
	start, end int
}

type pendingAttr struct {
	name  string
	value value
}

var scanPool = sync.Pool{New: func() any { return new(scanScratch) }}

// maxPooledScratch keeps one huge message from pinning its buffers.
const maxPooledScratch = 64 << 10

func (sc *scanScratch) release() {
	if cap(sc.dec) > maxPooledScratch || cap(sc.fix) > maxPooledScratch/32 {
		return
	}
	clear(sc.fix) // drop the pointers into the tree we just built
	clear(sc.attrs)
	sc.dec, sc.fix, sc.attrs = sc.dec[:0], sc.fix[:0], sc.attrs[:0]
	scanPool.Put(sc)
}

// value is one decoded character-data or attribute value: a substring of
// the input when it needed no decoding, else sc.dec[start:end].
type value struct {
	raw        string
	start, end int
	decoded    bool
}

func (v value) len() int {
	if v.decoded {
		return v.end - v.start
	}
	return len(v.raw)
}

func (x *scanner) runes(v value) int {
	if v.decoded {
		return utf8.RuneCount(x.sc.dec[v.start:v.end])
	}
	return utf8.RuneCountInString(v.raw)
}

func (x *scanner) blank(v value) bool {
	if v.decoded {
		return isBlank(x.sc.dec[v.start:v.end])
	}
	return isBlankString(v.raw)
}

// assign stores v in *dst, now or (decoded) when dec becomes a string.
func (x *scanner) assign(dst *string, v value) {
	if !v.decoded {
		*dst = v.raw
		return
	}
	x.sc.fix = append(x.sc.fix, fixup{dst, v.start, v.end})
}

// discard forgets a decoded value that goes nowhere (blank text outside
// the root).
func (x *scanner) discard(v value) {
	if v.decoded {
		x.sc.dec = x.sc.dec[:v.start]
	}
}

func (x *scanner) node(t xmlquery.NodeType) *xmlquery.Node {
	if len(x.slab) == 0 {
		x.slab = make([]xmlquery.Node, x.more)
	}
	n := &x.slab[0]
	x.slab = x.slab[1:]
	n.Type = t
	return n
}

// run is the reference's token loop (parseDOMStd), over the scanner's own
// tokens, with the same checks in the same order, so that the first
// problem found is the one encoding/xml would report (same Kind).
func (x *scanner) run() (*xmlquery.Node, Kind) {
	in := x.in
	doc := x.node(xmlquery.DocumentNode)
	x.cur = doc
	var (
		rootSeen bool
		prolog   = true // nothing but white space read so far
	)
	p := 0
	for p < len(in) {
		wasProlog := prolog
		prolog = false
		var kind Kind
		if in[p] != '<' {
			var v value
			if v, p, kind = x.text(p); kind != 0 {
				return nil, kind
			}
			x.at = p
			if prolog, kind = x.charData(xmlquery.TextNode, v, wasProlog); kind != 0 {
				return nil, kind
			}
			continue
		}
		if p+1 >= len(in) {
			return nil, x.malformed(len(in), msgEOF)
		}
		switch in[p+1] {
		case '/': // end tag
			if p, kind = x.endTag(p + 2); kind != 0 {
				return nil, kind
			}
			x.depth--
			x.resetRun()
			x.cur = x.cur.Parent

		case '?': // processing instruction or XML declaration
			var target, inst string
			if target, inst, p, kind = x.procInst(p + 2); kind != 0 {
				return nil, kind
			}
			if strings.EqualFold(target, "xml") {
				if !wasProlog || target != "xml" {
					return nil, x.malformed(p, "misplaced XML declaration")
				}
				n := x.node(xmlquery.DeclarationNode)
				n.Data = "xml"
				addPseudoAttrs(n, inst)
				appendChild(doc, n)
				continue
			}
			inst = strings.TrimSpace(inst)
			n := x.node(xmlquery.ProcessingInstruction)
			n.Data = target
			n.ProcInst = &xmlquery.ProcInstData{Target: target, Inst: inst}
			addPseudoAttrs(n, inst)
			appendChild(x.cur, n)

		case '!':
			if p+2 >= len(in) {
				return nil, x.malformed(len(in), msgEOF)
			}
			switch in[p+2] {
			case '-': // comment
				var data string
				if data, p, kind = x.comment(p + 3); kind != 0 {
					return nil, kind
				}
				n := x.node(xmlquery.CommentNode)
				n.Data = data
				appendChild(x.cur, n)
			case '[': // CDATA section
				var v value
				if v, p, kind = x.cdata(p + 3); kind != 0 {
					return nil, kind
				}
				x.at = p
				if prolog, kind = x.charData(xmlquery.CharDataNode, v, wasProlog); kind != 0 {
					return nil, kind
				}
			default: // <!DOCTYPE, <!ENTITY, …: refused once read
				return nil, x.directive(p + 3)
			}

		default: // start tag
			var (
				n     *xmlquery.Node
				empty bool
			)
			if n, empty, p, kind = x.startTag(p + 1); kind != 0 {
				return nil, kind
			}
			x.at = p
			if x.depth == 0 && rootSeen {
				return nil, x.malformed(p, "more than one root element")
			}
			rootSeen = true
			x.depth++
			x.elements++
			x.resetRun()
			if x.depth > x.lim.MaxDepth || x.elements > x.lim.MaxElements {
				return nil, x.tooDeepOrMany()
			}
			if kind = x.attrs(n); kind != 0 {
				return nil, kind
			}
			appendChild(x.cur, n)
			if empty {
				x.depth--
			} else {
				x.cur = n
			}
		}
	}
	if x.depth > 0 || !rootSeen {
		return nil, x.unfinished(rootSeen)
	}
	return doc, 0
}

// charData handles a text or CDATA token, like parseDOMStd's xml.CharData
// case. It returns the new prolog state.
func (x *scanner) charData(t xmlquery.NodeType, v value, wasProlog bool) (bool, Kind) {
	if x.depth == 0 {
		if !x.blank(v) {
			return false, x.malformed(x.at, "character data outside the root element")
		}
		x.discard(v)
		return wasProlog, 0 // white space is tolerated before <?xml
	}
	if !x.addToRun(v) {
		return false, x.refuse(limitError(msgValueTooBig, "个字符", "value length", x.lim.MaxValueChars))
	}
	n := x.node(t)
	x.assign(&n.Data, v)
	appendChild(x.cur, n)
	return false, 0
}

// addToRun counts v into the current run of character data (a value may
// arrive as several tokens: text, CDATA, text) and reports whether the run
// is still within MaxValueChars. Most runs are one token, whose bytes, an
// upper bound of its characters, usually settle the question without
// counting.
func (x *scanner) addToRun(v value) bool {
	switch x.runTokens {
	case 0:
		x.runTokens, x.runFirst = 1, v
		return v.len() <= x.lim.MaxValueChars || x.runes(v) <= x.lim.MaxValueChars
	case 1:
		x.runChars = x.runes(x.runFirst)
	}
	x.runTokens++
	x.runChars += x.runes(v)
	return x.runChars <= x.lim.MaxValueChars
}

// resetRun starts a new run of character data (at every tag, as in
// parseDOMStd; comments and processing instructions don't end a run).
func (x *scanner) resetRun() {
	x.runTokens, x.runChars = 0, 0
}

// appendChild is xmlquery.AddChild for a fresh node, without writing the
// nil links a fresh node already has: each pointer store is a
// write-barrier entry while the collector is marking.
func appendChild(parent, n *xmlquery.Node) {
	n.Parent = parent
	if last := parent.LastChild; last != nil {
		last.NextSibling = n
		n.PrevSibling = last
	} else {
		parent.FirstChild = n
	}
	parent.LastChild = n
}

// Byte classes, one table per context so that the scanning loops skip
// plain bytes with one lookup each.
const (
	ccPlain   = iota
	ccEnd     // '<' in text; the closing quote in an attribute value
	ccDecode  // '&' or CR: the value needs decoding
	ccBracket // ']' in text: maybe "]]>"
	ccBad     // a C0 control other than tab, LF and CR, or '<' in an attribute value
	ccEF      // first byte of U+FFFE and U+FFFF, which XML excludes
)

// cdataClass: in a CDATA section only line ends are decoded.
var cdataClass = func() (t [256]uint8) {
	for c := range 0x20 {
		t[c] = ccBad
	}
	t['\t'], t['\n'] = ccPlain, ccPlain
	t['\r'] = ccDecode
	t[0xEF] = ccEF
	return t
}()

// textClass: character data between tags.
var textClass = func() (t [256]uint8) {
	t = cdataClass
	t['&'] = ccDecode
	t['<'] = ccEnd
	t[']'] = ccBracket
	return t
}()

// attrClass[q]: an attribute value quoted with q.
var attrClass = func() (t [2][256]uint8) {
	for i, q := range [...]byte{'"', '\''} {
		t[i] = cdataClass
		t[i]['&'] = ccDecode
		t[i]['<'] = ccBad
		t[i][q] = ccEnd
	}
	return t
}()

// notXMLChar reports whether in[i] (class ccEF) starts U+FFFE or U+FFFF.
// The input is valid UTF-8, so nothing else outside XML's Char range can
// occur beyond the C0 controls.
func notXMLChar(in []byte, i int) bool {
	return i+2 < len(in) && in[i+1] == 0xBF && (in[i+2] == 0xBE || in[i+2] == 0xBF)
}

// text reads character data from p up to the next '<' or the end.
func (x *scanner) text(p int) (value, int, Kind) {
	in := x.in
	i, decode := p, false
	for {
		for i < len(in) && textClass[in[i]] == ccPlain {
			i++
		}
		if i == len(in) {
			break
		}
		c := textClass[in[i]]
		if c == ccEnd {
			break
		}
		switch c {
		case ccDecode:
			decode = true
		case ccBracket:
			if i+2 < len(in) && in[i+1] == ']' && in[i+2] == '>' {
				return value{}, 0, x.malformed(i, `"]]>" outside a CDATA section`) // "]]>" outside CDATA
			}
		case ccBad:
			return value{}, 0, x.malformed(i, msgIllegalChar)
		case ccEF:
			if notXMLChar(in, i) {
				return value{}, 0, x.malformed(i, msgIllegalChar)
			}
		}
		i++
	}
	v, ok := x.value(p, i, decode, true)
	if !ok {
		return value{}, 0, x.badReference(p, i)
	}
	return v, i, 0
}

// cdata reads a CDATA section; p is just after "<![".
func (x *scanner) cdata(p int) (value, int, Kind) {
	in := x.in
	if !bytes.HasPrefix(in[p:], cdataTail) {
		return value{}, 0, x.malformed(p, "invalid <![ section")
	}
	p += len(cdataTail)
	end := strings.Index(x.s[p:], "]]>")
	if end < 0 {
		return value{}, 0, x.malformed(len(in), msgEOF)
	}
	end += p
	decode := false
	for i := p; i < end; i++ {
		switch cdataClass[in[i]] {
		case ccDecode:
			decode = true
		case ccBad:
			return value{}, 0, x.malformed(i, msgIllegalChar)
		case ccEF:
			if notXMLChar(in, i) {
				return value{}, 0, x.malformed(i, msgIllegalChar)
			}
		}
	}
	v, _ := x.value(p, end, decode, false)
	return v, end + 3, 0
}

var cdataTail = []byte("CDATA[")

// attrValue reads a quoted attribute value; p is just after the quote.
func (x *scanner) attrValue(p int, quote byte) (value, int, Kind) {
	in := x.in
	class := &attrClass[0]
	if quote == '\'' {
		class = &attrClass[1]
	}
	decode := false
	for i := p; i < len(in); i++ {
		switch class[in[i]] {
		case ccEnd:
			v, ok := x.value(p, i, decode, true)
			if !ok {
				return value{}, 0, x.badReference(p, i)
			}
			return v, i + 1, 0
		case ccDecode:
			decode = true
		case ccBad:
			return value{}, 0, x.malformed(i, "illegal character in an attribute value")
		case ccEF:
			if notXMLChar(in, i) {
				return value{}, 0, x.malformed(i, msgIllegalChar)
			}
		}
	}
	return value{}, 0, x.malformed(len(in), msgEOF)
}

// value makes the value of in[start:end]: the substring itself, or its
// decoded form appended to sc.dec (refs: resolve & references, else only
// line ends are normalised). ok is false for a malformed or forbidden
// reference.
func (x *scanner) value(start, end int, decode, refs bool) (value, bool) {
	if !decode {
		return value{raw: x.s[start:end]}, true
	}
	mark := len(x.sc.dec)
	var ok bool
	x.sc.dec, ok = appendDecoded(x.sc.dec, x.in[start:end], refs)
	if !ok {
		x.sc.dec = x.sc.dec[:mark]
		return value{}, false
	}
	return value{start: mark, end: len(x.sc.dec), decoded: true}, true
}

// appendDecoded appends raw with CR and CR LF turned into LF and, if refs,
// the five predefined entities and character references resolved, as
// encoding/xml's Decoder.text does.
func appendDecoded(dst, raw []byte, refs bool) ([]byte, bool) {
	for i := 0; i < len(raw); {
		switch c := raw[i]; {
		case c == '\r':
			dst = append(dst, '\n')
			i++
			if i < len(raw) && raw[i] == '\n' {
				i++
			}
		case c == '&' && refs:
			r, n, ok := reference(raw[i:])
			if !ok {
				return dst, false
			}
			dst = utf8.AppendRune(dst, r)
			i += n
		default:
			j := i + 1
			for j < len(raw) && raw[j] != '\r' && raw[j] != '&' {
				j++
			}
			dst = append(dst, raw[i:j]...)
			i = j
		}
	}
	return dst, true
}

// reference decodes the entity or character reference at the start of b
// (b[0] == '&') and returns the character and the reference's length.
// Like encoding/xml without a DTD: only lt, gt, amp, apos and quot; a
// character reference must end with ';' and be at most U+10FFFF. Stricter
// than encoding/xml, it must name a character charRefAllowed accepts
// (encoding/xml turns a surrogate into U+FFFD; parseDOMStd refuses it with
// checkCharRefs, so both parsers agree).
func reference(b []byte) (rune, int, bool) {
	if len(b) > 1 && b[1] == '#' {
		i, base := 2, uint32(10)
		if i < len(b) && b[i] == 'x' {
			i, base = 3, 16
		}
		start := i
		var n uint32
		for ; i < len(b); i++ {
			d := digitValue(b[i], base)
			if d < 0 {
				break
			}
			n = min(n*base+uint32(d), utf8.MaxRune+1) // saturate: too big is too big
		}
		if i == start || i >= len(b) || b[i] != ';' || n > utf8.MaxRune {
			return 0, 0, false
		}
		if !charRefAllowed(n) {
			return 0, 0, false
		}
		return rune(n), i + 1, true
	}
	i := 1
	for i < len(b) && nameClass[b[i]] != ncStop {
		i++
	}
	if i >= len(b) || b[i] != ';' {
		return 0, 0, false
	}
	var r rune
	switch string(b[1:i]) {
	case "lt":
		r = '<'
	case "gt":
		r = '>'
	case "amp":
		r = '&'
	case "apos":
		r = '\''
	case "quot":
		r = '"'
	default:
		return 0, 0, false
	}
	return r, i + 1, true
}

func digitValue(c byte, base uint32) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case base == 16 && 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case base == 16 && 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// charRefAllowed reports whether a character reference may name code
// point n: an XML Char (so no surrogate: encoding/xml would silently turn
// &#xD800; into U+FFFD, letting two different inputs carry one signed
// text, and peers in other languages decode it differently) that is not a
// Unicode noncharacter (U+FDD0–U+FDEF, and U+xFFFE/U+xFFFF of every
// plane), which no genuine value of the protocol contains.
func charRefAllowed(n uint32) bool {
	if n > utf8.MaxRune || !isInCharacterRange(rune(n)) {
		return false
	}
	if 0xFDD0 <= n && n <= 0xFDEF || n&0xFFFE == 0xFFFE {
		return false
	}
	return true
}

// isInCharacterRange is XML 1.0's Char production, as encoding/xml has it.
func isInCharacterRange(r rune) bool {
	return r == 0x09 || r == 0x0A || r == 0x0D ||
		r >= 0x20 && r <= 0xD7FF ||
		r >= 0xE000 && r <= 0xFFFD ||
		r >= 0x10000 && r <= 0x10FFFF
}

// Byte classes of names. encoding/xml reads a name as the longest run of
// ASCII name bytes and non-ASCII bytes, then checks it. The scanner
// handles ASCII names without ':' and refuses the rest (namespaces, letters
// outside ASCII), which the protocol does not use (foreignName).
const (
	ncStop    = iota // ends a name
	ncName           // [A-Za-z0-9_.-]
	ncForeign        // ':' or a byte of a non-ASCII character
)

var nameClass = func() (t [256]uint8) {
	for c := range 256 {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			c == '_', c == '.', c == '-':
			t[c] = ncName
		case c == ':', c >= utf8.RuneSelf:
			t[c] = ncForeign
		}
	}
	return t
}()

// name reads an element, attribute or target name at p.
func (x *scanner) name(p int) (string, int, Kind) {
	in := x.in
	i := p
	for i < len(in) && nameClass[in[i]] == ncName {
		i++
	}
	switch {
	case i < len(in) && nameClass[in[i]] == ncForeign:
		return "", 0, x.refuse(foreignName(x.lineAt(i)))
	case i == p || i == len(in): // no name, or the input ends in it
		return "", 0, x.malformed(i, "expected a name")
	}
	if c := in[p]; c != '_' && !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
		return "", 0, x.malformed(p, "invalid XML name") // a digit, '.' or '-' cannot start a name
	}
	return x.s[p:i], i, 0
}

func skipSpace(in []byte, p int) int {
	for p < len(in) && (in[p] == ' ' || in[p] == '\t' || in[p] == '\n' || in[p] == '\r') {
		p++
	}
	return p
}

// startTag reads a start tag from just after '<'. The element node is
// made but not linked; its attributes wait in sc.attrs for x.attrs, which
// runs after the depth and element-count checks, as in parseDOMStd.
func (x *scanner) startTag(p int) (n *xmlquery.Node, empty bool, next int, kind Kind) {
	in := x.in
	name, p, kind := x.name(p)
	if kind != 0 {
		return nil, false, 0, kind
	}
	x.sc.attrs = x.sc.attrs[:0]
	for {
		p = skipSpace(in, p)
		if p >= len(in) {
			return nil, false, 0, x.malformed(len(in), msgEOF)
		}
		switch in[p] {
		case '/':
			if p+1 >= len(in) || in[p+1] != '>' {
				return nil, false, 0, x.malformed(p, "expected /> in element")
			}
			empty = true
			p += 2
		case '>':
			p++
		default:
			var a pendingAttr
			if a.name, p, kind = x.name(p); kind != 0 {
				return nil, false, 0, kind
			}
			if a.name == "xmlns" {
				return nil, false, 0, x.refuse(foreignName(x.lineAt(p)))
			}
			if p = skipSpace(in, p); p >= len(in) || in[p] != '=' {
				return nil, false, 0, x.malformed(p, "attribute name without = in element")
			}
			if p = skipSpace(in, p+1); p >= len(in) || (in[p] != '"' && in[p] != '\'') {
				return nil, false, 0, x.malformed(p, "unquoted or missing attribute value in element")
			}
			if a.value, p, kind = x.attrValue(p+1, in[p]); kind != 0 {
				return nil, false, 0, kind
			}
			x.sc.attrs = append(x.sc.attrs, a)
			continue
		}
		break
	}
	n = x.node(xmlquery.ElementNode)
	n.Data = name
	return n, empty, p, 0
}

// attrs checks the pending attributes' count and lengths and gives them to n.
func (x *scanner) attrs(n *xmlquery.Node) Kind {
	pending := x.sc.attrs
	if len(pending) == 0 {
		return 0
	}
	if len(pending) > x.lim.MaxAttributes {
		return x.refuse(limitError(msgTooManyAttr, "个", "attribute count", x.lim.MaxAttributes))
	}
	for _, a := range pending {
		if x.runes(a.value) > x.lim.MaxValueChars {
			return x.refuse(limitError(msgValueTooBig, "个字符", "attribute value length", x.lim.MaxValueChars))
		}
	}
	for i := 1; i < len(pending); i++ { // at most MaxAttributes: a quadratic scan is cheap
		for _, earlier := range pending[:i] {
			if earlier.name == pending[i].name {
				return x.refuse(x.located(newError(KindMalformed, msgDupAttr, "duplicate attribute"), x.at))
			}
		}
	}
	n.Attr = make([]xmlquery.Attr, len(pending))
	for i, a := range pending {
		n.Attr[i].Name.Local = a.name
		x.assign(&n.Attr[i].Value, a.value)
	}
	return 0
}

// endTag reads an end tag from just after "</" and checks that it closes
// the current element.
func (x *scanner) endTag(p int) (int, Kind) {
	in := x.in
	i := p
	for i < len(in) && nameClass[in[i]] != ncStop {
		i++
	}
	name := x.s[p:i]
	if i = skipSpace(in, i); i >= len(in) || in[i] != '>' {
		return 0, x.malformed(i, "invalid characters between </ and >")
	}
	if x.depth == 0 || name != x.cur.Data {
		return 0, x.malformed(i, "end tag does not match the open element")
	}
	return i + 1, 0
}

// procInst reads a processing instruction from just after "<?" and
// applies encoding/xml's own checks of an xml declaration's version and
// encoding, wherever it stands.
func (x *scanner) procInst(p int) (target, inst string, next int, kind Kind) {
	if target, p, kind = x.name(p); kind != 0 {
		return "", "", 0, kind
	}
	p = skipSpace(x.in, p)
	end := strings.Index(x.s[p:], "?>")
	if end < 0 {
		return "", "", 0, x.malformed(len(x.in), msgEOF)
	}
	inst = x.s[p : p+end]
	if target == "xml" {
		if ver := declParam("version=", inst); ver != "" && ver != "1.0" {
			return "", "", 0, x.malformed(p, "unsupported version in the XML declaration; only 1.0 is supported")
		}
		if enc := declParam("encoding=", inst); enc != "" && !strings.EqualFold(enc, "utf-8") {
			return "", "", 0, x.refuse(newError(KindEncoding, msgEncoding, "declared encoding is not UTF-8"))
		}
	}
	return target, inst, p + end + 2, 0
}

// comment reads a comment from just after "<!-". Like encoding/xml, the
// first "--" must be followed by '>'.
func (x *scanner) comment(p int) (string, int, Kind) {
	if p >= len(x.in) || x.in[p] != '-' {
		return "", 0, x.malformed(p, "invalid sequence <!- not part of <!--")
	}
	p++
	end := strings.Index(x.s[p:], "--")
	if end < 0 || p+end+2 >= len(x.in) || x.in[p+end+2] != '>' {
		return "", 0, x.malformed(min(p+max(end, 0), len(x.in)), `invalid sequence "--" not allowed in comments`)
	}
	return x.s[p : p+end], p + end + 3, 0
}

// directive refuses a <!…> declaration: KindForbidden once it has been
// read whole, naming its keyword (DOCTYPE, ENTITY, …) but never its
// content; KindMalformed if the input ends first. p is just after the
// byte following "<!". The loop is encoding/xml's: quotes, nested <…>
// and embedded comments.
func (x *scanner) directive(p int) Kind {
	in, keyword := x.in, p-1
	var inquote byte
	depth := 0
	for {
		if p >= len(in) {
			return x.malformed(len(in), msgEOF)
		}
		b := in[p]
		p++
		if inquote == 0 && b == '>' && depth == 0 {
			return x.refuse(forbidden(in[keyword : p-1]))
		}
	handle:
		switch {
		case b == inquote:
			inquote = 0
		case inquote != 0:
		case b == '\'' || b == '"':
			inquote = b
		case b == '>':
			depth--
		case b == '<':
			for _, want := range []byte("!--") {
				if p >= len(in) {
					return x.malformed(len(in), msgEOF)
				}
				b = in[p]
				p++
				if b != want {
					depth++
					goto handle
				}
			}
			end := bytes.Index(in[p:], commentEnd)
			if end < 0 {
				return x.malformed(len(in), msgEOF)
			}
			p += end + len(commentEnd)
		}
	}
}

var commentEnd = []byte("-->")

// declParam is encoding/xml's procInst: the value of param="…" or
// param='…' in an xml declaration, "" if not found; param includes the
// '='. It is as lax as the original on purpose: the scanner must judge
// declarations the same way.
func declParam(param, s string) string {
	lenp := len(param)
	i := 0
	var sep byte
	for i < len(s) {
		sub := s[i:]
		k := strings.Index(sub, param)
		if k < 0 || lenp+k >= len(sub) {
			return ""
		}
		i += lenp + k + 1
		if c := sub[lenp+k]; c == '\'' || c == '"' {
			sep = c
			break
		}
	}
	if sep == 0 {
		return ""
	}
	j := strings.IndexByte(s[i:], sep)
	if j < 0 {
		return ""
	}
	return s[i : i+j]
}

// isBlankString is isBlank for a string.
func isBlankString(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			return false
		}
	}
	return true
}

// Details of well-formedness refusals.
const (
	msgEOF         = "unexpected end of input"
	msgIllegalChar = "illegal character code"
)

// lineAt is the 1-based line of in[at].
func (x *scanner) lineAt(at int) int {
	return 1 + bytes.Count(x.in[:min(at, len(x.in))], newline)
}

var newline = []byte{'\n'}

// refuse records the scan's refusal (the first one found) and returns its Kind.
func (x *scanner) refuse(e *Error) Kind {
	if x.err == nil {
		x.err = e
	}
	return e.Kind
}

// located sets e's line to the line of in[at].
func (x *scanner) located(e *Error, at int) *Error {
	e.Line = x.lineAt(at)
	return e
}

// malformed refuses input that is not well-formed XML, at in[at].
func (x *scanner) malformed(at int, detail string) Kind {
	return x.refuse(x.located(newError(KindMalformed, msgMalformed, "not well-formed XML: "+detail), at))
}

// tooDeepOrMany refuses an element past the depth or element-count limit
// (depth first, as it is checked first).
func (x *scanner) tooDeepOrMany() Kind {
	if x.depth > x.lim.MaxDepth {
		return x.refuse(limitError(msgTooDeep, "层", "element depth", x.lim.MaxDepth))
	}
	return x.refuse(limitError(msgTooMany, "个", "element count", x.lim.MaxElements))
}

// unfinished refuses input that ends inside the root, or has none.
func (x *scanner) unfinished(rootSeen bool) Kind {
	if !rootSeen {
		return x.refuse(newError(KindMalformed, msgEmpty, "no root element"))
	}
	return x.malformed(len(x.in), msgEOF)
}

// badReference refuses the value in[start:end], in which a reference did
// not decode: a character reference to a character XML or the protocol
// excludes (charRefAllowed), or any other malformed or unknown reference.
func (x *scanner) badReference(start, end int) Kind {
	for i := start; i < end; i++ {
		if x.in[i] != '&' {
			continue
		}
		if _, _, ok := reference(x.in[i:end]); ok {
			continue
		}
		if isCharRef(x.in[i:end]) {
			return x.refuse(x.located(newError(KindMalformed, msgBadCharRef, "character reference to a surrogate or noncharacter"), i))
		}
		return x.malformed(i, "invalid character entity")
	}
	return x.malformed(end, "invalid character entity")
}

// isCharRef reports whether b starts with a syntactically complete
// character reference (&#digits; or &#xhex;), whatever it names.
func isCharRef(b []byte) bool {
	if len(b) < 2 || b[1] != '#' {
		return false
	}
	i, base := 2, uint32(10)
	if i < len(b) && b[i] == 'x' {
		i, base = 3, 16
	}
	start := i
	for i < len(b) && digitValue(b[i], base) >= 0 {
		i++
	}
	return i > start && i < len(b) && b[i] == ';'
}

// foreignName refuses a name the protocol does not use: one with ':' (a
// namespace prefix) or a letter outside ASCII, or an xmlns declaration.
// Such XML may be well-formed, but it is no protocol message (DESIGN
// §1.3: no namespaces, ASCII element names).
func foreignName(line int) *Error {
	e := newError(KindStructure, msgForeignName,
		"namespace or non-ASCII name (the protocol uses neither)")
	e.Line = line
	return e
}

// forbidden refuses a <!…> declaration, naming its keyword (DOCTYPE,
// ENTITY, …) but never its content.
func forbidden(dir []byte) *Error {
	kw := dir
	if i := bytes.IndexFunc(kw, func(r rune) bool { return !isNameRune(r, false) }); i >= 0 {
		kw = kw[:i]
	}
	if len(kw) > 16 {
		kw = kw[:16]
	}
	return newError(KindForbidden, msgForbidden, fmt.Sprintf("<!%s> declaration", kw))
}
