package delivery

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"
)

// TestAttemptRecordedBeforeSending: while the platform is reading a
// callback, the delivery already shows the attempt, running, with the URL
// it went to, its start and the instance making it; once answered, the
// same attempt is ended with its outcome.
func TestAttemptRecordedBeforeSending(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		env := newTestEnv(t, b, withConfig(func(c *Config) { c.Instance = "sidecar-a" }))
		seen := make(chan Attempt, 1)
		n := env.newDelivery("rec", "")
		// The first delivery of a fresh store; the engine may pick its job
		// up before Enqueue returns.
		const id = 1
		env.plat.setBefore(func(http.ResponseWriter, *http.Request) bool {
			d, err := env.e.Get(context.Background(), id)
			if err != nil || len(d.Attempts) != 1 {
				t.Errorf("during the POST: %v, attempts %+v", err, d.Attempts)
			} else {
				select {
				case seen <- d.Attempts[0]:
				default:
				}
			}
			return false
		})
		d := env.enqueue(n)
		if d.ID != id {
			t.Fatalf("first delivery has id %d", d.ID)
		}
		d = env.waitState(d.ID, StateDelivered, 20*time.Second)
		var during Attempt
		select {
		case during = <-seen:
		default:
			t.Fatal("the platform saw no callback")
		}
		if during.Outcome != OutcomeRunning || during.URL != env.plat.url() || during.Instance != "sidecar-a" ||
			during.StartedAt.IsZero() || during.N != 1 {
			t.Errorf("attempt while sending: %+v, want running, url, instance, start", during)
		}
		if len(d.Attempts) != 1 {
			t.Fatalf("attempts after: %+v", d.Attempts)
		}
		after := d.Attempts[0]
		if after.Outcome != OutcomeAccepted || after.Instance != "sidecar-a" || !after.StartedAt.Equal(during.StartedAt) ||
			after.Duration <= 0 || after.HTTPStatus != http.StatusOK {
			t.Errorf("attempt after: %+v", after)
		}
	})
}

// TestGracefulStopWaitsForAttempt: GracefulStop while the platform is slow
// (it answers after 1.5 s; the attempt timeout is 3 s) waits for the
// answer, records the attempt as accepted and sends nothing twice. The
// process-level TestStopAndReloadSlowPlatform shows the same past the old
// fixed 10 s.
func TestGracefulStopWaitsForAttempt(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		const slow = 1500 * time.Millisecond
		env := newTestEnv(t, b, withConfig(func(c *Config) { c.AttemptTimeout = 3 * time.Second }))
		arrived := make(chan struct{}, 1)
		env.plat.setBefore(func(_ http.ResponseWriter, r *http.Request) bool {
			select {
			case arrived <- struct{}{}:
			default:
			}
			timer := time.NewTimer(slow) // the platform's own slowness
			defer timer.Stop()
			select {
			case <-timer.C:
			case <-r.Context().Done():
			}
			return false
		})
		n := env.newDelivery("slow", "")
		d := env.enqueue(n)
		select {
		case <-arrived:
		case <-time.After(20 * time.Second):
			t.Fatal("the callback never reached the platform")
		}
		start := time.Now()
		if err := env.e.GracefulStop(); err != nil {
			t.Fatal(err)
		}
		took := time.Since(start)
		got := env.get(d.ID)
		if got.State != StateDelivered || len(got.Attempts) != 1 || got.Attempts[0].Outcome != OutcomeAccepted {
			t.Fatalf("after a graceful stop: %s, attempts %+v; want delivered by the one attempt", got.State, got.Attempts)
		}
		if r := env.plat.receipts(n.RequestUUID); len(r) != 1 {
			t.Errorf("the platform received %d copies, want 1", len(r))
		}
		t.Logf("stop took %s with the platform answering after %s", took.Round(time.Millisecond), slow)
	})
}

// TestStopGraceNotShorterThanAttempt: a stop grace under the attempt
// timeout is refused; the default is the attempt timeout.
func TestStopGraceNotShorterThanAttempt(t *testing.T) {
	base := Config{Store: openSQLite(t), Policy: func() *Policy { return &Policy{} }, AttemptTimeout: 20 * time.Second}
	c := base
	c.StopGrace = 10 * time.Second
	if _, err := c.withDefaults(); !errors.Is(err, ErrInvalid) {
		t.Fatalf("stop grace 10s under a 20s attempt: %v, want ErrInvalid", err)
	}
	got, err := base.withDefaults()
	if err != nil || got.StopGrace != 20*time.Second {
		t.Fatalf("default stop grace %s (%v), want the attempt timeout", got.StopGrace, err)
	}
}
