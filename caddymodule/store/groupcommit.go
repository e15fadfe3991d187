package store

import (
	"context"
	"errors"
	"sync"
)

// Group commit for SQLite.
//
// Every write acknowledged to a peer must be on disk first
// (synchronous=FULL), so a single-statement write costs one fsync of the
// WAL, and SQLite runs one writer at a time: with two such writes per
// platform request (claim and settle), the disk's fsync rate, halved, was
// the sidecar's whole throughput. The committer below collects the
// single-statement writes that arrive while a commit is under way and
// commits them together, one transaction and one fsync for the lot, with
// the statements prepared once (prepared.go) — what
// PostgreSQL does for concurrent commits by itself. Each caller still gets
// its own statement's result, and only once the shared commit is durable.
//
// Atomicity per caller is kept: a statement that fails is rolled back by
// SQLite on its own (statement journal) — but some failures (disk full,
// I/O error) roll back the whole transaction, so on any failure the batch
// is abandoned and its writes are run again one by one, each in its own
// transaction, as if there had been no batching.

// maxGroup bounds one shared transaction: long enough to amortise the
// fsync, short enough that the single connection is not held for long.
const maxGroup = 128

// pendingWrite is one caller's statement waiting for a shared commit,
// with the statements that must commit with it (then).
type pendingWrite struct {
	Claim
	ctx   context.Context
	query string
	args  []any
	then  []statement
	n     int64
	err   error
}

// statement is one SQL statement and its arguments.
type statement struct {
	query string
	args  []any
}

// groupCommitter runs the shared transactions of one SQLite handle.
type groupCommitter struct {
	db      *DB
	queue   chan *pendingWrite
	closing chan struct{}
	stopped chan struct{}
	batch   []*pendingWrite
}

func newGroupCommitter(db *DB) *groupCommitter {
	g := &groupCommitter{
		db:      db,
		queue:   make(chan *pendingWrite, maxGroup),
		closing: make(chan struct{}),
		stopped: make(chan struct{}),
	}
	go g.loop()
	return g
}

// errCommitterClosed answers writes that arrive after the handle closed.
var errCommitterClosed = errors.New("store handle is closed")

// exec runs one statement in a shared durable transaction and returns the
// rows it changed. A caller whose context ends before its statement is
// taken into a transaction gets ErrUnavailable and the statement never
// runs; once taken, the caller waits for the commit's outcome.
//
// then are statements committed with it, in the same transaction, whatever
// it changed; the rows they change are not counted.
func (g *groupCommitter) exec(ctx context.Context, query string, args []any, then ...statement) (int64, error) {
	w := &pendingWrite{Claim: NewClaim(), ctx: ctx, query: query, args: args, then: then}
	select {
	case g.queue <- w:
	case <-ctx.Done():
		return 0, unavailable(ctx.Err())
	case <-g.closing:
		return 0, unavailable(errCommitterClosed)
	}
	if err := w.Wait(ctx); err != nil {
		return 0, err
	}
	return w.n, w.err
}

// close stops the loop after the batch in progress; queued writes that
// were not taken are answered ErrUnavailable.
func (g *groupCommitter) close() {
	close(g.closing)
	<-g.stopped
}

func (g *groupCommitter) loop() {
	defer close(g.stopped)
	for {
		select {
		case w := <-g.queue:
			g.commit(g.collect(w))
		case <-g.closing:
			g.refuseQueued()
			return
		}
	}
}

// collect takes first and whatever else is already queued, up to maxGroup.
// It never waits for more: the writes that arrive during this commit make
// the next batch.
func (g *groupCommitter) collect(first *pendingWrite) []*pendingWrite {
	batch := append(g.batch[:0], first)
	for len(batch) < maxGroup {
		select {
		case w := <-g.queue:
			batch = append(batch, w)
		default:
			g.batch = batch
			return batch
		}
	}
	g.batch = batch
	return batch
}

// commit runs a batch in one transaction. The lock is taken first (BEGIN
// IMMEDIATE may wait for another process); only then are the writes whose
// callers are still waiting taken.
func (g *groupCommitter) commit(batch []*pendingWrite) {
	ctx := context.Background()
	// Statements are prepared (once per handle) before the transaction
	// takes the handle's only connection: preparing needs one too.
	for _, w := range batch {
		g.db.Prepare(ctx, w.query)
		for _, st := range w.then {
			g.db.Prepare(ctx, st.query)
		}
	}
	tx, err := g.db.SQL.BeginTx(ctx, nil)
	if err != nil {
		for _, w := range batch {
			g.finish(w, 0, unavailable(err), true)
		}
		return
	}
	taken := batch[:0]
	for _, w := range batch {
		if w.Take() {
			taken = append(taken, w)
		}
	}
	run := g.db.TxRunner(tx)
	for i, w := range taken {
		n, err := runWrite(ctx, run, w)
		if err != nil {
			_ = tx.Rollback()
			g.oneByOne(taken[i:], taken[:i])
			return
		}
		w.n = n
	}
	if err := tx.Commit(); err != nil {
		for _, w := range taken {
			g.finish(w, 0, unavailable(err), false)
		}
		return
	}
	for _, w := range taken {
		g.finish(w, w.n, nil, false)
	}
}

// oneByOne runs again, each in its own transaction, the writes of a batch
// that failed: failing first (with the one that failed), then ran (rolled
// back with the batch).
func (g *groupCommitter) oneByOne(failing, ran []*pendingWrite) {
	for _, group := range [][]*pendingWrite{ran, failing} {
		for _, w := range group {
			ctx := context.WithoutCancel(w.ctx)
			var n int64
			var err error
			if len(w.then) == 0 {
				n, err = SQLRunner(g.db.SQL).Exec(ctx, w.query, w.args...)
			} else {
				err = g.db.InTx(ctx, func(q Runner) error {
					n, err = runWrite(ctx, q, w)
					return err
				})
			}
			g.finish(w, n, err, false)
		}
	}
}

// runWrite runs w's statements on q and returns the rows its first changed.
func runWrite(ctx context.Context, q Runner, w *pendingWrite) (int64, error) {
	n, err := q.Exec(ctx, w.query, w.args...)
	if err != nil {
		return 0, err
	}
	for _, st := range w.then {
		if _, err := q.Exec(ctx, st.query, st.args...); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// finish answers w. ifQueued: only if its caller has not abandoned it (a
// write refused before it was taken).
func (g *groupCommitter) finish(w *pendingWrite, n int64, err error, ifQueued bool) {
	if ifQueued && !w.Take() {
		return
	}
	w.n, w.err = n, err
	w.Settle()
}

func (g *groupCommitter) refuseQueued() {
	for {
		select {
		case w := <-g.queue:
			g.finish(w, 0, unavailable(errCommitterClosed), true)
		default:
			return
		}
	}
}

// committerOnce starts a handle's committer on first use.
type committerOnce struct {
	once sync.Once
	g    *groupCommitter
	mu   sync.Mutex
	done bool // closed: no committer may start any more
}

// Writer returns the runner for single-statement writes that must be
// durable before the caller goes on. On SQLite its Exec joins a group
// commit (see above); queries and PostgreSQL are unchanged (PostgreSQL
// groups concurrent commits by itself).
func (db *DB) Writer() (Runner, error) {
	r, err := db.Runner()
	if err != nil || db.SQL == nil {
		return r, err
	}
	g := db.committer()
	if g == nil {
		return nil, unavailable(errCommitterClosed)
	}
	return groupRunner{Runner: r, g: g}, nil
}

func (db *DB) committer() *groupCommitter {
	c := &db.group
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done {
		return nil
	}
	c.once.Do(func() { c.g = newGroupCommitter(db) })
	return c.g
}

// stopCommitter stops the committer, if one ran, before the handle closes.
func (db *DB) stopCommitter() {
	c := &db.group
	c.mu.Lock()
	c.done = true
	g := c.g
	c.g = nil // a second Close finds nothing to stop
	c.mu.Unlock()
	if g != nil {
		g.close()
	}
}

// groupRunner is a Runner whose Exec goes through the group committer.
type groupRunner struct {
	Runner
	g *groupCommitter
}

func (r groupRunner) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	return r.g.exec(ctx, query, args)
}

// execDurable runs query and then, in the same durable transaction, the
// statements then (whatever query changed), and returns the rows query
// changed. On SQLite it joins a group commit; on PostgreSQL it is one
// transaction of its own.
func (db *DB) execDurable(ctx context.Context, query string, args []any, then ...statement) (int64, error) {
	if db != nil && db.SQL != nil {
		g := db.committer()
		if g == nil {
			return 0, unavailable(errCommitterClosed)
		}
		return g.exec(ctx, query, args, then...)
	}
	var n int64
	err := db.InTx(ctx, func(q Runner) error {
		var err error
		n, err = runWrite(ctx, q, &pendingWrite{query: query, args: args, then: then})
		return err
	})
	return n, err
}
