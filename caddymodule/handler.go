package caddymodule

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"go.uber.org/zap"

	"github.com/caddy-gongbao/gongbao/caddymodule/gateway"
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
// Every failure is answered with a well-formed resultFlag=false reply;
// the handler never answers the platform with an empty body. The
// exchange itself (admission, reply, refusals) is the gateway engine's;
// the handler is the glue: the HTTP request, the core call, the
// idempotency store, the journal, metrics and logs.
type Handler struct {
	// Messages limits the request root elements this route serves, for
	// example ["insureRequest"]. Default: every inbound mapping.
	Messages []string `json:"messages,omitempty"`

	// MaxCoreReplySize bounds the core's reply, in bytes. Default: 1 MiB.
	MaxCoreReplySize int64 `json:"max_core_reply_size,omitempty"`

	app     *App
	allowed gateway.Messages
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
	if h.allowed, err = h.app.gateway.Messages(h.Messages); err != nil {
		return fmt.Errorf("gongbao handler: %w", err)
	}
	return nil
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if r.Method != http.MethodPost {
		// Only a POST is a platform message; nothing else is read, mapped
		// or answered in the protocol's name.
		w.Header().Set("Allow", http.MethodPost)
		return caddyhttp.Error(http.StatusMethodNotAllowed, errMethodNotAllowed)
	}
	exchange := h.app.gateway.Open(r.URL.Path)
	x := &exchange
	reply, claim, err := h.process(x, r, next)
	if err != nil {
		var f gateway.Failure
		reply, f = h.app.gateway.Refuse(x, err)
		h.logFailure(x, f, err)
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
// returns is turned into a refusal by the engine. A non-nil ticket means
// the core was called under an idempotency claim: the caller settles it
// (settle) once the reply is built.
func (h *Handler) process(x *gateway.Exchange, r *http.Request, next caddyhttp.Handler) ([]byte, *claimTicket, error) {
	env, err := h.app.gateway.Admit(x, r.Body, r.ContentLength, h.allowed)
	if err != nil {
		return nil, nil, err
	}
	if h.app.idem == nil {
		env.Release()
		reply, err := h.exchangeWithCore(x, r, next)
		return reply, nil, err
	}
	claim, replay, err := h.claim(r.Context(), x, env)
	// Nothing reads the parsed tree past the claim (the exchange keeps
	// copied strings), so its nodes go back to the parser's pool.
	env.Release()
	if err != nil || replay != nil {
		return replay, nil, err
	}
	reply, err := h.exchangeWithCore(x, r, next)
	return reply, claim, err
}

// exchangeWithCore calls the core and has the engine build the signed
// reply from its answer.
func (h *Handler) exchangeWithCore(x *gateway.Exchange, r *http.Request, next caddyhttp.Handler) ([]byte, error) {
	status, answer, err := h.callCore(x, r, next)
	if err != nil {
		return nil, err
	}
	return h.app.gateway.Reply(x, status, answer)
}

// errMethodNotAllowed answers anything but a POST.
var errMethodNotAllowed = errors.New("platform messages are POSTed")

// callCore rewrites the request into the mapping's JSON call, runs the
// next handler into a recorder and returns the core's status and answer.
// What goes wrong on the wire becomes the engine's CoreError.
func (h *Handler) callCore(x *gateway.Exchange, r *http.Request, next caddyhttp.Handler) (int, []byte, error) {
	coreReq := h.coreRequest(x, r)
	rec := newCoreRecorder(h.MaxCoreReplySize)
	began := time.Now()
	err := serveRecovered(next, rec, coreReq)
	x.CoreTime = time.Since(began)
	x.CoreStatus = rec.status()
	if err != nil {
		return 0, nil, gateway.CoreError{Kind: gateway.CoreUnavailable, NotSent: neverSent(err), Cause: err}
	}
	x.CoreReply = rec.body.Bytes()
	if rec.overflow {
		return 0, nil, gateway.CoreError{Kind: gateway.CoreInvalid, Status: x.CoreStatus, Cause: errors.New("core reply exceeds max_core_reply_size")}
	}
	return x.CoreStatus, x.CoreReply, nil
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
func (h *Handler) coreRequest(x *gateway.Exchange, r *http.Request) *http.Request {
	body := x.CoreRequest
	// A shallow copy: the platform's headers are replaced, not cloned;
	// only the URL, which is changed, is copied.
	req := r.WithContext(context.WithoutCancel(r.Context()))
	u := *r.URL
	req.URL = &u
	req.Method = x.Mapping.Method
	req.URL.Path = x.Mapping.Path
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
	req.Header = coreHeaders(x.RequestUUID, requestID(r), x.Root)
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

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
