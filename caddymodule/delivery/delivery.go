// Package delivery delivers the insurer's signed XML callbacks to the
// platform at least once, on River (github.com/riverqueue/river) over the
// sidecar's store: SQLite (the embedded default) or PostgreSQL.
//
// Every callback is one row in gongbao_deliveries holding the complete signed
// request exactly as it will be sent, so every attempt, including one after
// an operator retry, carries the same requestUUID and signature. The row and
// its River job are written in one transaction: a delivery the caller was
// told about always has a job, and a failed Enqueue leaves neither.
//
// A delivery succeeds when the platform's reply is a 2xx protocol message
// with the expected root and resultFlag=true. Its sign is checked and
// recorded on the attempt (verified, unsigned, mismatch); it must verify
// only under SignatureRequired (see Policy: nothing public shows that the
// platform signs its replies). resultFlag=false is a refusal: by default
// retried on the schedule (spec §3.1: both sides resend after a failure),
// under RefusalDeadLetter a dead letter at once. Anything else (network
// error, non-2xx, timeout, malformed reply, wrong root, no resultFlag) is
// retried on the schedule in Backoff until the per-delivery deadline, then
// dead-lettered with the last error or refusal. Operators list, inspect and
// retry deliveries.
//
// Only the signed body and its requestUUID are frozen when a callback is
// queued. Where it goes, how its reply is judged and with which keys come
// from the Policy of the running configuration, read at every attempt;
// each attempt records the URL it actually used.
//
// Deliveries with the same OrderKey (the policy number) go out in id order:
// one is not attempted while an earlier one is pending; it waits (a River
// snooze, 1 s at a time, spending no attempt). Delivered and dead
// predecessors do not block.
//
// The row, not the job, is the truth. A job only says "attempt delivery N";
// a job that finds its delivery delivered, dead, or taken over by a newer
// job (operator retry) completes without sending. A crash between the
// platform's acceptance and the recording of it means one more attempt with
// the same requestUUID, never a lost callback.
//
// River settings and why: an own queue ("gongbao_callbacks") and job kind
// ("gongbao_callback"); a ClientRetryPolicy implementing the schedule
// (River's default retries after about a second); JobTimeout =
// AttemptTimeout + 10 s (the HTTP exchange plus recording it);
// RescueStuckJobsAfter = JobTimeout + 60 s by default (a crashed process's
// job is retried within about two minutes with the defaults, River's
// rescuer running every 30 s, not after River's hour);
// MaxAttempts 30000 so that River never discards a job before our deadline
// does; River's info-level logs (one per failed job) are dropped, its
// warnings and errors kept. River always runs on the wall clock; the
// engine's Clock only scales the waits handed to River (see Clock).
//
// Tables (created by New through the store's versioned migrations, sql.go,
// after River's own migrator, under the store's one migration lock):
// gongbao_deliveries (one row per callback, idempotency_key UNIQUE) and
// gongbao_delivery_attempts (one row per POST, reply capped at 64 KiB).
//
// It must not import Caddy nor the caddymodule adapter: the Caddy app owns
// one Engine per store handle and shares it across config reloads. Of this
// project it imports only protocol (messages, signatures) and store.
package delivery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"sync"
	"time"

	"github.com/caddy-gongbao/gongbao/caddymodule/protocol"
	"github.com/caddy-gongbao/gongbao/caddymodule/store"
)

// State is where a delivery stands.
type State string

// Delivery states. A delivery is pending until the platform accepts it
// (delivered) or it is given up (dead); an operator retry makes a dead
// delivery pending again.
const (
	StatePending   State = "pending"
	StateDelivered State = "delivered"
	StateDead      State = "dead"
)

func (s State) valid() bool {
	return s == StatePending || s == StateDelivered || s == StateDead
}

// Sentinel errors. Store failures wrap store.ErrUnavailable instead, so the
// caller can answer "retry later" without guessing.
var (
	ErrInvalid        = errors.New("invalid delivery")
	ErrNotFound       = errors.New("delivery not found")
	ErrNotDead        = errors.New("delivery is not dead")
	ErrAlreadyStarted = errors.New("a delivery engine is already running on this store handle")
	ErrNotStarted     = errors.New("delivery engine not started")
)

// NewDelivery is one callback to deliver.
type NewDelivery struct {
	Event          string // event name the core posted, e.g. "policy-paid"
	Callback       string // request root, e.g. "queryPolicyRequest"
	ReplyRoot      string // platform reply root, e.g. "queryPolicyResponse"; "" accepts any root
	URL            string // where to POST the callback (http or https)
	RequestUUID    string // head requestUUID inside Body
	IdempotencyKey string // dedupe key, unique across all events (prefix it with the event name); "" means RequestUUID
	OrderKey       string // per-policy order key; "" means unordered
	Body           []byte // the complete signed XML, sent byte for byte on every attempt
}

// Delivery is a stored callback.
type Delivery struct {
	ID        int64  `json:"id"`
	Event     string `json:"event"`
	Callback  string `json:"callback"`
	ReplyRoot string `json:"reply_root"`
	// URL is the address when the callback was queued. Attempts go to the
	// address the configuration gives at the time (Attempt.URL); this one
	// is used only when the configuration no longer names the callback.
	URL            string     `json:"url"`
	RequestUUID    string     `json:"request_uuid"`
	IdempotencyKey string     `json:"idempotency_key"`
	OrderKey       string     `json:"order_key,omitempty"`
	Body           []byte     `json:"body,omitempty"` // nil in List results
	State          State      `json:"state"`
	CreatedAt      time.Time  `json:"created_at"`
	PendingSince   time.Time  `json:"pending_since"` // creation or last operator retry; the deadline counts from here
	DeadlineAt     time.Time  `json:"deadline_at"`   // PendingSince + Config.Deadline: the first failure from then on is final
	LastAttemptAt  *time.Time `json:"last_attempt_at,omitempty"`
	DeliveredAt    *time.Time `json:"delivered_at,omitempty"`
	DeadAt         *time.Time `json:"dead_at,omitempty"`
	LastError      string     `json:"last_error,omitempty"`
	AttemptCount   int        `json:"attempt_count"`
	JobID          int64      `json:"job_id"`             // current River job
	Attempts       []Attempt  `json:"attempts,omitempty"` // Get only
}

// Attempt is one POST of a delivery to the platform.
type Attempt struct {
	N              int            `json:"n"`
	StartedAt      time.Time      `json:"started_at"`
	Duration       time.Duration  `json:"duration"`              // wall time of the HTTP exchange
	HTTPStatus     int            `json:"http_status,omitempty"` // 0: no response
	RequestSHA256  string         `json:"request_sha256"`        // hex SHA-256 of the bytes sent: the stored body
	URL            string         `json:"url"`                   // where this attempt was posted
	Instance       string         `json:"instance,omitempty"`    // the instance that made it (Config.Instance)
	Outcome        Outcome        `json:"outcome"`
	ReplySignature ReplySignature `json:"reply_signature,omitempty"` // verified, unsigned, mismatch; "" when the reply was not read
	Reply          []byte         `json:"reply,omitempty"`           // the reply as received, at most 64 KiB kept
	Error          string         `json:"error,omitempty"`
}

// Outcome classifies an attempt.
type Outcome string

// Attempt outcomes.
const (
	OutcomeAccepted Outcome = "accepted" // resultFlag=true
	OutcomeRefused  Outcome = "refused"  // resultFlag=false: retried, or a dead letter under RefusalDeadLetter
	OutcomeFailed   Outcome = "failed"   // anything else: retried
	// OutcomeRunning: recorded before sending, not ended yet. Only an
	// attempt in flight shows it: one whose instance died is ended as
	// failed (NoteInstanceDied) when its job runs again.
	OutcomeRunning Outcome = "running"
)

// NoteInstanceDied is the error of an attempt whose instance stopped
// (crash, kill -9, lost store) after recording it as started: it may
// have reached the platform, whose reply nobody read.
const NoteInstanceDied = "instance died during the attempt"

// ListOptions selects deliveries for List.
type ListOptions struct {
	State State // "" for every state
	Limit int   // default 50, at most 1000
	After int64 // cursor: only ids greater than this (the last id of the previous page)
}

// Stats counts deliveries by state.
type Stats struct {
	Pending   int64 `json:"pending"`
	Delivered int64 `json:"delivered"`
	Dead      int64 `json:"dead"`
	// OldestPendingSince is PendingSince of the longest-waiting pending
	// delivery (nil when none is pending).
	OldestPendingSince *time.Time `json:"oldest_pending_since,omitempty"`
	// OldestPendingAge is the engine clock's now minus OldestPendingSince.
	OldestPendingAge time.Duration `json:"oldest_pending_age"`
}

// Defaults.
const (
	DefaultAttemptTimeout = 30 * time.Second
	DefaultDeadline       = 72 * time.Hour
	DefaultMaxWorkers     = 10
	DefaultPollInterval   = time.Second
	DefaultMaxReplyBytes  = protocol.DefaultMaxBytes
)

// DefaultRescueAfter is Config.RescueAfter's default for an attempt
// timeout: a job running longer than its timeout, the time to record it
// and a margin is taken for crashed.
func DefaultRescueAfter(attemptTimeout time.Duration) time.Duration {
	return attemptTimeout + recordMargin + defaultRescueMargin
}

// Config configures an Engine.
type Config struct {
	// Store is the open store handle; required. The Engine does not close it.
	Store *store.DB
	// Policy returns the running configuration's keys, reply rules and
	// callback addresses. It is called once per attempt, so a reload takes
	// effect at the next attempt; it must be cheap (an atomic load) and
	// must not return nil. Required.
	Policy func() *Policy
	// OnAttempt, if set, is told of every recorded attempt (for metrics).
	// It runs on the worker and must not block.
	OnAttempt func(Attempt)
	// AttemptTimeout bounds one POST, reply included. Default 30 s.
	AttemptTimeout time.Duration
	// StopGrace is how long GracefulStop lets attempts in flight finish
	// before cancelling them (a cancelled attempt is retried later, with
	// the same requestUUID: a duplicate at the platform). It must not be
	// shorter than AttemptTimeout, so that no attempt is cut short by a
	// rolling restart. Default AttemptTimeout.
	StopGrace time.Duration
	// Instance names this process on every attempt it makes (several
	// instances may share the store). Default: the host name.
	Instance string
	// RescueAfter is how long an attempt may look running before it is
	// taken for the attempt of a crashed process and retried. It must
	// exceed AttemptTimeout + 10 s. Default: AttemptTimeout + 70 s.
	RescueAfter time.Duration
	// Deadline is how long a delivery is retried, counted from its creation
	// (or operator retry) and fixed then (Delivery.DeadlineAt). The last
	// wait before it is shortened to land on it (never under MinGap); the
	// first failure at or after it dead-letters the delivery with the last
	// error. Default 72 h.
	Deadline time.Duration
	// MaxWorkers is how many deliveries are attempted concurrently. Default 10.
	MaxWorkers int
	// PollInterval is how often River looks for jobs that became due (a
	// retry, an ordering wait). New deliveries are announced and picked up
	// at once (PostgreSQL LISTEN/NOTIFY; on SQLite River's notification
	// table, polled every 50 ms). Default 1 s.
	PollInterval time.Duration
	// MaxReplyBytes caps how much of a reply is read; a longer reply is a
	// failed attempt. Default 1 MiB. The first 64 KiB are kept with the
	// attempt.
	MaxReplyBytes int64
	// ReplyLimits bound the parse of a reply. Zero fields are protocol defaults.
	ReplyLimits protocol.Limits
	// HTTPClient, if set, replaces the default client (which has connect,
	// TLS and header timeouts and never follows redirects). AttemptTimeout
	// still applies to every attempt.
	HTTPClient *http.Client
	// Clock is the schedule clock. Default SystemClock(); tests use
	// ScaledClock.
	Clock Clock
	// Logger receives the engine's logs and River's warnings and errors.
	// Default slog.Default(). Bodies and replies are never logged.
	Logger *slog.Logger

	// testOnly sets River's TestOnly (no staggered start of its services).
	testOnly bool
}

// Engine is the delivery engine on one store handle.
type Engine struct {
	cfg    Config
	db     *store.DB
	clock  Clock
	log    *slog.Logger
	http   *http.Client
	q      queue
	policy func() *Policy
	jitter func() float64
	// riverLog is Logger without River's per-job info records.
	riverLog *slog.Logger
	// enq groups concurrent Enqueue calls into shared transactions.
	enq enqueuer

	mu      sync.Mutex
	started bool

	reclaimed int64 // running jobs of a dead process scheduled again (recover.go)
}

// running guards against two started engines on one store handle: two
// River clients in one process would double the workers and, on SQLite,
// fight over the single connection.
var running sync.Map // *store.DB → *Engine

// New checks cfg, creates River's and the engine's tables if missing
// (idempotent, safe to run from several replicas at once) and returns an
// engine that can Enqueue at once and delivers after Start.
func New(ctx context.Context, cfg Config) (*Engine, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	e := &Engine{
		cfg:    cfg,
		db:     cfg.Store,
		clock:  cfg.Clock,
		log:    cfg.Logger,
		policy: cfg.Policy,
		jitter: randomJitter,
	}
	e.riverLog = slog.New(levelFloor{cfg.Logger.Handler(), slog.LevelWarn})
	e.http = cfg.HTTPClient
	if e.http == nil {
		e.http = defaultHTTPClient(cfg.AttemptTimeout, cfg.MaxWorkers)
	}
	switch e.db.Driver {
	case store.DriverSQLite:
		e.q, err = newSQLiteQueue(e)
	case store.DriverPostgres:
		e.q, err = newPostgresQueue(e)
	default:
		err = fmt.Errorf("%w: store driver %q", ErrInvalid, e.db.Driver)
	}
	if err != nil {
		return nil, err
	}
	if err := e.q.migrate(ctx); err != nil {
		return nil, fmt.Errorf("delivery: migrating tables: %w", store.Unavailable(err))
	}
	if err := e.recoverAtStart(ctx); err != nil {
		return nil, err
	}
	e.db.Prepare(ctx, enqueueQueries...) // outside any transaction, after the tables exist
	return e, nil
}

func (c Config) withDefaults() (Config, error) {
	if c.Store == nil || (c.Store.SQL == nil && c.Store.Pool == nil) {
		return c, fmt.Errorf("%w: no store", ErrInvalid)
	}
	if c.Policy == nil {
		return c, fmt.Errorf("%w: no policy", ErrInvalid)
	}
	c = c.WithDefaults()
	if c.StopGrace < c.AttemptTimeout {
		return c, fmt.Errorf("%w: stop grace %s is shorter than the attempt timeout %s", ErrInvalid, c.StopGrace, c.AttemptTimeout)
	}
	if c.RescueAfter <= c.jobTimeout() {
		return c, fmt.Errorf("%w: rescue after %s must exceed the attempt timeout plus %s (%s)", ErrInvalid, c.RescueAfter, recordMargin, c.jobTimeout())
	}
	return c, nil
}

// WithDefaults is c with every unset setting at its default, as New runs
// it. A caller comparing what it configures with what an engine runs
// reads the defaults here rather than restating them.
func (c Config) WithDefaults() Config {
	if c.AttemptTimeout <= 0 {
		c.AttemptTimeout = DefaultAttemptTimeout
	}
	if c.Deadline <= 0 {
		c.Deadline = DefaultDeadline
	}
	if c.StopGrace <= 0 {
		c.StopGrace = c.AttemptTimeout
	}
	if c.Instance == "" {
		c.Instance, _ = os.Hostname()
	}
	if c.RescueAfter <= 0 {
		c.RescueAfter = DefaultRescueAfter(c.AttemptTimeout)
	}
	if c.MaxWorkers <= 0 {
		c.MaxWorkers = DefaultMaxWorkers
	}
	if c.PollInterval <= 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.MaxReplyBytes <= 0 {
		c.MaxReplyBytes = DefaultMaxReplyBytes
	}
	if c.Clock == nil {
		c.Clock = SystemClock()
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Start starts delivering. ctx bounds only the start-up; the engine runs
// until Stop (it is shared across config reloads, so it must not die with
// the context of the config that happened to start it). Starting a second
// engine on the same store handle fails with ErrAlreadyStarted.
func (e *Engine) Start(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.started {
		return ErrAlreadyStarted
	}
	if _, loaded := running.LoadOrStore(e.db, e); loaded {
		return ErrAlreadyStarted
	}
	if err := e.q.start(ctx); err != nil {
		running.Delete(e.db)
		return fmt.Errorf("delivery: starting River: %w", err)
	}
	e.started = true
	return nil
}

// Stop stops fetching, lets running attempts finish until ctx is done, then
// cancels them (a cancelled attempt is retried later with the same body).
func (e *Engine) Stop(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.started {
		return nil
	}
	err := e.q.stop(ctx)
	if err != nil {
		// Out of patience: cancel the attempts in flight and wait for them
		// to unwind (their HTTP calls end at once).
		hard, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.cfg.AttemptTimeout)
		err = e.q.stopAndCancel(hard)
		cancel()
	}
	if err != nil {
		return fmt.Errorf("delivery: stopping River: %w", err)
	}
	e.started = false
	running.Delete(e.db)
	if t, ok := e.http.Transport.(interface{ CloseIdleConnections() }); ok && e.cfg.HTTPClient == nil {
		t.CloseIdleConnections()
	}
	return nil
}

// GracefulStop is Stop bounded by StopGrace plus the time to record the
// last attempts: attempts in flight finish (AttemptTimeout bounds each)
// instead of being cut short and sent again by another instance.
func (e *Engine) GracefulStop() error {
	ctx, cancel := context.WithTimeout(context.Background(), e.cfg.StopGrace+recordMargin)
	defer cancel()
	return e.Stop(ctx)
}

func (n *NewDelivery) validate() error {
	if len(n.Body) == 0 {
		return fmt.Errorf("%w: empty body", ErrInvalid)
	}
	if n.RequestUUID == "" {
		return fmt.Errorf("%w: no requestUUID", ErrInvalid)
	}
	if n.IdempotencyKey == "" {
		n.IdempotencyKey = n.RequestUUID
	}
	u, err := url.Parse(n.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%w: callback URL %q is not an absolute http(s) URL", ErrInvalid, n.URL)
	}
	// The body is sent byte for byte on every attempt for days: make sure
	// now that it is a message the platform can read, under the
	// requestUUID the caller reports.
	env, err := protocol.Parse(n.Body, protocol.Limits{})
	if err != nil {
		return fmt.Errorf("%w: body: %w", ErrInvalid, err)
	}
	if env.RequestUUID != n.RequestUUID {
		return fmt.Errorf("%w: body requestUUID %q differs from %q", ErrInvalid, env.RequestUUID, n.RequestUUID)
	}
	if n.Callback != "" && env.Root != n.Callback {
		return fmt.Errorf("%w: body root %s differs from callback %s", ErrInvalid, env.Root, n.Callback)
	}
	return nil
}
