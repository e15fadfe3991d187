package protocol

// The encoding/xml-based reference builder. Production parses platform
// input with the scanner alone (scanDOMSlab); this builder, which reads
// with encoding/xml (Strict) and builds xmlquery's tree, stays as the
// reference the scanner is fuzzed against (FuzzScanMatchesDecoder): where
// the reference accepts input with only ASCII names and no namespaces,
// the scanner builds the same tree; the scanner never accepts what the
// reference refuses, and refuses in-scope input with the same Kind.

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/antchfx/xmlquery"
)

// parseDOM is the production builder without the slab: the scanner.
func parseDOM(data []byte, lim Limits) (*xmlquery.Node, error) {
	doc, _, err := parseDOMSlab(data, lim)
	return doc, err
}

var cdataOpen = []byte("<![CDATA[")

// parseDOMStd reads the token stream once with encoding/xml (Strict, no
// transcoding) and builds the xmlquery tree as it goes, enforcing on the
// way everything that must hold before memory is spent: no <!…>
// declarations (so nothing can define, let alone expand, an entity; only
// the five predefined entities and character references are ever
// resolved), UTF-8 only, well-formedness and a single root, and the depth /
// element / value limits, checked before the offending node is created.
//
// The tree is the one xmlquery.Parse builds (same node types, names,
// namespace URIs and prefixes, attributes, CDATA marked as CharDataNode —
// see TestDOMMatchesXMLQuery), built without xmlquery's own decoder and
// byte cache. It is the reference implementation: scanDOM must agree
// with it on every input, and it produces every refusal's error.
// Differences, none of which the protocol uses: Node.Level() and
// LineNumber are left zero, comments before the root hang under the
// document node (xmlquery chains them as the document's siblings), and no
// declaration node is invented when the input has none.
func parseDOMStd(data []byte, lim Limits) (*xmlquery.Node, error) {
	d := xml.NewDecoder(bytes.NewReader(data))
	d.Strict = true
	d.CharsetReader = refuseCharset

	doc := &xmlquery.Node{Type: xmlquery.DocumentNode}
	cur := doc // element (or document) receiving new children
	var (
		depth, elements int
		runChars        int    // characters of the current run of character data
		rootSeen        bool   // a root element has started
		prolog          = true // nothing but white space read so far
		ns              namespaces
	)
	for {
		off := d.InputOffset()
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, decodeError(err)
		}
		if !charRefsAllowed(tok, data[off:d.InputOffset()]) {
			return nil, malformedAs(d, msgBadCharRef, "character reference to a surrogate or noncharacter")
		}
		wasProlog := prolog
		prolog = false
		switch t := tok.(type) {
		case xml.StartElement:
			if depth == 0 && rootSeen {
				return nil, malformed(d, "more than one root element")
			}
			rootSeen = true
			depth++
			elements++
			runChars = 0
			if depth > lim.MaxDepth {
				return nil, limitError(msgTooDeep, "层", "element depth", lim.MaxDepth)
			}
			if elements > lim.MaxElements {
				return nil, limitError(msgTooMany, "个", "element count", lim.MaxElements)
			}
			n, err := elementNode(t, data[off:], &ns, lim)
			if err != nil {
				err.Line, _ = d.InputPos()
				return nil, err
			}
			xmlquery.AddChild(cur, n)
			cur = n
		case xml.EndElement:
			depth--
			runChars = 0
			cur = cur.Parent
		case xml.CharData:
			if depth == 0 {
				if !isBlank(t) {
					return nil, malformed(d, "character data outside the root element")
				}
				// White space is tolerated before <?xml (real peers send it).
				prolog = wasProlog
				continue
			}
			// A value may arrive as several tokens (text, CDATA, text):
			// count the whole run, not each piece.
			runChars += utf8.RuneCount(t)
			if runChars > lim.MaxValueChars {
				return nil, limitError(msgValueTooBig, "个字符", "value length", lim.MaxValueChars)
			}
			typ := xmlquery.TextNode
			if bytes.HasPrefix(data[off:], cdataOpen) {
				typ = xmlquery.CharDataNode
			}
			xmlquery.AddChild(cur, &xmlquery.Node{Type: typ, Data: string(t)})
		case xml.Comment:
			xmlquery.AddChild(cur, &xmlquery.Node{Type: xmlquery.CommentNode, Data: string(t)})
		case xml.Directive:
			return nil, forbidden(t)
		case xml.ProcInst:
			if strings.EqualFold(t.Target, "xml") {
				if !wasProlog || t.Target != "xml" {
					return nil, malformed(d, "misplaced XML declaration")
				}
				n := &xmlquery.Node{Type: xmlquery.DeclarationNode, Data: "xml"}
				addPseudoAttrs(n, string(t.Inst))
				xmlquery.AddChild(doc, n)
				continue
			}
			inst := strings.TrimSpace(string(t.Inst))
			n := &xmlquery.Node{Type: xmlquery.ProcessingInstruction, Data: t.Target,
				ProcInst: &xmlquery.ProcInstData{Target: t.Target, Inst: inst}}
			addPseudoAttrs(n, inst)
			xmlquery.AddChild(cur, n)
		}
	}
	if !rootSeen {
		return nil, newError(KindMalformed, msgEmpty, "no root element")
	}
	return doc, nil
}

// namespaces maps the namespace URIs declared so far to their prefix.
// Like xmlquery (strict), an element prefix that was never declared is
// refused, the record is document-wide, and attribute names carry the
// prefix (not the URI) in Name.Space.
type namespaces map[string]string

const xmlNamespace = "http://www.w3.org/XML/1998/namespace"

// elementNode makes the node for a start tag; raw is the input from the
// tag's '<' on, read only to recover the element's prefix, which Token has
// replaced by its URI.
func elementNode(t xml.StartElement, raw []byte, ns *namespaces, lim Limits) (*xmlquery.Node, *Error) {
	n := &xmlquery.Node{Type: xmlquery.ElementNode, Data: t.Name.Local, NamespaceURI: t.Name.Space}
	if len(t.Attr) > lim.MaxAttributes {
		return nil, limitError(msgTooManyAttr, "个", "attribute count", lim.MaxAttributes)
	}
	for _, a := range t.Attr {
		if utf8.RuneCountInString(a.Value) > lim.MaxValueChars {
			return nil, limitError(msgValueTooBig, "个字符", "attribute value length", lim.MaxValueChars)
		}
	}
	if duplicateAttr(t.Attr) {
		return nil, newError(KindMalformed, msgDupAttr, "duplicate attribute")
	}
	for _, a := range t.Attr {
		ns.declare(a)
	}
	if len(t.Attr) > 0 {
		n.Attr = make([]xmlquery.Attr, len(t.Attr))
		for i, a := range t.Attr {
			name := a.Name
			if p, ok := ns.prefix(name.Space); ok {
				name.Space = p
			}
			n.Attr[i] = xmlquery.Attr{Name: name, Value: a.Value, NamespaceURI: a.Name.Space}
		}
	}
	if t.Name.Space != "" {
		if _, ok := ns.prefix(t.Name.Space); !ok {
			return nil, newError(KindMalformed, msgMalformed, "undeclared namespace prefix")
		}
		n.Prefix = rawPrefix(raw)
	}
	return n, nil
}

func (ns *namespaces) declare(a xml.Attr) {
	var prefix string
	switch {
	case a.Name.Space == "xmlns":
		prefix = a.Name.Local
	case a.Name.Space == "" && a.Name.Local == "xmlns":
		if _, ok := (*ns)[a.Value]; ok {
			return
		}
	default:
		return
	}
	if *ns == nil {
		*ns = namespaces{}
	}
	(*ns)[a.Value] = prefix
}

func (ns *namespaces) prefix(uri string) (string, bool) {
	if uri == xmlNamespace {
		return "xml", true
	}
	p, ok := (*ns)[uri]
	return p, ok
}

// rawPrefix returns the prefix of the tag name at the start of raw ("<p:x").
func rawPrefix(raw []byte) string {
	if len(raw) == 0 || raw[0] != '<' {
		return ""
	}
	raw = raw[1:]
	end := bytes.IndexAny(raw, " \t\r\n/>")
	if end < 0 {
		return ""
	}
	if i := bytes.IndexByte(raw[:end], ':'); i > 0 {
		return string(raw[:i])
	}
	return ""
}

// duplicateAttr reports an attribute name given twice in one start tag,
// which XML forbids and encoding/xml lets through (the tree would hold
// both; which one a reader sees would be up to the reader). Names compare
// after namespace resolution, so p:a and q:a of one namespace are the same.
// The count is at most MaxAttributes, so a quadratic scan is cheap.
func duplicateAttr(attrs []xml.Attr) bool {
	for i := 1; i < len(attrs); i++ {
		for _, earlier := range attrs[:i] {
			if earlier.Name == attrs[i].Name {
				return true
			}
		}
	}
	return false
}

var charRefOpen = []byte("&#")

// charRefsAllowed checks the character references of a text or start tag
// as written (raw), which encoding/xml has already resolved: it accepts
// &#xD800; as U+FFFD and noncharacters as themselves, so the references
// are read again from the input and judged by the scanner's own rule,
// charRefAllowed. CDATA, comments and processing instructions hold no
// references ("&#" there is literal text).
func charRefsAllowed(tok xml.Token, raw []byte) bool {
	switch tok.(type) {
	case xml.StartElement:
	case xml.CharData:
		if bytes.HasPrefix(raw, cdataOpen) {
			return true
		}
	default:
		return true
	}
	for {
		i := bytes.Index(raw, charRefOpen)
		if i < 0 {
			return true
		}
		_, n, ok := reference(raw[i:])
		if !ok {
			return false
		}
		raw = raw[i+n:]
	}
}

func malformed(d *xml.Decoder, detail string) *Error {
	return malformedAs(d, msgMalformed, detail)
}

// malformedAs is a well-formedness error with its own Chinese message,
// located at the decoder's line.
func malformedAs(d *xml.Decoder, msg, detail string) *Error {
	line, _ := d.InputPos()
	e := newError(KindMalformed, msg, detail)
	e.Line = line
	return e
}

// decodeError classifies an error coming out of encoding/xml.
func decodeError(err error) *Error {
	if errors.Is(err, errCharset) {
		e := newError(KindEncoding, msgEncoding, "declared encoding is not UTF-8")
		return e
	}
	detail := "not well-formed XML"
	var se *xml.SyntaxError
	if errors.As(err, &se) {
		detail += ": " + syntaxDetail(se.Msg)
	}
	e := newError(KindMalformed, msgMalformed, detail)
	if se != nil {
		e.Line = se.Line
	}
	return e
}

// syntaxDetail keeps encoding/xml's explanation but drops the parts that
// quote input: an unknown entity reference ("&张三" after a bare '&') or an
// invalid name can be a piece of a personal-data value. Element names in
// the remaining messages are protocol vocabulary, not data.
func syntaxDetail(msg string) string {
	for _, p := range [...]string{"invalid character entity", "invalid XML name"} {
		if strings.HasPrefix(msg, p) {
			return p
		}
	}
	return msg
}

// scanDOM runs the scanner alone and returns its tree, or nil and the Kind
// of its refusal.
func scanDOM(data []byte, lim Limits) (*xmlquery.Node, Kind) {
	doc, _, err := scanDOMSlab(data, lim)
	if err != nil {
		return nil, err.Kind
	}
	return doc, 0
}
