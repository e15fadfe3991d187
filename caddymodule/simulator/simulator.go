// Package simulator plays 工保网 (the platform) against a running sidecar
// and the insurer's core: it runs a policy's whole lifecycle — insure, pay,
// payment callback, correct, claim, invoice, invoice callback, surrender,
// surrender callback — signing every request, verifying every reply, and
// receiving the callbacks on its own HTTP listener, where it answers the way
// the platform does. It prints a transcript and stops at the first
// deviation with an error saying what went wrong.
//
// It knows nothing about Caddy or mockcore: the only thing it assumes about
// the core beyond the protocol is that the payment link (yeepayurl) can be
// opened with an HTTP GET, and even that can be left to a human (NoPay).
//
// Files: simulator.go (Config, Run, errors), steps.go (the lifecycle),
// exchange.go (requests and replies), receiver.go (the callback endpoint),
// templates.go (messages), transcript.go (output). Personal data in the
// transcript is masked by the project's one policy, internal/pii.
package simulator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"time"
)

// Defaults.
const (
	DefaultCallbackListen = "127.0.0.1:7070"
	DefaultTimeout        = 60 * time.Second
	DefaultInvoiceType    = "1"
)

// maxMessageBytes bounds what is read of a reply, a callback or a payment
// page.
const maxMessageBytes = 1 << 20

// Sentinel errors. Every deviation found during a run is a *Deviation
// wrapping one of them, so callers can tell the classes apart.
var (
	// ErrConfig: the run could not start (bad URL, no key, unknown
	// invoice type, unreadable template, listener address in use).
	ErrConfig = errors.New("simulator: configuration")
	// ErrRefused: a reply said resultFlag=false, or the core reported the
	// surrender as not refunded.
	ErrRefused = errors.New("refused")
	// ErrBadSignature: a reply's or a callback's sign does not verify.
	ErrBadSignature = errors.New("signature does not verify")
	// ErrNoCallback: an expected callback did not arrive within the timeout.
	ErrNoCallback = errors.New("callback missing")
	// ErrWrongPolicy: a callback names a policy or proposal other than
	// the one this run created.
	ErrWrongPolicy = errors.New("callback for the wrong policy")
	// ErrProtocol: anything else the platform would not accept — a
	// transport failure, an HTTP error, a malformed message, a wrong root,
	// a missing field, callbacks out of order.
	ErrProtocol = errors.New("protocol deviation")
)

// Deviation is the error Run returns when the system under test misbehaves.
type Deviation struct {
	Step   string // lifecycle step, e.g. "claim", "payment callback"
	Err    error  // one of the sentinels above
	Detail string // what happened, personal data masked
}

func (d *Deviation) Error() string { return fmt.Sprintf("step %s: %s", d.Step, d.Detail) }

// Unwrap returns the sentinel.
func (d *Deviation) Unwrap() error { return d.Err }

// deviation builds the run's error; its text is masked like the
// transcript.
func (s *session) deviation(step string, kind error, format string, args ...any) *Deviation {
	return &Deviation{Step: step, Err: kind, Detail: s.mask(fmt.Sprintf(format, args...))}
}

// Clock is the simulator's source of time; tests replace it to make a
// timeout happen at once.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Config is one simulation run.
type Config struct {
	// URL is the sidecar's platform endpoint, e.g. http://127.0.0.1:8080/gongbao.
	URL string
	// Key signs requests and callback answers and verifies replies and
	// callbacks. It is never printed.
	Key string
	// CallbackListen is where the callback receiver listens (the sidecar's
	// callbacks base must point here). Default 127.0.0.1:7070.
	CallbackListen string
	// Listener, when set, is used instead of CallbackListen; Run closes it.
	Listener net.Listener
	// Timeout bounds each HTTP exchange and each wait for a callback.
	// Default 60s.
	Timeout time.Duration
	// InvoiceType is the InvoiceType requested: "1" electronic, "2" paper,
	// "3" special paper. Default "1".
	InvoiceType string
	// NoPay leaves the payment link alone (a human pays it) and only waits
	// for the payment callback.
	NoPay bool
	// Templates, when set, holds message templates that replace the
	// built-in ones (same file names; see templates.go).
	Templates fs.FS
	// Client sends requests and opens the payment link. Default: a client
	// without its own timeout (Timeout applies per exchange).
	Client *http.Client
	// Clock defaults to the wall clock.
	Clock Clock
	// Out receives the transcript as it happens; nil discards it.
	Out io.Writer
}

// Result is what a run established.
type Result struct {
	ProposalNo string
	PolicyNo   string
	Entries    []Entry // the transcript
}

// Run plays the lifecycle once. It returns an error wrapping ErrConfig when
// the run cannot start, a *Deviation at the first deviation, or the
// context's error when ctx ends. The Result is returned in every case, with
// the transcript so far.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	res := &Result{}
	msgs, err := prepare(&cfg)
	if err != nil {
		if cfg.Listener != nil {
			cfg.Listener.Close()
		}
		return res, err
	}
	ln := cfg.Listener
	if ln == nil {
		if ln, err = net.Listen("tcp", cfg.CallbackListen); err != nil {
			return res, fmt.Errorf("%w: callback receiver: %w", ErrConfig, err)
		}
	}
	rcv := newReceiver(cfg.Key, cfg.Clock)
	stop := rcv.serve(ln)
	defer stop()

	s := &session{cfg: cfg, msgs: msgs, rcv: rcv, res: res, keep: map[string]bool{}}
	s.out = newPrinter(cfg.Out, s.mask)
	s.out.header(cfg.URL, "http://"+ln.Addr().String())
	start := cfg.Clock.Now()
	err = s.lifecycle(ctx)
	s.out.summary(res, err, cfg.Clock.Now().Sub(start))
	return res, err
}

// prepare checks cfg, fills in defaults and loads the messages.
func prepare(cfg *Config) (*messages, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	msgs, err := loadTemplates(cfg.Templates, cfg.InvoiceType)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return msgs, nil
}

func (c *Config) setDefaults() error {
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%w: --url %q is not an http(s) URL", ErrConfig, c.URL)
	}
	if c.Key == "" {
		return fmt.Errorf("%w: no signing key", ErrConfig)
	}
	if c.CallbackListen == "" {
		c.CallbackListen = DefaultCallbackListen
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.InvoiceType == "" {
		c.InvoiceType = DefaultInvoiceType
	}
	if c.InvoiceType != "1" && c.InvoiceType != "2" && c.InvoiceType != "3" {
		return fmt.Errorf("%w: invoice type %q: want 1 (electronic), 2 (paper) or 3 (special paper)", ErrConfig, c.InvoiceType)
	}
	if c.Client == nil {
		c.Client = &http.Client{}
	}
	if c.Clock == nil {
		c.Clock = realClock{}
	}
	return nil
}
