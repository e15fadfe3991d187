// Package gateway is the platform exchange of caddy-gongbao, free of
// Caddy: it admits a platform message (read limits, parse, dispatch,
// verify, fingerprint, map to the core's JSON call), builds the signed
// reply from the core's answer, words and signs (or, for unverified
// input, deliberately does not sign) the refusal of every failure kind of
// DESIGN §4, and turns a core event into a signed callback.
//
// It returns values and errors and leaves the rest to its caller: the
// HTTP plumbing, the call on the core, the idempotency store, the
// journal, metrics and logs belong to the Caddy adapter (package
// caddymodule). It must not import Caddy, zap, the store or the delivery
// engine; it builds on the protocol and mapping packages only.
package gateway

import (
	"time"

	"github.com/caddy-gongbao/gongbao/caddymodule/mapping"
	"github.com/caddy-gongbao/gongbao/caddymodule/protocol"
)

// DefaultMaxBodySize bounds a platform message. The largest real message
// (insureRequest with ciphertext fields) is a few kilobytes.
const DefaultMaxBodySize = 1 << 20

// DefaultMaxRequestUUIDLength leaves room above the spec's varchar(50).
const DefaultMaxRequestUUIDLength = 64

// Config is what an engine is built from: resolved keys (never
// placeholders), compiled mappings and limits.
type Config struct {
	// SignKey signs replies and callbacks.
	SignKey string
	// VerifyKeys are the keys a platform signature may be made with.
	VerifyKeys []string
	// Mappings are the compiled inbound and outbound mappings.
	Mappings *mapping.Set
	// Limits bound the shape of a platform message; Limits.MaxBytes also
	// bounds its size (default DefaultMaxBodySize).
	Limits protocol.Limits
	// MaxRequestUUIDLength bounds the head's requestUUID (default
	// DefaultMaxRequestUUIDLength).
	MaxRequestUUIDLength int
	// InsuranceCode fills the insurance_code variable of callbacks.
	InsuranceCode string
	// Now is the clock the `now` variable is read from. Default time.Now.
	Now func() time.Time
}

// Gateway is one compiled engine, shared by every handler of a config.
// It holds no per-request state and is safe for concurrent use.
type Gateway struct {
	cfg Config
}

// New builds an engine, filling defaults.
func New(cfg Config) *Gateway {
	if cfg.Limits.MaxBytes == 0 {
		cfg.Limits.MaxBytes = DefaultMaxBodySize
	}
	if cfg.MaxRequestUUIDLength == 0 {
		cfg.MaxRequestUUIDLength = DefaultMaxRequestUUIDLength
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Mappings == nil {
		cfg.Mappings = &mapping.Set{}
	}
	return &Gateway{cfg: cfg}
}

// Inbound returns the mapping for a request root element.
func (g *Gateway) Inbound(root string) (*mapping.Inbound, bool) {
	m, ok := g.cfg.Mappings.Inbound[root]
	return m, ok
}

// Outbound returns the mapping for an event name.
func (g *Gateway) Outbound(event string) (*mapping.Outbound, bool) {
	m, ok := g.cfg.Mappings.Outbound[event]
	return m, ok
}

// Shanghai is China Standard Time. A fixed zone (China has no daylight
// saving) keeps static builds independent of the host's tzdata.
var Shanghai = time.FixedZone("CST", 8*3600)

// Timestamp is t as the protocol writes times: China Standard Time,
// "2006-01-02 15:04:05".
func Timestamp(t time.Time) string { return t.In(Shanghai).Format("2006-01-02 15:04:05") }

// RequestVars are the runtime variables inbound rows may refer to.
func (g *Gateway) RequestVars() mapping.Vars {
	return mapping.Vars{"now": Timestamp(g.cfg.Now())}
}

// CallbackVars are the runtime variables outbound rows may refer to.
func (g *Gateway) CallbackVars() mapping.Vars {
	return mapping.Vars{
		"insurance_code": g.cfg.InsuranceCode,
		"now":            Timestamp(g.cfg.Now()),
	}
}
