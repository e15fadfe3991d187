package store

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestContentClaimConformance: BeginUnique refuses signed content that
// another requestUUID already holds, on every backend alike.
func TestContentClaimConformance(t *testing.T) {
	cases := []struct {
		name string
		run  func(t *testing.T, open func() *DB)
	}{
		{"NewKeySameContentRefused", testContentNewKeyRefused},
		{"InProgressAndUnknownHoldContent", testContentHeldWhileUnresolved},
		{"ReleasedDoesNotHold", testContentReleasedDoesNotHold},
		{"OutsideWindowAccepted", testContentOutsideWindow},
		{"TakeOverRefusedWhenAnotherKeyHolds", testContentTakeOverRefused},
		{"SameKeyStillReplays", testContentSameKeyReplays},
		{"ConcurrentNewKeysOneAcquired", testContentConcurrentNewKeys},
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) { c.run(t, b.fresh(t)) })
			}
		})
	}
}

// window is the content window used by these tests: an hour before t0.
var window = t0.Add(-time.Hour)

func beginUnique(t testing.TB, s *Idempotency, key, fp string, now, since time.Time, retry bool) (Outcome, Record, string) {
	t.Helper()
	out, rec, token, err := s.BeginUnique(context.Background(), scope, key, fp, now, lease, retry, since)
	if err != nil {
		t.Fatalf("BeginUnique(%s): %v", key, err)
	}
	return out, rec, token
}

func testContentNewKeyRefused(t *testing.T, open func() *DB) {
	s := newIdem(t, open())
	_, _, tok := beginUnique(t, s, "uuid-1", fpA, t0, window, true)
	must(t, s.Complete(context.Background(), scope, "uuid-1", tok, []byte("<reply/>"), t0))
	out, rec, tok2 := beginUnique(t, s, "uuid-2", fpA, t0.Add(time.Second), window, true)
	if out != ContentReplay || rec.Key != "uuid-1" || tok2 != "" {
		t.Fatalf("same content under a new key: got %v holder %q token %q, want content_replay holder uuid-1", out, rec.Key, tok2)
	}
	if _, err := s.Get(context.Background(), scope, "uuid-2"); err != ErrNotFound {
		t.Fatalf("a refused content replay must write nothing, Get: %v", err)
	}
	// Other content under a new key is unaffected.
	if out, _, _ := beginUnique(t, s, "uuid-3", fpB, t0, window, true); out != Acquired {
		t.Fatalf("other content: %v, want acquired", out)
	}
}

func testContentHeldWhileUnresolved(t *testing.T, open func() *DB) {
	s := newIdem(t, open())
	beginUnique(t, s, "uuid-1", fpA, t0, window, true)
	if out, _, _ := beginUnique(t, s, "uuid-2", fpA, t0, window, true); out != ContentReplay {
		t.Fatalf("while the first is in progress: %v, want content_replay", out)
	}
	_, _, tok := beginUnique(t, s, "uuid-3", fpB, t0, window, true)
	must(t, s.MarkUnknown(context.Background(), scope, "uuid-3", tok, "timeout", t0))
	if out, _, _ := beginUnique(t, s, "uuid-4", fpB, t0, window, true); out != ContentReplay {
		t.Fatalf("while the first is unknown: %v, want content_replay", out)
	}
}

func testContentReleasedDoesNotHold(t *testing.T, open func() *DB) {
	s := newIdem(t, open())
	_, _, tok := beginUnique(t, s, "uuid-1", fpA, t0, window, true)
	must(t, s.Release(context.Background(), scope, "uuid-1", tok, t0))
	if out, _, _ := beginUnique(t, s, "uuid-2", fpA, t0, window, true); out != Acquired {
		t.Fatalf("the core never acted on the first: %v, want acquired", out)
	}
}

func testContentOutsideWindow(t *testing.T, open func() *DB) {
	s := newIdem(t, open())
	_, _, tok := beginUnique(t, s, "uuid-1", fpA, t0, window, true)
	must(t, s.Complete(context.Background(), scope, "uuid-1", tok, []byte("<reply/>"), t0))
	later := t0.Add(3 * time.Hour)
	if out, _, _ := beginUnique(t, s, "uuid-2", fpA, later, later.Add(-time.Hour), true); out != Acquired {
		t.Fatalf("first is outside the window: %v, want acquired", out)
	}
	// Begin (no content claim) never refuses content.
	if out, _, _ := begin(t, s, "uuid-3", fpA, later, true); out != Acquired {
		t.Fatalf("Begin without a content window: %v, want acquired", out)
	}
}

// testContentTakeOverRefused: uuid-1 released, uuid-2 then completed with
// the same content; a resend of uuid-1 must not take its record over and
// call the core a second time.
func testContentTakeOverRefused(t *testing.T, open func() *DB) {
	s := newIdem(t, open())
	ctx := context.Background()
	_, _, tok := beginUnique(t, s, "uuid-1", fpA, t0, window, true)
	must(t, s.Release(ctx, scope, "uuid-1", tok, t0))
	_, _, tok2 := beginUnique(t, s, "uuid-2", fpA, t0.Add(time.Second), window, true)
	must(t, s.Complete(ctx, scope, "uuid-2", tok2, []byte("<reply/>"), t0.Add(time.Second)))
	out, rec, _ := beginUnique(t, s, "uuid-1", fpA, t0.Add(2*time.Second), window, true)
	if out != ContentReplay || rec.Key != "uuid-2" {
		t.Fatalf("resend of the released key: %v holder %q, want content_replay holder uuid-2", out, rec.Key)
	}
	if got, _ := s.Get(ctx, scope, "uuid-1"); got.State != StateReleased {
		t.Fatalf("the released record changed: %s", got.State)
	}
}

func testContentSameKeyReplays(t *testing.T, open func() *DB) {
	s := newIdem(t, open())
	_, _, tok := beginUnique(t, s, "uuid-1", fpA, t0, window, true)
	must(t, s.Complete(context.Background(), scope, "uuid-1", tok, []byte("<reply/>"), t0))
	out, rec, _ := beginUnique(t, s, "uuid-1", fpA, t0, window, true)
	if out != Replay || string(rec.Reply) != "<reply/>" {
		t.Fatalf("resend under the same key: %v, want replay", out)
	}
}

// testContentConcurrentNewKeys: many new keys with one content at once,
// on several handles (instances): exactly one may call the core.
func testContentConcurrentNewKeys(t *testing.T, open func() *DB) {
	stores := []*Idempotency{newIdem(t, open()), newIdem(t, open()), newIdem(t, open())}
	var acquired, refused atomic.Int32
	var wg sync.WaitGroup
	for i := range 24 {
		wg.Go(func() {
			s := stores[i%len(stores)]
			out, _, _, err := s.BeginUnique(context.Background(), scope, fmt.Sprintf("uuid-%d", i), fpA, t0, lease, true, window)
			switch {
			case err != nil:
				t.Errorf("key %d: %v", i, err)
			case out == Acquired:
				acquired.Add(1)
			case out == ContentReplay:
				refused.Add(1)
			default:
				t.Errorf("key %d: %v", i, out)
			}
		})
	}
	wg.Wait()
	if acquired.Load() != 1 || refused.Load() != 23 {
		t.Fatalf("acquired %d, refused %d; want 1 and 23", acquired.Load(), refused.Load())
	}
}
