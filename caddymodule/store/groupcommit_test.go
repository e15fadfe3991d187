package store

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// groupDB opens a fresh SQLite store with a table for the tests below.
func groupDB(t *testing.T) (*DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "group.db")
	db, err := Open(context.Background(), Config{Path: path})
	must(t, err)
	t.Cleanup(func() { db.Close() })
	_, err = db.SQL.Exec(`CREATE TABLE g (k TEXT PRIMARY KEY, v INTEGER NOT NULL)`)
	must(t, err)
	return db, path
}

func groupExec(t *testing.T, db *DB, ctx context.Context, query string, args ...any) (int64, error) {
	t.Helper()
	w, err := db.Writer()
	must(t, err)
	return w.Exec(ctx, query, args...)
}

// holdConnection takes the handle's only connection, so the committer
// waits in BEGIN while the test queues writes behind it.
func holdConnection(t *testing.T, db *DB) (release func()) {
	t.Helper()
	conn, err := db.SQL.Conn(context.Background())
	must(t, err)
	return func() { conn.Close() }
}

// waitForConnectionWaiter waits until someone (the committer, with its
// current batch) has started waiting for the handle's connection since
// the count was before.
func waitForConnectionWaiter(t *testing.T, db *DB, before int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for db.SQL.Stats().WaitCount == before {
		if time.Now().After(deadline) {
			t.Fatal("the committer never waited for the connection")
		}
		time.Sleep(time.Millisecond)
	}
}

// waitQueued waits until n writes sit in the committer's queue.
func waitQueued(t *testing.T, db *DB, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(db.committer().queue) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d writes queued, want %d", len(db.committer().queue), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func countRows(t *testing.T, path string) int {
	t.Helper()
	db, err := Open(context.Background(), Config{Path: path})
	must(t, err)
	defer db.Close()
	var n int
	must(t, db.SQL.QueryRow(`SELECT count(*) FROM g`).Scan(&n))
	return n
}

// TestGroupCommitEachCallerGetsItsOwnResult: concurrent writers share
// commits, yet each sees exactly its own statement's effect, and every
// acknowledged write is in the file when it is opened again.
func TestGroupCommitEachCallerGetsItsOwnResult(t *testing.T) {
	db, path := groupDB(t)
	ctx := context.Background()
	const writers = 200
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for i := range writers {
		wg.Go(func() {
			k := fmt.Sprintf("k%03d", i)
			if n, err := groupExec(t, db, ctx, `INSERT INTO g (k, v) VALUES ($1, $2)`, k, i); err != nil || n != 1 {
				errs <- fmt.Errorf("insert %s: n=%d err=%v", k, n, err)
				return
			}
			// Matches its own row only; a neighbour's row is never counted.
			if n, err := groupExec(t, db, ctx, `UPDATE g SET v = v + 1 WHERE k = $1`, k); err != nil || n != 1 {
				errs <- fmt.Errorf("update %s: n=%d err=%v", k, n, err)
			}
			if n, err := groupExec(t, db, ctx, `UPDATE g SET v = 0 WHERE k = $1`, k+"-absent"); err != nil || n != 0 {
				errs <- fmt.Errorf("update of an absent row %s: n=%d err=%v", k, n, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	must(t, db.Close())
	if n := countRows(t, path); n != writers {
		t.Fatalf("%d rows on disk, want %d", n, writers)
	}
}

// TestGroupCommitFailureStaysWithItsCaller: one statement of a shared
// transaction fails; its caller gets the error, the others' writes still
// land, each exactly once.
func TestGroupCommitFailureStaysWithItsCaller(t *testing.T) {
	db, path := groupDB(t)
	ctx := context.Background()
	_, err := groupExec(t, db, ctx, `INSERT INTO g (k, v) VALUES ('taken', 1)`)
	must(t, err)

	release := holdConnection(t, db)
	// The first write is the committer's current batch, waiting in BEGIN;
	// the next ones queue up and make one shared batch after it.
	type result struct {
		k   string
		n   int64
		err error
	}
	results := make(chan result, 6)
	submit := func(k string) {
		go func() {
			n, err := groupExec(t, db, ctx, `INSERT INTO g (k, v) VALUES ($1, 1)`, k)
			results <- result{k, n, err}
		}()
	}
	waits := db.SQL.Stats().WaitCount
	submit("first")
	waitForConnectionWaiter(t, db, waits)
	for _, k := range []string{"a", "b", "taken", "c", "d"} {
		submit(k)
	}
	waitQueued(t, db, 5)
	release()

	for range 6 {
		r := <-results
		switch {
		case r.k == "taken" && r.err == nil:
			t.Errorf("duplicate key accepted (n=%d)", r.n)
		case r.k == "taken" && !errors.Is(r.err, ErrUnavailable):
			t.Errorf("duplicate key: %v, want an ErrUnavailable-wrapped driver error", r.err)
		case r.k != "taken" && (r.err != nil || r.n != 1):
			t.Errorf("%s: n=%d err=%v", r.k, r.n, r.err)
		}
	}
	must(t, db.Close())
	if n := countRows(t, path); n != 6 { // taken, first, a, b, c, d
		t.Fatalf("%d rows on disk, want 6", n)
	}
}

// TestGroupCommitAbandonedWriteNeverRuns: a caller that gives up before
// its write is taken into a transaction gets ErrUnavailable, and the write
// never happens — the caller's answer is what is on disk.
func TestGroupCommitAbandonedWriteNeverRuns(t *testing.T) {
	db, path := groupDB(t)
	release := holdConnection(t, db)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := groupExec(t, db, ctx, `INSERT INTO g (k, v) VALUES ('late', 1)`)
	wantErr(t, err, ErrUnavailable)
	release()

	// The committer goes on with later writes.
	n, err := groupExec(t, db, context.Background(), `INSERT INTO g (k, v) VALUES ('next', 1)`)
	if err != nil || n != 1 {
		t.Fatalf("write after an abandoned one: n=%d err=%v", n, err)
	}
	must(t, db.Close())
	if n := countRows(t, path); n != 1 {
		t.Fatalf("%d rows on disk, want 1 (the abandoned write ran)", n)
	}
}

// TestGroupCommitAfterClose: a closed handle refuses writes clearly.
func TestGroupCommitAfterClose(t *testing.T) {
	db, _ := groupDB(t)
	_, err := groupExec(t, db, context.Background(), `INSERT INTO g (k, v) VALUES ('x', 1)`)
	must(t, err)
	must(t, db.Close())
	if _, err := db.Writer(); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Writer on a closed handle: %v", err)
	}
}
