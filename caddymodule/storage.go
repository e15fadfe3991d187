package caddymodule

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddy-gongbao/gongbao/caddymodule/delivery"
	"github.com/caddy-gongbao/gongbao/caddymodule/store"
)

// StoreConfig selects the durable store shared by idempotency records and
// callback deliveries.
type StoreConfig struct {
	// Driver is "sqlite" (default: an embedded file, no server needed) or
	// "postgres" (shared by several Caddy instances).
	Driver string `json:"driver,omitempty"`

	// Path is the SQLite file. Default: gongbao/gongbao.db under Caddy's
	// data directory.
	Path string `json:"path,omitempty"`

	// DSN is the PostgreSQL connection string. It may carry a password:
	// use a placeholder such as {env.GONGBAO_STORE_DSN}.
	DSN string `json:"dsn,omitempty"`

	// Schema is the PostgreSQL schema for our tables. Default: public.
	Schema string `json:"schema,omitempty"`
}

// storeHandle is one open store and the engines built on it. It is shared
// by every config that names the same store, so a reload reuses it instead
// of opening a second writer.
type storeHandle struct {
	db          *store.DB
	idempotency *store.Idempotency
	deliveries  *deliveries
	journal     *journalWriter
	// engineSettings are the callback settings the delivery engine was
	// opened with (deliverySettings).
	engineSettings delivery.Config
}

// Destruct stops delivering and closes the store when the last config
// using it is unloaded.
func (s *storeHandle) Destruct() error {
	err := s.deliveries.stop()
	s.journal.close()
	return errors.Join(err, s.db.Close())
}

// logRecovery says what opening an embedded store took back from the
// process that had it before (crash, kill -9): requests that were calling
// the core (now unknown) and callback attempts that were running.
func (s *storeHandle) logRecovery(log *zap.Logger, cfg store.Config) {
	var jobs int64
	if s.deliveries != nil && s.deliveries.engine != nil {
		jobs = s.deliveries.engine.Reclaimed()
	}
	if n := s.idempotency.Reclaimed(); n > 0 || jobs > 0 {
		log.Warn("the previous process stopped with work in progress: requests left calling the core are now unknown (resolved by unknown_outcome), running callback attempts are retried",
			zap.String("store", cfg.Path), zap.Int64("requests", n), zap.Int64("callback_attempts", jobs))
	}
}

// stores holds the open stores across config reloads.
var stores = caddy.NewUsagePool()

// resolve fills defaults and placeholders and returns the config to open.
func (c *StoreConfig) resolve(repl *caddy.Replacer) store.Config {
	cfg := store.Config{Driver: c.Driver, Path: repl.ReplaceKnown(c.Path, ""), DSN: repl.ReplaceKnown(c.DSN, ""), Schema: c.Schema}
	if cfg.Driver == "" {
		cfg.Driver = store.DriverSQLite
	}
	if cfg.Driver == store.DriverSQLite && cfg.Path == "" {
		cfg.Path = filepath.Join(caddy.AppDataDir(), "gongbao", "gongbao.db")
	}
	return cfg
}

// poolKey identifies a store without keeping its DSN (and password) in
// memory as a map key.
func poolKey(cfg store.Config) string {
	sum := sha256.Sum256([]byte(cfg.Driver + "\x00" + cfg.Path + "\x00" + cfg.DSN + "\x00" + cfg.Schema))
	return "gongbao.store." + hex.EncodeToString(sum[:16])
}

// openStore returns the shared handle for cfg, opening it (tables,
// delivery engine) on first use.
func openStore(ctx caddy.Context, cfg store.Config, callbacks *CallbackConfig, instance string) (*storeHandle, string, error) {
	key := poolKey(cfg)
	settings := deliverySettings(callbacks, instance)
	val, loaded, err := stores.LoadOrNew(key, func() (caddy.Destructor, error) {
		openCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		db, err := store.Open(openCtx, cfg)
		if err != nil {
			return nil, err
		}
		h := &storeHandle{db: db, engineSettings: settings}
		var journal *store.Journal
		if h.idempotency, err = store.NewIdempotency(openCtx, db); err == nil {
			// Several instances on PostgreSQL: leases on the database's clock.
			h.idempotency.DatabaseClock = true
			if journal, err = store.NewJournal(openCtx, db); err == nil {
				h.deliveries, err = newDeliveries(openCtx, h, ctx.Slogger())
			}
		}
		if err != nil {
			db.Close()
			return nil, err
		}
		h.journal = newJournalWriter(journal, ctx.Logger().Named("journal"))
		h.logRecovery(ctx.Logger(), cfg)
		return h, nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("gongbao store (%s): %w", cfg.Driver, err)
	}
	h := val.(*storeHandle)
	if loaded {
		h.warnIfEngineDiffers(ctx.Logger(), settings)
	}
	return h, key, nil
}

// IdempotencyConfig sets how resent platform requests are recognised.
type IdempotencyConfig struct {
	// Disabled turns duplicate protection off. Only for benchmarks and
	// tests: without it a resent insureRequest creates a second proposal.
	Disabled bool `json:"disabled,omitempty"`

	// Scope separates the requestUUIDs of different platforms sharing
	// one store. Default: "gongbao".
	Scope string `json:"scope,omitempty"`

	// WaitInFlight is how long a duplicate of a request still being
	// processed waits for the first to finish before being told 处理中.
	// Default: 5s.
	WaitInFlight caddy.Duration `json:"wait_in_flight,omitempty"`

	// Lease is how long a request may hold its record while the core is
	// called; past it the holder is presumed dead and the outcome is
	// unknown. Keep it above reverse_proxy's longest timeout. Default: 2m.
	Lease caddy.Duration `json:"lease,omitempty"`

	// UnknownOutcome is what a resend of a request whose outcome is
	// unknown does: "retry" (default) calls the core again with the same
	// Idempotency-Key; "hold" answers 处理中 and leaves the record for an
	// operator.
	UnknownOutcome string `json:"unknown_outcome,omitempty"`

	// Retention is how long completed and released records are kept.
	// Default: 720h (30 days). Records in_progress or unknown are kept
	// until resolved.
	Retention caddy.Duration `json:"retention,omitempty"`
}

// Unknown-outcome policies.
const (
	unknownRetry = "retry"
	unknownHold  = "hold"
)

func (c *IdempotencyConfig) withDefaults() {
	if c.Scope == "" {
		c.Scope = "gongbao"
	}
	if c.WaitInFlight == 0 {
		c.WaitInFlight = caddy.Duration(5 * time.Second)
	}
	if c.Lease == 0 {
		c.Lease = caddy.Duration(2 * time.Minute)
	}
	if c.UnknownOutcome == "" {
		c.UnknownOutcome = unknownRetry
	}
	if c.Retention == 0 {
		c.Retention = caddy.Duration(30 * 24 * time.Hour)
	}
}

func (c *IdempotencyConfig) validate() error {
	const section = "gongbao idempotency"
	var outcome error
	if c.UnknownOutcome != unknownRetry && c.UnknownOutcome != unknownHold {
		outcome = fmt.Errorf("%s: unknown_outcome must be %q or %q (got %q)", section, unknownRetry, unknownHold, c.UnknownOutcome)
	}
	return errors.Join(outcome,
		notNegativeDuration(section, "wait_in_flight", c.WaitInFlight),
		positiveDuration(section, "lease", c.Lease),
		positiveDuration(section, "retention", c.Retention),
	)
}
