package delivery

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/caddy-gongbao/gongbao/caddymodule/store"
)

// Enqueue stores a delivery and its River job in one transaction: when it
// returns without error the delivery is durable and will be attempted (by
// this engine once started, or any engine on the same store). Concurrent
// calls share transactions (group enqueue, see enqueue.go); each call's
// outcome is still its own. A second Enqueue with the same IdempotencyKey returns the stored
// delivery with created=false and adds no job; its Body is ignored (a
// resent event is re-mapped with a fresh requestUUID, but the first one
// stands). That holds within a shared transaction too.
//
// A call whose ctx ends before its delivery is taken into a transaction
// fails and writes nothing; once taken, it waits for the commit, so its
// answer always matches the store.
//
// Errors: ErrInvalid for a bad NewDelivery; anything else wraps
// store.ErrUnavailable and nothing was written.
func (e *Engine) Enqueue(ctx context.Context, n NewDelivery) (Delivery, bool, error) {
	if err := n.validate(); err != nil {
		return Delivery{}, false, err
	}
	if err := ctx.Err(); err != nil {
		return Delivery{}, false, enqueueError(err)
	}
	p := &pendingEnqueue{Claim: store.NewClaim(), ctx: ctx, row: e.newRow(n)}
	e.enq.submit(p, e.enqueueGroup)
	if err := p.Wait(ctx); err != nil {
		return Delivery{}, false, enqueueError(err)
	}
	if p.err != nil {
		return Delivery{}, false, enqueueError(p.err)
	}
	return p.res.d, p.res.created, nil
}

func enqueueError(err error) error {
	return fmt.Errorf("delivery: enqueue: %w", store.Unavailable(err))
}

// newRow is the pending delivery n becomes, timed by the engine's clock.
func (e *Engine) newRow(n NewDelivery) Delivery {
	now := store.DBNow(e.clock.Now())
	return Delivery{
		Event: n.Event, Callback: n.Callback, ReplyRoot: n.ReplyRoot, URL: n.URL,
		RequestUUID: n.RequestUUID, IdempotencyKey: n.IdempotencyKey, OrderKey: n.OrderKey,
		Body: n.Body, State: StatePending, CreatedAt: now, PendingSince: now,
		DeadlineAt: now.Add(e.cfg.Deadline),
	}
}

// Retry makes a dead delivery pending again with a new River job and a new
// deadline, counted from now; the schedule starts again at 10 s. The body is
// untouched: the platform sees the same requestUUID and signature, at the
// address the current configuration gives.
// ErrNotFound, ErrNotDead, or an error wrapping store.ErrUnavailable.
func (e *Engine) Retry(ctx context.Context, id int64) (Delivery, error) {
	now := store.DBNow(e.clock.Now())
	deadline := now.Add(e.cfg.Deadline)
	err := e.q.inTx(ctx, func(tx queueTx) error {
		var got int64
		err := tx.QueryRow(ctx, `UPDATE gongbao_deliveries
			SET state = 'pending', pending_since = $1, deadline_at = $2, dead_at = NULL
			WHERE id = $3 AND state = 'dead' RETURNING id`, now, deadline, id).Scan(&got)
		if errors.Is(err, store.ErrNoRows) {
			if _, err := e.getBy(ctx, tx, `id = $1`, id, false); err != nil {
				return err
			}
			return ErrNotDead
		}
		if err != nil {
			return err
		}
		jobID, err := tx.insertJob(ctx, deliveryArgs{DeliveryID: id, DeadlineAt: deadline})
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE gongbao_deliveries SET job_id = $1 WHERE id = $2`, jobID, id)
		return err
	})
	if err != nil {
		return Delivery{}, fmt.Errorf("delivery: retry %d: %w", id, err)
	}
	d, err := e.Get(ctx, id)
	if err != nil {
		return Delivery{}, err
	}
	return d, nil
}

// Get returns a delivery with its body and every attempt, oldest first.
func (e *Engine) Get(ctx context.Context, id int64) (Delivery, error) {
	d, err := e.get(ctx, e.q.pool(), id, true)
	if err != nil {
		return Delivery{}, fmt.Errorf("delivery: get %d: %w", id, err)
	}
	rows, err := e.q.pool().Query(ctx, `SELECT n, started_at, duration_us, http_status, request_sha256,
			outcome, reply, error, url, reply_signature, instance, ended
		FROM gongbao_delivery_attempts WHERE delivery_id = $1 ORDER BY n`, id)
	if err != nil {
		return Delivery{}, fmt.Errorf("delivery: get %d: %w", id, err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			a       Attempt
			started store.Time
			us      int64
			outcome string
			sig     string
			ended   int
		)
		if err := rows.Scan(&a.N, &started, &us, &a.HTTPStatus, &a.RequestSHA256, &outcome, &a.Reply, &a.Error,
			&a.URL, &sig, &a.Instance, &ended); err != nil {
			return Delivery{}, fmt.Errorf("delivery: get %d: %w", id, err)
		}
		a.StartedAt, a.Duration, a.Outcome = started.T, time.Duration(us)*time.Microsecond, Outcome(outcome)
		a.ReplySignature = ReplySignature(sig)
		if ended == 0 {
			a.Outcome = OutcomeRunning // in flight, or its instance died and the job awaits rescue
		}
		d.Attempts = append(d.Attempts, a)
	}
	if err := rows.Err(); err != nil {
		return Delivery{}, fmt.Errorf("delivery: get %d: %w", id, err)
	}
	return *d, nil
}

// FindOptions selects deliveries for Find: every non-empty field must match.
type FindOptions struct {
	RequestUUID string // the callback's requestUUID
	OrderKey    string // the policy number (order key)
	Limit       int    // default 50, at most 1000
}

// Find returns the matching deliveries with their bodies and every
// attempt, oldest first: the callback side of the message journal.
func (e *Engine) Find(ctx context.Context, opt FindOptions) ([]Delivery, error) {
	if opt.RequestUUID == "" && opt.OrderKey == "" {
		return nil, fmt.Errorf("%w: find needs a requestUUID or an order key", ErrInvalid)
	}
	limit := opt.Limit
	if limit <= 0 {
		limit = 50
	}
	limit = min(limit, 1000)
	rows, err := e.q.pool().Query(ctx, `SELECT id FROM gongbao_deliveries
		WHERE ($1 = '' OR request_uuid = $1) AND ($2 = '' OR order_key = $2) ORDER BY id LIMIT $3`,
		opt.RequestUUID, opt.OrderKey, limit)
	if err != nil {
		return nil, fmt.Errorf("delivery: find: %w", err)
	}
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, fmt.Errorf("delivery: find: %w", err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("delivery: find: %w", err)
	}
	out := make([]Delivery, 0, len(ids))
	for _, id := range ids {
		d, err := e.Get(ctx, id)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

// List returns deliveries in id order, without bodies or attempts, and the
// cursor of the next page (0 when this page is the last).
func (e *Engine) List(ctx context.Context, opt ListOptions) ([]Delivery, int64, error) {
	if opt.State != "" && !opt.State.valid() {
		return nil, 0, fmt.Errorf("%w: state %q", ErrInvalid, opt.State)
	}
	limit := opt.Limit
	if limit <= 0 {
		limit = 50
	}
	limit = min(limit, 1000)
	rows, err := e.q.pool().Query(ctx, `SELECT `+deliveryCols+` FROM gongbao_deliveries
		WHERE ($1 = '' OR state = $1) AND id > $2 ORDER BY id LIMIT $3`,
		string(opt.State), opt.After, limit+1)
	if err != nil {
		return nil, 0, fmt.Errorf("delivery: list: %w", err)
	}
	defer rows.Close()
	var out []Delivery
	for rows.Next() {
		d, err := scanDelivery(rows, false)
		if err != nil {
			return nil, 0, fmt.Errorf("delivery: list: %w", err)
		}
		out = append(out, *d)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("delivery: list: %w", err)
	}
	var next int64
	if len(out) > limit {
		out = out[:limit]
		next = out[limit-1].ID
	}
	return out, next, nil
}

// Stats counts deliveries by state and dates the oldest pending one.
func (e *Engine) Stats(ctx context.Context) (Stats, error) {
	var s Stats
	rows, err := e.q.pool().Query(ctx, `SELECT state, COUNT(*) FROM gongbao_deliveries GROUP BY state`)
	if err != nil {
		return s, fmt.Errorf("delivery: stats: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			state string
			n     int64
		)
		if err := rows.Scan(&state, &n); err != nil {
			return s, fmt.Errorf("delivery: stats: %w", err)
		}
		switch State(state) {
		case StatePending:
			s.Pending = n
		case StateDelivered:
			s.Delivered = n
		case StateDead:
			s.Dead = n
		}
	}
	if err := rows.Err(); err != nil {
		return s, fmt.Errorf("delivery: stats: %w", err)
	}
	var oldest store.Time
	if err := e.q.pool().QueryRow(ctx, `SELECT MIN(pending_since) FROM gongbao_deliveries
		WHERE state = 'pending'`).Scan(&oldest); err != nil {
		return s, fmt.Errorf("delivery: stats: %w", err)
	}
	if oldest.Valid {
		s.OldestPendingSince = oldest.Ptr()
		s.OldestPendingAge = max(e.clock.Now().Sub(oldest.T), 0)
	}
	return s, nil
}

const deliveryCols = `id, event, callback, reply_root, url, request_uuid, idempotency_key, order_key,
	state, created_at, pending_since, deadline_at, last_attempt_at, delivered_at, dead_at,
	last_error, attempt_count, job_id`

func (e *Engine) get(ctx context.Context, r store.Runner, id int64, body bool) (*Delivery, error) {
	return e.getBy(ctx, r, `id = $1`, id, body)
}

func (e *Engine) getBy(ctx context.Context, r store.Runner, where string, arg any, body bool) (*Delivery, error) {
	cols := deliveryCols
	if body {
		cols += `, body`
	}
	d, err := scanDelivery(r.QueryRow(ctx, `SELECT `+cols+` FROM gongbao_deliveries WHERE `+where, arg), body)
	if errors.Is(err, store.ErrNoRows) {
		return nil, ErrNotFound
	}
	return d, err
}

func scanDelivery(s store.Scanner, body bool) (*Delivery, error) {
	var (
		d                                Delivery
		state                            string
		created, since, deadline         store.Time
		lastAttempt, deliveredAt, deadAt store.Time
	)
	dest := []any{&d.ID, &d.Event, &d.Callback, &d.ReplyRoot, &d.URL, &d.RequestUUID, &d.IdempotencyKey,
		&d.OrderKey, &state, &created, &since, &deadline, &lastAttempt, &deliveredAt, &deadAt,
		&d.LastError, &d.AttemptCount, &d.JobID}
	if body {
		dest = append(dest, &d.Body)
	}
	if err := s.Scan(dest...); err != nil {
		return nil, err
	}
	d.State = State(state)
	d.CreatedAt, d.PendingSince, d.DeadlineAt = created.T, since.T, deadline.T
	d.LastAttemptAt, d.DeliveredAt, d.DeadAt = lastAttempt.Ptr(), deliveredAt.Ptr(), deadAt.Ptr()
	return &d, nil
}
