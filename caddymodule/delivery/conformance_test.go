package delivery

// The conformance suite: every test runs on SQLite and on PostgreSQL
// (skipped with a message when no PostgreSQL is reachable, unless
// GONGBAO_REQUIRE_POSTGRES=1). Schedule time runs testFactor times faster
// than the wall; every assertion about time is made in schedule time.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-gongbao/gongbao/caddymodule/protocol"
	"github.com/caddy-gongbao/gongbao/caddymodule/store"
)

func TestDeliversOne(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		env := newTestEnv(t, b)
		n := env.newDelivery("one", "")
		d := env.enqueue(n)
		if d.ID == 0 || d.JobID == 0 || d.State != StatePending || !bytes.Equal(d.Body, n.Body) {
			t.Fatalf("enqueued: %+v", d)
		}
		got := env.waitState(d.ID, StateDelivered, 20*time.Second)
		if len(got.Attempts) != 1 || got.Attempts[0].Outcome != OutcomeAccepted || got.Attempts[0].HTTPStatus != 200 {
			t.Fatalf("attempts: %+v", got.Attempts)
		}
		if got.DeliveredAt == nil || got.DeadAt != nil || got.LastError != "" || got.AttemptCount != 1 {
			t.Fatalf("delivered row: %+v", got)
		}
		if !bytes.Contains(got.Attempts[0].Reply, []byte("queryPolicyResponse")) {
			t.Fatalf("reply not stored: %q", got.Attempts[0].Reply)
		}
		bodies := env.plat.bodiesOf(n.RequestUUID)
		if len(bodies) != 1 || !bytes.Equal(bodies[0], n.Body) {
			t.Fatalf("platform got %d bodies", len(bodies))
		}
	})
}

// A backlog of deliveries (1,000 on PostgreSQL, 300 on SQLite): all
// delivered, each exactly once under its own requestUUID, every signature
// verified by the platform, 20 workers claiming side by side. The backlog
// is enqueued first, by concurrent callers as a busy handler would (one
// caller's enqueue is what most other tests do; this one shares group
// transactions), then drained; the test logs both rates.
//
// SQLite has one writer, so its workers contend on one lock whatever the
// backlog: 300 already gives each worker fifteen claims against the
// others, and 1,000 cost the suite about 50 s of -race CPU without
// checking anything more. Larger SQLite backlogs are drained, each
// callback verified, by the benchmark (50,000; e2e/cmd/gongbao-bench).
func TestBacklogDeliveredExactlyOnce(t *testing.T) {
	forEachBackendFirst(t, func(t *testing.T, b backend) {
		n, callers := 1000, 20
		if b.name == "sqlite" {
			n = 300
		}
		env := newTestEnv(t, b, noStart, withWorkers(20))
		deliveries := make([]NewDelivery, n)
		uuids := make(map[string]bool, n)
		for i := range deliveries {
			deliveries[i] = env.newDelivery(fmt.Sprint(i), "")
			uuids[deliveries[i].RequestUUID] = true
		}
		start := time.Now()
		enqueueConcurrently(t, env.e, deliveries, callers)
		enqueued := time.Since(start)
		start = time.Now()
		env.start(env.e)
		// Stats counts every row: read it rarely, not to slow the drain.
		env.waitForEvery(fmt.Sprintf("%d deliveries", n), 150*time.Second, 200*time.Millisecond, func() bool { return env.stats().Delivered == int64(n) })
		drained := time.Since(start)
		s := env.stats()
		if s.Pending != 0 || s.Dead != 0 || s.OldestPendingSince != nil {
			t.Fatalf("stats: %+v", s)
		}
		env.plat.mu.Lock()
		defer env.plat.mu.Unlock()
		if len(env.plat.received) != n {
			t.Fatalf("platform saw %d requestUUIDs, want %d", len(env.plat.received), n)
		}
		for uuid, r := range env.plat.received {
			if !uuids[uuid] {
				t.Fatalf("unknown requestUUID %s", uuid)
			}
			if len(r) != 1 {
				t.Errorf("requestUUID %s received %d times", uuid, len(r))
			}
		}
		t.Logf("%s: enqueue %.0f/s (%d callers), delivery %.0f/s (%d deliveries, 20 workers, other tests running alongside; TestThroughputFigures measures alone)",
			b.name, float64(n)/enqueued.Seconds(), callers, float64(n)/drained.Seconds(), n)
	})
}

// enqueueConcurrently enqueues every delivery from callers goroutines and
// fails t unless each was created.
func enqueueConcurrently(t *testing.T, e *Engine, deliveries []NewDelivery, callers int) {
	t.Helper()
	var wg sync.WaitGroup
	for c := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := c; i < len(deliveries); i += callers {
				_, created, err := e.Enqueue(context.Background(), deliveries[i])
				if err != nil || !created {
					t.Errorf("enqueue %s: created=%v, %v", deliveries[i].IdempotencyKey, created, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
}

// The platform is down for six schedule hours: no dead letter, every gap
// between two attempts at least the schedule's step (so ≥ 10 s), and all
// delivered on recovery.
func TestPlatformDownSixHours(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		env := newTestEnv(t, b)
		recovery := env.clock.Now().Add(6 * time.Hour)
		env.plat.setDecide(func(_ *protocol.Envelope, at time.Time) reply {
			if at.Before(recovery) {
				return replyDown
			}
			return replyAccept
		})
		var ds []Delivery
		var ns []NewDelivery
		for i := range 5 {
			n := env.newDelivery(fmt.Sprint("down", i), "")
			ns = append(ns, n)
			ds = append(ds, env.enqueue(n))
		}
		for i, d := range ds {
			got := env.waitState(d.ID, StateDelivered, 30*time.Second)
			if got.DeadAt != nil {
				t.Fatalf("delivery %d was dead-lettered", d.ID)
			}
			r := env.plat.receipts(ns[i].RequestUUID)
			// How many attempts fit in six hours depends on the machine's
			// load (each attempt costs wall time, i.e. minutes of schedule
			// time); that they were spaced by the schedule does not.
			if len(r) < 2 || len(r) != got.AttemptCount || len(got.Attempts) != len(r) {
				t.Fatalf("delivery %d: %d receipts, %d attempts recorded", d.ID, len(r), got.AttemptCount)
			}
			if r[len(r)-2].After(recovery) || r[len(r)-1].Before(recovery) {
				t.Fatalf("delivery %d: last failure at %s, success at %s, recovery at %s", d.ID, r[len(r)-2], r[len(r)-1], recovery)
			}
			for k := 1; k < len(r); k++ {
				gap, want := r[k].Sub(r[k-1]), Backoff(k, 0)
				if gap < want || gap < MinGap {
					t.Errorf("delivery %d: gap %d is %s, want ≥ %s", d.ID, k, gap, want)
				}
			}
			for k, a := range got.Attempts[:len(r)-1] {
				if a.Outcome != OutcomeFailed || a.HTTPStatus != 503 || a.Error != "platform answered HTTP 503" {
					t.Fatalf("attempt %d: %+v", k+1, a)
				}
			}
			if !allSame(env.plat.bodiesOf(ns[i].RequestUUID), ns[i].Body) {
				t.Fatalf("delivery %d: bodies differ between attempts", d.ID)
			}
		}
	})
}

func allSame(bodies [][]byte, want []byte) bool {
	for _, b := range bodies {
		if !bytes.Equal(b, want) {
			return false
		}
	}
	return len(bodies) > 0
}

// Beyond the deadline a delivery is dead with the last error; an operator
// retry delivers it with the same requestUUID and the same bytes.
func TestDeadlineThenOperatorRetry(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		env := newTestEnv(t, b, withDeadline(3*time.Hour))
		env.plat.setDecide(func(*protocol.Envelope, time.Time) reply { return replyDown })
		n := env.newDelivery("late", "")
		d := env.enqueue(n)
		dead := env.waitState(d.ID, StateDead, 30*time.Second)
		if dead.DeadAt == nil || dead.DeadAt.Before(d.DeadlineAt) {
			t.Fatalf("dead at %v, deadline %s", dead.DeadAt, d.DeadlineAt)
		}
		if dead.LastError != "platform answered HTTP 503" {
			t.Fatalf("last error %q", dead.LastError)
		}
		r := env.plat.receipts(n.RequestUUID)
		// Only the final attempt may start at or after the deadline (the
		// last wait is aimed at it; an attempt begun just before it and
		// failing after it is final too).
		if len(r) != dead.AttemptCount {
			t.Fatalf("%d receipts, %d attempts", len(r), dead.AttemptCount)
		}
		for k, at := range r[:len(r)-1] {
			if !at.Before(d.DeadlineAt) {
				t.Fatalf("attempt %d at %s, after the deadline %s, was not final", k+1, at, d.DeadlineAt)
			}
		}
		// The last wait was cut short to land on the deadline, still ≥ 10 s.
		for k := 1; k < len(r); k++ {
			if gap := r[k].Sub(r[k-1]); gap < MinGap {
				t.Errorf("gap %d is %s", k, gap)
			}
		}
		list, next, err := env.e.List(context.Background(), ListOptions{State: StateDead})
		if err != nil || len(list) != 1 || list[0].ID != d.ID || next != 0 || list[0].Body != nil {
			t.Fatalf("dead list: %+v %d %v", list, next, err)
		}

		if _, err := env.e.Retry(context.Background(), d.ID+100); !errors.Is(err, ErrNotFound) {
			t.Fatalf("retry of unknown: %v", err)
		}
		env.plat.setDecide(func(*protocol.Envelope, time.Time) reply { return replyAccept })
		retried, err := env.e.Retry(context.Background(), d.ID)
		if err != nil {
			t.Fatal(err)
		}
		// Retry reads the delivery back after its commit, and the running
		// engine (on a scaled clock) may already have sent it by then: any
		// state but dead, under a new job and a new pending_since.
		if retried.State == StateDead || retried.JobID == dead.JobID || !retried.PendingSince.After(d.PendingSince) {
			t.Fatalf("retried: state %s, job %d (dead: %d), pending since %s (first: %s)",
				retried.State, retried.JobID, dead.JobID, retried.PendingSince, d.PendingSince)
		}
		if _, err := env.e.Retry(context.Background(), d.ID); !errors.Is(err, ErrNotDead) {
			t.Fatalf("second retry: %v", err)
		}
		got := env.waitState(d.ID, StateDelivered, 20*time.Second)
		bodies := env.plat.bodiesOf(n.RequestUUID)
		if len(bodies) != got.AttemptCount || !allSame(bodies, n.Body) {
			t.Fatalf("%d bodies for %d attempts, identical=%v", len(bodies), got.AttemptCount, allSame(bodies, n.Body))
		}
		if got.RequestUUID != n.RequestUUID || !bytes.Equal(got.Body, n.Body) {
			t.Fatal("stored request changed")
		}
		for _, a := range got.Attempts {
			if a.RequestSHA256 != got.Attempts[0].RequestSHA256 {
				t.Fatal("attempts sent different bytes")
			}
		}
	})
}

// Under refusal dead_letter, resultFlag=false is a dead letter carrying the
// platform's message at once; other deliveries are unaffected.
func TestRefusedIsDead(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		env := newTestEnv(t, b, withPolicy(func(p *Policy) { p.Refusal = RefusalDeadLetter }))
		bad := env.newDelivery("refused", "")
		env.plat.setDecide(func(e *protocol.Envelope, _ time.Time) reply {
			if e.RequestUUID == bad.RequestUUID {
				return replyRefuse
			}
			return replyAccept
		})
		var others []Delivery
		others = append(others, env.enqueue(env.newDelivery("before", "")))
		d := env.enqueue(bad)
		others = append(others, env.enqueue(env.newDelivery("after", "")))
		dead := env.waitState(d.ID, StateDead, 20*time.Second)
		if dead.AttemptCount != 1 || !strings.Contains(dead.LastError, refuseMessage) {
			t.Fatalf("dead: %d attempts, error %q", dead.AttemptCount, dead.LastError)
		}
		if a := dead.Attempts[0]; a.Outcome != OutcomeRefused || a.Error != dead.LastError {
			t.Fatalf("attempt: %+v", a)
		}
		for _, o := range others {
			env.waitState(o.ID, StateDelivered, 20*time.Second)
		}
		if s := env.stats(); s.Dead != 1 || s.Delivered != 2 || s.Pending != 0 {
			t.Fatalf("stats %+v", s)
		}
	})
}

// Under reply_signature required, a reply with a bad signature, a malformed
// reply, or one signed with a key not (yet) configured, is retried, never
// taken for success or refusal.
func TestBadRepliesRetried(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		env := newTestEnv(t, b, withPolicy(func(p *Policy) {
			p.Keys, p.ReplySignature = []string{"some-other-key"}, SignatureRequired
		}))
		var seen int
		env.plat.setDecide(func(*protocol.Envelope, time.Time) reply {
			seen++ // under the platform's lock
			switch seen {
			case 1:
				return replyBadSign
			case 2:
				return replyMalformed
			case 3:
				// Signed with a key this attempt does not know; a config
				// reload adds it, for the next attempt (the policy is read
				// once per attempt).
				env.setPolicy(func(p *Policy) { p.Keys = []string{"some-other-key", testKey} })
				return replyAccept
			default:
				return replyAccept
			}
		})
		d := env.enqueue(env.newDelivery("badsign", ""))
		got := env.waitState(d.ID, StateDelivered, 20*time.Second)
		if len(got.Attempts) != 4 {
			t.Fatalf("%d attempts: %+v", len(got.Attempts), got.Attempts)
		}
		wantErr := []string{"reply signature does not verify", "malformed reply", "reply signature does not verify"}
		for i, w := range wantErr {
			if a := got.Attempts[i]; a.Outcome != OutcomeFailed || !strings.Contains(a.Error, w) {
				t.Errorf("attempt %d: %s %q, want failed %q", i+1, a.Outcome, a.Error, w)
			}
		}
		if a := got.Attempts[3]; a.Outcome != OutcomeAccepted {
			t.Errorf("attempt 4: %+v", a)
		}
	})
}

// The same event posted three times (concurrently, too) is one delivery.
func TestIdempotentEnqueue(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		env := newTestEnv(t, b)
		first := env.newDelivery("same", "")
		d, created, err := env.e.Enqueue(context.Background(), first)
		if err != nil || !created {
			t.Fatalf("first: %v %v", created, err)
		}
		var wg sync.WaitGroup
		for range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				again := env.newDelivery("same", "") // a re-mapped resend: new requestUUID
				d2, created, err := env.e.Enqueue(context.Background(), again)
				if err != nil || created || d2.ID != d.ID || d2.RequestUUID != first.RequestUUID || !bytes.Equal(d2.Body, first.Body) {
					t.Errorf("resend: created=%v err=%v %+v", created, err, d2)
				}
			}()
		}
		wg.Wait()
		// Concurrent first posts of one event: exactly one wins.
		var created2, ids sync.Map
		for i := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				d, created, err := env.e.Enqueue(context.Background(), env.newDelivery("race", ""))
				if err != nil {
					t.Error(err)
					return
				}
				ids.Store(d.ID, true)
				if created {
					created2.Store(i, true)
				}
			}()
		}
		wg.Wait()
		if n, m := syncLen(&created2), syncLen(&ids); n != 1 || m != 1 {
			t.Fatalf("concurrent first posts: %d created, %d ids", n, m)
		}
		env.waitFor("two delivered", 20*time.Second, func() bool { return env.stats().Delivered == 2 })
		if s := env.stats(); s.Pending+s.Dead != 0 {
			t.Fatalf("stats %+v", s)
		}
		env.plat.mu.Lock()
		defer env.plat.mu.Unlock()
		if len(env.plat.received) != 2 {
			t.Fatalf("platform saw %d requestUUIDs", len(env.plat.received))
		}
	})
}

// A store that cannot take the write fails Enqueue with an error wrapping
// store.ErrUnavailable and leaves nothing behind: the delivery row is
// written first, so a failing job insert proves they share the transaction.
func TestStoreUnwritable(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		env := newTestEnv(t, b, noStart)
		ctx := context.Background()
		failJobs(t, env.db)
		_, _, err := env.e.Enqueue(ctx, env.newDelivery("lost", ""))
		if !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("enqueue with failing job insert: %v", err)
		}
		if s := env.stats(); s.Pending+s.Delivered+s.Dead != 0 {
			t.Fatalf("half-written: %+v", s)
		}
		if l, _, err := env.e.List(ctx, ListOptions{}); err != nil || len(l) != 0 {
			t.Fatalf("list: %v %v", l, err)
		}

		env.db.Close()
		_, _, err = env.e.Enqueue(ctx, env.newDelivery("closed", ""))
		if !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("enqueue on a closed store: %v", err)
		}
		if _, err := env.e.Stats(ctx); !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("stats on a closed store: %v", err)
		}
	})
}

// failJobs makes every River job insert fail, as a full disk would.
func failJobs(t *testing.T, db *store.DB) {
	t.Helper()
	ctx := context.Background()
	var err error
	if db.SQL != nil {
		_, err = db.SQL.ExecContext(ctx, `CREATE TRIGGER gb_fail_jobs BEFORE INSERT ON river_job
			BEGIN SELECT RAISE(ABORT, 'disk full (test)'); END`)
	} else {
		_, err = db.Pool.Exec(ctx, `CREATE FUNCTION gb_fail_jobs() RETURNS trigger LANGUAGE plpgsql AS
			$$ BEGIN RAISE EXCEPTION 'disk full (test)'; END $$`)
		if err == nil {
			_, err = db.Pool.Exec(ctx, `CREATE TRIGGER gb_fail_jobs BEFORE INSERT ON river_job
				FOR EACH ROW EXECUTE FUNCTION gb_fail_jobs()`)
		}
	}
	if err != nil {
		t.Fatal(err)
	}
}

// Per-policy order: a delivery is not attempted while an earlier one with
// the same order key is pending; waiting spends no attempt; delivered or
// dead predecessors do not block; other keys are not held up.
func TestOrdering(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		// Refusals are dead letters here, to see that a dead predecessor
		// does not block.
		env := newTestEnv(t, b, withPolicy(func(p *Policy) { p.Refusal = RefusalDeadLetter }))
		paid := env.newDelivery("paid", "P1")
		invoice := env.newDelivery("invoice", "P1")
		surrender := env.newDelivery("surrender", "P1")
		other := env.newDelivery("other", "P2")
		refusedFirst := env.newDelivery("q-paid", "P3")
		afterRefused := env.newDelivery("q-invoice", "P3")
		// The first event of P1 fails until the platform has seen P2's
		// event, and at least three times (10 s + 30 s + 1 m).
		fails := 0
		env.plat.setDecide(func(e *protocol.Envelope, _ time.Time) reply { // under the platform's lock
			switch e.RequestUUID {
			case paid.RequestUUID:
				if fails < 3 || len(env.plat.received[other.RequestUUID]) == 0 {
					fails++
					return replyDown
				}
			case refusedFirst.RequestUUID:
				return replyRefuse
			}
			return replyAccept
		})
		dPaid := env.enqueue(paid)
		dInv := env.enqueue(invoice)
		dSur := env.enqueue(surrender)
		dOther := env.enqueue(other)
		env.enqueue(refusedFirst)
		dAfter := env.enqueue(afterRefused)

		env.waitState(dOther.ID, StateDelivered, 20*time.Second)
		env.waitState(dAfter.ID, StateDelivered, 20*time.Second)
		env.waitState(dSur.ID, StateDelivered, 20*time.Second)
		if got := env.get(dPaid.ID); got.State != StateDelivered || got.AttemptCount < 4 {
			t.Fatalf("paid: %s after %d attempts", got.State, got.AttemptCount)
		}
		for _, id := range []int64{dInv.ID, dSur.ID} {
			if got := env.get(id); got.AttemptCount != 1 {
				t.Fatalf("delivery %d: %d attempts (waiting must not spend attempts)", id, got.AttemptCount)
			}
		}
		pr := env.plat.receipts(paid.RequestUUID)
		ir := env.plat.receipts(invoice.RequestUUID)
		sr := env.plat.receipts(surrender.RequestUUID)
		or := env.plat.receipts(other.RequestUUID)
		if len(ir) != 1 || len(sr) != 1 || !ir[0].After(pr[len(pr)-1]) || !sr[0].After(ir[0]) {
			t.Fatalf("order: paid %v, invoice %v, surrender %v", pr, ir, sr)
		}
		if !or[0].Before(pr[len(pr)-1]) {
			t.Fatalf("another policy's delivery waited for P1: %v vs %v", or, pr)
		}
	})
}

// Stop in the middle of an attempt: the attempt is cancelled, recorded
// without counting as a failure, and a new engine on the same store
// delivers the same bytes.
func TestStopMidAttemptThenRestart(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		env := newTestEnv(t, b, noStart)
		hold := make(chan struct{})
		entered := make(chan struct{}, 1)
		var once sync.Once
		env.plat.setBefore(func(w http.ResponseWriter, r *http.Request) bool {
			first := false
			once.Do(func() { first = true })
			if !first {
				return false
			}
			entered <- struct{}{}
			select {
			case <-hold:
			case <-r.Context().Done():
			}
			return true
		})
		defer close(hold)
		n := env.newDelivery("stop", "")
		d := env.enqueue(n)
		if err := env.e.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		<-entered
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		err := env.e.Stop(ctx) // soft stop times out, then in-flight attempts are cancelled
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		got := env.get(d.ID)
		if got.State != StatePending || got.AttemptCount != 1 || !strings.Contains(got.LastError, "interrupted") {
			t.Fatalf("after stop: %+v", got)
		}
		if err := env.e.Stop(context.Background()); err != nil {
			t.Fatalf("second stop: %v", err)
		}
		e2 := env.newEngine()
		env.start(e2)
		got = env.waitState(d.ID, StateDelivered, 20*time.Second)
		if got.AttemptCount != 2 || !allSame(env.plat.bodiesOf(n.RequestUUID), n.Body) {
			t.Fatalf("after restart: %d attempts", got.AttemptCount)
		}
	})
}

// One started engine per store handle; Start twice fails; Stop then Start
// works.
func TestStartGuards(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		env := newTestEnv(t, b)
		ctx := context.Background()
		if err := env.e.Start(ctx); !errors.Is(err, ErrAlreadyStarted) {
			t.Fatalf("second Start: %v", err)
		}
		other := env.newEngine()
		if err := other.Start(ctx); !errors.Is(err, ErrAlreadyStarted) {
			t.Fatalf("second engine on the handle: %v", err)
		}
		if err := env.e.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		if err := other.Start(ctx); err != nil {
			t.Fatalf("start after the first stopped: %v", err)
		}
		d := env.enqueue(env.newDelivery("guard", ""))
		env.waitState(d.ID, StateDelivered, 20*time.Second)
		if err := other.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		if err := env.e.Start(ctx); err != nil {
			t.Fatalf("restart: %v", err)
		}
		d = env.enqueue(env.newDelivery("guard2", ""))
		env.waitState(d.ID, StateDelivered, 20*time.Second)
	})
}

// List pages by id with a cursor and filters by state; Stats dates the
// oldest pending delivery; New is idempotent on an existing store.
func TestListAndStats(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		env := newTestEnv(t, b, noStart)
		ctx := context.Background()
		var ids []int64
		for i := range 7 {
			ids = append(ids, env.enqueue(env.newDelivery(fmt.Sprint("l", i), "")).ID)
		}
		var seen []int64
		after := int64(0)
		for {
			page, next, err := env.e.List(ctx, ListOptions{State: StatePending, Limit: 3, After: after})
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range page {
				seen = append(seen, d.ID)
			}
			if next == 0 {
				break
			}
			after = next
		}
		if fmt.Sprint(seen) != fmt.Sprint(ids) {
			t.Fatalf("paged %v, want %v", seen, ids)
		}
		if l, _, err := env.e.List(ctx, ListOptions{State: StateDelivered}); err != nil || len(l) != 0 {
			t.Fatalf("delivered list: %v %v", l, err)
		}
		if _, _, err := env.e.List(ctx, ListOptions{State: "bogus"}); !errors.Is(err, ErrInvalid) {
			t.Fatalf("bogus state: %v", err)
		}
		first := env.get(ids[0])
		s := env.stats()
		if s.Pending != 7 || s.OldestPendingSince == nil || !s.OldestPendingSince.Equal(first.PendingSince) || s.OldestPendingAge <= 0 {
			t.Fatalf("stats %+v, first pending since %s", s, first.PendingSince)
		}
		if _, err := env.e.Get(ctx, 999999); !errors.Is(err, ErrNotFound) {
			t.Fatalf("get unknown: %v", err)
		}
		if _, err := New(ctx, env.cfg); err != nil {
			t.Fatalf("New on a migrated store: %v", err)
		}
		if _, _, err := env.e.Enqueue(ctx, NewDelivery{URL: "ftp://x", RequestUUID: "u", Body: []byte("x")}); !errors.Is(err, ErrInvalid) {
			t.Fatalf("bad URL: %v", err)
		}
	})
}

func syncLen(m *sync.Map) int {
	n := 0
	m.Range(func(any, any) bool { n++; return true })
	return n
}

// A process that died mid-attempt leaves its River job "running". The next
// engine's rescuer takes it back within minutes (here: at once, the job
// having been stuck for ten) and the delivery goes out, same bytes.
func TestCrashedAttemptRescued(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		env := newTestEnv(t, b, noStart)
		n := env.newDelivery("crash", "")
		d := env.enqueue(n)
		ctx := context.Background()
		var err error
		if env.db.SQL != nil {
			_, err = env.db.SQL.ExecContext(ctx, `UPDATE river_job SET state = 'running', attempt = 1,
				attempted_at = strftime('%Y-%m-%d %H:%M:%f', 'now', '-10 minutes'),
				attempted_by = json_array('crashed-process') WHERE id = $1`, d.JobID)
		} else {
			_, err = env.db.Pool.Exec(ctx, `UPDATE river_job SET state = 'running', attempt = 1,
				attempted_at = now() - interval '10 minutes',
				attempted_by = ARRAY['crashed-process'] WHERE id = $1`, d.JobID)
		}
		if err != nil {
			t.Fatal(err)
		}
		env.start(env.e)
		got := env.waitState(d.ID, StateDelivered, 30*time.Second)
		if got.AttemptCount != 1 || !allSame(env.plat.bodiesOf(n.RequestUUID), n.Body) {
			t.Fatalf("after rescue: %d attempts", got.AttemptCount)
		}
	})
}

// TestFind: the journal finds a callback by its requestUUID and a policy's
// callbacks by order key, each with its body and attempts.
func TestFind(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		env := newTestEnv(t, b)
		first := env.enqueue(env.newDelivery("find-1", "P-1"))
		second := env.enqueue(env.newDelivery("find-2", "P-1"))
		other := env.enqueue(env.newDelivery("find-3", "P-2"))
		for _, d := range []Delivery{first, second, other} {
			env.waitState(d.ID, StateDelivered, 20*time.Second)
		}
		ctx := context.Background()
		byPolicy, err := env.e.Find(ctx, FindOptions{OrderKey: "P-1"})
		if err != nil || len(byPolicy) != 2 || byPolicy[0].ID != first.ID || byPolicy[1].ID != second.ID {
			t.Fatalf("by order key: %v %+v", err, byPolicy)
		}
		if len(byPolicy[0].Attempts) != 1 || !bytes.Equal(byPolicy[0].Body, first.Body) {
			t.Errorf("found delivery lacks its body or attempts: %+v", byPolicy[0])
		}
		byUUID, err := env.e.Find(ctx, FindOptions{RequestUUID: other.RequestUUID})
		if err != nil || len(byUUID) != 1 || byUUID[0].ID != other.ID {
			t.Fatalf("by requestUUID: %v %+v", err, byUUID)
		}
		if _, err := env.e.Find(ctx, FindOptions{}); !errors.Is(err, ErrInvalid) {
			t.Errorf("an empty find: %v, want ErrInvalid", err)
		}
	})
}
