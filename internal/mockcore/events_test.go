package mockcore_test

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/caddy-gongbao/gongbao/internal/mockcore"
)

func TestEventRetriedUntil2xx(t *testing.T) {
	h := newHarness(t, 2) // the receiver fails twice, then accepts
	r := h.post("/v1/proposals", "", proposalBody())
	pay := h.get(r.str("paymentUrl"))
	policyNo := pay.str("policyNo")
	attempts := []received{h.rc.next(t), h.rc.next(t), h.rc.next(t)}
	key := attempts[0].key
	for i, ev := range attempts {
		if ev.path != "/events/policy-paid" || ev.contentType != "application/json" {
			t.Errorf("attempt %d: %s %s", i+1, ev.path, ev.contentType)
		}
		// Every attempt is the same event: same key, same body.
		if key == "" || ev.key != key || ev.body["eventId"] != key || ev.body["policyNo"] != policyNo {
			t.Errorf("attempt %d: key %q body %v", i+1, ev.key, ev.body)
		}
	}
	// The third attempt succeeded: no fourth arrives after another event.
	h.expect(h.post("/v1/claims", "", claimBody(policyNo)), http.StatusOK, "受理申请")
	h.expect(h.post("/v1/surrenders", "", surrenderBody(policyNo)), http.StatusOK, "退保成功")
	if ev := h.rc.next(t); ev.path != "/events/surrender-settled" {
		t.Fatalf("after success got %s %v", ev.path, ev.body)
	}
	// The receiver has the event; the emitter counts it once it reads the answer.
	waitFor(t, func() bool { return h.core.Stats().Events.Delivered == 2 })
	if got, want := h.clock.recordedWaits(), []time.Duration{time.Second, 2 * time.Second}; !slices.Equal(got, want) {
		t.Errorf("backoff waits %v, want %v", got, want)
	}
	st := h.core.Stats().Events
	if st.Queued != 2 || st.Delivered != 2 || st.Attempts != 4 || st.Dropped != 0 {
		t.Errorf("event stats %+v", st)
	}
}

func TestDefaultBackoff(t *testing.T) {
	want := []time.Duration{1, 2, 4, 8, 16, 30, 30, 30}
	for i, w := range want {
		if got := mockcore.DefaultBackoff(i + 1); got != w*time.Second {
			t.Errorf("DefaultBackoff(%d) = %v, want %v", i+1, got, w*time.Second)
		}
	}
	if got := mockcore.DefaultBackoff(1000); got != 30*time.Second {
		t.Errorf("DefaultBackoff(1000) = %v", got)
	}
}

func TestCloseStopsRetrying(t *testing.T) {
	h := newHarness(t, 1<<30) // never accepts
	h.clock.mu.Lock()
	h.clock.block = true // and the backoff timer never fires
	h.clock.mu.Unlock()
	r := h.post("/v1/proposals", "", proposalBody())
	h.get(r.str("paymentUrl"))
	h.rc.next(t) // first attempt made; the worker now waits on the timer

	done := make(chan struct{})
	go func() { h.core.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not stop a retrying emitter")
	}
	// After Close, new events are counted as dropped, not queued.
	r = h.post("/v1/proposals", "", proposalBody())
	h.get(r.str("paymentUrl"))
	if st := h.core.Stats().Events; st.Delivered != 0 || st.Dropped != 1 || st.Queued != 1 {
		t.Errorf("event stats after Close %+v", st)
	}
}

func TestEventQueueIsBounded(t *testing.T) {
	h := newHarness(t, 0, func(c *mockcore.Config) { c.QueueSize = 1 })
	release := make(chan struct{})
	releaseOnce := sync.OnceFunc(func() { close(release) })
	t.Cleanup(releaseOnce) // runs before the receiver shuts down, even on failure
	h.rc.setHold(release)
	var pay []string
	for range 3 {
		pay = append(pay, h.post("/v1/proposals", "", proposalBody()).str("paymentUrl"))
	}
	h.get(pay[0])
	h.rc.next(t)  // in flight, held by the receiver
	h.get(pay[1]) // waits in the queue
	h.get(pay[2]) // queue full: dropped, the payment itself still succeeds
	st := h.core.Stats()
	if st.Events.Dropped != 1 || st.Events.Queued != 2 || st.Effects[mockcore.OpPayments] != 3 {
		t.Errorf("stats with a full queue %+v", st)
	}
	releaseOnce()
	if ev := h.rc.next(t); ev.path != "/events/policy-paid" {
		t.Errorf("queued event: %s", ev.path)
	}
}

func TestNoEventsWhenDisabled(t *testing.T) {
	h := newHarness(t, 0, func(c *mockcore.Config) { c.EventsURL = "" })
	r := h.post("/v1/proposals", "", proposalBody())
	h.expect(h.get(r.str("paymentUrl")), http.StatusOK, "支付成功")
	if st := h.core.Stats().Events; st != (mockcore.EventStats{}) {
		t.Errorf("event stats with emission disabled %+v", st)
	}
	select {
	case ev := <-h.rc.got:
		t.Errorf("unexpected event %s", ev.path)
	default:
	}
}

// waitFor polls cond until it holds; it synchronises with the emitter
// goroutine and guards against a hung test, no logic depends on the timing.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestEventsFailOverAcrossIntakes: with several intake addresses, an event
// the first cannot take goes to the next within the same attempt (no
// backoff), and later events start with the intake that answered.
func TestEventsFailOverAcrossIntakes(t *testing.T) {
	down := httptest.NewServer(http.NotFoundHandler())
	downURL := down.URL
	down.Close() // nothing listens there any more
	h := newHarness(t, 0, func(c *mockcore.Config) { c.EventsURL = downURL + ", " + c.EventsURL + "/" })
	r := h.post("/v1/proposals", "", proposalBody())
	policyNo := h.get(r.str("paymentUrl")).str("policyNo")
	if ev := h.rc.next(t); ev.path != "/events/policy-paid" || ev.body["policyNo"] != policyNo {
		t.Fatalf("got %s %v", ev.path, ev.body)
	}
	h.expect(h.post("/v1/surrenders", "", surrenderBody(policyNo)), http.StatusOK, "退保成功")
	if ev := h.rc.next(t); ev.path != "/events/surrender-settled" {
		t.Fatalf("got %s %v", ev.path, ev.body)
	}
	waitFor(t, func() bool { return h.core.Stats().Events.Delivered == 2 })
	if st := h.core.Stats().Events; st.Attempts != 2 {
		t.Errorf("attempts %d, want 2: failing over is part of one attempt, and the second event goes straight to the live intake", st.Attempts)
	}
	if waits := h.clock.recordedWaits(); len(waits) != 0 {
		t.Errorf("backoff waits %v, want none", waits)
	}
}
