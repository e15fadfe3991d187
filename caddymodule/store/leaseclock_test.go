package store

import (
	"context"
	"testing"
	"time"
)

// TestLeasesOnDatabaseClock: two instances on one PostgreSQL store whose
// machine clocks disagree by an hour either way. With DatabaseClock the
// lease one writes is judged by the other on the database's clock: a
// fast machine cannot take over a live request, a slow one does take over
// an expired one, and the sweep and an operator's resolve see the same
// lease. SQLite keeps the caller's clock.
func TestLeasesOnDatabaseClock(t *testing.T) {
	const skew = time.Hour
	ctx := context.Background()
	open := postgresFresh(t)
	a, b := newIdem(t, open()), newIdem(t, open())
	a.DatabaseClock, b.DatabaseClock = true, true
	const short = 2 * time.Second

	// a, its clock an hour slow, takes the request with a short lease.
	out, rec, _, err := a.Begin(ctx, scope, "k1", fpA, time.Now().Add(-skew), short, true)
	if err != nil || out != Acquired {
		t.Fatalf("a: %v %v", out, err)
	}
	if d := time.Until(rec.LeaseUntil); d < short-time.Second || d > short+time.Second {
		t.Fatalf("lease_until %v is %s from the database's now, want about %s", rec.LeaseUntil, d, short)
	}
	// b, its clock an hour fast, sees a live lease: in flight, not taken.
	for _, now := range []time.Time{time.Now().Add(skew), time.Now().Add(-skew)} {
		if out, _, _, err := b.Begin(ctx, scope, "k1", fpA, now, short, true); err != nil || out != InFlight {
			t.Fatalf("b at local %v: %v %v, want in_flight", now, out, err)
		}
	}
	if n, err := b.ExpireLeases(ctx, time.Now().Add(skew)); err != nil || n != 0 {
		t.Fatalf("sweep from a fast clock expired %d (%v), want 0", n, err)
	}
	if _, err := b.Resolve(ctx, scope, "k1", Resolution{State: StateReleased}, time.Now().Add(skew)); err == nil {
		t.Fatal("a fast clock resolved a live request")
	}
	// Wait on a fast clock waits for the real lease, not a skewed one.
	b.Now = func() time.Time { return time.Now().Add(skew) }
	waitCtx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	rec, err = b.Wait(waitCtx, scope, "k1", time.Now().Add(skew).Add(100*time.Millisecond))
	cancel()
	if err != nil || rec.State != StateInProgress {
		t.Fatalf("wait: %+v %v", rec, err)
	}

	// Once the lease is over on the database's clock, b on a slow clock
	// takes over (unknown outcome, retried).
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		out, rec, _, err = b.Begin(ctx, scope, "k1", fpA, time.Now().Add(-skew), short, true)
		if err != nil {
			t.Fatal(err)
		}
		if out == Acquired {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("b never took over the expired lease: %v", out)
		}
		<-tick.C
	}
	if rec.Attempts != 2 {
		t.Fatalf("attempts %d, want 2", rec.Attempts)
	}
}

// TestLeasesOnLocalClockSQLite: on SQLite DatabaseClock changes nothing;
// the caller's time is the lease clock (one machine).
func TestLeasesOnLocalClockSQLite(t *testing.T) {
	ctx := context.Background()
	s := newIdem(t, sqliteFresh(t)())
	s.DatabaseClock = true
	if out, _, _, err := s.Begin(ctx, scope, "k1", fpA, t0, lease, true); err != nil || out != Acquired {
		t.Fatalf("%v %v", out, err)
	}
	if out, _, _, err := s.Begin(ctx, scope, "k1", fpA, t0.Add(lease), lease, true); err != nil || out != Acquired {
		t.Fatalf("after the lease on the caller's clock: %v %v, want acquired", out, err)
	}
}
