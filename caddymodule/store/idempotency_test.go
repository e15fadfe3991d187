package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestIdempotencyConformance runs the one conformance suite on every
// backend: SQLite and PostgreSQL must behave identically.
func TestIdempotencyConformance(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { runIdempotencyConformance(t, b.fresh) })
	}
}

// t0 is the injected clock's start: not UTC and not a whole microsecond,
// so the tests see that times are stored as UTC microseconds.
var t0 = time.Date(2025, 3, 1, 9, 30, 0, 123456789, time.FixedZone("CST", 8*3600))

const (
	scope = "gongbao"
	fpA   = "a3f1c0ffee"
	fpB   = "b7d2deadbeef"
	lease = 30 * time.Second
)

// conformanceCases are the behaviours every backend must show. Each gets
// fresh storage through open.
var conformanceCases = []struct {
	name string
	run  func(t *testing.T, open func() *DB)
}{
	{"NewKeyAcquired", testNewKeyAcquired},
	{"TimesAreUTCMicroseconds", testTimesAreUTCMicroseconds},
	{"ScopesAreSeparate", testScopesAreSeparate},
	{"ReplayIsByteIdentical", testReplayIsByteIdentical},
	{"ConflictLeavesCompletedUntouched", testConflictLeavesCompletedUntouched},
	{"ConflictWhileInProgress", testConflictWhileInProgress},
	{"InFlightWhileLeaseRuns", testInFlightWhileLeaseRuns},
	{"ReleaseThenReacquire", testReleaseThenReacquire},
	{"ReleasedTakesNewFingerprint", testReleasedTakesNewFingerprint},
	{"UnknownRetried", testUnknownRetried},
	{"UnknownHeld", testUnknownHeld},
	{"LeaseExpiryBecomesUnknownHeld", testLeaseExpiryBecomesUnknownHeld},
	{"LeaseExpiryRetried", testLeaseExpiryRetried},
	{"LeaseExpiryConflict", testLeaseExpiryConflict},
	{"LateOwnerFinishesUnknown", testLateOwnerFinishesUnknown},
	{"StaleTokenRefused", testStaleTokenRefused},
	{"WaitReturnsWhenCompleted", testWaitReturnsWhenCompleted},
	{"WaitTimesOut", testWaitTimesOut},
	{"WaitStopsAtExpiredLease", testWaitStopsAtExpiredLease},
	{"WaitNotFoundAndCancelled", testWaitNotFoundAndCancelled},
	{"GetNotFound", testGetNotFound},
	{"ListByState", testListByState},
	{"ResolveComplete", testResolveComplete},
	{"ResolveRelease", testResolveRelease},
	{"ResolveRefusesOtherStates", testResolveRefusesOtherStates},
	{"ExpireLeases", testExpireLeases},
	{"PurgeSparesInProgressAndUnknown", testPurgeSparesInProgressAndUnknown},
	{"PurgeInBatches", testPurgeInBatches},
	{"InvalidArguments", testInvalidArguments},
	{"MigrateIsIdempotent", testMigrateIsIdempotent},
	{"ClosedHandleUnavailable", testClosedHandleUnavailable},
	{"ConcurrentBeginOneAcquired", testConcurrentBeginOneAcquired},
	{"ConcurrentBeginAcrossInstances", testConcurrentBeginAcrossInstances},
}

// runIdempotencyConformance is the conformance suite. fresh makes empty
// storage and returns a function opening handles on it.
func runIdempotencyConformance(t *testing.T, fresh func(testing.TB) func() *DB) {
	for _, c := range conformanceCases {
		t.Run(c.name, func(t *testing.T) { c.run(t, fresh(t)) })
	}
}

// ---- helpers ----

func newIdem(t testing.TB, db *DB) *Idempotency {
	t.Helper()
	s, err := NewIdempotency(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func begin(t testing.TB, s *Idempotency, key, fp string, now time.Time, retry bool) (Outcome, Record, string) {
	t.Helper()
	out, rec, token, err := s.Begin(context.Background(), scope, key, fp, now, lease, retry)
	if err != nil {
		t.Fatalf("Begin(%s, %s): %v", key, fp, err)
	}
	if (token != "") != (out == Acquired) {
		t.Fatalf("Begin(%s) = %v with token %q: a token comes with Acquired only", key, out, token)
	}
	return out, rec, token
}

func wantOutcome(t testing.TB, got, want Outcome) {
	t.Helper()
	if got != want {
		t.Fatalf("outcome %v, want %v", got, want)
	}
}

// acquire makes a fresh in_progress record and returns its token.
func acquire(t testing.TB, s *Idempotency, key, fp string, now time.Time) string {
	t.Helper()
	out, _, token := begin(t, s, key, fp, now, false)
	wantOutcome(t, out, Acquired)
	return token
}

func get(t testing.TB, s *Idempotency, key string) Record {
	t.Helper()
	rec, err := s.Get(context.Background(), scope, key)
	if err != nil {
		t.Fatalf("Get(%s): %v", key, err)
	}
	return rec
}

// sameRecord compares records field by field, times as instants.
func sameRecord(t testing.TB, got, want Record) {
	t.Helper()
	if g, w := recordString(got), recordString(want); g != w {
		t.Fatalf("record\n got %s\nwant %s", g, w)
	}
}

func recordString(r Record) string {
	ts := func(x time.Time) string {
		if x.IsZero() {
			return "-"
		}
		return x.UTC().Format(time.RFC3339Nano)
	}
	return fmt.Sprintf("{%s/%s fp=%s %s reply=%q lease=%s attempts=%d created=%s updated=%s note=%q}",
		r.Scope, r.Key, r.Fingerprint, r.State, r.Reply, ts(r.LeaseUntil), r.Attempts,
		ts(r.CreatedAt), ts(r.UpdatedAt), r.Note)
}

func wantErr(t testing.TB, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error %v, want %v", err, target)
	}
}

// sampleReply has every byte value, a UTF-8 BOM-less XML head, Chinese and
// bytes that are not UTF-8: a replay must give back exactly these bytes.
func sampleReply() []byte {
	b := []byte(`<?xml version="1.0" encoding="UTF-8"?><insureResponse><responseHead><requestUUID>u1</requestUUID><sign>ABC</sign></responseHead><responseBody><resultFlag>true</resultFlag><resultMessage>投保成功 &amp; 已受理</resultMessage></responseBody></insureResponse>`)
	for i := range 256 {
		b = append(b, byte(i))
	}
	return append(b, 0xff, 0xfe, 0x00, '\r', '\n')
}

// ---- cases ----

func testNewKeyAcquired(t *testing.T, open func() *DB) {
	s := newIdem(t, open())
	out, rec, token := begin(t, s, "k1", fpA, t0, false)
	wantOutcome(t, out, Acquired)
	if len(token) < 20 {
		t.Fatalf("token %q is too short to be unguessable", token)
	}
	now := t0.UTC().Truncate(time.Microsecond)
	want := Record{
		Scope: scope, Key: "k1", Fingerprint: fpA, State: StateInProgress,
		LeaseUntil: now.Add(lease), Attempts: 1, CreatedAt: now, UpdatedAt: now,
	}
	sameRecord(t, rec, want)
	sameRecord(t, get(t, s, "k1"), want)
}

func testTimesAreUTCMicroseconds(t *testing.T, open func() *DB) {
	s := newIdem(t, open())
	acquire(t, s, "k1", fpA, t0)
	rec := get(t, s, "k1")
	want := t0.UTC().Truncate(time.Microsecond)
	if !rec.CreatedAt.Equal(want) || rec.CreatedAt.Location() != time.UTC {
		t.Fatalf("created_at %v (%v), want %v in UTC", rec.CreatedAt, rec.CreatedAt.Location(), want)
	}
	if !rec.LeaseUntil.Equal(want.Add(lease)) {
		t.Fatalf("lease_until %v, want %v", rec.LeaseUntil, want.Add(lease))
	}
}

func testScopesAreSeparate(t *testing.T, open func() *DB) {
	s := newIdem(t, open())
	acquire(t, s, "k1", fpA, t0)
	out, _, _, err := s.Begin(context.Background(), "other-platform", "k1", fpB, t0, lease, false)
	if err != nil {
		t.Fatal(err)
	}
	wantOutcome(t, out, Acquired)
}

func testReplayIsByteIdentical(t *testing.T, open func() *DB) {
	s := newIdem(t, open())
	ctx := context.Background()
	token := acquire(t, s, "k1", fpA, t0)
	reply := sampleReply()
	if err := s.Complete(ctx, scope, "k1", token, reply, t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	for _, retry := range []bool{false, true} {
		out, rec, _ := begin(t, s, "k1", fpA, t0.Add(time.Hour), retry)
		wantOutcome(t, out, Replay)
		if !bytes.Equal(rec.Reply, reply) {
			t.Fatalf("replayed %d bytes differ from the %d stored", len(rec.Reply), len(reply))
		}
		if rec.State != StateCompleted || rec.Attempts != 1 {
			t.Fatalf("replayed record %s", recordString(rec))
		}
	}
	if got := get(t, s, "k1").Reply; !bytes.Equal(got, reply) {
		t.Fatal("Get returns other bytes than stored")
	}
}

func testConflictLeavesCompletedUntouched(t *testing.T, open func() *DB) {
	s := newIdem(t, open())
	token := acquire(t, s, "k1", fpA, t0)
	if err := s.Complete(context.Background(), scope, "k1", token, sampleReply(), t0); err != nil {
		t.Fatal(err)
	}
	before := get(t, s, "k1")
	for _, retry := range []bool{false, true} {
		out, rec, _ := begin(t, s, "k1", fpB, t0.Add(time.Minute), retry)
		wantOutcome(t, out, Conflict)
		sameRecord(t, rec, before)
	}
	sameRecord(t, get(t, s, "k1"), before)
}

func testConflictWhileInProgress(t *testing.T, open func() *DB) {
	s := newIdem(t, open())
	acquire(t, s, "k1", fpA, t0)
	before := get(t, s, "k1")
	out, rec, _ := begin(t, s, "k1", fpB, t0.Add(time.Second), true)
	wantOutcome(t, out, Conflict)
	sameRecord(t, rec, before)
	sameRecord(t, get(t, s, "k1"), before)
}

func testInFlightWhileLeaseRuns(t *testing.T, open func() *DB) {
	s := newIdem(t, open())
	acquire(t, s, "k1", fpA, t0)
	before := get(t, s, "k1")
	for _, retry := range []bool{false, true} {
		out, rec, _ := begin(t, s, "k1", fpA, t0.Add(lease-time.Microsecond), retry)
		wantOutcome(t, out, InFlight)
		sameRecord(t, rec, before)
	}
	sameRecord(t, get(t, s, "k1"), before)
}

func testReleaseThenReacquire(t *testing.T, open func() *DB) {
	s := newIdem(t, open())
	ctx := context.Background()
	first := acquire(t, s, "k1", fpA, t0)
	if err := s.Release(ctx, scope, "k1", first, t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	rec := get(t, s, "k1")
	if rec.State != StateReleased || !rec.LeaseUntil.IsZero() || rec.Reply != nil {
		t.Fatalf("released record %s", recordString(rec))
	}
	out, rec, second := begin(t, s, "k1", fpA, t0.Add(2*time.Second), false)
	wantOutcome(t, out, Acquired)
	if second == first {
		t.Fatal("re-acquiring handed out the old token")
	}
	if rec.Attempts != 2 || rec.State != StateInProgress {
		t.Fatalf("re-acquired record %s", recordString(rec))
	}
	sameRecord(t, get(t, s, "k1"), rec)
	wantErr(t, s.Complete(ctx, scope, "k1", first, []byte("late"), t0.Add(3*time.Second)), ErrNotOwner)
	if err := s.Complete(ctx, scope, "k1", second, []byte("ok"), t0.Add(3*time.Second)); err != nil {
		t.Fatal(err)
	}
}

func testReleasedTakesNewFingerprint(t *testing.T, open func() *DB) {
	s := newIdem(t, open())
	token := acquire(t, s, "k1", fpA, t0)
	if err := s.Release(context.Background(), scope, "k1", token, t0); err != nil {
		t.Fatal(err)
	}
	// The core never acted on the first body, so a different one with the
	// same requestUUID is a new request, not a conflict.
	out, rec, _ := begin(t, s, "k1", fpB, t0.Add(time.Second), false)
	wantOutcome(t, out, Acquired)
	if rec.Fingerprint != fpB || get(t, s, "k1").Fingerprint != fpB {
		t.Fatalf("fingerprint not replaced: %s", recordString(get(t, s, "k1")))
	}
	out, _, _ = begin(t, s, "k1", fpA, t0.Add(2*time.Second), false)
	wantOutcome(t, out, Conflict)
}

func testUnknownRetried(t *testing.T, open func() *DB) {
	s := newIdem(t, open())
	ctx := context.Background()
	first := acquire(t, s, "k1", fpA, t0)
	if err := s.MarkUnknown(ctx, scope, "k1", first, "core timeout after 30s", t0.Add(30*time.Second)); err != nil {
		t.Fatal(err)
	}
	rec := get(t, s, "k1")
	if rec.State != StateUnknown || rec.Note != "core timeout after 30s" || !rec.LeaseUntil.IsZero() {
		t.Fatalf("unknown record %s", recordString(rec))
	}
	out, rec, second := begin(t, s, "k1", fpA, t0.Add(time.Minute), true)
	wantOutcome(t, out, Acquired)
	if rec.Attempts != 2 || rec.State != StateInProgress || second == first {
		t.Fatalf("retried record %s", recordString(rec))
	}
	for _, err := range []error{
		s.Complete(ctx, scope, "k1", first, []byte("stale"), t0.Add(time.Minute)),
		s.Release(ctx, scope, "k1", first, t0.Add(time.Minute)),
		s.MarkUnknown(ctx, scope, "k1", first, "stale", t0.Add(time.Minute)),
	} {
		wantErr(t, err, ErrNotOwner)
	}
	if err := s.Complete(ctx, scope, "k1", second, []byte("<ok/>"), t0.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	out, rec, _ = begin(t, s, "k1", fpA, t0.Add(3*time.Minute), true)
	wantOutcome(t, out, Replay)
	if string(rec.Reply) != "<ok/>" {
		t.Fatalf("replay %q", rec.Reply)
	}
}

func testUnknownHeld(t *testing.T, open func() *DB) {
	s := newIdem(t, open())
	token := acquire(t, s, "k1", fpA, t0)
	if err := s.MarkUnknown(context.Background(), scope, "k1", token, "reset while reading", t0); err != nil {
		t.Fatal(err)
	}
	before := get(t, s, "k1")
	out, rec, _ := begin(t, s, "k1", fpA, t0.Add(time.Hour), false)
	wantOutcome(t, out, Held)
	sameRecord(t, rec, before)
	out, _, _ = begin(t, s, "k1", fpB, t0.Add(time.Hour), true)
	wantOutcome(t, out, Conflict)
	sameRecord(t, get(t, s, "k1"), before)
}

func testLeaseExpiryBecomesUnknownHeld(t *testing.T, open func() *DB) {
	s := newIdem(t, open())
	acquire(t, s, "k1", fpA, t0)
	out, _, _ := begin(t, s, "k1", fpA, t0.Add(lease-time.Second), false)
	wantOutcome(t, out, InFlight)
	// The lease ends at t0+lease: from that instant the owner is presumed dead.
	expiry := t0.Add(lease)
	out, rec, _ := begin(t, s, "k1", fpA, expiry, false)
	wantOutcome(t, out, Held)
	stored := get(t, s, "k1")
	sameRecord(t, rec, stored)
	if stored.State != StateUnknown || stored.Note != noteLeaseExpired || !stored.LeaseUntil.IsZero() ||
		!stored.UpdatedAt.Equal(expiry.Truncate(time.Microsecond)) || stored.Attempts != 1 {
		t.Fatalf("expired record %s", recordString(stored))
	}
	out, rec, _ = begin(t, s, "k1", fpA, expiry.Add(time.Second), true)
	wantOutcome(t, out, Acquired)
	if rec.Attempts != 2 {
		t.Fatalf("attempts %d, want 2", rec.Attempts)
	}
}

func testLeaseExpiryRetried(t *testing.T, open func() *DB) {
	s := newIdem(t, open())
	ctx := context.Background()
	dead := acquire(t, s, "k1", fpA, t0)
	out, rec, token := begin(t, s, "k1", fpA, t0.Add(time.Hour), true)
	wantOutcome(t, out, Acquired)
	if rec.Attempts != 2 || rec.State != StateInProgress || !rec.LeaseUntil.Equal(t0.Add(time.Hour+lease).Truncate(time.Microsecond)) {
		t.Fatalf("taken-over record %s", recordString(rec))
	}
	sameRecord(t, get(t, s, "k1"), rec)
	wantErr(t, s.Complete(ctx, scope, "k1", dead, []byte("zombie"), t0.Add(time.Hour)), ErrNotOwner)
	if err := s.Complete(ctx, scope, "k1", token, []byte("fresh"), t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
}

func testLeaseExpiryConflict(t *testing.T, open func() *DB) {
	s := newIdem(t, open())
	acquire(t, s, "k1", fpA, t0)
	out, _, _ := begin(t, s, "k1", fpB, t0.Add(time.Hour), true)
	wantOutcome(t, out, Conflict)
	// The expiry was recorded even though the caller got a conflict.
	if rec := get(t, s, "k1"); rec.State != StateUnknown || rec.Fingerprint != fpA {
		t.Fatalf("record after expiry+conflict %s", recordString(rec))
	}
}

func testLateOwnerFinishesUnknown(t *testing.T, open func() *DB) {
	s := newIdem(t, open())
	token := acquire(t, s, "k1", fpA, t0)
	out, _, _ := begin(t, s, "k1", fpA, t0.Add(time.Hour), false)
	wantOutcome(t, out, Held)
	// Nobody took the record over, so the slow owner's definite answer is
	// still the truth and is recorded.
	if err := s.Complete(context.Background(), scope, "k1", token, []byte("<late/>"), t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	out, rec, _ := begin(t, s, "k1", fpA, t0.Add(2*time.Hour), false)
	wantOutcome(t, out, Replay)
	if string(rec.Reply) != "<late/>" {
		t.Fatalf("replay %q", rec.Reply)
	}
}

func testStaleTokenRefused(t *testing.T, open func() *DB) {
	s := newIdem(t, open())
	ctx := context.Background()
	token := acquire(t, s, "k1", fpA, t0)
	before := get(t, s, "k1")
	for _, bad := range []string{"", "not-the-token", token + "x"} {
		wantErr(t, s.Complete(ctx, scope, "k1", bad, []byte("x"), t0), ErrNotOwner)
		wantErr(t, s.Release(ctx, scope, "k1", bad, t0), ErrNotOwner)
		wantErr(t, s.MarkUnknown(ctx, scope, "k1", bad, "x", t0), ErrNotOwner)
	}
	sameRecord(t, get(t, s, "k1"), before)
	if err := s.Complete(ctx, scope, "k1", token, []byte("first"), t0); err != nil {
		t.Fatal(err)
	}
	// A finished record belongs to nobody: the owner cannot rewrite it.
	wantErr(t, s.Complete(ctx, scope, "k1", token, []byte("second"), t0), ErrNotOwner)
	wantErr(t, s.Release(ctx, scope, "k1", token, t0), ErrNotOwner)
	wantErr(t, s.MarkUnknown(ctx, scope, "k1", token, "x", t0), ErrNotOwner)
	if rec := get(t, s, "k1"); string(rec.Reply) != "first" || rec.State != StateCompleted {
		t.Fatalf("record after refused writes %s", recordString(rec))
	}
	wantErr(t, s.Complete(ctx, scope, "missing", token, []byte("x"), t0), ErrNotOwner)
}

// stepClock is an injected clock for Wait: it advances by step on each
// read and reports each read on reads (if set).
type stepClock struct {
	mu    sync.Mutex
	now   time.Time
	step  time.Duration
	calls int
	reads chan struct{}
}

func (c *stepClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	now := c.now
	c.now = c.now.Add(c.step)
	if c.reads != nil {
		select {
		case c.reads <- struct{}{}:
		default:
		}
	}
	return now
}

func testWaitReturnsWhenCompleted(t *testing.T, open func() *DB) {
	s := newIdem(t, open())
	ctx := context.Background()
	token := acquire(t, s, "k1", fpA, t0)
	clock := &stepClock{now: t0, reads: make(chan struct{}, 1)}
	s.Now = clock.Now
	type result struct {
		rec Record
		err error
	}
	done := make(chan result, 1)
	go func() {
		rec, err := s.Wait(ctx, scope, "k1", t0.Add(5*time.Second))
		done <- result{rec, err}
	}()
	<-clock.reads // Wait has seen the record in progress
	if err := s.Complete(ctx, scope, "k1", token, []byte("<done/>"), t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-done:
		if r.err != nil || r.rec.State != StateCompleted || string(r.rec.Reply) != "<done/>" {
			t.Fatalf("Wait = %s, %v", recordString(r.rec), r.err)
		}
	case <-time.After(10 * time.Second): // a guard against a hang, not logic
		t.Fatal("Wait did not return after the record completed")
	}
}

func testWaitTimesOut(t *testing.T, open func() *DB) {
	s := newIdem(t, open())
	acquire(t, s, "k1", fpA, t0)
	clock := &stepClock{now: t0, step: time.Second}
	s.Now = clock.Now
	rec, err := s.Wait(context.Background(), scope, "k1", t0.Add(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if rec.State != StateInProgress {
		t.Fatalf("Wait returned %s, want the record still in progress", recordString(rec))
	}
	if clock.calls != 6 { // t0 … t0+5s
		t.Fatalf("Wait read the clock %d times, want 6", clock.calls)
	}
}

func testWaitStopsAtExpiredLease(t *testing.T, open func() *DB) {
	s := newIdem(t, open())
	acquire(t, s, "k1", fpA, t0)
	clock := &stepClock{now: t0, step: 10 * time.Second}
	s.Now = clock.Now
	rec, err := s.Wait(context.Background(), scope, "k1", t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if rec.State != StateInProgress || clock.calls != 4 { // t0, +10, +20, +30 = lease end
		t.Fatalf("Wait = %s after %d clock reads; want it to stop at the lease end", recordString(rec), clock.calls)
	}
	out, _, _ := begin(t, s, "k1", fpA, t0.Add(lease), false)
	wantOutcome(t, out, Held)
}

func testWaitNotFoundAndCancelled(t *testing.T, open func() *DB) {
	s := newIdem(t, open())
	_, err := s.Wait(context.Background(), scope, "missing", t0.Add(time.Hour))
	wantErr(t, err, ErrNotFound)

	acquire(t, s, "k1", fpA, t0)
	s.Now = func() time.Time { return t0 } // the deadline never comes
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = s.Wait(ctx, scope, "k1", t0.Add(time.Hour))
	wantErr(t, err, context.Canceled)
}

func testGetNotFound(t *testing.T, open func() *DB) {
	s := newIdem(t, open())
	_, err := s.Get(context.Background(), scope, "missing")
	wantErr(t, err, ErrNotFound)
}

func testListByState(t *testing.T, open func() *DB) {
	s := newIdem(t, open())
	ctx := context.Background()
	// u1 and u2 unknown (u2 updated later), c1 completed, r1 released, p1 in progress.
	for i, key := range []string{"u1", "u2"} {
		tok := acquire(t, s, key, fpA, t0)
		if err := s.MarkUnknown(ctx, scope, key, tok, "timeout", t0.Add(time.Duration(10-i)*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	tok := acquire(t, s, "c1", fpA, t0)
	if err := s.Complete(ctx, scope, "c1", tok, []byte("r"), t0); err != nil {
		t.Fatal(err)
	}
	tok = acquire(t, s, "r1", fpA, t0)
	if err := s.Release(ctx, scope, "r1", tok, t0); err != nil {
		t.Fatal(err)
	}
	acquire(t, s, "p1", fpA, t0)

	keys := func(recs []Record) string {
		var b bytes.Buffer
		for _, r := range recs {
			fmt.Fprintf(&b, "%s:%s ", r.Key, r.State)
		}
		return b.String()
	}
	for _, c := range []struct {
		state State
		limit int
		want  string
	}{
		{StateUnknown, 0, "u2:unknown u1:unknown "}, // least recently updated first
		{StateUnknown, 1, "u2:unknown "},
		{StateCompleted, 10, "c1:completed "},
		{StateReleased, 10, "r1:released "},
		{StateInProgress, 10, "p1:in_progress "},
		{"", 0, "c1:completed p1:in_progress r1:released u2:unknown u1:unknown "},
	} {
		recs, err := s.List(ctx, c.state, c.limit)
		if err != nil {
			t.Fatal(err)
		}
		if got := keys(recs); got != c.want {
			t.Errorf("List(%q, %d) = %s, want %s", c.state, c.limit, got, c.want)
		}
	}
	if _, err := s.List(ctx, "bogus", 1); err == nil {
		t.Fatal("List accepted an unknown state")
	}
}

func testResolveComplete(t *testing.T, open func() *DB) {
	s := newIdem(t, open())
	ctx := context.Background()
	token := acquire(t, s, "k1", fpA, t0)
	if err := s.MarkUnknown(ctx, scope, "k1", token, "timeout", t0); err != nil {
		t.Fatal(err)
	}
	reply := sampleReply()
	rec, err := s.Resolve(ctx, scope, "k1", Resolution{State: StateCompleted, Reply: reply, Note: "ops: core confirms proposal P1"}, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	sameRecord(t, get(t, s, "k1"), rec)
	if rec.State != StateCompleted || rec.Note != "ops: core confirms proposal P1" {
		t.Fatalf("resolved record %s", recordString(rec))
	}
	wantErr(t, s.Complete(ctx, scope, "k1", token, []byte("late"), t0.Add(time.Hour)), ErrNotOwner)
	out, rec, _ := begin(t, s, "k1", fpA, t0.Add(2*time.Hour), false)
	wantOutcome(t, out, Replay)
	if !bytes.Equal(rec.Reply, reply) {
		t.Fatal("replay after resolve is not byte-identical")
	}
}

func testResolveRelease(t *testing.T, open func() *DB) {
	s := newIdem(t, open())
	ctx := context.Background()
	token := acquire(t, s, "k1", fpA, t0)
	// An in_progress record whose lease expired counts as unknown.
	rec, err := s.Resolve(ctx, scope, "k1", Resolution{State: StateReleased, Note: "ops: core has no trace"}, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if rec.State != StateReleased || rec.Reply != nil {
		t.Fatalf("resolved record %s", recordString(rec))
	}
	sameRecord(t, get(t, s, "k1"), rec)
	wantErr(t, s.Complete(ctx, scope, "k1", token, []byte("late"), t0.Add(time.Hour)), ErrNotOwner)
	out, _, _ := begin(t, s, "k1", fpA, t0.Add(2*time.Hour), false)
	wantOutcome(t, out, Acquired)
}

func testResolveRefusesOtherStates(t *testing.T, open func() *DB) {
	s := newIdem(t, open())
	ctx := context.Background()
	release := Resolution{State: StateReleased}
	acquire(t, s, "live", fpA, t0)
	_, err := s.Resolve(ctx, scope, "live", release, t0.Add(time.Second))
	wantErr(t, err, ErrNotUnknown)
	tok := acquire(t, s, "done", fpA, t0)
	if err := s.Complete(ctx, scope, "done", tok, []byte("r"), t0); err != nil {
		t.Fatal(err)
	}
	before := get(t, s, "done")
	_, err = s.Resolve(ctx, scope, "done", release, t0.Add(time.Hour))
	wantErr(t, err, ErrNotUnknown)
	sameRecord(t, get(t, s, "done"), before)
	_, err = s.Resolve(ctx, scope, "missing", release, t0)
	wantErr(t, err, ErrNotFound)

	tok = acquire(t, s, "u", fpA, t0)
	if err := s.MarkUnknown(ctx, scope, "u", tok, "timeout", t0); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []Resolution{{State: StateCompleted}, {State: StateUnknown}, {State: StateInProgress}, {}} {
		if _, err := s.Resolve(ctx, scope, "u", bad, t0); err == nil || errors.Is(err, ErrUnavailable) {
			t.Fatalf("Resolve(%+v) = %v, want a refusal", bad, err)
		}
	}
	if rec := get(t, s, "u"); rec.State != StateUnknown {
		t.Fatalf("refused resolutions changed the record: %s", recordString(rec))
	}
}

func testExpireLeases(t *testing.T, open func() *DB) {
	s := newIdem(t, open())
	ctx := context.Background()
	acquire(t, s, "old", fpA, t0)
	acquire(t, s, "new", fpA, t0.Add(time.Minute))
	n, err := s.ExpireLeases(ctx, t0.Add(lease))
	if err != nil || n != 1 {
		t.Fatalf("ExpireLeases = %d, %v; want 1", n, err)
	}
	recs, err := s.List(ctx, StateUnknown, 0)
	if err != nil || len(recs) != 1 || recs[0].Key != "old" || recs[0].Note != noteLeaseExpired {
		t.Fatalf("unknown after expiry: %v, %v", recs, err)
	}
	if get(t, s, "new").State != StateInProgress {
		t.Fatal("a running lease was expired")
	}
}

func testPurgeSparesInProgressAndUnknown(t *testing.T, open func() *DB) {
	s := newIdem(t, open())
	ctx := context.Background()
	old, cutoff := t0, t0.Add(24*time.Hour)
	tok := acquire(t, s, "completed-old", fpA, old)
	must(t, s.Complete(ctx, scope, "completed-old", tok, []byte("r"), old))
	tok = acquire(t, s, "released-old", fpA, old)
	must(t, s.Release(ctx, scope, "released-old", tok, old))
	tok = acquire(t, s, "completed-new", fpA, cutoff)
	must(t, s.Complete(ctx, scope, "completed-new", tok, []byte("r"), cutoff))
	tok = acquire(t, s, "unknown-old", fpA, old)
	must(t, s.MarkUnknown(ctx, scope, "unknown-old", tok, "timeout", old))
	acquire(t, s, "inprogress-old", fpA, old) // lease long expired, never swept

	n, err := s.Purge(ctx, cutoff)
	if err != nil || n != 2 {
		t.Fatalf("Purge = %d, %v; want 2", n, err)
	}
	for key, kept := range map[string]bool{
		"completed-old": false, "released-old": false,
		"completed-new": true, "unknown-old": true, "inprogress-old": true,
	} {
		_, err := s.Get(ctx, scope, key)
		if kept && err != nil || !kept && !errors.Is(err, ErrNotFound) {
			t.Errorf("%s after purge: %v (kept: %v)", key, err, kept)
		}
	}
	// A purged key starts afresh.
	out, _, _ := begin(t, s, "completed-old", fpB, cutoff, false)
	wantOutcome(t, out, Acquired)
}

func testPurgeInBatches(t *testing.T, open func() *DB) {
	s := newIdem(t, open())
	ctx := context.Background()
	const n = 2*purgeBatch + 34
	// Written in one transaction: a thousand fsyncs would only slow the test.
	err := s.db.InTx(ctx, func(q Runner) error {
		for i := range n {
			if _, err := q.Exec(ctx, sqlInsert, scope, fmt.Sprintf("k%04d", i), fpA, "tok", t0.Add(lease), t0); err != nil {
				return err
			}
		}
		_, err := q.Exec(ctx, `UPDATE gongbao_idempotency SET state = 'completed', reply = $1`, []byte("r"))
		return err
	})
	must(t, err)
	acquire(t, s, "live", fpA, t0)
	got, err := s.Purge(ctx, t0.Add(time.Second))
	if err != nil || got != n {
		t.Fatalf("Purge = %d, %v; want %d", got, err, n)
	}
	if recs, _ := s.List(ctx, "", 0); len(recs) != 1 || recs[0].Key != "live" {
		t.Fatalf("left after purge: %v", recs)
	}
}

func testInvalidArguments(t *testing.T, open func() *DB) {
	s := newIdem(t, open())
	ctx := context.Background()
	for _, c := range []struct{ scope, key, fp string }{{"", "k", fpA}, {scope, "", fpA}, {scope, "k", ""}} {
		if _, _, _, err := s.Begin(ctx, c.scope, c.key, c.fp, t0, lease, false); err == nil || errors.Is(err, ErrUnavailable) {
			t.Errorf("Begin(%q, %q, %q) = %v, want an argument error", c.scope, c.key, c.fp, err)
		}
	}
	if _, _, _, err := s.Begin(ctx, scope, "k", fpA, t0, 0, false); err == nil {
		t.Error("Begin accepted a zero lease")
	}
	tok := acquire(t, s, "k", fpA, t0)
	if err := s.Complete(ctx, scope, "k", tok, nil, t0); err == nil || errors.Is(err, ErrNotOwner) {
		t.Errorf("Complete with an empty reply = %v, want an argument error", err)
	}
	if get(t, s, "k").State != StateInProgress {
		t.Error("a refused Complete changed the record")
	}
}

func testMigrateIsIdempotent(t *testing.T, open func() *DB) {
	db := open()
	s := newIdem(t, db)
	acquire(t, s, "k1", fpA, t0)
	newIdem(t, db)
	s2 := newIdem(t, open()) // another instance starting on the same store
	if rec := get(t, s2, "k1"); rec.State != StateInProgress {
		t.Fatalf("record after re-migrating: %s", recordString(rec))
	}
}

func testClosedHandleUnavailable(t *testing.T, open func() *DB) {
	db := open()
	s := newIdem(t, db)
	ctx := context.Background()
	token := acquire(t, s, "k1", fpA, t0)
	must(t, db.Close())

	_, _, _, err := s.Begin(ctx, scope, "k2", fpA, t0, lease, false)
	wantErr(t, err, ErrUnavailable)
	wantErr(t, s.Complete(ctx, scope, "k1", token, []byte("r"), t0), ErrUnavailable)
	wantErr(t, s.Release(ctx, scope, "k1", token, t0), ErrUnavailable)
	wantErr(t, s.MarkUnknown(ctx, scope, "k1", token, "x", t0), ErrUnavailable)
	_, err = s.Get(ctx, scope, "k1")
	wantErr(t, err, ErrUnavailable)
	_, err = s.Wait(ctx, scope, "k1", t0)
	wantErr(t, err, ErrUnavailable)
	_, err = s.List(ctx, StateUnknown, 0)
	wantErr(t, err, ErrUnavailable)
	_, err = s.Resolve(ctx, scope, "k1", Resolution{State: StateReleased}, t0)
	wantErr(t, err, ErrUnavailable)
	_, err = s.Purge(ctx, t0)
	wantErr(t, err, ErrUnavailable)
	_, err = s.ExpireLeases(ctx, t0)
	wantErr(t, err, ErrUnavailable)
	_, err = NewIdempotency(ctx, db)
	wantErr(t, err, ErrUnavailable)

	// Nothing was written while the store was away. Reopening the SQLite
	// file after its only handle closed is a restart: the record left in
	// progress is reclaimed as unknown (see TestReclaimAtStartup).
	db2 := open()
	s2 := newIdem(t, db2)
	want := StateInProgress
	if db2.OwnsFile() {
		want = StateUnknown
	}
	if rec := get(t, s2, "k1"); rec.State != want || rec.Reply != nil {
		t.Fatalf("k1 after failed writes: %s", recordString(rec))
	}
	_, err = s2.Get(ctx, scope, "k2")
	wantErr(t, err, ErrNotFound)
}

// concurrentRounds is how many times each race is run. Every round races
// on a new key, so a lucky interleaving cannot hide a lost update.
const concurrentRounds = 15

// race runs n Begins at once (released together) on the handles in turn
// and counts the outcomes.
func race(t *testing.T, stores []*Idempotency, n int, key, fp string, now time.Time, retry bool) map[Outcome]int {
	t.Helper()
	var (
		wg       sync.WaitGroup
		start    = make(chan struct{})
		mu       sync.Mutex
		counts   = map[Outcome]int{}
		failures atomic.Int64
	)
	for i := range n {
		s := stores[i%len(stores)]
		wg.Go(func() {
			<-start
			out, _, token, err := s.Begin(context.Background(), scope, key, fp, now, lease, retry)
			if err != nil || (token != "") != (out == Acquired) {
				failures.Add(1)
				t.Errorf("Begin: %v, %v, token %q", out, err, token)
				return
			}
			mu.Lock()
			counts[out]++
			mu.Unlock()
		})
	}
	close(start)
	wg.Wait()
	if failures.Load() > 0 {
		t.FailNow()
	}
	return counts
}

// raceLifecycle races 50 callers on each contended step of a record's
// life: creation, take-over after release, take-over after an expired
// lease, and replay after completion.
func raceLifecycle(t *testing.T, stores []*Idempotency) {
	ctx := context.Background()
	s := stores[0]
	const n = 50
	expectOne := func(step string, c map[Outcome]int, other Outcome) {
		t.Helper()
		if c[Acquired] != 1 || c[other] != n-1 {
			t.Fatalf("%s: outcomes %v, want 1 acquired and %d %v", step, c, n-1, other)
		}
	}
	for round := range concurrentRounds {
		key := fmt.Sprintf("race-%d", round)
		now := t0.Add(time.Duration(round) * time.Hour)

		expectOne("new key", race(t, stores, n, key, fpA, now, true), InFlight)

		tok := ownerToken(t, s, key)
		must(t, s.Release(ctx, scope, key, tok, now))
		expectOne("after release", race(t, stores, n, key, fpA, now, true), InFlight)

		// The lease of the winner runs out: one caller takes over, the
		// others see it in flight again.
		expectOne("after lease expiry", race(t, stores, n, key, fpA, now.Add(lease), true), InFlight)

		tok = ownerToken(t, s, key)
		must(t, s.Complete(ctx, scope, key, tok, []byte("reply-"+key), now.Add(lease)))
		c := race(t, stores, n, key, fpA, now.Add(lease+time.Second), true)
		if c[Replay] != n {
			t.Fatalf("after completion: outcomes %v, want %d replays", c, n)
		}
		if got := get(t, s, key); got.Attempts != 3 {
			t.Fatalf("attempts %d, want 3 (one per acquisition)", got.Attempts)
		}
	}
}

// ownerToken reads the token the race's winner got; the tests need it to
// finish the record, and the API rightly never returns it after Begin.
func ownerToken(t *testing.T, s *Idempotency, key string) string {
	t.Helper()
	q, err := s.db.Runner()
	must(t, err)
	var tok string
	must(t, q.QueryRow(context.Background(), `SELECT owner FROM gongbao_idempotency WHERE scope = $1 AND key = $2`, scope, key).Scan(&tok))
	return tok
}

func testConcurrentBeginOneAcquired(t *testing.T, open func() *DB) {
	raceLifecycle(t, []*Idempotency{newIdem(t, open())})
}

func testConcurrentBeginAcrossInstances(t *testing.T, open func() *DB) {
	// Three handles = three Caddy instances on one database. They also
	// start (migrate) at the same moment.
	dbs := []*DB{open(), open(), open()}
	stores := make([]*Idempotency, len(dbs))
	var wg sync.WaitGroup
	for i, db := range dbs {
		wg.Go(func() {
			s, err := NewIdempotency(context.Background(), db)
			if err != nil {
				t.Errorf("instance %d: %v", i, err)
			}
			stores[i] = s
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	raceLifecycle(t, stores)
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
