package gateway

import (
	"strings"
	"time"

	"github.com/caddy-gongbao/gongbao/caddymodule/mapping"
)

// Exchange is one platform request on its way through the engine. The
// engine fills what it learns (root, mapping, bodies, outcome); the
// caller fills what happens outside it (the core's status and time, a
// replay) and reads the rest for its journal, metrics and logs.
type Exchange struct {
	Start       time.Time
	Root        string // request root, once known to have a mapping; never sender-chosen otherwise
	ReplyRoot   string
	RequestUUID string
	Mapping     *mapping.Inbound
	Outcome     string // bounded label for logs and metrics
	Verified    bool   // the platform's signature verified
	ReplayOf    string // requestUUID of the exchange this one repeats (replay, content replay)
	ErrText     string // the failure, for the journal

	CoreStatus int
	CoreTime   time.Duration

	// For the journal.
	RequestXML  []byte
	CoreRequest []byte
	CoreReply   []byte
	PolicyNo    string
	ProposalNo  string
	Unmapped    []string // request elements no row read (sender-chosen names: never in a reply)

	pathRoot string // root named by the route's path ("" if none); sender-chosen
	vars     mapping.Vars
}

// Open starts an exchange for a request posted to path. When the path
// names a known message (/gongbao/insureRequest), a body too broken to
// name itself is still answered with that message's reply root. It
// returns a value, not a pointer, so that the caller's exchange can stay
// on its stack: one allocation less per request.
func (g *Gateway) Open(path string) Exchange {
	x := Exchange{Start: g.cfg.Now(), pathRoot: rootFromPath(path), Outcome: "ok"}
	if m, ok := g.Inbound(x.pathRoot); ok {
		x.Root, x.ReplyRoot = x.pathRoot, m.ReplyRoot
	}
	return x
}

// rootFromPath reads the optional /<rootElement> suffix of the route, as
// in /gongbao/insureRequest.
func rootFromPath(p string) string {
	p = strings.TrimSuffix(p, "/")
	i := strings.LastIndexByte(p, '/')
	last := p[i+1:]
	if strings.HasSuffix(last, "Request") && len(last) > len("Request") {
		return last
	}
	return ""
}

// replyRoot names the reply's root element: the mapping's when the
// message is known (by its root, or by the route's path), else a generic
// root: a name the sender chose is never echoed.
func (x *Exchange) replyRoot() string {
	if x.ReplyRoot != "" {
		return x.ReplyRoot
	}
	return "errorResponse"
}
