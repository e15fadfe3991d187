package delivery

import (
	"context"
	"testing"
	"time"

	"github.com/caddy-gongbao/gongbao/caddymodule/store"
)

// TestRestartReclaimsRunningAttempts: on the embedded store, the engine of
// a process that reopens the file after a crash makes the jobs left
// running retryable at once — due 10 s after their interrupted attempt
// began, never sooner — instead of waiting minutes for River's rescuer.
func TestRestartReclaimsRunningAttempts(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t, backend{name: store.DriverSQLite, open: openSQLite, migrated: openMigratedSQLite}, noStart)
	ctx := context.Background()
	var path string
	if err := env.db.SQL.QueryRowContext(ctx, `SELECT file FROM pragma_database_list WHERE name = 'main'`).Scan(&path); err != nil {
		t.Fatal(err)
	}
	recent := env.enqueue(env.newDelivery("recent", ""))
	old := env.enqueue(env.newDelivery("old", ""))
	began := time.Now().Add(-3 * time.Second).UTC().Round(time.Millisecond)
	for _, j := range []struct {
		id int64
		at string
	}{{recent.JobID, riverTime(began)}, {old.JobID, riverTime(began.Add(-10 * time.Minute))}} {
		if _, err := env.db.SQL.ExecContext(ctx, `UPDATE river_job SET state = 'running', attempt = 1,
			attempted_at = $1, attempted_by = json_array('killed-process') WHERE id = $2`, j.at, j.id); err != nil {
			t.Fatal(err)
		}
	}
	if err := env.db.Close(); err != nil { // the process is gone
		t.Fatal(err)
	}

	db, err := store.Open(ctx, store.Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	cfg := env.cfg
	cfg.Store, cfg.Clock = db, SystemClock()
	restartedAt := time.Now()
	e, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if e.Reclaimed() != 2 {
		t.Fatalf("reclaimed %d running jobs, want 2", e.Reclaimed())
	}
	due := func(id int64) time.Time {
		var state string
		var at store.Time
		if err := db.SQL.QueryRowContext(ctx, `SELECT state, scheduled_at FROM river_job WHERE id = $1`, id).Scan(&state, &at); err != nil {
			t.Fatal(err)
		}
		if state != "retryable" {
			t.Fatalf("job %d is %s after restart, want retryable", id, state)
		}
		return at.T
	}
	if got, want := due(recent.JobID), began.Add(MinGap+reclaimMargin); got.Before(want) || got.After(want.Add(10*time.Millisecond)) {
		t.Errorf("interrupted attempt began %s: due %s, want %s (10 s and a margin after it began)", began, got, want)
	}
	if got := due(old.JobID); got.Before(restartedAt.Add(-time.Millisecond)) || got.After(time.Now()) {
		t.Errorf("attempt interrupted 10 min ago: due %s, want the restart (%s)", got, restartedAt)
	}

	env.e, env.db = e, db
	env.start(e)
	d := env.waitState(old.ID, StateDelivered, 30*time.Second)
	t.Logf("attempt interrupted long ago delivered %s after the restart", d.DeliveredAt.Sub(restartedAt).Round(time.Millisecond))
	if d.AttemptCount != 1 {
		t.Errorf("delivered after %d attempts, want 1", d.AttemptCount)
	}
	d = env.waitState(recent.ID, StateDelivered, 30*time.Second)
	// The restarted engine runs on the wall clock: its times are wall times.
	if n := len(env.plat.receipts(recent.RequestUUID)); n != 1 || d.DeliveredAt.Before(began.Add(MinGap)) {
		t.Errorf("recent attempt re-sent %d times, delivered %s after it began, want once, ≥ 10 s", n, d.DeliveredAt.Sub(began))
	}
	t.Logf("attempt interrupted 3 s before the restart delivered %s after it began", d.DeliveredAt.Sub(began).Round(time.Millisecond))
}
