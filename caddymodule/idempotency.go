package caddymodule

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"time"

	"github.com/antchfx/xmlquery"
	"go.uber.org/zap"

	"github.com/caddy-gongbao/gongbao/caddymodule/protocol"
	"github.com/caddy-gongbao/gongbao/caddymodule/store"
)

// Messages of the idempotency rows of DESIGN §4.
const (
	msgConflict      = "requestUUID 已用于内容不同的报文，请使用新的 requestUUID"
	msgInProgress    = "处理中，请稍后重试"
	msgContentReplay = "报文内容与此前已受理的请求完全相同，不再重复处理；如为重发，请使用原 requestUUID"
)

// claimTicket is this exchange's hold on its idempotency record.
type claimTicket struct {
	key   string
	token string
}

// claim takes the request's idempotency record. It returns either a
// ticket to call the core with, or the stored reply of an earlier
// identical request to replay byte for byte, or an error that becomes a
// signed refusal. The core is called only with a ticket.
//
// The signed content also claims itself: the requestUUID is not signed,
// so a captured message resent under a new one would otherwise make the
// core act again. Such a resend is refused (content_replay) rather than
// answered with the earlier reply: that reply belongs to the earlier
// exchange, and handing it to whoever holds a copy of the request would
// disclose it (the proposal number, the payment link).
func (h *Handler) claim(ctx context.Context, x *exchange, env *protocol.Envelope) (*claimTicket, []byte, error) {
	cfg := h.app.Idempotency
	fp := fingerprint(env)
	since := h.app.ContentReplay.since(x.root, time.Now())
	outcome, rec, token, err := h.begin(ctx, x.requestUUID, fp, since)
	if err == nil && outcome == store.InFlight {
		// Wait for the first request to finish, then decide again.
		outcome, rec, token, err = h.waitAndBegin(ctx, x.requestUUID, fp, since, time.Duration(cfg.WaitInFlight))
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil, requestError{msg: msgBusy, reason: "client_gone", cause: err}
		}
		return nil, nil, requestError{msg: msgBusy, reason: "store_unavailable", cause: err}
	}
	switch outcome {
	case store.Acquired:
		return &claimTicket{key: x.requestUUID, token: token}, nil, nil
	case store.Replay:
		x.outcome, x.replayOf = "replay", x.requestUUID
		return nil, rec.Reply, nil
	case store.ContentReplay:
		x.replayOf = rec.Key
		return nil, nil, requestError{msg: msgContentReplay, reason: "content_replay"}
	case store.Conflict:
		return nil, nil, requestError{msg: msgConflict, reason: "conflict"}
	default: // InFlight after waiting, or Held (unknown outcome, hold policy)
		return nil, nil, requestError{msg: msgInProgress, reason: "in_progress"}
	}
}

// storeCallTimeout bounds each store call on the request path. A store
// that stalls (a database host that stops answering without closing the
// connection, an SQLite lock held elsewhere) must still let the platform
// get its signed "retry later" reply promptly.
const storeCallTimeout = 3 * time.Second

// begin takes or reads the record, bounded by storeCallTimeout.
func (h *Handler) begin(ctx context.Context, key, fp string, contentSince time.Time) (store.Outcome, store.Record, string, error) {
	ctx, cancel := context.WithTimeout(ctx, storeCallTimeout)
	defer cancel()
	cfg := h.app.Idempotency
	return h.app.idem.BeginUnique(ctx, cfg.Scope, key, fp, time.Now(), time.Duration(cfg.Lease), cfg.UnknownOutcome == unknownRetry, contentSince)
}

// waitAndBegin waits (bounded) for a request in flight to finish, then
// decides again.
func (h *Handler) waitAndBegin(ctx context.Context, key, fp string, contentSince time.Time, wait time.Duration) (store.Outcome, store.Record, string, error) {
	waitCtx, cancel := context.WithTimeout(ctx, wait+storeCallTimeout)
	_, err := h.app.idem.Wait(waitCtx, h.app.Idempotency.Scope, key, time.Now().Add(wait))
	cancel()
	if err != nil {
		return 0, store.Record{}, "", err
	}
	return h.begin(ctx, key, fp, contentSince)
}

// settleTimeout bounds the store write after the core answered; it runs
// even when the platform has hung up, so the answer is not lost.
const settleTimeout = 10 * time.Second

// settle records what the core call established, and the exchange's
// journal entry in the same commit (when the journal is on), before the
// platform gets reply — so a reply it received is always in the journal,
// even after a crash:
//   - a definite answer (callErr == nil, reply is what it got): completed,
//     with the exact reply, so a resend is answered byte for byte without
//     calling the core;
//   - the core certainly did not act (connection refused, 503, 429, a
//     4xx refusal of the request): released, a resend runs normally;
//   - anything else (timeout after sending, reset while reading, an
//     answer we cannot translate): unknown.
func (h *Handler) settle(t *claimTicket, x *exchange, reply []byte, callErr error) {
	ctx, cancel := context.WithTimeout(context.Background(), settleTimeout)
	defer cancel()
	var st store.Settlement
	switch {
	case callErr == nil:
		st = store.Settlement{State: store.StateCompleted, Reply: reply}
	case certainlyNotActed(callErr):
		st = store.Settlement{State: store.StateReleased}
	default:
		st = store.Settlement{State: store.StateUnknown, Note: callErr.Error()}
	}
	j := h.app.journal()
	if j != nil {
		e := h.journalEntry(x, reply)
		st.Journal = &e
	}
	err := h.app.idem.Settle(ctx, h.app.Idempotency.Scope, t.key, t.token, st, time.Now())
	if err != nil {
		// The reply still goes out; the record stays in_progress until its
		// lease expires (or the next start) and then reads as unknown.
		h.logger.Error("recording the outcome of a request",
			zap.String("request_uuid", x.requestUUID), zap.String("message", x.root), zap.Error(err))
		if j != nil && !errors.Is(err, store.ErrNotOwner) {
			// Nothing was written: the journal entry goes the asynchronous way.
			j.add(*st.Journal)
		}
	}
}

// certainlyNotActed tells whether a failed core call left no effect.
func certainlyNotActed(err error) bool {
	var ce coreError
	if !errors.As(err, &ce) {
		return false
	}
	return ce.notSent || ce.kind == coreRejected
}

// fingerprint is a digest of the signed requestBody: every element's name
// and every leaf's text, in document order. Unlike the platform's signature
// value it also tells apart bodies whose texts differ only in which element
// holds them; like it, it ignores indentation between elements.
func fingerprint(env *protocol.Envelope) string {
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
