package delivery

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"reflect"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-gongbao/gongbao/caddymodule/protocol"
	"github.com/caddy-gongbao/gongbao/caddymodule/store"
)

// 300 concurrent Enqueue calls over 200 idempotency keys (100 of them
// posted twice): every key is one delivery with one River job, and every
// caller's answer is complete and agrees with the store.
func TestEnqueueConcurrentGroups(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		env := newTestEnv(t, b, noStart)
		const callers, keys = 300, 200
		gate := make(chan struct{})
		calls := make([]*enqueueCall, callers)
		for i := range calls {
			calls[i] = goEnqueue(context.Background(), gate, env.e, env.newDelivery(fmt.Sprint("k", i%keys), ""))
		}
		close(gate)
		byKey := map[string][]*enqueueCall{}
		for _, c := range calls {
			<-c.done
			if c.err != nil {
				t.Fatalf("enqueue %s: %v", c.n.IdempotencyKey, c.err)
			}
			if c.d.ID == 0 || c.d.JobID == 0 || c.d.IdempotencyKey != c.n.IdempotencyKey || c.d.State != StatePending {
				t.Fatalf("incomplete answer: %+v", c.d)
			}
			byKey[c.n.IdempotencyKey] = append(byKey[c.n.IdempotencyKey], c)
		}
		for key, cs := range byKey {
			var won *enqueueCall
			for _, c := range cs {
				if c.created {
					if won != nil {
						t.Fatalf("key %s created twice", key)
					}
					won = c
				}
			}
			if won == nil {
				t.Fatalf("key %s: nobody created it", key)
			}
			if won.d.RequestUUID != won.n.RequestUUID || !bytes.Equal(won.d.Body, won.n.Body) {
				t.Fatalf("key %s: the creator got another delivery", key)
			}
			for _, c := range cs {
				if c.d.ID != won.d.ID || c.d.JobID != won.d.JobID || c.d.RequestUUID != won.n.RequestUUID || !bytes.Equal(c.d.Body, won.n.Body) {
					t.Fatalf("key %s: answers differ: %+v and %+v", key, c.d, won.d)
				}
			}
		}
		rows, jobs := storedDeliveries(t, env.db), storedJobs(t, env.db)
		if len(rows) != keys || len(jobs) != keys {
			t.Fatalf("%d deliveries and %d River jobs stored, want %d of each", len(rows), len(jobs), keys)
		}
		for key, cs := range byKey {
			if r := rows[key]; r.id != cs[0].d.ID || r.jobID != cs[0].d.JobID || !jobs[r.jobID] {
				t.Fatalf("key %s: stored %+v, answered %d with job %d", key, r, cs[0].d.ID, cs[0].d.JobID)
			}
		}
	})
}

// Two requests with one idempotency key in one shared transaction: the
// second is answered as if it came after the first had committed.
func TestEnqueueRepeatInOneGroup(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		env := newTestEnv(t, b, noStart)
		first, release := stall(t, env, context.Background())
		x1 := queueUp(t, env, context.Background(), env.newDelivery("x", ""))
		x2 := queueUp(t, env, context.Background(), env.newDelivery("x", "")) // a resend
		y := queueUp(t, env, context.Background(), env.newDelivery("y", ""))
		release()
		for _, c := range []*enqueueCall{first, x1, x2, y} {
			if <-c.done; c.err != nil {
				t.Fatal(c.err)
			}
		}
		if !x1.created || x2.created || !y.created {
			t.Fatalf("created: x %v, x again %v, y %v", x1.created, x2.created, y.created)
		}
		if x1.d.JobID == 0 || !reflect.DeepEqual(x1.d, x2.d) {
			t.Fatalf("the resend's answer %+v differs from the first's %+v", x2.d, x1.d)
		}
		if got := env.get(x1.d.ID); got.JobID != x1.d.JobID || got.RequestUUID != x1.n.RequestUUID {
			t.Fatalf("stored %+v", got)
		}
		if rows, jobs := storedDeliveries(t, env.db), storedJobs(t, env.db); len(rows) != 3 || len(jobs) != 3 {
			t.Fatalf("%d deliveries, %d jobs; want 3 of each", len(rows), len(jobs))
		}
	})
}

// A caller whose context ends before its request is taken into a
// transaction gets ErrUnavailable, and its delivery is never written; a
// caller whose request was taken waits for the commit.
func TestEnqueueCallerGivesUp(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		env := newTestEnv(t, b, noStart)
		firstCtx, cancelFirst := context.WithCancel(context.Background())
		defer cancelFirst()
		first, release := stall(t, env, firstCtx)

		ended, cancel := context.WithCancel(context.Background())
		cancel()
		before := env.newDelivery("cancelled-before", "")
		if _, _, err := env.e.Enqueue(ended, before); !errors.Is(err, store.ErrUnavailable) || !errors.Is(err, context.Canceled) {
			t.Fatalf("enqueue with a cancelled context: %v", err)
		}
		waitingCtx, cancelWaiting := context.WithCancel(context.Background())
		waiting := queueUp(t, env, waitingCtx, env.newDelivery("cancelled-waiting", ""))
		cancelWaiting()
		if <-waiting.done; !errors.Is(waiting.err, store.ErrUnavailable) || !errors.Is(waiting.err, context.Canceled) {
			t.Fatalf("enqueue cancelled in the queue: %v", waiting.err)
		}
		expiring, cancelExpiring := context.WithTimeout(context.Background(), time.Millisecond)
		defer cancelExpiring()
		expired := goEnqueue(expiring, nil, env.e, env.newDelivery("expired", ""))
		if <-expired.done; !errors.Is(expired.err, store.ErrUnavailable) || !errors.Is(expired.err, context.DeadlineExceeded) {
			t.Fatalf("enqueue past its deadline: %v", expired.err)
		}
		if b.name == store.DriverPostgres {
			cancelFirst() // taken (its INSERT waits for the lock): it must wait for the outcome
		}
		release()
		if <-first.done; first.err != nil || !first.created {
			t.Fatalf("the taken request: created=%v %v", first.created, first.err)
		}
		rows := storedDeliveries(t, env.db)
		if len(rows) != 1 || rows[first.n.IdempotencyKey].id != first.d.ID {
			t.Fatalf("stored %v, want only %s", rows, first.n.IdempotencyKey)
		}
		if len(storedJobs(t, env.db)) != 1 {
			t.Fatal("a River job was written for a request given up")
		}
		again, created, err := env.e.Enqueue(context.Background(), waiting.n)
		if err != nil || !created || again.RequestUUID != waiting.n.RequestUUID {
			t.Fatalf("the abandoned delivery enqueued again: created=%v %v", created, err)
		}
	})
}

// A statement failing inside a shared transaction fails only its own
// request: the group is rolled back and run again one by one, and the
// others (a repeated key included) are answered as if never grouped.
func TestEnqueueGroupFallsBackOneByOne(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		env := newTestEnv(t, b, noStart)
		rejectKey(t, env.db, "evt-poison")
		first, release := stall(t, env, context.Background())
		ctx := context.Background()
		good1 := queueUp(t, env, ctx, env.newDelivery("good1", ""))
		poison := queueUp(t, env, ctx, env.newDelivery("poison", ""))
		good2 := queueUp(t, env, ctx, env.newDelivery("good2", ""))
		again := queueUp(t, env, ctx, env.newDelivery("good1", ""))
		good3 := queueUp(t, env, ctx, env.newDelivery("good3", ""))
		release()
		for _, c := range []*enqueueCall{first, good1, good2, good3} {
			if <-c.done; c.err != nil || !c.created || c.d.JobID == 0 {
				t.Fatalf("%s: created=%v %v %+v", c.n.IdempotencyKey, c.created, c.err, c.d)
			}
		}
		if <-poison.done; !errors.Is(poison.err, store.ErrUnavailable) {
			t.Fatalf("poisoned request: %v", poison.err)
		}
		if <-again.done; again.err != nil || again.created || again.d.ID != good1.d.ID || again.d.JobID != good1.d.JobID {
			t.Fatalf("repeated key: created=%v %v %+v", again.created, again.err, again.d)
		}
		rows, jobs := storedDeliveries(t, env.db), storedJobs(t, env.db)
		if _, ok := rows["evt-poison"]; ok || len(rows) != 4 || len(jobs) != 4 {
			t.Fatalf("stored %v and %d jobs, want 4 deliveries without the poisoned one", rows, len(jobs))
		}
		for _, c := range []*enqueueCall{first, good1, good2, good3} {
			if r := rows[c.n.IdempotencyKey]; r.id != c.d.ID || r.jobID != c.d.JobID || !jobs[r.jobID] {
				t.Fatalf("%s: stored %+v, answered %+v", c.n.IdempotencyKey, r, c.d)
			}
		}
	})
}

// enqueueCall is one Enqueue call running in its own goroutine.
type enqueueCall struct {
	n       NewDelivery
	d       Delivery
	created bool
	err     error
	done    chan struct{}
}

// goEnqueue calls e.Enqueue(ctx, n) in a goroutine, once gate (if not
// nil) is closed.
func goEnqueue(ctx context.Context, gate <-chan struct{}, e *Engine, n NewDelivery) *enqueueCall {
	c := &enqueueCall{n: n, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		if gate != nil {
			<-gate
		}
		c.d, c.created, c.err = e.Enqueue(ctx, n)
	}()
	return c
}

// queueUp starts Enqueue(ctx, n) while the enqueuer is stalled and returns
// once the request waits in the queue, so requests queued one after the
// other are taken in that order, into one group.
func queueUp(t *testing.T, env *testEnv, ctx context.Context, n NewDelivery) *enqueueCall {
	t.Helper()
	_, before := enqueuerState(env.e)
	c := goEnqueue(ctx, nil, env.e, n)
	env.waitFor("request queued", 10*time.Second, func() bool {
		_, waiting := enqueuerState(env.e)
		return waiting == before+1
	})
	return c
}

// enqueuerState tells whether the enqueuer's goroutine runs and how many
// requests wait for it.
func enqueuerState(e *Engine) (running bool, waiting int) {
	e.enq.mu.Lock()
	defer e.enq.mu.Unlock()
	return e.enq.running, len(e.enq.queue)
}

// stall holds env's store so that group transactions cannot proceed (on
// SQLite the handle's only connection, so BEGIN waits; on PostgreSQL an
// exclusive lock on gongbao_deliveries, so the first INSERT waits), then
// enqueues a first delivery with ctx and returns once a group has taken it
// from the queue: later requests wait in the queue until release.
func stall(t *testing.T, env *testEnv, ctx context.Context) (first *enqueueCall, release func()) {
	t.Helper()
	bg := context.Background()
	var unlock func()
	if env.db.SQL != nil {
		conn, err := env.db.SQL.Conn(bg)
		if err != nil {
			t.Fatal(err)
		}
		unlock = func() { conn.Close() }
	} else {
		tx, err := env.db.Pool.Begin(bg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(bg, `LOCK TABLE gongbao_deliveries IN EXCLUSIVE MODE`); err != nil {
			t.Fatal(err)
		}
		unlock = func() { tx.Rollback(bg) } //nolint:errcheck
	}
	var once atomic.Bool
	release = func() {
		if once.CompareAndSwap(false, true) {
			unlock()
		}
	}
	t.Cleanup(release)
	first = goEnqueue(ctx, nil, env.e, env.newDelivery("first", ""))
	env.waitFor("first request taken", 10*time.Second, func() bool {
		running, waiting := enqueuerState(env.e)
		return running && waiting == 0
	})
	if env.db.Pool != nil {
		// Its INSERT waits for the lock: it is in a transaction.
		env.waitFor("first INSERT waiting", 10*time.Second, func() bool {
			var n int
			err := env.db.Pool.QueryRow(bg, `SELECT COUNT(*) FROM pg_locks
				WHERE NOT granted AND relation = 'gongbao_deliveries'::regclass`).Scan(&n)
			return err == nil && n > 0
		})
	}
	return first, release
}

// rejectKey makes the store refuse to insert the delivery with
// idempotency key key, as a constraint would.
func rejectKey(t *testing.T, db *store.DB, key string) {
	t.Helper()
	ctx := context.Background()
	var err error
	if db.SQL != nil {
		_, err = db.SQL.ExecContext(ctx, `CREATE TRIGGER gb_reject BEFORE INSERT ON gongbao_deliveries
			WHEN NEW.idempotency_key = '`+key+`'
			BEGIN SELECT RAISE(ABORT, 'rejected (test)'); END`)
	} else {
		_, err = db.Pool.Exec(ctx, `CREATE FUNCTION gb_reject() RETURNS trigger LANGUAGE plpgsql AS
			$$ BEGIN IF NEW.idempotency_key = '`+key+`' THEN RAISE EXCEPTION 'rejected (test)'; END IF;
			RETURN NEW; END $$`)
		if err == nil {
			_, err = db.Pool.Exec(ctx, `CREATE TRIGGER gb_reject BEFORE INSERT ON gongbao_deliveries
				FOR EACH ROW EXECUTE FUNCTION gb_reject()`)
		}
	}
	if err != nil {
		t.Fatal(err)
	}
}

type storedRow struct{ id, jobID int64 }

// storedDeliveries reads every delivery's id and job id by idempotency key.
func storedDeliveries(t *testing.T, db *store.DB) map[string]storedRow {
	t.Helper()
	run, err := db.Runner()
	if err != nil {
		t.Fatal(err)
	}
	rows, err := run.Query(context.Background(), `SELECT idempotency_key, id, job_id FROM gongbao_deliveries`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]storedRow{}
	for rows.Next() {
		var (
			key string
			r   storedRow
		)
		if err := rows.Scan(&key, &r.id, &r.jobID); err != nil {
			t.Fatal(err)
		}
		out[key] = r
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// storedJobs reads the ids of the delivery jobs in River's table.
func storedJobs(t *testing.T, db *store.DB) map[int64]bool {
	t.Helper()
	run, err := db.Runner()
	if err != nil {
		t.Fatal(err)
	}
	rows, err := run.Query(context.Background(), `SELECT id FROM river_job WHERE kind = $1`, jobKind)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[int64]bool{}
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		out[id] = true
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// BenchmarkEnqueueConcurrent measures Enqueue from ~64 concurrent callers
// (an unstarted engine: nothing is sent), on an SQLite file and, when
// GONGBAO_TEST_POSTGRES is set, on PostgreSQL. Run it with a fixed count,
// e.g. -benchtime 3000x: the rate depends on how many callers share a
// transaction, not on b.N.
func BenchmarkEnqueueConcurrent(b *testing.B) {
	b.Run(store.DriverSQLite, func(b *testing.B) { benchEnqueue(b, openSQLite) })
	b.Run(store.DriverPostgres, func(b *testing.B) {
		if os.Getenv("GONGBAO_TEST_POSTGRES") == "" {
			b.Skip("set GONGBAO_TEST_POSTGRES to measure PostgreSQL")
		}
		benchEnqueue(b, openPostgres)
	})
}

func benchEnqueue(b *testing.B, open func(testing.TB) *store.DB) {
	e, err := New(context.Background(), Config{
		Store:  open(b),
		Policy: func() *Policy { return &Policy{Keys: []string{testKey}} },
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		b.Fatal(err)
	}
	ns := make([]NewDelivery, b.N)
	for i := range ns {
		ns[i] = benchDelivery(fmt.Sprint("bench", i))
	}
	var next atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			n := ns[next.Add(1)-1]
			if _, created, err := e.Enqueue(context.Background(), n); err != nil || !created {
				b.Errorf("enqueue: created=%v %v", created, err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "enqueues/s")
}

// benchDelivery is a signed callback that is never sent.
func benchDelivery(key string) NewDelivery {
	uuid := protocol.NewUUID()
	return NewDelivery{
		Event: "policy-paid", Callback: "queryPolicyRequest", ReplyRoot: "queryPolicyResponse",
		URL: "http://127.0.0.1:9/queryPolicyRequest", RequestUUID: uuid, IdempotencyKey: "evt-" + key,
		Body: protocol.BuildRequest("queryPolicyRequest", uuid, []protocol.Element{
			{Name: "policyNo", Text: "P-" + key},
			{Name: "payType", Text: "3"},
		}, testKey),
	}
}
