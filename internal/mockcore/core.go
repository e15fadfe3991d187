// Package mockcore is the reference insurer core system: an in-memory policy
// store behind the JSON API that the shipped mappings target (see the
// contract in mappings/). It exists so the sidecar can be demonstrated and
// tested end to end against a core with a real lifecycle: a proposal is paid
// through its payment URL and becomes a policy; endorsements, claims,
// invoices and surrenders act only on issued, live policies; and the core
// pushes its own events (policy-paid, invoice-issued, surrender-settled)
// to the sidecar with retries, the way a production core would.
//
// It is deliberately small and deterministic: numbers come from counters,
// time from an injectable Clock, and every state change happens under one
// mutex so idempotency checks and effects cannot interleave.
//
// It lives under internal/ because it is a test and demo fixture, not part
// of the plugin's API. It speaks only its own JSON API: it must not import
// the gongbao packages (caddymodule and below) or Caddy, so the sidecar is
// tested against a core that shares no code with it.
package mockcore

import (
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"
)

// CST is the zone of every time the core reports: the platform and its
// insurers work in China Standard Time (+08:00).
var CST = time.FixedZone("CST", 8*60*60)

// Operation names used as keys in Stats.
const (
	OpProposals    = "proposals"
	OpPayments     = "payments"
	OpEndorsements = "endorsements"
	OpClaims       = "claims"
	OpInvoices     = "invoices"
	OpSurrenders   = "surrenders"
)

// Config configures a Core. Zero values are usable defaults except PublicURL,
// which should be the base URL clients reach the core at.
type Config struct {
	// PublicURL is the base of the payment and document URLs the core hands
	// out (paymentUrl, policyUrl, downloadUrl), e.g. "http://127.0.0.1:9000".
	PublicURL string
	// EventsURL is the base the core POSTs events to ({EventsURL}/events/<name>);
	// a comma-separated list is tried in turn, starting with the one that
	// answered last (failover across sidecar instances). Empty disables
	// event emission.
	EventsURL string
	// InsurerPhone is returned as insurerPhone on endorsements. Default "95500".
	InsurerPhone string
	// Clock supplies the current time and backoff timers. Default: the wall clock.
	Clock Clock
	// Backoff returns the wait after the n-th failed delivery attempt (n ≥ 1).
	// Default DefaultBackoff (1 s doubling, capped at 30 s).
	Backoff func(attempt int) time.Duration
	// Client sends events. Default: a client with a 10 s timeout.
	Client *http.Client
	// QueueSize bounds the number of events waiting for delivery. Default 1024.
	QueueSize int
	// Logger receives delivery problems. Default: discard.
	Logger *slog.Logger
}

// Core is the in-memory reference core. Create it with New and release its
// delivery goroutine with Close.
type Core struct {
	cfg     Config
	clock   Clock
	log     *slog.Logger
	emitter *emitter

	mu        sync.Mutex
	seq       int
	proposals map[string]*proposal
	policies  map[string]*policy
	invoices  map[string]string // invoiceNo → policyNo
	idem      map[string]idemRecord
	calls     map[string]int
	effects   map[string]int
}

// New returns a Core with an empty book of business. Its event emitter
// starts at once when cfg.EventsURL is set.
func New(cfg Config) *Core {
	if cfg.Clock == nil {
		cfg.Clock = realClock{}
	}
	if cfg.Backoff == nil {
		cfg.Backoff = DefaultBackoff
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.InsurerPhone == "" {
		cfg.InsurerPhone = "95500"
	}
	cfg.PublicURL = strings.TrimRight(cfg.PublicURL, "/")
	c := &Core{
		cfg:       cfg,
		clock:     cfg.Clock,
		log:       cfg.Logger,
		proposals: map[string]*proposal{},
		policies:  map[string]*policy{},
		invoices:  map[string]string{},
		idem:      map[string]idemRecord{},
		calls:     map[string]int{},
		effects:   map[string]int{},
	}
	if cfg.EventsURL != "" {
		c.emitter = newEmitter(cfg)
	}
	return c
}

// Close stops event delivery; events not yet delivered are dropped (the
// core is in-memory, so they would not survive a restart either).
func (c *Core) Close() {
	if c.emitter != nil {
		c.emitter.close()
	}
}

// Handler returns the core's HTTP API.
func (c *Core) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/proposals", c.operation(OpProposals, c.createProposal))
	mux.HandleFunc("POST /v1/surrenders", c.operation(OpSurrenders, c.surrender))
	mux.HandleFunc("POST /v1/endorsements", c.operation(OpEndorsements, c.endorse))
	mux.HandleFunc("POST /v1/claims", c.operation(OpClaims, c.claim))
	mux.HandleFunc("POST /v1/invoices", c.operation(OpInvoices, c.invoice))
	mux.HandleFunc("GET /pay/{proposalNo}", c.pay)
	mux.HandleFunc("GET /policies/{file}", c.policyDocument)
	mux.HandleFunc("GET /invoices/{file}", c.invoiceDocument)
	mux.HandleFunc("GET /v1/stats", c.stats)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, answer{Accepted: true, Message: "ok"})
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, answer{Message: "未知接口 " + r.Method + " " + r.URL.Path})
	})
	return mux
}

// now is the core's notion of the current time, in +08:00.
func (c *Core) now() time.Time { return c.clock.Now().In(CST) }

// nextSeq returns a process-wide sequence number; callers hold c.mu.
func (c *Core) nextSeq() int {
	c.seq++
	return c.seq
}
