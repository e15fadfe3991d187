package caddymodule

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"go.uber.org/zap"

	"github.com/caddy-gongbao/gongbao/caddymodule/mapping"
	"github.com/caddy-gongbao/gongbao/caddymodule/protocol"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// defaultMaxCoreReplySize bounds what is read back from the core.
const defaultMaxCoreReplySize = 1 << 20

// Handler is the platform-facing middleware. It turns a signed platform
// message into a JSON call on the next handler (normally reverse_proxy to
// the core), then turns the core's JSON answer into a signed XML reply.
// Every failure is answered with a well-formed, signed resultFlag=false
// reply; the handler never answers the platform with an empty body.
type Handler struct {
	// Messages limits the request root elements this route serves, for
	// example ["insureRequest"]. Default: every inbound mapping.
	Messages []string `json:"messages,omitempty"`

	// MaxCoreReplySize bounds the core's reply, in bytes. Default: 1 MiB.
	MaxCoreReplySize int64 `json:"max_core_reply_size,omitempty"`

	app     *App
	allowed map[string]bool
	logger  *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.gongbao",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision finds the gongbao app and checks the message list against it.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	appIface, err := ctx.App("gongbao")
	if err != nil {
		return fmt.Errorf("gongbao handler: loading the gongbao app: %w", err)
	}
	h.app = appIface.(*App)
	if h.MaxCoreReplySize == 0 {
		h.MaxCoreReplySize = defaultMaxCoreReplySize
	}
	if len(h.Messages) > 0 {
		h.allowed = make(map[string]bool, len(h.Messages))
		for _, m := range h.Messages {
			if _, ok := h.app.inbound(m); !ok {
				return fmt.Errorf("gongbao handler: message %q has no inbound mapping", m)
			}
			h.allowed[m] = true
		}
	}
	return nil
}

// exchange carries one platform request through the handler.
type exchange struct {
	start       time.Time
	pathRoot    string // root named by the route's path ("" if none); sender-chosen
	root        string // request root, once known to have a mapping
	replyRoot   string
	requestUUID string
	mapping     *mapping.Inbound
	coreStatus  int
	coreTime    time.Duration
	outcome     string // bounded label for logs and metrics
	vars        mapping.Vars
	verified    bool   // the platform's signature verified
	replayOf    string // requestUUID of the exchange this one repeats (replay, content replay)
	errText     string // the failure, for the journal

	// For the journal.
	requestXML  []byte
	coreRequest []byte
	coreReply   []byte
	policyNo    string
	proposalNo  string
	unmapped    []string // request elements no row read (sender-chosen names: never in a reply)
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if r.Method != http.MethodPost {
		// Only a POST is a platform message; nothing else is read, mapped
		// or answered in the protocol's name.
		w.Header().Set("Allow", http.MethodPost)
		return caddyhttp.Error(http.StatusMethodNotAllowed, errMethodNotAllowed)
	}
	x := &exchange{start: time.Now(), pathRoot: rootFromPath(r.URL.Path), outcome: "ok"}
	if m, ok := h.app.inbound(x.pathRoot); ok {
		// Known from the route alone: a body too broken to name itself is
		// still answered with this message's reply root.
		x.root, x.replyRoot = x.pathRoot, m.ReplyRoot
	}
	reply, claim, err := h.process(x, r, next)
	if err != nil {
		reply = h.failureReply(x, err)
	} else {
		h.logExchange(x)
	}
	h.countExchange(x)
	if claim != nil {
		// The record and the journal entry commit together, before the
		// platform gets the reply.
		h.settle(claim, x, reply, err)
	} else if j := h.app.journal(); j != nil {
		j.add(h.journalEntry(x, reply))
	}
	return writeXML(w, reply)
}

// process runs the exchange and returns the signed reply. Any error it
// returns is turned into a signed failure reply by failureReply. A
// non-nil ticket means the core was called under an idempotency claim: the
// caller settles it (settle) once the reply is built.
func (h *Handler) process(x *exchange, r *http.Request, next caddyhttp.Handler) ([]byte, *claimTicket, error) {
	env, coreBody, err := h.admit(x, r)
	if err != nil {
		return nil, nil, err
	}
	// Nothing reads the parsed tree past the claim (the exchange keeps
	// copied strings), so its nodes go back to the parser's pool.
	defer env.Release()
	if h.app.idem == nil {
		reply, err := h.exchangeWithCore(x, r, next, coreBody)
		return reply, nil, err
	}
	claim, replay, err := h.claim(r.Context(), x, env)
	if err != nil || replay != nil {
		return replay, nil, err
	}
	reply, err := h.exchangeWithCore(x, r, next, coreBody)
	return reply, claim, err
}

// admit reads, parses, dispatches, verifies and maps a platform request,
// returning the envelope and the JSON body for the core. Nothing it
// refuses reaches the core or the store.
func (h *Handler) admit(x *exchange, r *http.Request) (*protocol.Envelope, []byte, error) {
	body, err := readLimited(r.Body, r.ContentLength, h.app.MaxBodySize)
	if err != nil {
		return nil, nil, err
	}
	x.requestXML = body
	env, err := protocol.Parse(body, h.app.limits)
	if err != nil {
		return nil, nil, err
	}
	if err := h.dispatch(x, env); err != nil {
		return nil, nil, err
	}
	if err := h.verify(env); err != nil {
		return nil, nil, err
	}
	x.verified = true
	x.notePolicy(env)
	x.vars = h.vars()
	coreBody, unmapped, err := x.mapping.Request.XMLToJSONUnmapped(env.Body, x.vars)
	x.unmapped = unmapped
	if err != nil {
		return nil, nil, err
	}
	x.coreRequest = coreBody
	return env, coreBody, nil
}

// exchangeWithCore calls the core and builds the signed reply from its
// answer.
func (h *Handler) exchangeWithCore(x *exchange, r *http.Request, next caddyhttp.Handler, coreBody []byte) ([]byte, error) {
	answer, err := h.callCore(x, r, next, coreBody)
	if err != nil {
		return nil, err
	}
	elements, err := x.mapping.Reply.JSONToXML(answer, x.vars)
	if err != nil {
		return nil, coreError{kind: coreInvalid, status: x.coreStatus, cause: err}
	}
	if refusal(elements) {
		x.outcome = "refused"
	}
	x.noteProposal(elements)
	return h.sign(x, elements), nil
}

// errMethodNotAllowed answers anything but a POST.
var errMethodNotAllowed = errors.New("platform messages are POSTed")

// dispatch picks the mapping for the message's root element and checks
// the requestUUID. It runs before the signature is checked, so its
// refusals are fixed texts that repeat nothing the sender chose.
func (h *Handler) dispatch(x *exchange, env *protocol.Envelope) error {
	if m, ok := h.app.inbound(env.Root); ok && (h.allowed == nil || h.allowed[env.Root]) {
		x.root, x.mapping, x.replyRoot = env.Root, m, m.ReplyRoot
	} else {
		x.root = "" // never a label, log field or reply root from unknown input
		return requestError{msg: msgUnknownMessage, reason: "unknown_message"}
	}
	if x.pathRoot != "" && x.pathRoot != env.Root {
		return requestError{msg: msgRootMismatch, reason: "root_mismatch"}
	}
	if err := h.app.checkRequestUUID(env.RequestUUID); err != nil {
		return err
	}
	x.requestUUID = env.RequestUUID
	return nil
}

// verify checks the platform's signature against every accepted key.
func (h *Handler) verify(env *protocol.Envelope) error {
	if env.Sign == "" {
		return errSignature{missing: true}
	}
	if _, ok := env.Verify(h.app.verifyKeys); !ok {
		return errSignature{}
	}
	return nil
}

// vars are the runtime variables mapping rows may refer to.
func (h *Handler) vars() mapping.Vars {
	return mapping.Vars{"now": time.Now().In(shanghai).Format("2006-01-02 15:04:05")}
}

// callCore rewrites the request into the mapping's JSON call, runs the
// next handler into a recorder and returns the core's answer body when it
// is one the reply mapping should translate.
func (h *Handler) callCore(x *exchange, r *http.Request, next caddyhttp.Handler, body []byte) ([]byte, error) {
	coreReq := h.coreRequest(x, r, body)
	rec := newCoreRecorder(h.MaxCoreReplySize)
	began := time.Now()
	err := serveRecovered(next, rec, coreReq)
	x.coreTime = time.Since(began)
	x.coreStatus = rec.status()
	if err != nil {
		return nil, coreError{kind: coreUnavailable, notSent: neverSent(err), cause: err}
	}
	x.coreReply = rec.body.Bytes()
	if rec.overflow {
		return nil, coreError{kind: coreInvalid, status: x.coreStatus, cause: errors.New("core reply exceeds max_core_reply_size")}
	}
	return classifyCoreAnswer(x.coreStatus, x.coreReply, x.mapping.Reply)
}

// errCoreAborted is a core answer broken off midway: reverse_proxy aborts
// the handler (panics with http.ErrAbortHandler) once it has begun copying
// an answer it cannot finish. Our recorder has sent nothing yet, so the
// platform still gets a proper reply.
var errCoreAborted = errors.New("the core's answer broke off midway")

// serveRecovered runs the next handler, turning its abort into an error.
func serveRecovered(next caddyhttp.Handler, w http.ResponseWriter, r *http.Request) (err error) {
	defer func() {
		if p := recover(); p != nil {
			if p != http.ErrAbortHandler {
				panic(p)
			}
			err = errCoreAborted
		}
	}()
	return next.ServeHTTP(w, r)
}

// neverSent tells whether reverse_proxy failed before any byte reached the
// core: it could not connect, or had no healthy upstream. Anything else
// (a timeout, a reset while reading the answer) leaves the outcome unknown.
func neverSent(err error) bool {
	var dial reverseproxy.DialError
	if errors.As(err, &dial) {
		return true
	}
	var herr caddyhttp.HandlerError
	return errors.As(err, &herr) && herr.StatusCode == http.StatusServiceUnavailable
}

// coreRequest builds the request the core receives. The platform's own
// headers mean nothing to the core, so the core sees a fresh set, and the
// Host its upstream gives (not the platform's). The call is not cancelled
// when the platform hangs up: the core's answer is still recorded, so the
// platform's resend can be answered from the record.
func (h *Handler) coreRequest(x *exchange, r *http.Request, body []byte) *http.Request {
	// A shallow copy: the platform's headers are replaced, not cloned;
	// only the URL, which is changed, is copied.
	req := r.WithContext(context.WithoutCancel(r.Context()))
	u := *r.URL
	req.URL = &u
	req.Method = x.mapping.Method
	req.URL.Path = x.mapping.Path
	req.URL.RawPath = ""
	req.URL.RawQuery = ""
	req.RequestURI = ""
	req.Body = io.NopCloser(bytes.NewReader(body))
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	req.ContentLength = int64(len(body))
	req.TransferEncoding = nil
	req.Trailer = nil
	// An empty Host makes the transport send the upstream's host:port,
	// and reverse_proxy then has no platform Host to forward either.
	req.Host = ""
	req.Header = coreHeaders(x.requestUUID, requestID(r), x.root)
	return req
}

// coreHeaders are the headers of a call on the core. The six values share
// one backing array: two allocations per call instead of seven. A nil
// X-Forwarded-Host tells reverse_proxy to send none: the platform's Host
// means nothing to the core and is the platform's to choose.
func coreHeaders(idempotencyKey, requestID, message string) http.Header {
	v := [...]string{"application/json; charset=utf-8", "application/json", "identity", idempotencyKey, requestID, message}
	vals := v[:]
	return http.Header{
		"Content-Type":      vals[0:1:1],
		"Accept":            vals[1:2:2],
		"Accept-Encoding":   vals[2:3:3],
		"Idempotency-Key":   vals[3:4:4],
		"X-Request-Id":      vals[4:5:5],
		"X-Gongbao-Message": vals[5:6:6],
		"X-Forwarded-Host":  nil,
	}
}

// requestID is Caddy's own id for this HTTP exchange, so a core log line
// can be matched with Caddy's access log.
func requestID(r *http.Request) string {
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		if id, ok := repl.GetString("http.request.uuid"); ok && id != "" {
			return id
		}
	}
	return protocol.NewUUID()
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
		return nil, coreError{kind: coreUnavailable, status: status, notSent: true}
	case status >= 500:
		return nil, coreError{kind: coreFailed, status: status}
	default:
		return nil, coreError{kind: coreRejected, status: status}
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

// refusal tells whether a translated reply says resultFlag=false.
func refusal(elements []protocol.Element) bool {
	for _, e := range elements {
		if e.Name == "resultFlag" {
			return e.Text == "false"
		}
	}
	return false
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

// readLimited reads at most limit bytes, failing clearly past it.
func readLimited(body io.Reader, declared, limit int64) ([]byte, error) {
	if body == nil {
		return nil, nil
	}
	data, err := readUpTo(body, declared, limit+1)
	if err != nil {
		return nil, requestError{msg: "读取报文失败", reason: "read_error", cause: err}
	}
	if int64(len(data)) > limit {
		return nil, requestError{msg: fmt.Sprintf("报文超过大小限制(最大 %s)", humanSize(limit)), reason: "too_large"}
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

// shanghai is China Standard Time. A fixed zone (China has no daylight
// saving) keeps static builds independent of the host's tzdata.
var shanghai = time.FixedZone("CST", 8*3600)

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
