package mockcore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
)

// Event names, each POSTed to {EventsURL}/events/<name>.
const (
	EventPolicyPaid       = "policy-paid"
	EventInvoiceIssued    = "invoice-issued"
	EventSurrenderSettled = "surrender-settled"
)

// ErrQueueFull is reported (and logged) when an event cannot be queued
// because QueueSize events are already waiting.
var ErrQueueFull = errors.New("event queue full")

// errStatus marks a delivery answered with a non-2xx status.
var errStatus = errors.New("event target answered non-2xx")

// Clock is the core's source of time, injectable so tests control both the
// timestamps in answers and the waits between delivery attempts.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// DefaultBackoff waits 1 s after the first failed attempt, doubling each
// time up to 30 s, so a receiver that is down for a while is neither
// hammered nor left waiting long once it is back.
func DefaultBackoff(attempt int) time.Duration {
	const first, ceiling = time.Second, 30 * time.Second
	d := first
	for i := 1; i < attempt && d < ceiling; i++ {
		d *= 2
	}
	return min(d, ceiling)
}

// PolicyPaid is the body of the policy-paid event.
type PolicyPaid struct {
	EventID    string `json:"eventId"`
	PolicyNo   string `json:"policyNo"`
	ProposalNo string `json:"proposalNo"`
	PayType    string `json:"payType"`
	PaidAt     string `json:"paidAt"`
	PolicyURL  string `json:"policyUrl"`
}

// InvoiceIssued is the body of the invoice-issued event: DownloadURL for an
// electronic invoice, Express for a shipped paper one.
type InvoiceIssued struct {
	EventID     string   `json:"eventId"`
	PolicyNo    string   `json:"policyNo"`
	InvoiceNo   string   `json:"invoiceNo"`
	DownloadURL string   `json:"downloadUrl,omitempty"`
	Express     *Express `json:"express,omitempty"`
}

// Express identifies a shipment.
type Express struct {
	Company    string `json:"company"`
	TrackingNo string `json:"trackingNo"`
}

// SurrenderSettled is the body of the surrender-settled event.
type SurrenderSettled struct {
	EventID  string `json:"eventId"`
	PolicyNo string `json:"policyNo"`
	Refunded bool   `json:"refunded"`
	Message  string `json:"message"`
}

// EventStats counts the emitter's work.
type EventStats struct {
	Queued    int64 `json:"queued"`
	Delivered int64 `json:"delivered"`
	Attempts  int64 `json:"attempts"`
	Dropped   int64 `json:"dropped"`
}

type event struct {
	name string
	id   string
	body []byte
}

// emitter delivers events one at a time, in the order they were emitted,
// so a receiver sees policy-paid before the same policy's surrender-settled.
// A failing receiver holds the queue back rather than reordering it.
type emitter struct {
	bases   []string     // intake addresses, tried in turn (failover)
	current atomic.Int32 // index of the base that answered last
	client  *http.Client
	clock   Clock
	backoff func(int) time.Duration
	log     *slog.Logger

	queue  chan event
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
	closed atomic.Bool

	queued, delivered, attempts, dropped atomic.Int64
}

func newEmitter(cfg Config) *emitter {
	client := cfg.Client
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	size := cfg.QueueSize
	if size <= 0 {
		size = 1024
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &emitter{
		bases:   eventBases(cfg.EventsURL),
		client:  client,
		clock:   cfg.Clock,
		backoff: cfg.Backoff,
		log:     cfg.Logger,
		queue:   make(chan event, size),
		cancel:  cancel,
		done:    make(chan struct{}),
	}
	go e.run(ctx)
	return e
}

// emit queues body (which must carry eventID) for delivery without blocking:
// the caller holds the core's lock.
func (e *emitter) emit(name, eventID string, body any) error {
	if e.closed.Load() {
		e.dropped.Add(1)
		return fmt.Errorf("event %s %s: emitter closed", name, eventID)
	}
	data, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("encoding event %s: %w", name, err)
	}
	select {
	case e.queue <- event{name: name, id: eventID, body: data}:
		e.queued.Add(1)
		return nil
	default:
		e.dropped.Add(1)
		return fmt.Errorf("event %s %s: %w", name, eventID, ErrQueueFull)
	}
}

func (e *emitter) close() {
	e.once.Do(func() {
		e.closed.Store(true)
		e.cancel()
		<-e.done
	})
}

func (e *emitter) stats() EventStats {
	return EventStats{
		Queued:    e.queued.Load(),
		Delivered: e.delivered.Load(),
		Attempts:  e.attempts.Load(),
		Dropped:   e.dropped.Load(),
	}
}

func (e *emitter) run(ctx context.Context) {
	defer close(e.done)
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-e.queue:
			e.deliver(ctx, ev)
		}
	}
}

// deliver retries ev until the receiver answers 2xx or the emitter closes.
func (e *emitter) deliver(ctx context.Context, ev event) {
	for attempt := 1; ; attempt++ {
		e.attempts.Add(1)
		err := e.post(ctx, ev)
		if err == nil {
			e.delivered.Add(1)
			return
		}
		if ctx.Err() != nil {
			return // closing: the failure is ours, not the receiver's
		}
		wait := e.backoff(attempt)
		e.log.Warn("event delivery failed",
			"event", ev.name, "event_id", ev.id, "attempt", attempt,
			"retry_in", wait, "error", err)
		select {
		case <-ctx.Done():
			return
		case <-e.clock.After(wait):
		}
	}
}

// eventBases splits a comma-separated list of intake addresses.
func eventBases(list string) []string {
	var bases []string
	for b := range strings.SplitSeq(list, ",") {
		if b = strings.TrimRight(strings.TrimSpace(b), "/"); b != "" {
			bases = append(bases, b)
		}
	}
	return bases
}

// post delivers ev once: to the intake that answered last, failing over to
// the next ones in turn (several sidecar instances' intakes, or one
// balancer); the first 2xx wins. The same Idempotency-Key on every try lets
// the sidecars' shared store keep it one callback.
func (e *emitter) post(ctx context.Context, ev event) error {
	start := int(e.current.Load())
	var err error
	for i := range e.bases {
		n := (start + i) % len(e.bases)
		if err = e.postTo(ctx, e.bases[n], ev); err == nil {
			e.current.Store(int32(n))
			return nil
		}
		if ctx.Err() != nil {
			return err
		}
	}
	return err
}

func (e *emitter) postTo(ctx context.Context, base string, ev event) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost,
		base+"/events/"+ev.name, bytes.NewReader(ev.body))
	if err != nil {
		return fmt.Errorf("building request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", ev.id)
	resp, err := e.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	// Drain a little so the connection can be reused; the answer itself
	// carries nothing the core needs.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("%w: %d", errStatus, resp.StatusCode)
	}
	return nil
}

// emit queues an event if emission is enabled; a queueing failure is logged
// and counted, never turned into a refusal of the business operation that
// already took effect.
func (c *Core) emit(name, eventID string, body any) {
	if c.emitter == nil {
		return
	}
	if err := c.emitter.emit(name, eventID, body); err != nil {
		c.log.Error("event not queued", "event", name, "event_id", eventID, "error", err)
	}
}

func newEventID() string { return uuid.NewString() }
