package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-gongbao/gongbao/caddymodule/delivery"
	"github.com/caddy-gongbao/gongbao/caddymodule/mapping"
)

// deliveryClock is the delivery engine's schedule clock: nil (the wall
// clock) except in tests, which run schedule time faster.
var deliveryClock delivery.Clock

// defaultCallbackBase is where callbacks go when nothing is configured: a
// platform stand-in on the same machine (the simulator's default).
const defaultCallbackBase = "http://127.0.0.1:7070"

// CallbackConfig sets where and how callbacks to the platform are
// delivered. Delivery settings belong to the store they run on: they are
// read when the store is first opened and kept across reloads that reuse
// it; a reload whose settings differ logs a warning for each
// (callbacks_running.go). Addresses, reply_signature and refusal follow
// every reload.
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

	// StopGrace is how long a stopping sidecar lets callback attempts in
	// flight finish before cutting them short (a cut attempt is sent again,
	// same requestUUID, by this or another instance). Not shorter than
	// attempt_timeout, so that a rolling restart against a slow platform
	// duplicates nothing. A reload that keeps the store never stops
	// delivery. Default: attempt_timeout.
	StopGrace caddy.Duration `json:"stop_grace,omitempty"`

	// Workers is how many callbacks are delivered at once. Default: 10.
	Workers int `json:"workers,omitempty"`

	// PollInterval is how often due callbacks are looked for (SQLite has
	// no notifications, so it is also the pick-up delay). Default: 1s.
	PollInterval caddy.Duration `json:"poll_interval,omitempty"`

	// ReplySignature is "optional" (default) or "required". Optional: the
	// platform's reply is judged by its resultFlag; a reply without a sign
	// is accepted, and so is one whose sign does not verify (recorded on
	// the attempt, counted, and warned about once per delivery). Required:
	// a reply whose sign is missing or does not verify with a verify_key is
	// retried. Nothing public shows that 工保网 signs its replies.
	ReplySignature string `json:"reply_signature,omitempty"`

	// Refusal is what a reply with resultFlag=false does: "retry"
	// (default; resent on the normal schedule, same requestUUID and body,
	// until the deadline, then a dead letter with the platform's last
	// message) or "dead_letter" (a dead letter at once).
	Refusal string `json:"refusal,omitempty"`
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

// callbacksSection prefixes the callback settings' errors.
const callbacksSection = "gongbao callbacks"

// validate checks that every callback has a usable address and each
// setting its rule; every mistake is reported, one per setting.
func (c *CallbackConfig) validate(urls map[string]string) error {
	errs := c.validateURLs(urls)
	errs = append(errs,
		notNegative(callbacksSection, "workers", c.Workers),
		notNegativeDuration(callbacksSection, "attempt_timeout", c.AttemptTimeout),
		notNegativeDuration(callbacksSection, "deadline", c.Deadline),
		notNegativeDuration(callbacksSection, "poll_interval", c.PollInterval),
		notNegativeDuration(callbacksSection, "rescue_after", c.RescueAfter),
		notNegativeDuration(callbacksSection, "stop_grace", c.StopGrace),
		c.validateStopGrace(),
	)
	if _, err := delivery.ParseSignatureMode(c.ReplySignature); err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", callbacksSection, err))
	}
	if _, err := delivery.ParseRefusalMode(c.Refusal); err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", callbacksSection, err))
	}
	return errors.Join(errs...)
}

// validateURLs names each event whose address is not an http(s) URL, in
// event order.
func (c *CallbackConfig) validateURLs(urls map[string]string) []error {
	var errs []error
	for _, event := range slices.Sorted(maps.Keys(urls)) {
		raw := urls[event]
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("%s: event %s: %q is not an http(s) URL", callbacksSection, event, raw))
		}
	}
	return errs
}

// validateStopGrace: a stop must not cut attempts short.
func (c *CallbackConfig) validateStopGrace() error {
	attempt := c.AttemptTimeout
	if attempt <= 0 {
		attempt = caddy.Duration(delivery.DefaultAttemptTimeout)
	}
	if c.StopGrace <= 0 || c.StopGrace >= attempt {
		return nil
	}
	return fmt.Errorf("%s: stop_grace must not be shorter than attempt_timeout %s, or a stop would cut attempts short (got %s)",
		callbacksSection, time.Duration(attempt), time.Duration(c.StopGrace))
}

// modes reads reply_signature and refusal; "" means the default.
func (c *CallbackConfig) modes() (delivery.SignatureMode, delivery.RefusalMode, error) {
	sig, err := delivery.ParseSignatureMode(c.ReplySignature)
	if err != nil {
		return "", "", err
	}
	refusal, err := delivery.ParseRefusalMode(c.Refusal)
	return sig, refusal, err
}

// callbackPolicy is what this config tells the shared delivery engine:
// the keys replies may be signed with, how replies are judged and where
// each callback goes. Addresses are keyed by event name and by callback
// root, so a delivery queued under any earlier config finds its address.
func (a *App) callbackPolicy() *delivery.Policy {
	sig, refusal, _ := a.Callbacks.modes() // checked by Validate
	urls := make(map[string]string, 2*len(a.callbackTo))
	for event, u := range a.callbackTo {
		urls[event] = u
		if m, ok := a.mappings.Outbound[event]; ok {
			urls[m.Callback] = u
		}
	}
	return &delivery.Policy{Keys: a.verifyKeys, ReplySignature: sig, Refusal: refusal, URLs: urls}
}

// deliveries is the delivery engine of a store handle and the policy it
// delivers under. The engine outlives config reloads; the policy (keys,
// reply rules, callback addresses) is that of the config that started
// most recently, swapped in whole so an attempt reads one config's view.
type deliveries struct {
	engine  *delivery.Engine
	policy  atomic.Pointer[delivery.Policy]
	startMu sync.Mutex
	started bool
}

// newDeliveries builds the engine on a freshly opened store, with the
// handle's callback settings.
func newDeliveries(ctx context.Context, h *storeHandle, log *slog.Logger) (*deliveries, error) {
	d := new(deliveries)
	d.policy.Store(new(delivery.Policy))
	dcfg := h.engineSettings
	dcfg.Store, dcfg.Policy, dcfg.OnAttempt, dcfg.Clock, dcfg.Logger = h.db, d.policy.Load, countCallbackAttempt, deliveryClock, log
	engine, err := delivery.New(ctx, dcfg)
	if err != nil {
		return nil, err
	}
	d.engine = engine
	return d, nil
}

// start starts delivering, once per store handle, under the given policy.
func (d *deliveries) start(p *delivery.Policy) error {
	d.policy.Store(p)
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

// stop lets attempts in flight finish (up to stop_grace), then stops.
func (d *deliveries) stop() error {
	d.startMu.Lock()
	defer d.startMu.Unlock()
	if !d.started {
		return nil
	}
	d.started = false
	return d.engine.GracefulStop()
}
