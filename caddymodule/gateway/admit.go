package gateway

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"

	"github.com/antchfx/xmlquery"
	"github.com/dustin/go-humanize"

	"github.com/caddy-gongbao/gongbao/caddymodule/protocol"
)

// Messages is the set of request roots a route serves; nil serves every
// inbound mapping.
type Messages map[string]bool

// Messages builds the set a route serves, refusing a root without an
// inbound mapping.
func (g *Gateway) Messages(roots []string) (Messages, error) {
	if len(roots) == 0 {
		return nil, nil
	}
	set := make(Messages, len(roots))
	for _, root := range roots {
		if _, ok := g.Inbound(root); !ok {
			return nil, fmt.Errorf("message %q has no inbound mapping", root)
		}
		set[root] = true
	}
	return set, nil
}

func (s Messages) serves(root string) bool { return s == nil || s[root] }

// Admit reads (at most the configured size; declared is the request's
// Content-Length, a sizing hint), parses, dispatches, verifies and maps a
// platform request. On success x.CoreRequest is the JSON body for the
// core, and the parsed envelope is returned for the request fingerprint;
// the caller releases it (env.Release) once done with it. Nothing Admit
// refuses may reach the core or the store; its error goes to Refuse.
func (g *Gateway) Admit(x *Exchange, body io.Reader, declared int64, route Messages) (*protocol.Envelope, error) {
	data, err := ReadLimited(body, declared, int64(g.cfg.Limits.MaxBytes))
	if err != nil {
		return nil, err
	}
	x.RequestXML = data
	env, err := protocol.Parse(data, g.cfg.Limits)
	if err != nil {
		return nil, err
	}
	if err := g.dispatch(x, env, route); err != nil {
		env.Release()
		return nil, err
	}
	if err := g.verify(env); err != nil {
		env.Release()
		return nil, err
	}
	x.Verified = true
	x.notePolicy(env)
	x.vars = g.RequestVars()
	coreBody, unmapped, err := x.Mapping.Request.XMLToJSONUnmapped(env.Body, x.vars)
	x.Unmapped = unmapped
	if err != nil {
		env.Release()
		return nil, err
	}
	x.CoreRequest = coreBody
	return env, nil
}

// dispatch picks the mapping for the message's root element and checks
// the requestUUID. It runs before the signature is checked, so its
// refusals are fixed texts that repeat nothing the sender chose.
func (g *Gateway) dispatch(x *Exchange, env *protocol.Envelope, route Messages) error {
	m, ok := g.Inbound(env.Root)
	if !ok || !route.serves(env.Root) {
		x.Root = "" // never a label, log field or reply root from unknown input
		return RequestError{Message: msgUnknownMessage, Reason: "unknown_message"}
	}
	x.Root, x.Mapping, x.ReplyRoot = env.Root, m, m.ReplyRoot
	if x.pathRoot != "" && x.pathRoot != env.Root {
		return RequestError{Message: msgRootMismatch, Reason: "root_mismatch"}
	}
	if err := CheckRequestUUID(env.RequestUUID, g.cfg.MaxRequestUUIDLength); err != nil {
		return err
	}
	x.RequestUUID = env.RequestUUID
	return nil
}

// CheckRequestUUID admits a head requestUUID: present, printable ASCII
// without spaces, and not longer than max characters. It is not signed,
// it becomes the core's Idempotency-Key header, a store key and a log
// field, so anything else is refused before it is used anywhere.
func CheckRequestUUID(id string, max int) error {
	switch {
	case id == "":
		return ErrMissingRequestUUID
	case len(id) > max:
		return RequestError{Message: fmt.Sprintf("%s(最多 %d 个字符)", msgLongUUID, max), Reason: "bad_uuid"}
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= ' ' || id[i] >= 0x7f {
			return RequestError{Message: msgBadUUID, Reason: "bad_uuid"}
		}
	}
	return nil
}

// verify checks the platform's signature against every accepted key.
func (g *Gateway) verify(env *protocol.Envelope) error {
	if env.Sign == "" {
		return SignatureError{Missing: true}
	}
	if _, ok := env.Verify(g.cfg.VerifyKeys); !ok {
		return SignatureError{}
	}
	return nil
}

// policyFields are the element names that carry policy and proposal
// numbers in platform messages (spellings of DESIGN §1.3).
var policyFields = []string{"policyno", "policyNo", "polycyno"}

// notePolicy remembers the policy number of a request, for the journal.
func (x *Exchange) notePolicy(env *protocol.Envelope) {
	for _, name := range policyFields {
		if v, ok := env.Text(name); ok && v != "" {
			x.PolicyNo = v
			return
		}
	}
}

// ReadLimited reads at most limit bytes, failing clearly past it.
// declared (a Content-Length, or -1) only sizes the buffer.
func ReadLimited(body io.Reader, declared, limit int64) ([]byte, error) {
	if body == nil {
		return nil, nil
	}
	data, err := readUpTo(body, declared, limit+1)
	if err != nil {
		return nil, RequestError{Message: "读取报文失败", Reason: "read_error", Cause: err}
	}
	if int64(len(data)) > limit {
		return nil, RequestError{Message: fmt.Sprintf("报文超过大小限制(最大 %s)", HumanSize(limit)), Reason: "too_large"}
	}
	return data, nil
}

// readUpTo reads at most max bytes. A declared length below max sizes the
// buffer at once (io.ReadAll would grow it from 512 bytes, copying at each
// step); the length is only a hint, max is what is enforced.
func readUpTo(body io.Reader, declared, max int64) ([]byte, error) {
	if declared <= 0 || declared >= max {
		return io.ReadAll(io.LimitReader(body, max))
	}
	buf := make([]byte, declared+1) // one byte more tells a longer body
	n, err := io.ReadFull(body, buf)
	switch {
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		return buf[:n], nil
	case err != nil:
		return nil, err
	}
	rest, err := io.ReadAll(io.LimitReader(body, max-int64(n)))
	return append(buf, rest...), err
}

// HumanSize writes a byte count for messages about size limits.
func HumanSize(n int64) string { return humanize.IBytes(uint64(n)) }

// Fingerprint is a digest of the signed requestBody: every element's name
// and every leaf's text, in document order. Unlike the platform's signature
// value it also tells apart bodies whose texts differ only in which element
// holds them; like it, it ignores indentation between elements. It is the
// content an idempotency record is keyed on besides the requestUUID.
func Fingerprint(env *protocol.Envelope) string {
	h := sha256.New()
	h.Write([]byte(env.Root))
	var walk func(n *xmlquery.Node)
	walk = func(n *xmlquery.Node) {
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			if c.Type != xmlquery.ElementNode {
				continue
			}
			h.Write([]byte{0})
			h.Write([]byte(c.Data))
			h.Write([]byte{1})
			if hasElementChild(c) {
				walk(c)
			} else {
				h.Write([]byte(c.InnerText()))
			}
			h.Write([]byte{2})
		}
	}
	walk(env.Body)
	return hex.EncodeToString(h.Sum(nil))
}

func hasElementChild(n *xmlquery.Node) bool {
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		if c.Type == xmlquery.ElementNode {
			return true
		}
	}
	return false
}
