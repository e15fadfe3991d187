package store

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestReclaimAtStartup: a handle that takes the SQLite file's lock finds
// the records a dead process left in progress and makes them unknown at
// once, so a resend follows the unknown_outcome policy without waiting for
// the lease; a second handle of the same process (a reload) reclaims
// nothing.
func TestReclaimAtStartup(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "gongbao.db")
	open := func() *DB {
		db, err := Open(ctx, Config{Path: path})
		must(t, err)
		t.Cleanup(func() { db.Close() })
		return db
	}
	first := open()
	if !first.OwnsFile() {
		t.Fatal("the first handle does not own the file")
	}
	s := newIdem(t, first)
	acquire(t, s, "mid-call", fpA, t0)
	done := acquire(t, s, "done", fpA+"2", t0)
	must(t, s.Complete(ctx, scope, "done", done, sampleReply(), t0))
	must(t, first.Close()) // the process is gone; its lease (an hour) runs

	db := open()
	s2 := newIdem(t, db)
	if s2.Reclaimed() != 1 {
		t.Errorf("reclaimed %d records, want 1", s2.Reclaimed())
	}
	rec := get(t, s2, "mid-call")
	if rec.State != StateUnknown || rec.Note != noteOwnerRestarted || !rec.LeaseUntil.IsZero() {
		t.Fatalf("record left in progress, after restart: %s", recordString(rec))
	}
	if rec := get(t, s2, "done"); rec.State != StateCompleted {
		t.Fatalf("completed record after restart: %s", recordString(rec))
	}
	// hold: 处理中 until an operator decides; retry: the core is called again.
	if out, _, _ := begin(t, s2, "mid-call", fpA, t0.Add(time.Second), false); out != Held {
		t.Errorf("resend with hold: %s, want held", out)
	}
	if out, _, _ := begin(t, s2, "mid-call", fpA, t0.Add(time.Second), true); out != Acquired {
		t.Errorf("resend with retry: %s, want acquired", out)
	}

	// A second handle in the same process shares the lock and the owner's
	// records stay as they are.
	acquire(t, s2, "live", fpA+"3", t0)
	other := open()
	if other.OwnsFile() {
		t.Error("a second handle in the process claims to own the file")
	}
	s3 := newIdem(t, other)
	if s3.Reclaimed() != 0 || get(t, s3, "live").State != StateInProgress {
		t.Errorf("a second handle reclaimed the live owner's record: %s", recordString(get(t, s3, "live")))
	}
	// Migrating again on the owning handle does not reclaim twice.
	if s4 := newIdem(t, db); s4.Reclaimed() != 0 || get(t, s4, "live").State != StateInProgress {
		t.Error("a second NewIdempotency on the owning handle reclaimed a live record")
	}
}

// TestSettleWritesJournalInSameCommit: the journal entry given to Settle
// is durable when Settle returns, on both backends, under concurrent
// settlements (SQLite: one group commit for many), and even when the
// token lost the record.
func TestSettleWritesJournalInSameCommit(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			open := b.fresh(t)
			db := open()
			s := newIdem(t, db)
			j, err := NewJournal(ctx, db)
			must(t, err)
			const n = 40
			tokens := make([]string, n)
			for i := range n {
				tokens[i] = acquire(t, s, fmt.Sprintf("k%d", i), fmt.Sprintf("fp%d", i), t0)
			}
			var wg sync.WaitGroup
			errs := make([]error, n)
			for i := range n {
				wg.Go(func() {
					key := fmt.Sprintf("k%d", i)
					e := &JournalEntry{At: t0, Message: "insureRequest", RequestUUID: key, Outcome: "ok",
						ReplyXML: []byte("<r>" + key + "</r>"), CoreReply: []byte(`{"ok":true}`)}
					st := Settlement{State: StateCompleted, Reply: []byte("<r>" + key + "</r>"), Journal: e}
					switch i % 3 {
					case 1:
						st = Settlement{State: StateReleased, Journal: e}
					case 2:
						st = Settlement{State: StateUnknown, Note: "timeout", Journal: e}
					}
					errs[i] = s.Settle(ctx, scope, key, tokens[i], st, t0)
				})
			}
			wg.Wait()
			// Another handle (another instance, or the process after a
			// restart) reads every entry.
			j2, err := NewJournal(ctx, open())
			must(t, err)
			for i := range n {
				must(t, errs[i])
				key := fmt.Sprintf("k%d", i)
				got, err := j2.Find(ctx, JournalQuery{RequestUUID: key})
				must(t, err)
				if len(got) != 1 || string(got[0].ReplyXML) != "<r>"+key+"</r>" {
					t.Fatalf("journal of %s: %d entries", key, len(got))
				}
			}
			// A stale owner changes nothing, but its exchange is journalled.
			e := &JournalEntry{At: t0, Message: "insureRequest", RequestUUID: "k0", Outcome: "ok"}
			err = s.Settle(ctx, scope, "k0", "stale-token", Settlement{State: StateReleased, Journal: e}, t0)
			wantErr(t, err, ErrNotOwner)
			if rec := get(t, s, "k0"); rec.State != StateCompleted {
				t.Errorf("a stale owner changed the record: %s", recordString(rec))
			}
			if got, _ := j.Find(ctx, JournalQuery{RequestUUID: "k0"}); len(got) != 2 {
				t.Errorf("journal of k0 after a stale settlement: %d entries, want 2", len(got))
			}
		})
	}
}

// TestSecondProcessRefused: while a process holds the SQLite file, Open
// in another process fails at once, naming the file and the owner's pid;
// once the owner is gone (kill -9), the file opens and the new handle owns it.
func TestSecondProcessRefused(t *testing.T) {
	if os.Getenv("GONGBAO_HOLD_STORE") != "" {
		return // the child's side runs in TestMain
	}
	path := filepath.Join(t.TempDir(), "gongbao.db")
	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), "GONGBAO_HOLD_STORE="+path)
	out, err := child.StdoutPipe()
	must(t, err)
	stdin, err := child.StdinPipe() // kept open: the child holds until killed
	must(t, err)
	defer stdin.Close()
	must(t, child.Start())
	t.Cleanup(func() { _ = child.Process.Kill(); _ = child.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "holding") {
		t.Fatalf("the child did not open the store: %q %v", line, err)
	}

	start := time.Now()
	db, err := Open(context.Background(), Config{Path: path})
	took := time.Since(start)
	if err == nil {
		db.Close()
		t.Fatal("a second process opened the store file")
	}
	if !errors.Is(err, ErrInUse) {
		t.Errorf("error is not ErrInUse: %v", err)
	}
	msg := err.Error()
	for _, want := range []string{path, fmt.Sprintf("pid %d", child.Process.Pid)} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not name %q", msg, want)
		}
	}
	if took > time.Second {
		t.Errorf("refusal took %s", took)
	}
	t.Logf("refused in %s: %v", took, err)

	must(t, child.Process.Kill())
	_ = child.Wait()
	db, err = Open(context.Background(), Config{Path: path})
	must(t, err)
	defer db.Close()
	if !db.OwnsFile() {
		t.Error("the handle opened after the owner died does not own the file")
	}
}

// holdStoreIfAsked is the child of TestSecondProcessRefused: it opens the
// store named in GONGBAO_HOLD_STORE, says so, and waits to be killed. The
// child runs no test (-test.run=^$), so TestMain goes on to exit 0; the
// parent reads what the child said.
func holdStoreIfAsked() {
	path := os.Getenv("GONGBAO_HOLD_STORE")
	if path == "" {
		return
	}
	db, err := Open(context.Background(), Config{Path: path})
	if err != nil {
		fmt.Println("error:", err)
		return
	}
	if _, err := NewIdempotency(context.Background(), db); err != nil {
		fmt.Println("error:", err)
		return
	}
	fmt.Println("holding", path)
	_, _ = io.Copy(io.Discard, os.Stdin) // until the parent closes it or kills us
}

func TestMain(m *testing.M) {
	holdStoreIfAsked()
	m.Run() // its status is the test binary's (TestMain may return since Go 1.15)
}
