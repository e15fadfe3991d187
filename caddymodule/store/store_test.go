package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// TestSQLiteReadOnlyFile: a store file that cannot be written refuses
// every write with ErrUnavailable and keeps no partial record, while
// reads (replays) keep working.
func TestSQLiteReadOnlyFile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "gongbao.db")
	db, err := Open(ctx, Config{Path: path})
	must(t, err)
	s := newIdem(t, db)
	tok := acquire(t, s, "done", fpA, t0)
	must(t, s.Complete(ctx, scope, "done", tok, sampleReply(), t0))
	must(t, db.Close())
	must(t, os.Chmod(path, 0o444))

	if os.Geteuid() != 0 {
		// The ordinary path: Open on a file the process may not write.
		ro, err := Open(ctx, Config{Path: path})
		if err == nil {
			rs, err2 := NewIdempotency(ctx, ro)
			if err2 == nil {
				_, _, _, err = rs.Begin(ctx, scope, "new", fpA, t0, lease, false)
			} else {
				err = err2
			}
			ro.Close()
		}
		wantErr(t, err, ErrUnavailable)
	} else {
		t.Log("running as root, which file modes do not bind: the read-only file is opened with mode=ro")
	}

	// The same file opened read-only (what a read-only mount gives).
	sqlDB, err := sql.Open("sqlite", sqliteDSN(path, url.Values{"mode": {"ro"}}))
	must(t, err)
	sqlDB.SetMaxOpenConns(1)
	ro := &DB{Driver: DriverSQLite, SQL: sqlDB}
	defer ro.Close()
	rs, err := NewIdempotency(ctx, ro) // migrations applied: only reads
	must(t, err)
	_, _, _, err = rs.Begin(ctx, scope, "new", fpA, t0, lease, false)
	wantErr(t, err, ErrUnavailable)
	_, err = rs.Get(ctx, scope, "new")
	wantErr(t, err, ErrNotFound)
	_, err = rs.Purge(ctx, t0.Add(time.Hour))
	wantErr(t, err, ErrUnavailable)

	must(t, os.Chmod(path, 0o644))
	rw, err := Open(ctx, Config{Path: path})
	must(t, err)
	defer rw.Close()
	s = newIdem(t, rw)
	if _, err := s.Get(ctx, scope, "new"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a refused Begin left a record: %v", err)
	}
	out, _, _ := begin(t, s, "done", fpA, t0.Add(time.Hour), false)
	wantOutcome(t, out, Replay)
}

// TestSQLiteDiskFull: when the database cannot grow (SQLITE_FULL, here
// simulated with max_page_count), writes fail with ErrUnavailable and
// leave no partial record.
func TestSQLiteDiskFull(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, Config{Path: filepath.Join(t.TempDir(), "gongbao.db")})
	must(t, err)
	defer db.Close()
	s := newIdem(t, db)
	tok := acquire(t, s, "k1", fpA, t0)

	var pages int64
	must(t, db.SQL.QueryRowContext(ctx, `PRAGMA page_count`).Scan(&pages))
	if _, err := db.SQL.ExecContext(ctx, fmt.Sprintf(`PRAGMA max_page_count = %d`, pages)); err != nil {
		t.Fatal(err)
	}
	big := []byte(strings.Repeat("<x>满</x>", 20000)) // needs overflow pages
	wantErr(t, s.Complete(ctx, scope, "k1", tok, big, t0), ErrUnavailable)
	if rec := get(t, s, "k1"); rec.State != StateInProgress || rec.Reply != nil {
		t.Fatalf("record after a failed Complete: %s", recordString(rec))
	}
	_, _, _, err = s.Begin(ctx, scope, "k2", strings.Repeat("f", 100000), t0, lease, false)
	wantErr(t, err, ErrUnavailable)
	_, err = s.Get(ctx, scope, "k2")
	wantErr(t, err, ErrNotFound)

	// Space comes back: the owner can finish.
	if _, err := db.SQL.ExecContext(ctx, `PRAGMA max_page_count = 1073741823`); err != nil {
		t.Fatal(err)
	}
	must(t, s.Complete(ctx, scope, "k1", tok, big, t0))
}

// TestPostgresUnreachable: a PostgreSQL that does not answer makes every
// call fail with ErrUnavailable. It needs no server.
func TestPostgresUnreachable(t *testing.T) {
	ctx := context.Background()
	_, err := Open(ctx, Config{Driver: DriverPostgres, DSN: "postgres://root@127.0.0.1:1/test?sslmode=disable&connect_timeout=2"})
	wantErr(t, err, ErrUnavailable)

	// A pool that was fine and lost its server: pgxpool connects lazily.
	pool, err := pgxpool.New(ctx, "postgres://root@127.0.0.1:1/test?sslmode=disable&connect_timeout=2")
	must(t, err)
	db := &DB{Driver: DriverPostgres, Schema: "public", Pool: pool}
	defer db.Close()
	_, err = NewIdempotency(ctx, db)
	wantErr(t, err, ErrUnavailable)
	s := &Idempotency{db: db}
	_, _, _, err = s.Begin(ctx, scope, "k1", fpA, t0, lease, false)
	wantErr(t, err, ErrUnavailable)
	wantErr(t, s.Complete(ctx, scope, "k1", "tok", []byte("r"), t0), ErrUnavailable)
}

// TestPostgresSchemaIsolation: two schemas on one database keep separate
// records (tests, or two sidecars for two platforms).
func TestPostgresSchemaIsolation(t *testing.T) {
	a := newIdem(t, postgresFresh(t)())
	b := newIdem(t, postgresFresh(t)())
	acquire(t, a, "k1", fpA, t0)
	out, _, _ := begin(t, b, "k1", fpB, t0, false)
	wantOutcome(t, out, Acquired)
}

// TestPostgresPurgeSparesRecordTakenOver: a released record that another
// instance is re-acquiring while Purge runs must survive Purge, which
// waits for the row lock and then sees the record in progress.
func TestPostgresPurgeSparesRecordTakenOver(t *testing.T) {
	ctx := context.Background()
	db := postgresFresh(t)()
	s := newIdem(t, db)
	tok := acquire(t, s, "k1", fpA, t0)
	must(t, s.Release(ctx, scope, "k1", tok, t0))

	// Begin's locked path, paused before its commit.
	tx, err := db.Pool.Begin(ctx)
	must(t, err)
	defer tx.Rollback(ctx) //nolint:errcheck
	q := pgQuerier{tx}
	_, err = scanRecord(q.QueryRow(ctx, sqlGet+db.forUpdate(), scope, "k1"))
	must(t, err)
	_, err = q.Exec(ctx, sqlAcquire, scope, "k1", fpA, "second-owner", t0.Add(time.Hour+lease), t0.Add(time.Hour))
	must(t, err)
	var pid int
	must(t, tx.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid))

	type result struct {
		n   int64
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := s.Purge(ctx, t0.Add(time.Minute))
		done <- result{n, err}
	}()
	// Poll until Purge is blocked on our row lock (a condition, not a delay).
	deadline := time.Now().Add(10 * time.Second)
	for {
		var waiting int
		must(t, db.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))`, pid).Scan(&waiting))
		if waiting > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Purge never waited for the row lock")
		}
		time.Sleep(time.Millisecond)
	}
	must(t, tx.Commit(ctx))
	r := <-done
	if r.err != nil || r.n != 0 {
		t.Fatalf("Purge = %d, %v; want 0 (the record was taken over)", r.n, r.err)
	}
	if rec := get(t, s, "k1"); rec.State != StateInProgress || rec.Attempts != 2 {
		t.Fatalf("record after the purge race: %s", recordString(rec))
	}
}

func TestOpenRefusesBadConfig(t *testing.T) {
	ctx := context.Background()
	for _, cfg := range []Config{
		{Driver: "mysql"},
		{Driver: DriverSQLite},
		{Driver: DriverPostgres},
		{Driver: DriverPostgres, DSN: "postgres://user:s3cret@[::1"},
	} {
		_, err := Open(ctx, cfg)
		if err == nil {
			t.Errorf("Open(%+v) succeeded", cfg)
			continue
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("Open error echoes the password: %v", err)
		}
	}
}

// BenchmarkBeginComplete is the store's cost per inbound request: a new
// key acquired, then completed with a typical reply.
func BenchmarkBeginComplete(b *testing.B) {
	reply := sampleReply()
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			s := newIdem(b, be.fresh(b)())
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				key := fmt.Sprintf("bench-%d", i)
				out, _, tok, err := s.Begin(ctx, scope, key, fpA, t0, lease, true)
				if err != nil || out != Acquired {
					b.Fatal(out, err)
				}
				if err := s.Complete(ctx, scope, key, tok, reply, t0); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
		})
	}
}

// BenchmarkBeginReplay is the cost of answering a resend from the store.
func BenchmarkBeginReplay(b *testing.B) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			s := newIdem(b, be.fresh(b)())
			ctx := context.Background()
			tok := acquire(b, s, "k1", fpA, t0)
			must(b, s.Complete(ctx, scope, "k1", tok, sampleReply(), t0))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if out, _, _, err := s.Begin(ctx, scope, "k1", fpA, t0, lease, true); err != nil || out != Replay {
					b.Fatal(out, err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
		})
	}
}

// BenchmarkBeginCompleteParallel is BenchmarkBeginComplete with concurrent
// requests (GOMAXPROCS×4 goroutines), where PostgreSQL can group commits
// and SQLite serialises on its one connection.
func BenchmarkBeginCompleteParallel(b *testing.B) {
	reply := sampleReply()
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			s := newIdem(b, be.fresh(b)())
			ctx := context.Background()
			var next atomic.Int64
			b.ReportAllocs()
			b.SetParallelism(4)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					key := fmt.Sprintf("bench-%d", next.Add(1))
					out, _, tok, err := s.Begin(ctx, scope, key, fpA, t0, lease, true)
					if err != nil || out != Acquired {
						b.Error(out, err)
						return
					}
					if err := s.Complete(ctx, scope, key, tok, reply, t0); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
		})
	}
}
