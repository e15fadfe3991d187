package gateway

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/caddy-gongbao/gongbao/caddymodule/mapping"
	"github.com/caddy-gongbao/gongbao/caddymodule/protocol"
)

// Reply builds the signed reply from the core's answer (HTTP status and
// body) to an exchange Admit admitted, recording both on x. A failure of
// the core comes back as a CoreError for Refuse; its text never reaches
// the platform.
func (g *Gateway) Reply(x *Exchange, status int, answer []byte) ([]byte, error) {
	x.CoreStatus, x.CoreReply = status, answer
	body, err := classifyCoreAnswer(status, answer, x.Mapping.Reply)
	if err != nil {
		return nil, err
	}
	elements, err := x.Mapping.Reply.JSONToXML(body, x.vars)
	if err != nil {
		return nil, CoreError{Kind: CoreInvalid, Status: status, Cause: err}
	}
	if refused(elements) {
		x.Outcome = "refused"
	}
	x.noteProposal(elements)
	return g.sign(x, elements), nil
}

// sign builds the reply with a fresh requestUUID, signed with our key.
func (g *Gateway) sign(x *Exchange, body []protocol.Element) []byte {
	return protocol.BuildResponse(x.replyRoot(), protocol.NewUUID(), body, g.cfg.SignKey)
}

// classifyCoreAnswer decides whether the core answered: a 2xx, or a 422
// whose result flag (resultFlag's JSON field in the reply mapping) is
// false, is a business answer and is translated; anything else is a
// failure of the core, whose text goes to the journal, never to the
// platform.
func classifyCoreAnswer(status int, body []byte, reply *mapping.Rules) ([]byte, error) {
	switch {
	case status >= 200 && status < 300:
		return body, nil
	case status == http.StatusUnprocessableEntity && businessRefusal(body, resultFlagJSON(reply)):
		return body, nil
	case status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable:
		// The core says it did not take the request on.
		return nil, CoreError{Kind: CoreUnavailable, Status: status, NotSent: true}
	case status >= 500:
		return nil, CoreError{Kind: CoreFailed, Status: status}
	default:
		return nil, CoreError{Kind: CoreRejected, Status: status}
	}
}

// businessRefusal tells whether a 422 body is the core refusing on
// business grounds: a JSON object whose result flag is false.
func businessRefusal(body []byte, resultFlagJSON string) bool {
	if resultFlagJSON == "" {
		return false
	}
	var doc map[string]any
	if json.Unmarshal(body, &doc) != nil {
		return false
	}
	var v any = doc
	for part := range strings.SplitSeq(resultFlagJSON, ".") {
		obj, ok := v.(map[string]any)
		if !ok {
			return false
		}
		v = obj[part]
	}
	return v == false
}

// resultFlagJSON is the JSON path the reply mapping reads resultFlag from.
func resultFlagJSON(reply *mapping.Rules) string {
	for _, row := range reply.Rows() {
		if row.XML == "resultFlag" {
			return row.JSON
		}
	}
	return ""
}

// refused tells whether a translated reply says resultFlag=false.
func refused(elements []protocol.Element) bool {
	for _, e := range elements {
		if e.Name == "resultFlag" {
			return e.Text == "false"
		}
	}
	return false
}

// noteProposal remembers the proposal number of a reply, for the journal.
func (x *Exchange) noteProposal(body []protocol.Element) {
	for _, e := range body {
		if e.Name == "proposalNo" {
			x.ProposalNo = e.Text
		}
	}
}
