package delivery

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/riverqueue/river"

	"github.com/caddy-gongbao/gongbao/caddymodule/store"
)

// worker is the River worker of delivery jobs.
type worker struct {
	river.WorkerDefaults[deliveryArgs]
	e *Engine
}

func (w *worker) Work(ctx context.Context, job *river.Job[deliveryArgs]) error {
	return w.e.work(ctx, job)
}

// storedReplyCap bounds the reply kept with an attempt: enough for any
// real platform reply, not a way to fill the store.
const storedReplyCap = 64 << 10

// orderWait is how long a delivery waiting for an earlier one of the same
// order key sleeps before looking again (a snooze: no attempt is spent, so
// the 10 s floor between attempts does not apply; see gapWait).
const orderWait = time.Second

// work makes one attempt of a delivery. Its return value tells River what
// next: nil (done: delivered, or nothing left to do), JobCancel (dead
// letter), JobSnooze (ordering), any other error (retry on our schedule).
func (e *Engine) work(ctx context.Context, job *river.Job[deliveryArgs]) error {
	d, err := e.get(ctx, e.q.pool(), job.Args.DeliveryID, true)
	if errors.Is(err, ErrNotFound) {
		return river.JobCancel(err)
	}
	if err != nil {
		return err
	}
	if d.State != StatePending || d.JobID != job.ID {
		return nil // delivered, dead, or this job was replaced by an operator retry
	}
	if job.Attempt > 1 {
		// A job run again may be one River rescued from a dead instance.
		if err := e.endInterrupted(ctx, d); err != nil {
			return err
		}
	}
	if d.OrderKey != "" {
		blocked, err := e.waitingForEarlier(ctx, d)
		if err != nil {
			return err
		}
		if blocked {
			return river.JobSnooze(riverWait(e.clock, orderWait))
		}
	}
	if wait := e.gapWait(d); wait > 0 {
		return river.JobSnooze(riverWait(e.clock, wait))
	}

	pol := e.policy()
	a := e.newAttempt(d, pol)
	// Recorded as started before it is sent: if this instance dies during
	// it, the attempt stays on the delivery (see endInterrupted).
	if err := e.begin(ctx, d, job.ID, &a); err != nil {
		if errors.Is(err, store.ErrNoRows) {
			return nil // changed under us; the row is the truth
		}
		return err // nothing was sent
	}
	e.send(ctx, d, pol, &a)
	if ctx.Err() != nil && a.Outcome == OutcomeFailed {
		// The engine is stopping (or River's job timeout struck). Record
		// the attempt, since it may have reached the platform, but not as
		// the final one: on a stop River puts the job back as it was.
		a.Outcome, a.Error = OutcomeFailed, "attempt interrupted: "+a.Error
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordMargin)
		defer cancel()
		_, _ = e.record(rctx, d, job.ID, &a, false)
		return fmt.Errorf("delivery %d: %w", d.ID, ctx.Err())
	}
	final := a.Outcome == OutcomeAccepted ||
		(a.Outcome == OutcomeRefused && pol.Refusal == RefusalDeadLetter) ||
		!e.clock.Now().Before(d.DeadlineAt) ||
		job.Attempt >= job.MaxAttempts
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordMargin)
	defer cancel()
	firstMismatch, err := e.record(rctx, d, job.ID, &a, final)
	if err != nil {
		if errors.Is(err, store.ErrNoRows) {
			return nil // changed under us; the row is the truth
		}
		// The attempt happened but could not be recorded. Retry: at worst
		// the platform sees the same requestUUID again. Logged here because
		// River's own report of a failed job is below the level we keep.
		e.log.Error("recording delivery attempt", slog.Int64("delivery_id", d.ID), slog.String("error", err.Error()))
		return err
	}
	e.logAttempt(d, &a, final)
	if firstMismatch && a.Outcome != OutcomeFailed {
		e.log.Warn("platform reply signature does not verify; judged by its resultFlag because reply_signature is optional",
			slog.Int64("delivery_id", d.ID), slog.String("event", d.Event),
			slog.String("request_uuid", d.RequestUUID), slog.Int("attempt", a.N))
	}
	if e.cfg.OnAttempt != nil {
		e.cfg.OnAttempt(a)
	}
	switch {
	case a.Outcome == OutcomeAccepted:
		return nil
	case final:
		return river.JobCancel(errors.New(a.Error))
	default:
		return errors.New(a.Error)
	}
}

// gapWait is how long a delivery must still wait to keep MinGap after its
// last attempt. A job woken early (its ordering snooze ended, or an
// operator retried it) must not attempt sooner than that.
func (e *Engine) gapWait(d *Delivery) time.Duration {
	if d.LastAttemptAt == nil {
		return 0
	}
	return d.LastAttemptAt.Add(MinGap).Sub(e.clock.Now())
}

// waitingForEarlier reports whether an earlier delivery with the same
// order key is still pending: per-policy order (payment before invoice or
// surrender). Delivered and dead predecessors do not block.
func (e *Engine) waitingForEarlier(ctx context.Context, d *Delivery) (bool, error) {
	var one int
	err := e.q.pool().QueryRow(ctx, `SELECT 1 FROM gongbao_deliveries
		WHERE order_key = $1 AND state = 'pending' AND id < $2 LIMIT 1`, d.OrderKey, d.ID).Scan(&one)
	if errors.Is(err, store.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

// newAttempt is the next attempt of d, to the address the policy gives
// now, by this instance.
func (e *Engine) newAttempt(d *Delivery, pol *Policy) Attempt {
	sum := sha256.Sum256(d.Body)
	return Attempt{
		StartedAt: store.DBNow(e.clock.Now()), RequestSHA256: hex.EncodeToString(sum[:]),
		URL: pol.urlFor(d), Instance: e.cfg.Instance, Outcome: OutcomeRunning,
	}
}

// send POSTs the stored body once and judges the reply under the policy.
func (e *Engine) send(ctx context.Context, d *Delivery, pol *Policy, a *Attempt) {
	start := time.Now()
	status, reply, err := e.post(ctx, a.URL, d.Body)
	a.Duration = time.Since(start)
	a.HTTPStatus = status
	if len(reply) > storedReplyCap {
		a.Reply = reply[:storedReplyCap]
	} else {
		a.Reply = reply
	}
	if err != nil {
		a.Outcome, a.Error = OutcomeFailed, err.Error()
		return
	}
	v := judgeReply(status, reply, d.ReplyRoot, pol, e.cfg.ReplyLimits)
	a.Outcome, a.Error, a.ReplySignature = v.outcome, v.err, v.signature
}

// post sends the body and returns the status and the reply (at most
// MaxReplyBytes; a longer reply is an error).
func (e *Engine) post(ctx context.Context, url string, body []byte) (int, []byte, error) {
	actx, cancel := context.WithTimeout(ctx, e.cfg.AttemptTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, fmt.Errorf("building request: %w", err)
	}
	req.Header.Set("Content-Type", "application/xml; charset=UTF-8")
	req.Header.Set("Accept", "application/xml, text/xml")
	resp, err := e.http.Do(req)
	if err != nil {
		return 0, nil, e.describe(actx, err)
	}
	defer resp.Body.Close()
	reply, err := io.ReadAll(io.LimitReader(resp.Body, e.cfg.MaxReplyBytes+1))
	if err != nil {
		return resp.StatusCode, reply, fmt.Errorf("reading reply: %w", e.describe(actx, err))
	}
	if int64(len(reply)) > e.cfg.MaxReplyBytes {
		return resp.StatusCode, reply, fmt.Errorf("reply larger than %d bytes", e.cfg.MaxReplyBytes)
	}
	return resp.StatusCode, reply, nil
}

// describe turns a transport error into a short message. The URL is left
// out (it is on the delivery already and may carry credentials).
func (e *Engine) describe(actx context.Context, err error) error {
	if errors.Is(actx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("no reply within %s", e.cfg.AttemptTimeout)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("timeout: %w", err)
	}
	return err
}

// clip keeps peer-supplied text in errors to a readable size.
func clip(s string) string {
	const limit = 500
	if len(s) <= limit {
		return s
	}
	cut := limit
	for cut > 0 && !utf8Start(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func utf8Start(b byte) bool { return b&0xC0 != 0x80 }

// begin records an attempt as started, before it is sent: the delivery
// counts it (a.N) and the attempt row holds its URL, time and instance,
// not ended. store.ErrNoRows: the delivery is no longer pending under this
// job (nothing written).
func (e *Engine) begin(ctx context.Context, d *Delivery, jobID int64, a *Attempt) error {
	return e.q.inTx(ctx, func(tx queueTx) error {
		err := tx.QueryRow(ctx, `UPDATE gongbao_deliveries SET
				attempt_count = attempt_count + 1, last_attempt_at = $1
			WHERE id = $2 AND state = 'pending' AND job_id = $3
			RETURNING attempt_count`, a.StartedAt, d.ID, jobID).Scan(&a.N)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO gongbao_delivery_attempts
			(delivery_id, n, job_id, started_at, duration_us, request_sha256, outcome, url, instance, ended)
			VALUES ($1, $2, $3, $4, 0, $5, 'failed', $6, $7, 0)`,
			d.ID, a.N, jobID, a.StartedAt, a.RequestSHA256, a.URL, a.Instance)
		return err
	})
}

// record ends the attempt begin started and stores the delivery's new
// state, in one transaction. final makes a failed or refused attempt a
// dead letter. firstMismatch reports that this is the delivery's first
// reply whose sign did not verify (so it is warned about once per
// delivery, not once per attempt). store.ErrNoRows: the delivery is no
// longer pending under this job, or the attempt was ended meanwhile as
// one of a dead instance (nothing written).
func (e *Engine) record(ctx context.Context, d *Delivery, jobID int64, a *Attempt, final bool) (firstMismatch bool, err error) {
	now := store.DBNow(e.clock.Now())
	state := StatePending
	var deliveredAt, deadAt any
	switch {
	case a.Outcome == OutcomeAccepted:
		state, deliveredAt = StateDelivered, now
	case final:
		state, deadAt = StateDead, now
	}
	err = e.q.inTx(ctx, func(tx queueTx) error {
		var n int
		err := tx.QueryRow(ctx, `UPDATE gongbao_deliveries SET
				last_error = $1, state = $2, delivered_at = $3, dead_at = $4
			WHERE id = $5 AND state = 'pending' AND job_id = $6
			RETURNING attempt_count`,
			a.Error, string(state), deliveredAt, deadAt, d.ID, jobID).Scan(&n)
		if err != nil {
			return err
		}
		if a.ReplySignature == SignatureMismatch {
			if firstMismatch, err = noMismatchYet(ctx, tx, d.ID); err != nil {
				return err
			}
		}
		ended, err := tx.Exec(ctx, `UPDATE gongbao_delivery_attempts SET
				duration_us = $1, http_status = $2, outcome = $3, reply = $4, error = $5,
				reply_signature = $6, ended = 1
			WHERE delivery_id = $7 AND n = $8 AND ended = 0`,
			a.Duration.Microseconds(), a.HTTPStatus, string(a.Outcome), store.NullBytes(a.Reply), a.Error,
			string(a.ReplySignature), d.ID, a.N)
		if err == nil && ended == 0 {
			err = store.ErrNoRows
		}
		return err
	})
	return firstMismatch, err
}

// endInterrupted ends the attempts of d still recorded as running when its
// job runs again: their instance died during them (River rescued the job
// after RescueAfter). Each is kept as a failed attempt that may have
// reached the platform, and the rescue is logged.
func (e *Engine) endInterrupted(ctx context.Context, d *Delivery) error {
	type dead struct {
		n        int
		instance string
		started  store.Time
	}
	var found []dead
	err := e.q.inTx(ctx, func(tx queueTx) error {
		found = found[:0]
		rows, err := tx.Query(ctx, `SELECT n, instance, started_at FROM gongbao_delivery_attempts
			WHERE delivery_id = $1 AND ended = 0 ORDER BY n`, d.ID)
		if err != nil {
			return err
		}
		for rows.Next() {
			var x dead
			if err := rows.Scan(&x.n, &x.instance, &x.started); err != nil {
				rows.Close()
				return err
			}
			found = append(found, x)
		}
		rows.Close()
		if err := rows.Err(); err != nil || len(found) == 0 {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE gongbao_delivery_attempts SET outcome = 'failed', error = $1, ended = 1
			WHERE delivery_id = $2 AND ended = 0`, NoteInstanceDied, d.ID); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE gongbao_deliveries SET last_error = $1 WHERE id = $2 AND state = 'pending'`,
			NoteInstanceDied, d.ID)
		return err
	})
	if err != nil {
		return err
	}
	for _, x := range found {
		e.log.Warn("rescued a callback whose instance died during an attempt; it will be sent again with the same requestUUID",
			slog.Int64("delivery_id", d.ID), slog.String("event", d.Event), slog.String("request_uuid", d.RequestUUID),
			slog.Int("attempt", x.n), slog.String("dead_instance", x.instance), slog.Time("attempt_started_at", x.started.T),
			slog.String("instance", e.cfg.Instance))
	}
	return nil
}

// noMismatchYet reports whether no earlier attempt of the delivery got a
// reply whose sign did not verify.
func noMismatchYet(ctx context.Context, tx store.Runner, deliveryID int64) (bool, error) {
	var one int
	err := tx.QueryRow(ctx, `SELECT 1 FROM gongbao_delivery_attempts
		WHERE delivery_id = $1 AND reply_signature = 'mismatch' LIMIT 1`, deliveryID).Scan(&one)
	if errors.Is(err, store.ErrNoRows) {
		return true, nil
	}
	return false, err
}

func (e *Engine) logAttempt(d *Delivery, a *Attempt, final bool) {
	attrs := []any{
		slog.Int64("delivery_id", d.ID), slog.String("event", d.Event),
		slog.String("request_uuid", d.RequestUUID), slog.Int("attempt", a.N),
		slog.Int("http_status", a.HTTPStatus), slog.Duration("duration", a.Duration),
	}
	switch {
	case a.Outcome == OutcomeAccepted:
		e.log.Info("callback delivered", attrs...)
	case final:
		e.log.Warn("callback dead-lettered", append(attrs, slog.String("error", a.Error))...)
	case a.Outcome == OutcomeRefused:
		e.log.Warn("callback refused by the platform; will retry", append(attrs, slog.String("error", a.Error))...)
	default:
		e.log.Info("callback attempt failed; will retry", append(attrs, slog.String("error", a.Error))...)
	}
}

// defaultHTTPClient bounds every phase of an exchange (the attempt context
// bounds the whole) and never follows redirects: a redirect is not the
// platform's answer, so it is a non-2xx status and retried.
func defaultHTTPClient(attemptTimeout time.Duration, workers int) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	t.TLSHandshakeTimeout = 10 * time.Second
	t.ResponseHeaderTimeout = attemptTimeout
	t.MaxIdleConnsPerHost = workers
	return &http.Client{
		Transport: t,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}
