package protocol

import (
	"errors"
	"fmt"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
)

// Element is one element of an outgoing body. A leaf is an element with no
// Children; it carries Text. An element with Children emits only them: its
// Text is ignored. Order is preserved, so the emitted order is the signed
// order.
type Element struct {
	Name     string
	Text     string
	Children []Element
}

// ErrInvalidName is returned by Build when the root or an element name is
// not an XML name (letters, digits, '_', '-', '.', not starting with a digit,
// '-' or '.'; no ':' since the protocol uses no namespaces).
var ErrInvalidName = errors.New("protocol: invalid XML element name")

// xmlDecl starts every message we emit.
const xmlDecl = `<?xml version="1.0" encoding="UTF-8"?>`

// BuildResponse builds a signed reply:
//
//	<?xml version="1.0" encoding="UTF-8"?><root><responseHead><requestUUID>…</requestUUID><sign>…</sign></responseHead><responseBody>…</responseBody></root>
//
// See Build for the rules. Names come from compiled configuration, which is
// expected to check them with ValidName at load; an invalid name is a
// programming error and panics (like regexp.MustCompile). Use Build to get
// an error instead.
func BuildResponse(root, requestUUID string, body []Element, signKey string) []byte {
	return mustBuild(ResponseMessage, root, requestUUID, body, signKey)
}

// BuildRequest is BuildResponse with requestHead/requestBody: callbacks to
// the platform, tests and the CLI.
func BuildRequest(root, requestUUID string, body []Element, signKey string) []byte {
	return mustBuild(RequestMessage, root, requestUUID, body, signKey)
}

func mustBuild(t MessageType, root, requestUUID string, body []Element, signKey string) []byte {
	out, err := Build(t, root, requestUUID, body, signKey)
	if err != nil {
		panic(err)
	}
	return out
}

// Build builds a complete signed message of type t: the XML declaration,
// then compact XML (no indentation, no white space between elements), the
// head holding <requestUUID> then <sign>, then the body.
//
// Every text is escaped (&, <, > and CR as &#xD;, which a parser decodes
// back to CR rather than normalising it to LF); nothing is ever un-escaped
// afterwards. Characters XML 1.0 cannot carry (C0 controls other than tab,
// LF and CR; U+FFFE, U+FFFF; invalid UTF-8) are replaced by U+FFFD, in the
// output and in the signed value alike. An empty leaf is written <x></x>
// (the explicit pair is understood by every peer, including naive string
// matchers). The sign is Sign(LeafValues(body), signKey): exactly the leaf
// texts emitted, in order, so a receiver's SignedValue equals LeafValues.
func Build(t MessageType, root, requestUUID string, body []Element, signKey string) ([]byte, error) {
	return build(t, root, requestUUID, body, signKey, true)
}

// BuildUnsignedResponse builds a reply whose <sign> is empty: the answer
// to a request that did not verify. The protocol signs with one key in
// both directions, so a signed answer to unverified input would hand its
// sender a signature over text it chose (SECURITY.md).
func BuildUnsignedResponse(root, requestUUID string, body []Element) []byte {
	out, err := build(ResponseMessage, root, requestUUID, body, "", false)
	if err != nil {
		panic(err)
	}
	return out
}

func build(t MessageType, root, requestUUID string, body []Element, signKey string, signed bool) ([]byte, error) {
	if !ValidName(root) {
		return nil, fmt.Errorf("%w: root %q", ErrInvalidName, root)
	}
	bodyBuf := getBuf()
	defer putBuf(bodyBuf)
	var err error
	if *bodyBuf, err = appendElements(*bodyBuf, body); err != nil {
		return nil, err
	}
	var sign [32]byte
	signLen := 0
	if signed {
		vBuf := getBuf()
		defer putBuf(vBuf)
		*vBuf = appendLeafValues(*vBuf, body)
		sign, signLen = signature(*vBuf, signKey), len(sign)
	}

	head, bodyName := t.headName(), t.bodyName()
	size := len(xmlDecl) + tagLen(root) + tagLen(head) + tagLen(bodyName) +
		tagLen("requestUUID") + tagLen("sign") + signLen +
		len(requestUUID) + 8 + len(*bodyBuf) // +8: room for an escape or two; append grows if needed
	out := make([]byte, 0, size)
	out = append(out, xmlDecl...)
	out = appendOpen(out, root)
	out = appendOpen(out, head)
	out = appendOpen(out, "requestUUID")
	out = appendText(out, requestUUID, true)
	out = appendClose(out, "requestUUID")
	out = appendOpen(out, "sign")
	out = append(out, sign[:signLen]...)
	out = appendClose(out, "sign")
	out = appendClose(out, head)
	out = appendOpen(out, bodyName)
	out = append(out, *bodyBuf...)
	out = appendClose(out, bodyName)
	out = appendClose(out, root)
	return out, nil
}

// LeafValues returns V for an element tree: the (sanitised, unescaped)
// texts of its leaves in order, which is what Build signs and what a
// receiver's SignedValue will compute from Build's output.
func LeafValues(body []Element) []byte {
	return appendLeafValues(nil, body)
}

func appendLeafValues(dst []byte, els []Element) []byte {
	for i := range els {
		if len(els[i].Children) > 0 {
			dst = appendLeafValues(dst, els[i].Children)
			continue
		}
		dst = appendText(dst, els[i].Text, false)
	}
	return dst
}

func appendElements(dst []byte, els []Element) ([]byte, error) {
	for i := range els {
		el := &els[i]
		if !ValidName(el.Name) {
			return dst, fmt.Errorf("%w: %q", ErrInvalidName, el.Name)
		}
		dst = appendOpen(dst, el.Name)
		if len(el.Children) > 0 {
			var err error
			if dst, err = appendElements(dst, el.Children); err != nil {
				return dst, err
			}
		} else {
			dst = appendText(dst, el.Text, true)
		}
		dst = appendClose(dst, el.Name)
	}
	return dst, nil
}

func appendOpen(dst []byte, name string) []byte {
	dst = append(dst, '<')
	dst = append(dst, name...)
	return append(dst, '>')
}

func appendClose(dst []byte, name string) []byte {
	dst = append(dst, '<', '/')
	dst = append(dst, name...)
	return append(dst, '>')
}

// appendText appends s, replacing characters XML cannot carry by U+FFFD
// and, when escape is set, escaping markup characters. With escape unset
// it produces what a parser will decode from the escaped form, i.e. the
// signed value.
func appendText(dst []byte, s string, escape bool) []byte {
	last := 0
	for i := 0; i < len(s); {
		c := s[i]
		width := 1
		var repl string
		if c < utf8.RuneSelf {
			switch {
			case escape && c == '&':
				repl = "&amp;"
			case escape && c == '<':
				repl = "&lt;"
			case escape && c == '>':
				repl = "&gt;"
			case escape && c == '\r':
				repl = "&#xD;"
			case c < 0x20 && c != '\t' && c != '\n' && c != '\r':
				repl = "\uFFFD"
			default:
				i++
				continue
			}
		} else {
			r, w := utf8.DecodeRuneInString(s[i:])
			width = w
			if (r != utf8.RuneError || w > 1) && inXMLRange(r) {
				i += w
				continue
			}
			repl = "\uFFFD"
		}
		dst = append(dst, s[last:i]...)
		dst = append(dst, repl...)
		i += width
		last = i
	}
	return append(dst, s[last:]...)
}

// tagLen is the length of <name></name>.
func tagLen(name string) int { return 2*len(name) + 5 }

// inXMLRange reports whether a non-ASCII rune may appear in XML 1.0 text.
func inXMLRange(r rune) bool {
	return r <= 0xD7FF || (0xE000 <= r && r <= 0xFFFD) || (0x10000 <= r && r <= utf8.MaxRune)
}

// ValidName reports whether name can be emitted as an element name: an XML
// Name without ':' (letters, digits, '_', '-', '.'; not starting with a
// digit, '-' or '.'). Mapping loaders should call it at load time.
func ValidName(name string) bool {
	if name == "" || !utf8.ValidString(name) {
		return false
	}
	for i, r := range name {
		if !isNameRune(r, i == 0) {
			return false
		}
	}
	return true
}

func isNameRune(r rune, first bool) bool {
	switch {
	case r == '_' || unicode.IsLetter(r):
		return true
	case first:
		return false
	}
	return r == '-' || r == '.' || unicode.IsDigit(r)
}

// NewUUID returns a fresh random requestUUID (RFC 4122 v4, 36 characters),
// as peers do for replies rather than echoing the request's.
func NewUUID() string { return uuid.NewString() }

// Buffers for building bodies and signed values. Buffers that grew beyond
// maxPooledBuf are dropped so one huge message doesn't pin memory.
const maxPooledBuf = 64 << 10

var bufPool = sync.Pool{New: func() any {
	b := make([]byte, 0, 4096)
	return &b
}}

func getBuf() *[]byte { return bufPool.Get().(*[]byte) }

func putBuf(b *[]byte) {
	if cap(*b) > maxPooledBuf {
		return
	}
	*b = (*b)[:0]
	bufPool.Put(b)
}
