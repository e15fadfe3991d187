package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-gongbao/gongbao/caddymodule/delivery"
	"github.com/caddy-gongbao/gongbao/caddymodule/mapping"
)

// defaultCallbackBase is where callbacks go when nothing is configured: a
// platform stand-in on the same machine (the simulator's default).
const defaultCallbackBase = "http://127.0.0.1:7070"

// CallbackConfig sets where and how callbacks to the platform are
// delivered. Delivery settings belong to the store they run on: they are
// read when the store is first opened and kept across reloads that reuse it.
type CallbackConfig struct {
	// Base is the platform's callback address. A callback goes to
	// Base + "/" + its request root element, e.g.
	// https://platform.example/queryPolicyRequest. Default:
	// http://127.0.0.1:7070.
	Base string `json:"base,omitempty"`

	// URLs overrides the address of single callbacks, keyed by request
	// root element (queryPolicyRequest) or event name (policy-paid).
	URLs map[string]string `json:"urls,omitempty"`

	// AttemptTimeout bounds one delivery attempt, reply included.
	// Default: 30s.
	AttemptTimeout caddy.Duration `json:"attempt_timeout,omitempty"`

	// Deadline is how long a callback is retried before it becomes a dead
	// letter. Default: 72h. Attempts are never less than 10s apart.
	Deadline caddy.Duration `json:"deadline,omitempty"`

	// RescueAfter is how long an attempt may look running before it is
	// taken for the attempt of a crashed sidecar and retried. It must
	// exceed attempt_timeout + 10s. Default: attempt_timeout + 70s.
	RescueAfter caddy.Duration `json:"rescue_after,omitempty"`

	// Workers is how many callbacks are delivered at once. Default: 10.
	Workers int `json:"workers,omitempty"`

	// PollInterval is how often due callbacks are looked for (SQLite has
	// no notifications, so it is also the pick-up delay). Default: 1s.
	PollInterval caddy.Duration `json:"poll_interval,omitempty"`
}

// callbackURL is where the callback of an outbound mapping is posted.
func (c *CallbackConfig) callbackURL(m *mapping.Outbound, repl *caddy.Replacer) string {
	for _, key := range []string{m.Callback, m.Event} {
		if u, ok := c.URLs[key]; ok {
			return repl.ReplaceKnown(u, "")
		}
	}
	base := repl.ReplaceKnown(c.Base, "")
	if base == "" {
		base = defaultCallbackBase
	}
	return strings.TrimRight(base, "/") + "/" + m.Callback
}

// validate checks that every callback has a usable address.
func (c *CallbackConfig) validate(urls map[string]string) error {
	for event, raw := range urls {
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("gongbao callbacks: event %s: %q is not an http(s) URL", event, raw)
		}
	}
	if c.Workers < 0 || c.AttemptTimeout < 0 || c.Deadline < 0 || c.PollInterval < 0 || c.RescueAfter < 0 {
		return errors.New("gongbao callbacks: workers, attempt_timeout, deadline, poll_interval and rescue_after must be positive")
	}
	return nil
}

// deliveries is the delivery engine of a store handle and the keys it
// verifies platform replies with. The engine outlives config reloads; the
// keys are those of the config that started most recently.
type deliveries struct {
	engine  *delivery.Engine
	keys    atomic.Pointer[[]string]
	startMu sync.Mutex
	started bool
}

// newDeliveries builds the engine on a freshly opened store.
func newDeliveries(ctx context.Context, h *storeHandle, cfg *CallbackConfig, log *slog.Logger) (*deliveries, error) {
	d := new(deliveries)
	empty := []string{}
	d.keys.Store(&empty)
	engine, err := delivery.New(ctx, delivery.Config{
		Store:          h.db,
		PlatformKeys:   func() []string { return *d.keys.Load() },
		AttemptTimeout: time.Duration(cfg.AttemptTimeout),
		Deadline:       time.Duration(cfg.Deadline),
		RescueAfter:    time.Duration(cfg.RescueAfter),
		MaxWorkers:     cfg.Workers,
		PollInterval:   time.Duration(cfg.PollInterval),
		Logger:         log,
	})
	if err != nil {
		return nil, err
	}
	d.engine = engine
	return d, nil
}

// start starts delivering, once per store handle, with the given keys.
func (d *deliveries) start(keys []string) error {
	d.keys.Store(&keys)
	d.startMu.Lock()
	defer d.startMu.Unlock()
	if d.started {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := d.engine.Start(ctx); err != nil && !errors.Is(err, delivery.ErrAlreadyStarted) {
		return err
	}
	d.started = true
	return nil
}

// stop lets attempts in flight finish (bounded), then stops.
func (d *deliveries) stop() error {
	d.startMu.Lock()
	defer d.startMu.Unlock()
	if !d.started {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d.started = false
	return d.engine.Stop(ctx)
}
