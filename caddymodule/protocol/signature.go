package protocol

import (
	"crypto/md5"
	"crypto/subtle"
	"encoding"
	"hash"
	"sync"

	"github.com/antchfx/xmlquery"
)

// SignedValue returns V, the byte string the signature covers (DESIGN §1.2):
// the decoded character data of every element under the body, in document
// order, with no separator. It is read from the parsed tree, never from a
// re-serialisation, and every element counts, known to a mapping or not.
//
// Rules, applied to each element:
//   - A leaf (no element children) contributes its text exactly as decoded:
//     entities and character references resolved, CDATA unwrapped, nothing
//     trimmed, white space around a CDATA section kept. Comments and
//     processing instructions contribute nothing (their neighbours join).
//     Line ends are normalised to LF by the XML parser, as XML requires;
//     a CR written as &#xD; survives.
//   - An element with element children (including the body itself)
//     contributes its children's values in order. Its own character data
//     is split into runs by the child elements; a run that is only XML
//     white space (indentation between elements) is dropped, and a run
//     holding any other character (mixed content) is kept whole, white
//     space included, at its place in document order.
//   - Attributes are not character data and are not signed.
func (e *Envelope) SignedValue() []byte {
	if e.Body == nil {
		return []byte{}
	}
	return appendChildrenValue(make([]byte, 0, textSize(e.Body)), e.Body)
}

// AppendSignedValue appends V to dst, for callers that pool buffers.
func (e *Envelope) AppendSignedValue(dst []byte) []byte {
	if e.Body == nil {
		return dst
	}
	return appendChildrenValue(dst, e.Body)
}

// appendElementValue appends the value of one element.
func appendElementValue(dst []byte, n *xmlquery.Node) []byte {
	if hasElementChild(n) {
		return appendChildrenValue(dst, n)
	}
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		if isCharData(c) {
			dst = append(dst, c.Data...)
		}
	}
	return dst
}

// appendChildrenValue appends the values of n's children with container
// semantics: blank runs of character data between elements are dropped.
// Recursion is bounded by Limits.MaxDepth, enforced by Parse.
func appendChildrenValue(dst []byte, n *xmlquery.Node) []byte {
	run := len(dst) // start of the current run of character data in dst
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		switch {
		case isCharData(c):
			dst = append(dst, c.Data...)
		case c.Type == xmlquery.ElementNode:
			dst = dropBlankRun(dst, run)
			dst = appendElementValue(dst, c)
			run = len(dst)
		}
	}
	return dropBlankRun(dst, run)
}

func dropBlankRun(dst []byte, run int) []byte {
	if isBlank(dst[run:]) {
		return dst[:run]
	}
	return dst
}

func isCharData(n *xmlquery.Node) bool {
	return n.Type == xmlquery.TextNode || n.Type == xmlquery.CharDataNode
}

func hasElementChild(n *xmlquery.Node) bool {
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		if c.Type == xmlquery.ElementNode {
			return true
		}
	}
	return false
}

// leafText is the concatenated character data directly inside n.
func leafText(n *xmlquery.Node) string {
	if c := n.FirstChild; c != nil && c.NextSibling == nil && isCharData(c) {
		return c.Data // common case: no copy
	}
	var b []byte
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		if isCharData(c) {
			b = append(b, c.Data...)
		}
	}
	return string(b)
}

// textSize is an upper bound of V's length, so SignedValue allocates once.
func textSize(n *xmlquery.Node) int {
	size := 0
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		switch {
		case isCharData(c):
			size += len(c.Data)
		case c.Type == xmlquery.ElementNode:
			size += textSize(c)
		}
	}
	return size
}

// Sign returns UPPER-case hex MD5(v + key), the protocol's signature.
func Sign(v []byte, key string) string {
	s := signature(v, key)
	return string(s[:])
}

// signature computes the upper-case hex signature into a fixed array.
// V+key is assembled in a pooled buffer so md5.Sum can run without the
// heap-allocated hash.Hash state.
func signature(v []byte, key string) [32]byte {
	buf := getBuf()
	*buf = append(append(*buf, v...), key...)
	sum := md5.Sum(*buf)
	clear((*buf)[len(v):]) // don't leave the key lying in a pooled buffer
	putBuf(buf)
	return upperHex(sum)
}

func upperHex(sum [md5.Size]byte) [32]byte {
	const hexUpper = "0123456789ABCDEF"
	var out [32]byte
	for i, b := range sum {
		out[2*i] = hexUpper[b>>4]
		out[2*i+1] = hexUpper[b&0x0f]
	}
	return out
}

// VerifyAny checks sign against V under each key in turn (key rotation:
// old and new keys both valid for a while). It returns the index of the
// first matching key. The comparison is case-insensitive (peers send
// lower-case hex) and constant-time, and every key is always tried, so
// timing reveals neither how much of the signature matched nor which key
// did. An empty sign, a sign that is not 32 characters, an empty key list
// and empty keys never verify. On failure index is -1.
//
// With several keys, the MD5 blocks made of V alone are hashed once and
// only the tail of V and each key are hashed per key.
func VerifyAny(v []byte, sign string, keys []string) (index int, ok bool) {
	if len(sign) != 32 {
		return -1, false
	}
	var got [32]byte
	for i := 0; i < len(got); i++ {
		c := sign[i]
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		got[i] = c
	}
	var pre prefixHash
	if nonEmpty(keys) > 1 {
		pre.init(v)
		defer pre.release()
	}
	index, found := -1, 0
	for i, key := range keys {
		if key == "" {
			// MD5(V) alone is computable by anyone: an empty key must
			// never authenticate. Which keys are empty is configuration,
			// not a secret, so skipping leaks nothing.
			continue
		}
		var want [32]byte
		if pre.h != nil {
			want = pre.signature(key)
		} else {
			want = signature(v, key)
		}
		eq := subtle.ConstantTimeCompare(want[:], got[:])
		index = subtle.ConstantTimeSelect(eq&^found, i, index)
		found |= eq
	}
	return index, found == 1
}

// Verify is VerifyAny(e.SignedValue(), e.Sign, keys) with V computed into
// a pooled buffer rather than a new slice.
func (e *Envelope) Verify(keys []string) (index int, ok bool) {
	buf := getBuf()
	*buf = e.AppendSignedValue(*buf)
	index, ok = VerifyAny(*buf, e.Sign, keys)
	putBuf(buf)
	return index, ok
}

func nonEmpty(keys []string) int {
	n := 0
	for _, k := range keys {
		if k != "" {
			n++
		}
	}
	return n
}

// prefixHash is the MD5 state after the whole 64-byte blocks of V, from
// which the signature under any key is finished with V's tail and the key.
// Its digest and buffer are pooled; release scrubs the key from both.
type prefixHash struct {
	h     hash.Hash
	buf   *[]byte // the marshalled state, then room for tail+key and the sum
	state int     // length of the state at the start of *buf
	tail  []byte
}

var md5Pool = sync.Pool{New: func() any { return md5.New() }}

func (p *prefixHash) init(v []byte) {
	full := len(v) &^ (md5.BlockSize - 1)
	p.h = md5Pool.Get().(hash.Hash)
	p.h.Reset()
	p.h.Write(v[:full])
	p.buf = getBuf()
	var err error
	if *p.buf, err = p.h.(encoding.BinaryAppender).AppendBinary((*p.buf)[:0]); err != nil {
		panic(err) // crypto/md5 always marshals its own state
	}
	p.state = len(*p.buf)
	p.tail = v[full:]
}

func (p *prefixHash) signature(key string) [32]byte {
	p.restore()
	buf := *p.buf
	msg := append(append(buf[p.state:p.state], p.tail...), key...)
	p.h.Write(msg)
	sum := p.h.Sum(msg[len(msg):len(msg)])
	out := upperHex([md5.Size]byte(sum))
	clear(msg) // don't leave the key lying in a pooled buffer
	return out
}

// restore resets the digest to the prefix state. It also overwrites the
// digest's block buffer, where the tail of the last key may be.
func (p *prefixHash) restore() {
	if err := p.h.(encoding.BinaryUnmarshaler).UnmarshalBinary((*p.buf)[:p.state]); err != nil {
		panic(err)
	}
}

func (p *prefixHash) release() {
	p.restore()
	md5Pool.Put(p.h)
	putBuf(p.buf)
}
