// Package protocol implements the 工保网 (gongbao) message envelope: parsing
// and checking incoming signed XML, computing and verifying the MD5
// signature, building well-formed, signed outgoing XML, and reading a
// platform's reply.
//
// It knows nothing about Caddy, mappings or business fields, and must not
// import Caddy, zap, or any other package of this module (mapping, store,
// delivery, simulator, caddymodule): everything else builds on it. Its
// only third-party imports are xmlquery (the tree the rest of the code
// works on, DESIGN §2), uuid, and x/text for Explain's GBK variant. See
// DESIGN.md §1 for the protocol facts this package encodes.
//
// Files:
//   - protocol.go: Envelope, Limits, Parse (byte checks, tree, envelope).
//   - parse.go: Parse's byte checks and the helpers of the tree builder.
//   - scan.go: the checked single-pass tree builder, the one XML parser
//     of platform input (its encoding/xml-based reference lives in
//     reference_test.go, for the differential and fuzz tests).
//   - errors.go: Error, its Kinds and Chinese messages.
//   - signature.go: the signed value V, Sign, VerifyAny.
//   - build.go: outgoing XML (BuildRequest, BuildResponse, …).
//   - reply.go: ReadReply and ReadFlag, the one reader of platform
//     replies (root, requestUUID, sign, resultFlag, resultMessage).
//   - explain.go, explain_flat.go, explain_keys.go: Explain, why a sign
//     does not verify, for the operator's `caddy gongbao explain`. After
//     Parse has accepted a message, explain_flat re-reads it with
//     encoding/xml only to locate source spans; it decides nothing.
//   - resign.go: Resign, re-signing a hand-edited message for the `sign`
//     command and tests (Parse first, then encoding/xml to find the head).
package protocol

import (
	"github.com/antchfx/xmlquery"
)

// MessageType tells requests (requestHead/requestBody) from responses
// (responseHead/responseBody).
type MessageType int

// Message types.
const (
	RequestMessage  MessageType = iota // <requestHead>, <requestBody>
	ResponseMessage                    // <responseHead>, <responseBody>
)

func (t MessageType) headName() string {
	if t == ResponseMessage {
		return "responseHead"
	}
	return "requestHead"
}

func (t MessageType) bodyName() string {
	if t == ResponseMessage {
		return "responseBody"
	}
	return "requestBody"
}

// String returns "request" or "response".
func (t MessageType) String() string {
	if t == ResponseMessage {
		return "response"
	}
	return "request"
}

// Envelope is one parsed platform message (request or response).
//
// The strings of the tree under Head and Body (element names, texts,
// attribute values) share one copy of the message, so keeping any of them
// keeps that copy: clone what outlives the request. Root, RequestUUID and
// the values Text and SignedValue return are separate.
type Envelope struct {
	Root        string         // root element local name, e.g. "insureRequest"
	RequestUUID string         // head requestUUID, XML white space trimmed ("" if absent)
	Sign        string         // head sign, XML white space trimmed ("" if absent)
	Head        *xmlquery.Node // requestHead or responseHead element (nil if absent)
	Body        *xmlquery.Node // requestBody or responseBody element (nil if absent)
	Type        MessageType    // request or response, from the head/body names

	slab []xmlquery.Node // the tree's node slab, for Release (nil: not reusable)
}

// Limits bound what Parse accepts. A zero (or negative) field means the default.
type Limits struct {
	MaxBytes      int // whole message, bytes; default 1 MiB
	MaxDepth      int // element nesting, root = 1; default 32
	MaxElements   int // elements in the document; default 2000
	MaxValueChars int // characters (runes) of one text value or attribute; default 65536
	// MaxAttributes bounds the attributes of one element; default 16.
	// Attributes are neither signed nor mapped, so without a bound a
	// message could carry any number of them past every other check.
	MaxAttributes int
}

// Default limits.
const (
	DefaultMaxBytes      = 1 << 20
	DefaultMaxDepth      = 32
	DefaultMaxElements   = 2000
	DefaultMaxValueChars = 65536
	DefaultMaxAttributes = 16
)

func (l Limits) withDefaults() Limits {
	def := func(v, d int) int {
		if v <= 0 {
			return d
		}
		return v
	}
	return Limits{
		MaxBytes:      def(l.MaxBytes, DefaultMaxBytes),
		MaxDepth:      def(l.MaxDepth, DefaultMaxDepth),
		MaxElements:   def(l.MaxElements, DefaultMaxElements),
		MaxValueChars: def(l.MaxValueChars, DefaultMaxValueChars),
		MaxAttributes: def(l.MaxAttributes, DefaultMaxAttributes),
	}
}

// Parse checks and parses one message. It refuses, with an *Error:
//   - empty input, input that is not well-formed XML, more than one root,
//     text outside the root (KindMalformed); stricter than encoding/xml,
//     an attribute given twice in one tag and a character reference to a
//     surrogate (&#xD800;) or a noncharacter (&#xFDD0;, &#xFFFE;, …) are
//     not well-formed either;
//   - any <!…> declaration — DOCTYPE, ENTITY, … (KindForbidden); the
//     decoder never interprets a DTD, only the five predefined entities and
//     character references are ever resolved, and the refusal happens as
//     the declaration is read, before anything after it is parsed;
//   - a declared encoding other than UTF-8, or bytes that are not valid
//     UTF-8 (KindEncoding); a UTF-8 byte-order mark is accepted;
//   - input beyond lim (KindTooLarge);
//   - a root without exactly one head and one body of the same type, or a
//     head with a repeated requestUUID or sign (KindStructure);
//   - a namespace (a prefixed name, an xmlns attribute) or a name with a
//     letter outside ASCII, which the protocol never uses (KindStructure).
//
// Callers should still bound the bytes they read (e.g. http.MaxBytesReader)
// to lim.MaxBytes+1; Parse checks the length it is given.
//
// The head is read by element name, so <sign> may precede <requestUUID>.
// A missing requestUUID or sign is not a parse error: Sign is then "" and
// never verifies.
func Parse(data []byte, lim Limits) (*Envelope, error) {
	lim = lim.withDefaults()
	data, err := checkBytes(data, lim)
	if err != nil {
		return nil, err
	}
	doc, slab, err := parseDOMSlab(data, lim)
	if err != nil {
		return nil, err
	}
	env, err := envelopeOf(doc)
	if err != nil {
		putSlab(slab) // nothing refers to the tree
		return nil, err
	}
	env.slab = slab
	return env, nil
}

// Release gives the envelope's tree back for reuse by a later Parse, which
// spares the collector most of what Parse allocates. Calling it is
// optional: an envelope never released is collected as usual.
//
// After Release, neither e nor any node of its tree (Head, Body and
// everything reached from them) may be used: a later Parse overwrites the
// nodes. Strings read from the tree (node Data, attribute values, Text,
// RequestUUID, Sign, SignedValue) stay valid; only the nodes are reused.
// e itself is cleared, so a stray use finds no body rather than another
// message's. Release a given envelope once, from one goroutine.
func (e *Envelope) Release() {
	slab := e.slab
	*e = Envelope{}
	if slab != nil {
		putSlab(slab)
	}
}

// envelopeOf locates root, head and body in a parsed document.
func envelopeOf(doc *xmlquery.Node) (*Envelope, error) {
	root := rootElement(doc)
	if root == nil {
		return nil, newError(KindMalformed, msgEmpty, "no root element")
	}
	env := &Envelope{Root: root.Data}
	var heads, bodies [2]found // indexed by MessageType
	for c := root.FirstChild; c != nil; c = c.NextSibling {
		if c.Type != xmlquery.ElementNode {
			continue
		}
		for _, t := range [...]MessageType{RequestMessage, ResponseMessage} {
			switch c.Data {
			case t.headName():
				heads[t].add(c)
			case t.bodyName():
				bodies[t].add(c)
			}
		}
	}
	env.Type = guessType(root.Data, heads, bodies)
	hs, bs := heads[env.Type], bodies[env.Type]
	other := 1 - env.Type
	switch {
	case hs.n == 0:
		return nil, missing(env.Type.headName())
	case bs.n == 0:
		return nil, missing(env.Type.bodyName())
	case hs.n > 1 || heads[other].n > 0:
		return nil, duplicate(env.Type.headName())
	case bs.n > 1 || bodies[other].n > 0:
		return nil, duplicate(env.Type.bodyName())
	}
	env.Head, env.Body = hs.first, bs.first
	if err := readHead(env); err != nil {
		return nil, err
	}
	// The tree's strings share one copy of the whole message (scanDOMSlab).
	// Root and RequestUUID are what callers keep beyond the request
	// (metric labels, journal, idempotency records), so they get their own
	// few bytes, one allocation for both.
	keep := env.Root + env.RequestUUID
	env.Root, env.RequestUUID = keep[:len(env.Root)], keep[len(env.Root):]
	return env, nil
}

// found counts the elements of one name and keeps the first.
type found struct {
	n     int
	first *xmlquery.Node
}

func (f *found) add(n *xmlquery.Node) {
	if f.n == 0 {
		f.first = n
	}
	f.n++
}

// guessType decides request vs response: by the head if there is one, else
// by the body, else by the root's name. It only matters for naming what
// is missing.
func guessType(root string, heads, bodies [2]found) MessageType {
	switch {
	case heads[RequestMessage].n > 0:
		return RequestMessage
	case heads[ResponseMessage].n > 0:
		return ResponseMessage
	case bodies[RequestMessage].n > 0:
		return RequestMessage
	case bodies[ResponseMessage].n > 0:
		return ResponseMessage
	case len(root) > len("Response") && root[len(root)-len("Response"):] == "Response":
		return ResponseMessage
	}
	return RequestMessage
}

func readHead(env *Envelope) error {
	var seenUUID, seenSign bool
	for c := env.Head.FirstChild; c != nil; c = c.NextSibling {
		if c.Type != xmlquery.ElementNode {
			continue
		}
		switch c.Data {
		case "requestUUID":
			if seenUUID {
				return duplicate("requestUUID")
			}
			seenUUID = true
			env.RequestUUID = trimXMLSpace(leafText(c))
		case "sign":
			if seenSign {
				return duplicate("sign")
			}
			seenSign = true
			env.Sign = trimXMLSpace(leafText(c))
		}
	}
	return nil
}

func missing(name string) *Error {
	return newError(KindStructure, "报文缺少"+name+"节点", "missing <"+name+">")
}

func duplicate(name string) *Error {
	return newError(KindStructure, "报文包含重复的"+name+"节点", "duplicate or conflicting <"+name+">")
}

// rootElement returns the document element. xmlquery may hang top-level
// comments off the document node's sibling chain, so walk that too.
func rootElement(doc *xmlquery.Node) *xmlquery.Node {
	for d := doc; d != nil; d = d.NextSibling {
		if d.Type == xmlquery.ElementNode {
			return d
		}
		for c := d.FirstChild; c != nil; c = c.NextSibling {
			if c.Type == xmlquery.ElementNode {
				return c
			}
		}
	}
	return nil
}

// Find follows child element names down from the body (first match at
// each level) and returns the element reached, or nil. Find() is the body.
func (e *Envelope) Find(path ...string) *xmlquery.Node {
	n := e.Body
	for _, name := range path {
		if n == nil {
			return nil
		}
		n = childElement(n, name)
	}
	return n
}

// Text returns the value of the body element at path exactly as it
// contributes to the signature: decoded, CDATA unwrapped, not trimmed (for
// an element with element children, the concatenated values beneath it).
// ok is false when the element is absent. Typical use on a platform
// reply: e.Text("resultFlag"), e.Text("resultMessage").
func (e *Envelope) Text(path ...string) (string, bool) {
	n := e.Find(path...)
	if n == nil || len(path) == 0 {
		return "", false
	}
	return string(appendElementValue(nil, n)), true
}

func childElement(n *xmlquery.Node, name string) *xmlquery.Node {
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		if c.Type == xmlquery.ElementNode && c.Data == name {
			return c
		}
	}
	return nil
}

func trimXMLSpace(s string) string {
	isSpace := func(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }
	for len(s) > 0 && isSpace(s[0]) {
		s = s[1:]
	}
	for len(s) > 0 && isSpace(s[len(s)-1]) {
		s = s[:len(s)-1]
	}
	return s
}
