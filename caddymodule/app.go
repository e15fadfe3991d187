// Package caddymodule is the Caddy adapter of caddy-gongbao: the "gongbao"
// app (keys, mappings, limits shared by every handler), the
// http.handlers.gongbao middleware that sits in front of reverse_proxy, the
// Caddyfile syntax and the "caddy gongbao" command. The exchange engine
// (gateway), the protocol, mapping, store, delivery and simulator engines
// live in Caddy-free packages below this one; this package only wires them
// into Caddy's lifecycle: HTTP plumbing, the call on the core, the store,
// journal, metrics and logs. It is the only package of the module that
// imports Caddy besides the root package and cmd/caddy; no engine package
// may import it.
package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddy-gongbao/gongbao/caddymodule/gateway"
	"github.com/caddy-gongbao/gongbao/caddymodule/mapping"
	"github.com/caddy-gongbao/gongbao/caddymodule/protocol"
	"github.com/caddy-gongbao/gongbao/caddymodule/store"
	"github.com/caddy-gongbao/gongbao/internal/pii"
)

func init() {
	caddy.RegisterModule(App{})
}

// defaultMaxBodySize bounds a platform message (the engine's default).
const defaultMaxBodySize = gateway.DefaultMaxBodySize

// App is the "gongbao" app: what every gongbao handler on every server
// shares. It is configured with the `gongbao` global option.
type App struct {
	// SignKey is the key replies and callbacks are signed with. Use a
	// placeholder such as "{env.GONGBAO_SIGN_KEY}" or
	// "{file./run/secrets/gongbao}" so the key never appears in the
	// config; placeholders are resolved at provisioning. Required.
	SignKey string `json:"sign_key,omitempty"`

	// VerifyKeys are the keys a platform signature may be made with.
	// Several may be listed while a key is being rotated. Default: the
	// sign key alone. Placeholders as for sign_key.
	VerifyKeys []string `json:"verify_keys,omitempty"`

	// Mappings is the folder of mapping files (*.yaml). Default: the
	// mappings shipped with the module, compiled into the binary.
	Mappings string `json:"mappings,omitempty"`

	// MaxBodySize is the largest platform message accepted, in bytes.
	// Default: 1 MiB.
	MaxBodySize int64 `json:"max_body_size,omitempty"`

	// MaxDepth, MaxElements, MaxValueChars and MaxAttributes (per
	// element) bound the shape of a platform message. Defaults: those of
	// the protocol package.
	MaxDepth      int `json:"max_depth,omitempty"`
	MaxElements   int `json:"max_elements,omitempty"`
	MaxValueChars int `json:"max_value_chars,omitempty"`
	MaxAttributes int `json:"max_attributes,omitempty"`

	// MaxRequestUUIDLength bounds the head's requestUUID, in characters
	// (printable ASCII without spaces). The spec declares varchar(50).
	// Default: 64.
	MaxRequestUUIDLength int `json:"max_request_uuid_length,omitempty"`

	// Store is the durable store for idempotency records and callback
	// deliveries. Default: an SQLite file under Caddy's data directory.
	Store *StoreConfig `json:"store,omitempty"`

	// Idempotency sets how resent platform requests are recognised. On
	// by default.
	Idempotency *IdempotencyConfig `json:"idempotency,omitempty"`

	// ContentReplay sets how a verified message already handled under
	// another requestUUID is refused. On by default with idempotency.
	ContentReplay *ContentReplayConfig `json:"content_replay,omitempty"`

	// InsuranceCode is the insurer's code agreed with 工保网; it fills
	// insuranceCode in every callback. Placeholders allowed.
	InsuranceCode string `json:"insurance_code,omitempty"`

	// InstanceName names this sidecar on the journal entries it writes and
	// the callback attempts it makes, which matters when several instances
	// share one PostgreSQL store. Default: the host name and Caddy's
	// instance id ("host/uuid"). Placeholders allowed.
	InstanceName string `json:"instance_name,omitempty"`

	// Callbacks sets where and how callbacks are delivered.
	Callbacks *CallbackConfig `json:"callbacks,omitempty"`

	// Journal sets the message journal. On by default.
	Journal *JournalConfig `json:"journal,omitempty"`

	signKey    string
	verifyKeys []string
	mappings   *mapping.Set
	limits     protocol.Limits
	logger     *zap.Logger
	store      *storeHandle
	storeKey   string
	storeLabel string             // the store in one token, for metrics (no password)
	idem       *store.Idempotency // nil when idempotency is off
	insurance  string
	gateway    *gateway.Gateway // the exchange engine every handler shares
	instance   string
	callbackTo map[string]string         // event name → callback URL
	maskers    map[string]pii.BodyMasker // request root → personal data masks
	ctx        caddy.Context
	stop       context.CancelFunc
	done       chan struct{}
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "gongbao",
		New: func() caddy.Module { return new(App) },
	}
}

// builtinMappings holds the mapping files shipped with the module. The root
// package of the module embeds them and registers them here, because Go's
// embed cannot reach a folder above the embedding package.
var builtinMappings fs.FS

// RegisterBuiltinMappings makes fsys (a tree with a "mappings" folder) the
// default mapping set.
func RegisterBuiltinMappings(fsys fs.FS) { builtinMappings = fsys }

// Provision resolves keys, compiles the mappings and sets limits.
func (a *App) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	repl := caddy.NewReplacer()
	var err error
	if a.signKey, a.verifyKeys, err = resolveKeys(repl, a.SignKey, a.VerifyKeys); err != nil {
		return err
	}
	if a.MaxBodySize == 0 {
		a.MaxBodySize = defaultMaxBodySize
	}
	if a.MaxRequestUUIDLength == 0 {
		a.MaxRequestUUIDLength = defaultMaxRequestUUIDLength
	}
	a.limits = protocol.Limits{
		MaxBytes:      int(a.MaxBodySize),
		MaxDepth:      a.MaxDepth,
		MaxElements:   a.MaxElements,
		MaxValueChars: a.MaxValueChars,
		MaxAttributes: a.MaxAttributes,
	}
	set, err := a.loadMappings()
	if err != nil {
		return err
	}
	a.mappings = set
	logMappingWarnings(a.logger, set.Warnings)
	a.ctx = ctx
	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return fmt.Errorf("gongbao: registering metrics: %w", err)
	}
	return a.provisionStore(ctx, repl)
}

// provisionStore opens (or reuses, across reloads) the durable store that
// idempotency records and callback deliveries live in.
func (a *App) provisionStore(ctx caddy.Context, repl *caddy.Replacer) error {
	if a.Idempotency == nil {
		a.Idempotency = new(IdempotencyConfig)
	}
	a.Idempotency.withDefaults()
	if a.ContentReplay == nil {
		a.ContentReplay = new(ContentReplayConfig)
	}
	a.ContentReplay.withDefaults(a.Idempotency)
	if a.Callbacks == nil {
		a.Callbacks = new(CallbackConfig)
	}
	if a.Journal == nil {
		a.Journal = new(JournalConfig)
	}
	a.Journal.withDefaults()
	a.maskers = make(map[string]pii.BodyMasker, len(a.mappings.Inbound))
	for root, m := range a.mappings.Inbound {
		a.maskers[root] = newMasker(m)
	}
	a.insurance = repl.ReplaceKnown(a.InsuranceCode, "")
	a.gateway = gateway.New(gateway.Config{
		SignKey:              a.signKey,
		VerifyKeys:           a.verifyKeys,
		Mappings:             a.mappings,
		Limits:               a.limits,
		MaxRequestUUIDLength: a.MaxRequestUUIDLength,
		InsuranceCode:        a.insurance,
	})
	a.instance = instanceName(repl.ReplaceKnown(a.InstanceName, ""))
	a.callbackTo = make(map[string]string, len(a.mappings.Outbound))
	for event, m := range a.mappings.Outbound {
		a.callbackTo[event] = a.Callbacks.callbackURL(m, repl)
	}
	if a.Idempotency.Disabled && a.Journal.Disabled && len(a.mappings.Outbound) == 0 {
		return nil
	}
	if a.Store == nil {
		a.Store = new(StoreConfig)
	}
	resolved := a.Store.resolve(repl)
	handle, key, err := openStore(ctx, resolved, a.Callbacks, a.instance)
	if err != nil {
		return err
	}
	a.store, a.storeKey, a.storeLabel = handle, key, storeID(resolved)
	if !a.Idempotency.Disabled {
		a.idem = handle.idempotency
	}
	return nil
}

// Cleanup releases this config's use of the shared store.
func (a *App) Cleanup() error {
	if a.storeKey != "" {
		_, err := stores.Delete(a.storeKey)
		return err
	}
	return nil
}

func (a *App) loadMappings() (*mapping.Set, error) {
	if a.Mappings != "" {
		set, err := mapping.LoadDir(a.Mappings)
		if err != nil {
			return nil, fmt.Errorf("gongbao mappings: %w", err)
		}
		return set, nil
	}
	if builtinMappings == nil {
		return nil, errors.New("gongbao: no mappings folder configured and no built-in mappings in this binary")
	}
	set, err := mapping.LoadFS(builtinMappings, "mappings")
	if err != nil {
		return nil, fmt.Errorf("gongbao built-in mappings: %w", err)
	}
	return set, nil
}

// logMappingWarnings logs the mapping files' non-fatal problems (deprecated
// forms, near spellings of optional rows), each named by file:line; caddy
// validate and caddy run show them.
func logMappingWarnings(log *zap.Logger, warnings []*mapping.LoadError) {
	for _, w := range warnings {
		log.Warn("mapping file warning", zap.String("warning", w.Error()))
	}
}

// Validate checks the provisioned configuration and reports every
// mistake, one per setting. Key messages name the setting, never its
// value: values there are secrets.
func (a *App) Validate() error {
	return errors.Join(
		a.validateKeys(),
		notNegative("gongbao", "max_body_size", a.MaxBodySize),
		notNegative("gongbao", "max_request_uuid_length", a.MaxRequestUUIDLength),
		a.validateMappings(),
		a.Callbacks.validate(a.callbackTo),
		a.Idempotency.validate(),
		a.ContentReplay.validate(a.inbound),
	)
}

// validateKeys: a sign key, and at least one verify key.
func (a *App) validateKeys() error {
	if a.signKey == "" {
		if a.SignKey == "" {
			return errors.New("gongbao: sign_key is required (for example sign_key {env.GONGBAO_SIGN_KEY})")
		}
		return fmt.Errorf("gongbao: sign_key %s resolved to an empty value (is the variable or file set?)", describePlaceholder(a.SignKey))
	}
	if len(a.verifyKeys) == 0 {
		return errors.New("gongbao: every verify_key resolved to an empty value")
	}
	return nil
}

func (a *App) validateMappings() error {
	if len(a.mappings.Inbound) == 0 {
		return errors.New("gongbao: the mapping set has no inbound message")
	}
	return nil
}

// describePlaceholder names a key setting for an error message without
// revealing it: a placeholder is shown (it is only a name), a literal is not.
func describePlaceholder(s string) string {
	if strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}") {
		return s
	}
	return "(literal value)"
}

// Start logs what this config serves, starts callback delivery (once per
// store, under this config's keys and addresses) and the store's
// housekeeping: expiring dead leases and purging records past their
// retention.
func (a *App) Start() error {
	a.logStart()
	if a.store == nil {
		return nil
	}
	if err := a.store.deliveries.start(a.callbackPolicy()); err != nil {
		return fmt.Errorf("gongbao: starting callback delivery: %w", err)
	}
	callbackStats.current.Store(a)
	ctx, cancel := context.WithCancel(context.Background())
	a.stop, a.done = cancel, make(chan struct{})
	go a.housekeep(ctx)
	return nil
}

// logStart writes the configuration summary of a start or reload.
func (a *App) logStart() {
	if a.store == nil {
		a.logConfiguration(a.logger, nil)
		return
	}
	cfg := a.Store.resolve(caddy.NewReplacer())
	a.logConfiguration(a.logger, &cfg)
}

// Stop ends the housekeeping.
func (a *App) Stop() error {
	callbackStats.current.CompareAndSwap(a, nil)
	if a.stop != nil {
		a.stop()
		<-a.done
	}
	return nil
}

// housekeepEvery is how often leases are expired and old records purged.
const housekeepEvery = 10 * time.Minute

func (a *App) housekeep(ctx context.Context) {
	defer close(a.done)
	// The first pass waits a little: a config replaced at once (a quick
	// reload) should not start a pass only to cancel it.
	timer := time.NewTimer(housekeepFirstDelay)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		a.housekeepOnce(ctx, time.Now())
		timer.Reset(housekeepEvery)
	}
}

// housekeepFirstDelay is the wait before the first housekeeping pass.
const housekeepFirstDelay = 30 * time.Second

// housekeepOnce turns expired leases into unknown records (so operators
// see them) and purges idempotency records and journal entries past
// retention. A pass cut short by a config change is not an error.
func (a *App) housekeepOnce(ctx context.Context, now time.Time) {
	warn := func(msg string, err error) {
		if ctx.Err() == nil {
			a.logger.Warn(msg, zap.Error(err))
		}
	}
	if j := a.store.journal; j != nil {
		if _, err := j.journal.PurgeBodies(ctx, now.Add(-time.Duration(a.Journal.BodyRetention))); err != nil {
			warn("purging journal bodies", err)
		}
		if _, err := j.journal.Purge(ctx, now.Add(-time.Duration(a.Journal.Retention))); err != nil {
			warn("purging the journal", err)
		}
	}
	idem := a.idem
	if idem == nil {
		return
	}
	if n, err := idem.ExpireLeases(ctx, now); err != nil {
		warn("expiring idempotency leases", err)
	} else if n > 0 {
		a.logger.Warn("requests whose outcome is unknown", zap.Int64("count", n))
	}
	cutoff := now.Add(-time.Duration(a.Idempotency.Retention))
	if _, err := idem.Purge(ctx, cutoff); err != nil {
		warn("purging idempotency records", err)
	}
}

// journal is the journal writer, or nil when the journal is off.
func (a *App) journal() *journalWriter {
	if a.store == nil || a.Journal.Disabled {
		return nil
	}
	return a.store.journal
}

// outbound returns the mapping for an event name.
func (a *App) outbound(event string) (*mapping.Outbound, bool) {
	m, ok := a.mappings.Outbound[event]
	return m, ok
}

// inbound returns the mapping for a request root element.
func (a *App) inbound(root string) (*mapping.Inbound, bool) {
	m, ok := a.mappings.Inbound[root]
	return m, ok
}

// instanceName is the configured instance name, or by default the host
// name and Caddy's instance id (kept in Caddy's data directory, so stable
// across restarts).
func instanceName(configured string) string {
	if configured != "" {
		return configured
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown-host"
	}
	if id, err := caddy.InstanceID(); err == nil {
		return host + "/" + id.String()
	}
	return host
}

// defaultMaxRequestUUIDLength leaves room above the spec's varchar(50).
const defaultMaxRequestUUIDLength = gateway.DefaultMaxRequestUUIDLength

// shanghai is China Standard Time, the protocol's (and the console's) zone.
var shanghai = gateway.Shanghai

// humanSize is used in messages about size limits.
func humanSize(n int64) string { return gateway.HumanSize(n) }

// Interface guards
var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.Validator    = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
)
