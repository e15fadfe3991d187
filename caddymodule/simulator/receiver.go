package simulator

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddy-gongbao/gongbao/caddymodule/protocol"
)

// Callback request roots.
const (
	rootPaymentCallback   = "queryPolicyRequest"
	rootInvoiceCallback   = "queryInvoiceRequest"
	rootSurrenderCallback = "querySurrendRequest"
)

// requiredCallbackFields are the 不为空 fields of each callback (spec
// 3.4.6); a platform refuses a callback lacking one.
var requiredCallbackFields = map[string][]string{
	rootPaymentCallback:   {"policyNo", "proposalNo", "payType", "payTime", "insuranceCode", "downLoadUrl"},
	rootInvoiceCallback:   {"policyNo", "insuranceCode"},
	rootSurrenderCallback: {"policyNo", "resultFlag", "resultMessage", "insuranceCode"},
}

// callback is one message the receiver answered.
type callback struct {
	root   string
	uuid   string
	env    *protocol.Envelope // nil when the body did not parse
	at     time.Time
	dup    bool   // same requestUUID and body as one already accepted
	answer string // the resultMessage we answered with
	kind   error  // why we refused it (a sentinel); nil when accepted
	detail string // what was wrong with it
}

// fail records why the platform refuses cb.
func (cb *callback) fail(kind error, format string, args ...any) {
	cb.kind, cb.detail = kind, fmt.Sprintf(format, args...)
}

// receiver is the platform's callback endpoint. It judges and answers
// each callback at once, as the platform does, and queues it for the
// lifecycle, which may be busy with a request when it arrives.
type receiver struct {
	key   string
	clock Clock

	mu         sync.Mutex
	proposalNo string              // the run's proposal, once insured
	policyNo   string              // the run's policy, from the payment callback
	seen       map[string][32]byte // requestUUID → body hash of accepted callbacks
	queue      []*callback
	notify     chan struct{} // signalled (non-blocking) when queue grows
}

func newReceiver(key string, clock Clock) *receiver {
	return &receiver{key: key, clock: clock, seen: map[string][32]byte{}, notify: make(chan struct{}, 1)}
}

// serve answers callbacks on ln until the returned stop is called.
func (r *receiver) serve(ln net.Listener) (stop func()) {
	srv := &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln) // returns ErrServerClosed on stop
	}()
	return func() {
		// Every answer the lifecycle has seen is already on the wire
		// (reply flushes before queueing), so the grace period only
		// spares late resends; it is short because a client's spare
		// connection that never carries a request holds Shutdown for
		// seconds.
		ctx, cancel := context.WithTimeout(context.Background(), 250*time.Millisecond)
		defer cancel()
		if srv.Shutdown(ctx) != nil {
			srv.Close()
		}
		<-done
	}
}

// expectProposal tells the receiver which proposal's payment callback to
// accept.
func (r *receiver) expectProposal(no string) {
	r.mu.Lock()
	r.proposalNo = no
	r.mu.Unlock()
}

// take returns the callbacks queued since the last take.
func (r *receiver) take() []*callback {
	r.mu.Lock()
	defer r.mu.Unlock()
	q := r.queue
	r.queue = nil
	return q
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "POST a signed callback", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(io.LimitReader(req.Body, maxMessageBytes+1))
	cb := &callback{at: r.clock.Now(), root: path.Base(req.URL.Path)}
	if err != nil {
		cb.fail(ErrProtocol, "reading a callback posted to %s: %v", req.URL.Path, err)
		r.reply(w, cb, "报文读取失败")
		return
	}
	env, err := protocol.Parse(body, protocol.Limits{})
	if err != nil {
		cb.fail(ErrProtocol, "a callback posted to %s is not a valid message: %v", req.URL.Path, err)
		r.reply(w, cb, parseMessage(err))
		return
	}
	cb.env, cb.root, cb.uuid = env, env.Root, env.RequestUUID
	msg := r.judge(cb, req.URL.Path, sha256.Sum256(body))
	r.reply(w, cb, msg)
}

// judge decides the platform's answer and records a problem, if any. The
// returned message is the resultMessage: "成功" when accepted.
func (r *receiver) judge(cb *callback, urlPath string, hash [32]byte) string {
	env := cb.env
	if _, known := requiredCallbackFields[env.Root]; !known {
		cb.fail(ErrProtocol, "received %s at %s, which is not a callback", env.Root, urlPath)
		return "不支持的报文类型 " + env.Root
	}
	if last := path.Base(urlPath); strings.HasPrefix(last, "query") && last != env.Root {
		cb.fail(ErrProtocol, "%s posted to %s", env.Root, urlPath)
		return "报文类型与请求地址不符"
	}
	if _, ok := protocol.VerifyAny(env.SignedValue(), env.Sign, []string{r.key}); !ok {
		cb.fail(ErrBadSignature, "the %s callback (requestUUID %s) is not signed with the agreed key", env.Root, env.RequestUUID)
		return "验签失败"
	}
	if env.RequestUUID == "" {
		cb.fail(ErrProtocol, "the %s callback has no requestUUID", env.Root)
		return "报文头缺少requestUUID"
	}
	for _, f := range requiredCallbackFields[env.Root] {
		if v, _ := env.Text(f); strings.TrimSpace(v) == "" {
			cb.fail(ErrProtocol, "the %s callback lacks %s", env.Root, f)
			return "缺少必填字段 " + f
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if prev, ok := r.seen[env.RequestUUID]; ok {
		if prev != hash {
			cb.fail(ErrProtocol, "requestUUID %s was used before for a different %s", env.RequestUUID, env.Root)
			return "requestUUID 重复"
		}
		cb.dup = true // at-least-once delivery: answer it again
		return "成功"
	}
	if msg, ok := r.matchPolicy(cb); !ok {
		return msg
	}
	r.seen[env.RequestUUID] = hash
	return "成功"
}

// matchPolicy checks that a callback belongs to this run; the payment
// callback teaches the receiver the policy number. Callers hold r.mu.
func (r *receiver) matchPolicy(cb *callback) (string, bool) {
	policyNo := text(cb.env, "policyNo") // trimmed, as the lifecycle reads it
	if cb.root == rootPaymentCallback {
		proposalNo := text(cb.env, "proposalNo")
		if r.proposalNo == "" || proposalNo != r.proposalNo {
			cb.fail(ErrWrongPolicy, "payment callback for proposal %s (policy %s), but this run's proposal is %s%s",
				proposalNo, policyNo, orNone(r.proposalNo), wrongPolicyHint)
			return "投保单 " + proposalNo + " 不存在", false
		}
		if r.policyNo == "" {
			r.policyNo = policyNo
		}
	}
	if policyNo != r.policyNo {
		cb.fail(ErrWrongPolicy, "%s for policy %s, but this run's policy is %s%s", cb.root, policyNo, orNone(r.policyNo), wrongPolicyHint)
		return "保单 " + policyNo + " 不存在", false
	}
	return "", true
}

// wrongPolicyHint names the likely causes of a callback for another policy.
const wrongPolicyHint = " (a callback left over from an earlier run, or the sidecar's mapping or the core named the wrong policy)"

func orNone(s string) string {
	if s == "" {
		return "not known yet"
	}
	return s
}

// reply answers like the platform: a signed <root-as-Response> with
// resultFlag and resultMessage. The answer is flushed before the callback
// is queued, so once the lifecycle has seen a callback its answer is sent
// even if the run ends at once and the receiver is closed.
func (r *receiver) reply(w http.ResponseWriter, cb *callback, msg string) {
	cb.answer = msg
	flag := "true"
	if cb.kind != nil {
		flag = "false"
	}
	out := protocol.BuildResponse(replyRoot(cb.root), protocol.NewUUID(), []protocol.Element{
		{Name: "resultFlag", Text: flag},
		{Name: "resultMessage", Text: msg},
	}, r.key)
	w.Header().Set("Content-Type", "application/xml; charset=UTF-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(out)))
	_, _ = w.Write(out)
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	r.mu.Lock()
	r.queue = append(r.queue, cb)
	r.mu.Unlock()
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

// replyRoot names the platform's answer to a root: queryPolicyRequest →
// queryPolicyResponse. A root that is not an XML name (it came from a
// URL path) gets errorResponse.
func replyRoot(root string) string {
	if base, ok := strings.CutSuffix(root, "Request"); ok && base != "" && protocol.ValidName(root) {
		return base + "Response"
	}
	return "errorResponse"
}

// parseMessage is the platform's resultMessage for an unparsable callback.
func parseMessage(err error) string {
	var pe *protocol.Error
	if errors.As(err, &pe) {
		return pe.Message()
	}
	return "报文格式错误"
}
