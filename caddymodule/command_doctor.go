package caddymodule

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/caddy-gongbao/gongbao/caddymodule/delivery"
	"github.com/caddy-gongbao/gongbao/caddymodule/mapping"
	"github.com/caddy-gongbao/gongbao/caddymodule/store"
)

// `caddy gongbao doctor`: a go-live preflight. It reads a config (a file,
// adapted as `caddy run` would, or the running server's through the admin
// API) and checks what a first day in production depends on. It sends no
// protocol message: addresses are only dialled (TCP, and TLS for https).

// check is the result of one preflight check.
type check struct {
	name   string
	ok     bool
	detail string // what was found (✔) or what is wrong (✗)
	fix    string // what to do about a ✗
}

func pass(name, detail string) check      { return check{name: name, ok: true, detail: detail} }
func fail(name, detail, fix string) check { return check{name: name, detail: detail, fix: fix} }

// doctorOptions are the command's flags.
type doctorOptions struct {
	configFile string
	adapter    string
	admin      adminClient
	healthPath string
	timeout    time.Duration
}

func doctorCommand() *cobra.Command {
	var opt doctorOptions
	cmd := &cobra.Command{
		Use:   "doctor [--config F [--adapter A]] [--address A] [--health-path P]",
		Short: "Go-live preflight: keys, mappings, store, core, callback addresses, insurance code, exposure",
		Long: `
Checks a config before go-live: with --config, the file (adapted as caddy run
would); otherwise the running server's config, read through the admin API
(--address). Every check is printed with ✔ or ✗, and for a ✗ the reason and
the fix. No protocol message is sent: the core and the callback addresses
are only dialled (TCP, and a TLS handshake for https), plus an optional HTTP
GET of --health-path on each core upstream. The store is opened, migrated
as the sidecar would migrate it, and written (one row in gongbao_doctor).

Placeholders such as {env.GONGBAO_SIGN_KEY} are resolved in this command's
environment: run it as the server's user, with the server's environment.

Exit status: 0 when every check passes, 1 otherwise.`,
	}
	cmd.Flags().StringVar(&opt.configFile, "config", "", "config file to check (default: the running server's, via the admin API)")
	cmd.Flags().StringVar(&opt.adapter, "adapter", "", "name of the config adapter (as for caddy run)")
	cmd.Flags().StringVar(&opt.healthPath, "health-path", "", "also GET this path on each core upstream (for example /health); 2xx passes")
	cmd.Flags().DurationVar(&opt.timeout, "timeout", 5*time.Second, "bound of each network check")
	opt.admin.register(cmd)
	cmd.RunE = run(func(cmd *cobra.Command) error {
		raw, err := opt.loadConfig()
		if err != nil {
			return exitError{1, err}
		}
		checks := runDoctor(cmd.Context(), raw, &opt)
		failed := printChecks(cmd.OutOrStdout(), checks)
		if failed > 0 {
			return exitError{1, fmt.Errorf("%d of %d checks failed", failed, len(checks))}
		}
		return nil
	})
	return cmd
}

// loadConfig returns the config JSON to check.
func (o *doctorOptions) loadConfig() ([]byte, error) {
	if o.configFile != "" {
		raw, _, _, err := caddycmd.LoadConfig(o.configFile, o.adapter)
		if err != nil {
			return nil, fmt.Errorf("loading %s: %w", o.configFile, err)
		}
		return raw, nil
	}
	var buf strings.Builder
	raw := func(out io.Writer, data []byte) error { _, err := out.Write(data); return err }
	if err := o.admin.do(&buf, http.MethodGet, "/config/", nil, raw); err != nil {
		return nil, fmt.Errorf("reading the running config (or give --config): %w", err)
	}
	return []byte(buf.String()), nil
}

func printChecks(out io.Writer, checks []check) (failed int) {
	for _, c := range checks {
		mark := "✔"
		if !c.ok {
			mark, failed = "✗", failed+1
		}
		fmt.Fprintf(out, "%s %s: %s\n", mark, c.name, c.detail)
		if !c.ok && c.fix != "" {
			fmt.Fprintf(out, "    fix: %s\n", c.fix)
		}
	}
	return failed
}

// doctorConfig is the part of a Caddy config the doctor reads.
type doctorConfig struct {
	Apps struct {
		Gongbao json.RawMessage `json:"gongbao"`
		HTTP    struct {
			Servers map[string]struct {
				Listen []string          `json:"listen"`
				Routes []json.RawMessage `json:"routes"`
			} `json:"servers"`
		} `json:"http"`
	} `json:"apps"`
}

// runDoctor runs every check against the config JSON raw.
func runDoctor(ctx context.Context, raw []byte, opt *doctorOptions) []check {
	var cfg doctorConfig
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return []check{fail("config", "not a Caddy JSON config: "+err.Error(), "check the file and --adapter")}
	}
	if len(cfg.Apps.Gongbao) == 0 {
		return []check{fail("config", "no gongbao app (global option) in this config", "add the gongbao global option; see Caddyfile.example")}
	}
	app := new(App)
	if err := json.Unmarshal(cfg.Apps.Gongbao, app); err != nil {
		return []check{fail("config", "the gongbao app does not decode: "+err.Error(), "check the gongbao global option")}
	}
	if app.Callbacks == nil {
		app.Callbacks = new(CallbackConfig)
	}
	repl := caddy.NewReplacer()
	servers := scanServers(cfg)
	checks := []check{checkKeys(repl, app)}
	set, mappingsCheck := checkMappings(app)
	checks = append(checks, mappingsCheck, checkStore(ctx, repl, app, set))
	checks = append(checks, checkCore(ctx, repl, servers, opt)...)
	if set != nil {
		checks = append(checks, checkCallbacks(ctx, repl, app, set, opt.timeout)...)
		if len(set.Outbound) > 0 {
			checks = append(checks, checkInsuranceCode(repl, app))
		}
	}
	return append(checks, checkExposure(servers)...)
}

func checkKeys(repl *caddy.Replacer, app *App) check {
	sign, verify, err := resolveKeys(repl, app.SignKey, app.VerifyKeys)
	switch {
	case err != nil:
		return fail("keys", err.Error(), "set the variable or create the file in the server's environment, or correct the placeholder")
	case sign == "":
		return fail("keys", "sign_key is not set", "add sign_key {env.GONGBAO_SIGN_KEY} (or {file.…}) to the gongbao global option")
	}
	return pass("keys", fmt.Sprintf("sign_key %s; verify_key %s (SHA-256 fingerprints; compare with the platform's)",
		keyFingerprint(sign), strings.Join(keyFingerprints(verify), ", ")))
}

func checkMappings(app *App) (*mapping.Set, check) {
	set, err := app.loadMappings()
	if err != nil {
		return nil, fail("mappings", err.Error(), "correct the file named, or the mappings folder; `caddy gongbao mapping test` tries one")
	}
	var roots []string
	for root := range set.Inbound {
		roots = append(roots, root)
	}
	slices.Sort(roots)
	return set, pass("mappings", fmt.Sprintf("%s: %d messages (%s), %d callbacks",
		app.mappingSource(), len(roots), strings.Join(roots, ", "), len(set.Outbound)))
}

// checkStore opens the store, migrates it as the sidecar does and writes
// one row: the sidecar needs every one of these on its first request.
func checkStore(ctx context.Context, repl *caddy.Replacer, app *App, set *mapping.Set) check {
	if app.Store == nil {
		app.Store = new(StoreConfig)
	}
	cfg := app.Store.resolve(repl)
	desc := describeStore(cfg)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	db, err := store.Open(ctx, cfg)
	if errors.Is(err, store.ErrInUse) {
		// The running sidecar owns the embedded store (it checked it when
		// it started); doctor must not share the file.
		return pass("store", desc+": in use by the running sidecar, not opened ("+err.Error()+")")
	}
	if err != nil {
		return fail("store", desc+": "+err.Error(), "make the folder writable by the user Caddy runs as (or the database reachable with rights on its schema)")
	}
	defer db.Close()
	if err := migrateLikeTheSidecar(ctx, db); err != nil {
		return fail("store", desc+": migrating: "+err.Error(), "give the store's user the right to create tables, or check the database")
	}
	if err := writeProbe(ctx, db); err != nil {
		return fail("store", desc+": writing: "+err.Error(), "make the store writable (file system, permissions, disk space, database rights)")
	}
	return pass("store", desc+": writable, tables migrated")
}

func migrateLikeTheSidecar(ctx context.Context, db *store.DB) error {
	if _, err := store.NewIdempotency(ctx, db); err != nil {
		return err
	}
	if _, err := store.NewJournal(ctx, db); err != nil {
		return err
	}
	_, err := delivery.New(ctx, delivery.Config{Store: db, Policy: func() *delivery.Policy { return new(delivery.Policy) }})
	return err
}

// doctorProbeTable holds the row writeProbe writes. Earlier releases
// created it with the same statement outside the versioned steps.
const doctorProbeTable = `CREATE TABLE IF NOT EXISTS gongbao_doctor (id INTEGER PRIMARY KEY, checked_at TEXT NOT NULL)`

var doctorMigrations = []store.Migration{{
	ID:       "doctor-0001-probe",
	SQLite:   []string{doctorProbeTable},
	Postgres: []string{doctorProbeTable},
}}

// writeProbe commits one row, proving the store takes writes.
func writeProbe(ctx context.Context, db *store.DB) error {
	if err := db.Migrate(ctx, doctorMigrations); err != nil {
		return err
	}
	return db.InTx(ctx, func(q store.Runner) error {
		if _, err := q.Exec(ctx, `DELETE FROM gongbao_doctor`); err != nil {
			return err
		}
		_, err := q.Exec(ctx, `INSERT INTO gongbao_doctor (id, checked_at) VALUES (1, $1)`, time.Now().UTC().Format(time.RFC3339))
		return err
	})
}

// serverScan is what the doctor needs to know of one HTTP server.
type serverScan struct {
	name      string
	listen    []string
	gongbao   bool
	notify    bool
	upstreams []upstream // of reverse_proxy handlers in routes that hold the gongbao handler
}

type upstream struct {
	dial string
	tls  bool
}

// handlerJSON is the part of a handler the doctor reads.
type handlerJSON struct {
	Handler   string            `json:"handler"`
	Routes    []json.RawMessage `json:"routes"`
	Upstreams []struct {
		Dial string `json:"dial"`
	} `json:"upstreams"`
	Transport *struct {
		TLS json.RawMessage `json:"tls"`
	} `json:"transport"`
}

func scanServers(cfg doctorConfig) []serverScan {
	var out []serverScan
	for name, srv := range cfg.Apps.HTTP.Servers {
		s := serverScan{name: name, listen: srv.Listen}
		for _, route := range srv.Routes {
			var found routeScan
			found.walk(route)
			s.gongbao = s.gongbao || found.gongbao
			s.notify = s.notify || found.notify
			if found.gongbao {
				s.upstreams = append(s.upstreams, found.upstreams...)
			}
		}
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b serverScan) int { return strings.Compare(a.name, b.name) })
	return out
}

// routeScan collects, through subroutes, what one top-level route holds.
type routeScan struct {
	gongbao, notify bool
	upstreams       []upstream
}

func (r *routeScan) walk(route json.RawMessage) {
	var rt struct {
		Handle []handlerJSON `json:"handle"`
	}
	if json.Unmarshal(route, &rt) != nil {
		return
	}
	for _, h := range rt.Handle {
		switch h.Handler {
		case "gongbao":
			r.gongbao = true
		case "gongbao_notify":
			r.notify = true
		case "reverse_proxy":
			for _, u := range h.Upstreams {
				r.upstreams = append(r.upstreams, upstream{dial: u.Dial, tls: h.Transport != nil && len(h.Transport.TLS) > 0})
			}
		case "subroute":
			for _, sub := range h.Routes {
				r.walk(sub)
			}
		}
	}
}

func checkCore(ctx context.Context, repl *caddy.Replacer, servers []serverScan, opt *doctorOptions) []check {
	var out []check
	for _, s := range servers {
		if !s.gongbao {
			continue
		}
		if len(s.upstreams) == 0 {
			out = append(out, fail("core", "server "+s.name+": the gongbao route has no reverse_proxy with static upstreams",
				"put reverse_proxy <core address> after gongbao in the same route"))
		}
		for _, u := range s.upstreams {
			out = append(out, checkUpstream(ctx, repl.ReplaceKnown(u.dial, ""), u.tls, opt))
		}
	}
	if len(out) == 0 {
		out = append(out, fail("core", "no server has the gongbao handler", "add a site with gongbao in front of reverse_proxy; see Caddyfile.example"))
	}
	return out
}

func checkUpstream(ctx context.Context, addr string, useTLS bool, opt *doctorOptions) check {
	name := "core " + addr
	if err := dialTCP(ctx, addr, opt.timeout); err != nil {
		return fail(name, err.Error(), "start the core, or correct the reverse_proxy upstream of the gongbao route")
	}
	if opt.healthPath == "" {
		return pass(name, "reachable (TCP)")
	}
	scheme := "http"
	if useTLS {
		scheme = "https"
	}
	target := scheme + "://" + addr + "/" + strings.TrimPrefix(opt.healthPath, "/")
	status, err := httpGet(ctx, target, opt.timeout)
	if err != nil {
		return fail(name, "GET "+target+": "+err.Error(), "check the core's health endpoint")
	}
	if status < 200 || status > 299 {
		return fail(name, fmt.Sprintf("GET %s: HTTP %d", target, status), "check the core's health endpoint and --health-path")
	}
	return pass(name, fmt.Sprintf("reachable; GET %s: HTTP %d", target, status))
}

// checkCallbacks dials each distinct callback host: TCP, and a TLS
// handshake (certificate and name verified) for https. Nothing is posted.
func checkCallbacks(ctx context.Context, repl *caddy.Replacer, app *App, set *mapping.Set, timeout time.Duration) []check {
	byURL := map[string][]string{}
	for event, m := range set.Outbound {
		u := app.Callbacks.callbackURL(m, repl)
		byURL[u] = append(byURL[u], m.Callback+" ("+event+")")
	}
	urls := make([]string, 0, len(byURL))
	for u := range byURL {
		urls = append(urls, u)
	}
	slices.Sort(urls)
	var out []check
	for _, raw := range urls {
		slices.Sort(byURL[raw])
		name := "callback " + strings.Join(byURL[raw], ", ")
		out = append(out, checkCallbackURL(ctx, name, raw, timeout))
	}
	return out
}

func checkCallbackURL(ctx context.Context, name, raw string, timeout time.Duration) check {
	shown := redactURL(raw)
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fail(name, shown+" is not an http(s) URL", "correct callbacks { base … } or url …")
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	addr := net.JoinHostPort(u.Hostname(), port)
	if u.Scheme == "https" {
		err = dialTLS(ctx, addr, u.Hostname(), timeout)
	} else {
		err = dialTCP(ctx, addr, timeout)
	}
	if err != nil {
		return fail(name, shown+": "+err.Error(), "correct callbacks { base … } (or url …), or open the route to the platform")
	}
	detail := shown + ": reachable"
	if u.Scheme == "https" {
		detail += " (TLS handshake verified)"
	}
	if p := plainHTTPProblem(raw); p != "" {
		detail += "; note: plain http to a host that is not loopback"
	}
	return pass(name, detail)
}

func checkInsuranceCode(repl *caddy.Replacer, app *App) check {
	code := repl.ReplaceKnown(app.InsuranceCode, "")
	if p := insuranceCodeProblem(code); p != "" {
		return fail("insurance code", p, "set insurance_code to the 5-digit code 工保网 assigned you")
	}
	return pass("insurance code", code)
}

// checkExposure fails a server that serves both the platform endpoint and
// the events intake: whoever reaches the intake can make the sidecar sign
// callbacks, so it must not share the platform's listener.
func checkExposure(servers []serverScan) []check {
	var out []check
	for _, s := range servers {
		if s.gongbao && s.notify {
			out = append(out, fail("exposure", fmt.Sprintf("server %s (%s) serves both the platform endpoint (gongbao) and the events intake (gongbao_notify)",
				s.name, strings.Join(s.listen, " ")), "move gongbao_notify to its own site bound to loopback or an internal interface (see Caddyfile.example)"))
		}
	}
	if len(out) == 0 {
		out = append(out, pass("exposure", "the events intake does not share a listener with the platform endpoint"))
	}
	return out
}

func dialTCP(ctx context.Context, addr string, timeout time.Duration) error {
	d := net.Dialer{Timeout: timeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	return conn.Close()
}

func dialTLS(ctx context.Context, addr, serverName string, timeout time.Duration) error {
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: timeout}, Config: &tls.Config{ServerName: serverName, MinVersion: tls.VersionTLS12}}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	return conn.Close()
}

func httpGet(ctx context.Context, target string, timeout time.Duration) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return 0, err
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}
