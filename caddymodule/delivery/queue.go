package delivery

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"regexp"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivermigrate"
	"github.com/riverqueue/river/rivertype"

	"github.com/caddy-gongbao/gongbao/caddymodule/store"
)

// queue is River on one backend, seen by the rest of the package without
// River's transaction type parameter: the engine's SQL and job inserts go
// through store.Runner and queueTx, so nothing else is written twice.
type queue interface {
	// pool runs autocommit statements on the store handle.
	pool() store.Runner
	// inTx runs fn in one transaction and commits when fn returns nil. On
	// SQLite it starts with BEGIN IMMEDIATE (the store's DSN), so it holds
	// the write lock from the start. Errors from fn come back unchanged.
	inTx(ctx context.Context, fn func(tx queueTx) error) error
	// migrate creates or updates River's tables and ours.
	migrate(ctx context.Context) error
	start(ctx context.Context) error
	stop(ctx context.Context) error
	stopAndCancel(ctx context.Context) error
}

// queueTx is a transaction on which both our rows and River jobs are
// written, so they commit or vanish together.
type queueTx interface {
	store.Runner
	insertJob(ctx context.Context, args deliveryArgs) (jobID int64, err error)
	// insertJobs inserts one job per args with a single River call; the
	// ids come back in the order of args.
	insertJobs(ctx context.Context, args []deliveryArgs) (jobIDs []int64, err error)
}

// deliveryArgs is the River job of a delivery. The job only says "attempt
// delivery N": the row in gongbao_deliveries is the truth, so a job that
// outlived its purpose (delivered, dead, replaced by an operator retry)
// finds so and completes without sending anything.
type deliveryArgs struct {
	DeliveryID int64 `json:"delivery_id"`
	// DeadlineAt (schedule time) lets the retry policy, which sees only the
	// job, aim the last retry at the deadline instead of past it.
	DeadlineAt time.Time `json:"deadline_at"`
}

// Kind is the River job kind.
func (deliveryArgs) Kind() string { return jobKind }

// fetchCooldown is the shortest interval between two River fetches.
const fetchCooldown = 10 * time.Millisecond

const (
	jobKind   = "gongbao_callback"
	queueName = "gongbao_callbacks"
	// maxJobAttempts is far beyond any deadline (hourly retries for over
	// three years; River stores attempts as smallint). A delivery ends by
	// our decision, never by River discarding its job. Snoozes (ordering)
	// do not count.
	maxJobAttempts = 30000
	// recordMargin is the time granted beyond AttemptTimeout to load the
	// row and record the attempt before River cancels the job context.
	recordMargin = 10 * time.Second
	// defaultRescueMargin: by default a job running longer than its
	// timeout plus this is taken for crashed and rescued (retried).
	// River's default is an hour. River's rescuer itself runs every 30 s.
	defaultRescueMargin = 60 * time.Second
)

// jobTimeout is how long River lets one attempt run, recording included.
func (c Config) jobTimeout() time.Duration { return c.AttemptTimeout + recordMargin }

// riverQueue is River on a driver whose transactions are TTx.
type riverQueue[TTx any] struct {
	client *river.Client[TTx]
	driver riverdriver.Driver[TTx]
	schema string
	log    *slog.Logger
	run    store.Runner
	// begin opens a transaction and returns it with a store.Runner on it.
	begin    func(ctx context.Context) (TTx, store.Runner, error)
	commit   func(ctx context.Context, tx TTx) error
	rollback func(ctx context.Context, tx TTx)
	// migrateRiver runs River's migrator: in one transaction where the
	// backend allows it (SQLite), else one per version (PostgreSQL: a
	// new enum value may not be used in the transaction that adds it).
	migrateRiver func(ctx context.Context, m *rivermigrate.Migrator[TTx]) error
	// db is the store, whose migration lock and mechanism we use.
	db *store.DB
}

func newSQLiteQueue(e *Engine) (queue, error) {
	db := e.db.SQL
	if db == nil {
		return nil, fmt.Errorf("%w: sqlite store without a handle", ErrInvalid)
	}
	// Our statements run through the store's prepared statements
	// (store.DB.Prepare, called by New): parsing them was a sixth of the
	// CPU time of grouped enqueues on SQLite.
	return newRiverQueue(e, riversqlite.New(db), "", store.SQLRunner(db),
		func(ctx context.Context) (*sqlTx, store.Runner, error) {
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				return nil, nil, err
			}
			return tx, e.db.TxRunner(tx), nil
		},
		func(_ context.Context, tx *sqlTx) error { return tx.Commit() },
		func(_ context.Context, tx *sqlTx) { _ = tx.Rollback() },
	)
}

func newPostgresQueue(e *Engine) (queue, error) {
	pool := e.db.Pool
	if pool == nil {
		return nil, fmt.Errorf("%w: postgres store without a pool", ErrInvalid)
	}
	q, err := newRiverQueue(e, riverpgxv5.New(pool), riverSchema(e.db.Schema), store.PGRunner(pool),
		func(ctx context.Context) (pgx.Tx, store.Runner, error) {
			tx, err := pool.Begin(ctx)
			if err != nil {
				return nil, nil, err
			}
			return tx, store.PGRunner(tx), nil
		},
		func(ctx context.Context, tx pgx.Tx) error { return tx.Commit(ctx) },
		// A fresh context: a cancelled caller must not leave the
		// connection mid-transaction.
		func(ctx context.Context, tx pgx.Tx) { _ = tx.Rollback(context.WithoutCancel(ctx)) },
	)
	if err != nil {
		return nil, err
	}
	q.migrateRiver = func(ctx context.Context, m *rivermigrate.Migrator[pgx.Tx]) error {
		_, err := m.Migrate(ctx, rivermigrate.DirectionUp, nil)
		return err
	}
	return q, nil
}

// riverSchemaRE is what River accepts as Config.Schema.
var riverSchemaRE = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

// riverSchema is the schema River qualifies its tables with. The pool's
// search_path already points at the store's schema; naming it as well
// keeps River's LISTEN/NOTIFY topics apart from other schemas in the same
// database. A name River refuses falls back to the search_path.
func riverSchema(s string) string {
	if riverSchemaRE.MatchString(s) && len(s) <= 40 {
		return s
	}
	return ""
}

func newRiverQueue[TTx any](e *Engine, driver riverdriver.Driver[TTx], schema string, run store.Runner,
	begin func(context.Context) (TTx, store.Runner, error),
	commit func(context.Context, TTx) error,
	rollback func(context.Context, TTx),
) (*riverQueue[TTx], error) {
	q := &riverQueue[TTx]{
		driver: driver, schema: schema, run: run, log: e.riverLog,
		begin: begin, commit: commit, rollback: rollback, db: e.db,
	}
	q.migrateRiver = q.migrateRiverInOneTx
	client, err := river.NewClient(driver, e.riverConfig(schema))
	if err != nil {
		return nil, fmt.Errorf("delivery: configuring River: %w", err)
	}
	q.client = client
	return q, nil
}

// riverConfig is the River client configuration; the package comment says
// why each value.
func (e *Engine) riverConfig(schema string) *river.Config {
	workers := river.NewWorkers()
	river.AddWorker(workers, &worker{e: e})
	jobTimeout := e.cfg.jobTimeout()
	return &river.Config{
		Queues:  map[string]river.QueueConfig{queueName: {MaxWorkers: e.cfg.MaxWorkers}},
		Workers: workers,
		// Poll interval: on SQLite a due retry or snooze is noticed by
		// polling; inserts are announced (LISTEN/NOTIFY, or River's SQLite
		// outbox table) and picked up at once.
		FetchPollInterval: e.cfg.PollInterval,
		// River fetches at most once per cooldown, and at most as many
		// jobs as there are free workers: its default (100 ms) capped a
		// backlog's drain at MaxWorkers×10 per second (100/s with the
		// default 10 workers, measured). 10 ms lifts that cap tenfold; a
		// fetch only happens when a worker is free or a job arrived.
		FetchCooldown: min(fetchCooldown, e.cfg.PollInterval),
		// River cancels a job at JobTimeout; ours ends its HTTP exchange at
		// AttemptTimeout and needs a little more to record the attempt.
		JobTimeout: jobTimeout,
		// A crashed process leaves its jobs "running": rescue them within
		// minutes, not River's default hour.
		RescueStuckJobsAfter: e.cfg.RescueAfter,
		// River's default retries after about a second; the spec demands
		// ≥ 10 s and our schedule.
		RetryPolicy: retryPolicy{clock: e.clock, jitter: e.jitter},
		MaxAttempts: maxJobAttempts,
		Logger:      e.riverLog,
		Schema:      schema,
		TestOnly:    e.cfg.testOnly,
	}
}

func (q *riverQueue[TTx]) pool() store.Runner { return q.run }

type txAdapter[TTx any] struct {
	store.Runner
	q  *riverQueue[TTx]
	tx TTx
}

func (t txAdapter[TTx]) insertJob(ctx context.Context, args deliveryArgs) (int64, error) {
	res, err := t.q.client.InsertTx(ctx, t.tx, args, &river.InsertOpts{
		Queue:       queueName,
		MaxAttempts: maxJobAttempts,
	})
	if err != nil {
		return 0, store.Unavailable(fmt.Errorf("inserting River job: %w", err))
	}
	return res.Job.ID, nil
}

func (t txAdapter[TTx]) insertJobs(ctx context.Context, args []deliveryArgs) ([]int64, error) {
	opts := &river.InsertOpts{Queue: queueName, MaxAttempts: maxJobAttempts}
	params := make([]river.InsertManyParams, len(args))
	for i, a := range args {
		params[i] = river.InsertManyParams{Args: a, InsertOpts: opts}
	}
	res, err := t.q.client.InsertManyTx(ctx, t.tx, params)
	if err != nil {
		return nil, store.Unavailable(fmt.Errorf("inserting River jobs: %w", err))
	}
	return jobIDsInOrder(args, res)
}

// jobIDsInOrder matches River's results to args by delivery id: River
// does not promise that a multi-row insert returns its rows in order.
func jobIDsInOrder(args []deliveryArgs, res []*rivertype.JobInsertResult) ([]int64, error) {
	byDelivery := make(map[int64]int64, len(res))
	for _, r := range res {
		var a deliveryArgs
		if err := json.Unmarshal(r.Job.EncodedArgs, &a); err != nil {
			return nil, store.Unavailable(fmt.Errorf("reading River job %d: %w", r.Job.ID, err))
		}
		byDelivery[a.DeliveryID] = r.Job.ID
	}
	ids := make([]int64, len(args))
	for i, a := range args {
		id, ok := byDelivery[a.DeliveryID]
		if !ok {
			return nil, store.Unavailable(fmt.Errorf("River returned no job for delivery %d", a.DeliveryID))
		}
		ids[i] = id
	}
	return ids, nil
}

func (q *riverQueue[TTx]) inTx(ctx context.Context, fn func(tx queueTx) error) error {
	tx, run, err := q.begin(ctx)
	if err != nil {
		return store.Unavailable(err)
	}
	done := false
	defer func() {
		if !done {
			q.rollback(ctx, tx)
		}
	}()
	if err := fn(txAdapter[TTx]{Runner: run, q: q, tx: tx}); err != nil {
		return err
	}
	done = true
	if err := q.commit(ctx, tx); err != nil {
		q.rollback(ctx, tx)
		return store.Unavailable(err)
	}
	return nil
}

// migrate brings River's schema and ours up to date, both under the
// store's one migration lock: River's migrator first (it takes no lock of
// its own), then our steps through the store's versioned mechanism.
func (q *riverQueue[TTx]) migrate(ctx context.Context) error {
	m, err := rivermigrate.New(q.driver, &rivermigrate.Config{Schema: q.schema, Logger: q.log})
	if err != nil {
		return err
	}
	river := func(ctx context.Context) error {
		if err := q.migrateRiver(ctx, m); err != nil {
			return store.Unavailable(fmt.Errorf("River migrations: %w", err))
		}
		return nil
	}
	return q.db.MigrateAfter(ctx, river, migrations)
}

// migrateRiverInOneTx applies River's pending versions in one transaction.
func (q *riverQueue[TTx]) migrateRiverInOneTx(ctx context.Context, m *rivermigrate.Migrator[TTx]) error {
	tx, _, err := q.begin(ctx)
	if err != nil {
		return err
	}
	defer q.rollback(ctx, tx) // no-op after commit
	if _, err := m.MigrateTx(ctx, tx, rivermigrate.DirectionUp, nil); err != nil {
		return err
	}
	return q.commit(ctx, tx)
}

func (q *riverQueue[TTx]) start(ctx context.Context) error {
	// River runs jobs under the context given to Start and stops when it
	// is cancelled. The engine outlives the config (and context) that
	// started it, so only Stop ends it.
	return q.client.Start(context.WithoutCancel(ctx))
}

func (q *riverQueue[TTx]) stop(ctx context.Context) error { return q.client.Stop(ctx) }

func (q *riverQueue[TTx]) stopAndCancel(ctx context.Context) error {
	return q.client.StopAndCancel(ctx)
}

// levelFloor drops records below a level: River reports every failed job
// at info level, and the engine already logs each attempt its own way.
type levelFloor struct {
	slog.Handler
	min slog.Level
}

func (h levelFloor) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h levelFloor) WithAttrs(as []slog.Attr) slog.Handler {
	return levelFloor{h.Handler.WithAttrs(as), h.min}
}

func (h levelFloor) WithGroup(name string) slog.Handler {
	return levelFloor{h.Handler.WithGroup(name), h.min}
}

// sqlTx names database/sql's transaction, River's SQLite TTx.
type sqlTx = sql.Tx
