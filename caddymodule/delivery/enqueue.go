package delivery

import (
	"context"
	"errors"
	"slices"
	"sync"

	"github.com/caddy-gongbao/gongbao/caddymodule/store"
)

// Group enqueue.
//
// An enqueue must be durable before its caller answers, so on SQLite
// (synchronous=FULL, one connection) one transaction per Enqueue cost a
// WAL write and an fsync, and River's multi-row insert statement was parsed
// afresh every time: a third of the CPU, for one job. The enqueuer below
// collects the Enqueue calls that arrive while a transaction is under way
// and writes them together: one transaction, one River insert and one
// commit for the lot. Each caller still gets its own answer, and only once
// the shared commit is durable. PostgreSQL gains as well: one round trip
// for River and one commit per group instead of per delivery.
//
// Atomicity per caller is kept: on any failure (a statement, River, the
// commit) the shared transaction is rolled back and its requests are run
// again one by one, each in its own transaction, as if there had been no
// grouping; so one request can neither fail nor half-write another.
//
// The enqueuer's goroutine runs only while requests wait: it starts with
// the first one and ends when the queue is empty. So it needs no stopping
// with the engine (which accepts Enqueue before Start and after Stop), and
// an idle engine holds no goroutine.

// maxEnqueueGroup bounds one shared transaction: long enough to amortise
// the commit, short enough that the SQLite connection is not held for long.
const maxEnqueueGroup = 128

// pendingEnqueue is one caller's delivery waiting for a shared transaction.
type pendingEnqueue struct {
	store.Claim
	ctx context.Context
	row Delivery // the row to insert, built by Enqueue
	res enqueued
	err error
}

// enqueued is the answer to one request.
type enqueued struct {
	d       Delivery
	created bool
}

// enqueuer queues the requests of one engine for its group transactions.
type enqueuer struct {
	mu      sync.Mutex
	queue   []*pendingEnqueue
	running bool // a goroutine is taking groups from queue
}

// submit queues p, starting a goroutine running groups through write
// unless one is running.
func (q *enqueuer) submit(p *pendingEnqueue, write func([]*pendingEnqueue)) {
	q.mu.Lock()
	q.queue = append(q.queue, p)
	start := !q.running
	q.running = true
	q.mu.Unlock()
	if start {
		go q.loop(write)
	}
}

func (q *enqueuer) loop(write func([]*pendingEnqueue)) {
	for {
		group := q.next()
		if group == nil {
			return
		}
		write(group)
	}
}

// next takes the oldest requests, up to maxEnqueueGroup, or marks the
// goroutine gone when there are none. It never waits for more: the
// requests that arrive during this group's transaction make the next one.
func (q *enqueuer) next() []*pendingEnqueue {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := min(len(q.queue), maxEnqueueGroup)
	if n == 0 {
		q.running = false
		return nil
	}
	group := slices.Clone(q.queue[:n])
	rest := copy(q.queue, q.queue[n:])
	clear(q.queue[rest:]) // no stale pointers keep answered requests alive
	q.queue = q.queue[:rest]
	return group
}

// errNoneTaken rolls back a group transaction whose callers all gave up
// before it began.
var errNoneTaken = errors.New("every caller of the group gave up")

// enqueueGroup writes a group in one transaction. The transaction begins
// first (BEGIN IMMEDIATE may wait for another process, and on SQLite for
// the connection); only then are the requests whose callers still wait
// taken. It runs on a context of its own: no caller's end may cancel the
// others' writes.
func (e *Engine) enqueueGroup(group []*pendingEnqueue) {
	ctx := context.Background()
	var (
		taken []*pendingEnqueue
		res   []enqueued
		began bool
	)
	err := e.q.inTx(ctx, func(tx queueTx) error {
		began = true
		taken = takeQueued(group)
		if len(taken) == 0 {
			return errNoneTaken
		}
		var err error
		res, err = e.enqueueIn(ctx, tx, rowsOf(taken))
		return err
	})
	switch {
	case !began: // BEGIN failed: nothing was taken, nothing written
		for _, p := range group {
			answerQueued(p, err)
		}
	case errors.Is(err, errNoneTaken):
	case err != nil:
		e.enqueueOneByOne(taken)
	default:
		for i, p := range taken {
			answer(p, res[i], nil)
		}
	}
}

// takeQueued claims the requests whose callers have not given up.
func takeQueued(group []*pendingEnqueue) []*pendingEnqueue {
	taken := make([]*pendingEnqueue, 0, len(group))
	for _, p := range group {
		if p.Take() {
			taken = append(taken, p)
		}
	}
	return taken
}

func rowsOf(ps []*pendingEnqueue) []Delivery {
	rows := make([]Delivery, len(ps))
	for i, p := range ps {
		rows[i] = p.row
	}
	return rows
}

// enqueueOneByOne runs again, each in its own transaction and in their
// order, the requests of a group whose transaction failed, so that the
// failure of one is the failure of that one only.
func (e *Engine) enqueueOneByOne(taken []*pendingEnqueue) {
	for _, p := range taken {
		res, err := e.enqueueAlone(context.WithoutCancel(p.ctx), p.row)
		answer(p, res, err)
	}
}

// enqueueAlone writes one delivery in a transaction of its own.
func (e *Engine) enqueueAlone(ctx context.Context, row Delivery) (enqueued, error) {
	var res []enqueued
	err := e.q.inTx(ctx, func(tx queueTx) error {
		var err error
		res, err = e.enqueueIn(ctx, tx, []Delivery{row})
		return err
	})
	if err != nil {
		return enqueued{}, err
	}
	return res[0], nil
}

func answer(p *pendingEnqueue, res enqueued, err error) {
	p.res, p.err = res, err
	p.Settle()
}

// answerQueued answers p unless its caller has abandoned it.
func answerQueued(p *pendingEnqueue, err error) {
	if p.Take() {
		answer(p, enqueued{}, err)
	}
}

// enqueueIn writes rows in tx, in order, as if each were enqueued alone
// one after the other: a row whose idempotency key is already stored
// (or was written by an earlier row of tx) is not written, and its answer
// is the stored delivery. The River jobs of the new rows are inserted
// with one call.
func (e *Engine) enqueueIn(ctx context.Context, tx queueTx, rows []Delivery) ([]enqueued, error) {
	out := make([]enqueued, len(rows))
	var (
		createdAt = make(map[string]int, len(rows)) // idempotency key → row created in tx
		created   []int
		repeats   [][2]int // (row, row created in tx with its key)
	)
	for i, d := range rows {
		if first, ok := createdAt[d.IdempotencyKey]; ok {
			// Resolved once the first one has its job.
			repeats = append(repeats, [2]int{i, first})
			continue
		}
		id, err := insertRow(ctx, tx, d)
		if errors.Is(err, store.ErrNoRows) {
			// Already there (on PostgreSQL possibly committed a moment ago
			// by a concurrent Enqueue; READ COMMITTED sees it now).
			existing, err := e.getBy(ctx, tx, `idempotency_key = $1`, d.IdempotencyKey, true)
			if err != nil {
				return nil, err
			}
			out[i] = enqueued{d: *existing}
			continue
		}
		if err != nil {
			return nil, err
		}
		d.ID = id
		out[i] = enqueued{d: d, created: true}
		createdAt[d.IdempotencyKey] = i
		created = append(created, i)
	}
	if err := e.insertJobsFor(ctx, tx, out, created); err != nil {
		return nil, err
	}
	for _, r := range repeats {
		d := out[r[1]].d
		d.Body = slices.Clone(d.Body) // each caller owns its answer
		out[r[0]] = enqueued{d: d}
	}
	return out, nil
}

// The statements run for every delivery enqueued, prepared once per store
// handle (store.DB.Prepare, called by New).
const (
	insertDeliverySQL = `INSERT INTO gongbao_deliveries
			(event, callback, reply_root, url, request_uuid, idempotency_key, order_key, body,
			 state, created_at, pending_since, deadline_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', $9, $9, $10)
		ON CONFLICT (idempotency_key) DO NOTHING
		RETURNING id`
	setJobIDSQL = `UPDATE gongbao_deliveries SET job_id = $1 WHERE id = $2`
)

var enqueueQueries = []string{insertDeliverySQL, setJobIDSQL}

// insertRow inserts d unless its idempotency key is taken (store.ErrNoRows).
func insertRow(ctx context.Context, tx queueTx, d Delivery) (int64, error) {
	var id int64
	err := tx.QueryRow(ctx, insertDeliverySQL,
		d.Event, d.Callback, d.ReplyRoot, d.URL, d.RequestUUID, d.IdempotencyKey, d.OrderKey, d.Body,
		d.CreatedAt, d.DeadlineAt).Scan(&id)
	return id, err
}

// insertJobsFor inserts the River jobs of the created rows out[created]
// and records each job's id on its row.
func (e *Engine) insertJobsFor(ctx context.Context, tx queueTx, out []enqueued, created []int) error {
	if len(created) == 0 {
		return nil
	}
	args := make([]deliveryArgs, len(created))
	for k, i := range created {
		args[k] = deliveryArgs{DeliveryID: out[i].d.ID, DeadlineAt: out[i].d.DeadlineAt}
	}
	jobIDs, err := tx.insertJobs(ctx, args)
	if err != nil {
		return err
	}
	for k, i := range created {
		out[i].d.JobID = jobIDs[k]
		if _, err := tx.Exec(ctx, setJobIDSQL, jobIDs[k], out[i].d.ID); err != nil {
			return err
		}
	}
	return nil
}
