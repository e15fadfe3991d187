package caddymodule

import (
	"context"
	"errors"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-gongbao/gongbao/caddymodule/gateway"
	"github.com/caddy-gongbao/gongbao/caddymodule/protocol"
	"github.com/caddy-gongbao/gongbao/caddymodule/store"
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
func (h *Handler) claim(ctx context.Context, x *gateway.Exchange, env *protocol.Envelope) (*claimTicket, []byte, error) {
	cfg := h.app.Idempotency
	fp := gateway.Fingerprint(env)
	since := h.app.ContentReplay.since(x.Root, time.Now())
	outcome, rec, token, err := h.begin(ctx, x.RequestUUID, fp, since)
	if err == nil && outcome == store.InFlight {
		// Wait for the first request to finish, then decide again.
		outcome, rec, token, err = h.waitAndBegin(ctx, x.RequestUUID, fp, since, time.Duration(cfg.WaitInFlight))
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil, gateway.Busy("client_gone", err)
		}
		return nil, nil, gateway.Busy("store_unavailable", err)
	}
	switch outcome {
	case store.Acquired:
		return &claimTicket{key: x.RequestUUID, token: token}, nil, nil
	case store.Replay:
		x.Outcome, x.ReplayOf = "replay", x.RequestUUID
		return nil, rec.Reply, nil
	case store.ContentReplay:
		x.ReplayOf = rec.Key
		return nil, nil, gateway.ErrContentReplay
	case store.Conflict:
		return nil, nil, gateway.ErrConflict
	default: // InFlight after waiting, or Held (unknown outcome, hold policy)
		return nil, nil, gateway.ErrInProgress
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
func (h *Handler) settle(t *claimTicket, x *gateway.Exchange, reply []byte, callErr error) {
	ctx, cancel := context.WithTimeout(context.Background(), settleTimeout)
	defer cancel()
	var st store.Settlement
	switch {
	case callErr == nil:
		st = store.Settlement{State: store.StateCompleted, Reply: reply}
	case gateway.CertainlyNotActed(callErr):
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
			zap.String("request_uuid", x.RequestUUID), zap.String("message", x.Root), zap.Error(err))
		if j != nil && !errors.Is(err, store.ErrNotOwner) {
			// Nothing was written: the journal entry goes the asynchronous way.
			j.add(*st.Journal)
		}
	}
}
