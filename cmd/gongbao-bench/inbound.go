package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// Variant modes: what the load generator talks to.
const (
	modeCore    = iota // the core itself
	modeProxy          // Caddy reverse_proxy in front of the core
	modeGongbao        // Caddy with gongbao in front of reverse_proxy
)

// variant is one row of the platform-request table.
type variant struct {
	key         string // -variants name
	label       string // table label
	title       string
	mode        int
	store       string // sqlite or postgres (gongbao only)
	idempotency bool
	journal     bool
}

// variants in table order. (d′) is not in the issue: it separates the
// idempotency store's cost from the journal's.
var variants = []variant{
	{key: "a", label: "a", title: "core called directly (JSON)", mode: modeCore},
	{key: "b", label: "b", title: "Caddy reverse_proxy → core (JSON)", mode: modeProxy},
	{key: "c", label: "c", title: "gongbao, idempotency off, journal off", mode: modeGongbao, store: "sqlite"},
	{key: "d", label: "d", title: "gongbao, SQLite store (idempotency + journal)", mode: modeGongbao, store: "sqlite", idempotency: true, journal: true},
	{key: "d2", label: "d′", title: "gongbao, SQLite store, journal off", mode: modeGongbao, store: "sqlite", idempotency: true},
	{key: "e", label: "e", title: "gongbao, PostgreSQL store (idempotency + journal)", mode: modeGongbao, store: "postgres", idempotency: true, journal: true},
}

func variantByKey(k string) (variant, bool) {
	for _, v := range variants {
		if v.key == k {
			return v, true
		}
	}
	return variant{}, false
}

// inboundResult is one variant's measurements.
type inboundResult struct {
	v         variant
	skipped   string // why it did not run
	err       error
	closed    attackResult
	open      attackResult
	openRate  int
	cpuPerReq time.Duration // server CPU (user+system) per request, closed loop
	peakRSS   int64         // KiB, the server under test
	coreRSS   int64         // KiB, the core behind it
}

// runInbound measures every selected variant side by side: all of them
// are started first (each with its own fresh core), then measured in
// interleaved rounds, the order rotating every round, so that a
// disturbance from outside (the machine may be shared) spreads over all
// variants instead of spoiling one. Closed-loop rounds come first; half
// of (b)'s closed-loop throughput is then the rate of the open-loop
// rounds. Results come back in table order.
func (b *bench) runInbound(ctx context.Context) []inboundResult {
	var all []*live
	for _, v := range variants {
		if !b.opts.variants[v.key] {
			continue
		}
		switch {
		case ctx.Err() != nil:
			all = append(all, &live{res: inboundResult{v: v, err: fmt.Errorf("not run: %w", context.Cause(ctx))}})
		case v.store == "postgres" && !b.pgReachable:
			all = append(all, &live{res: inboundResult{v: v, skipped: "PostgreSQL unreachable"}})
		default:
			b.logf("(%s) starting: %s", v.label, v.title)
			all = append(all, b.startVariant(ctx, v))
		}
	}
	defer func() {
		for _, l := range all {
			l.stop(b.opts.keep)
		}
	}()
	base := liveByKey(all, "b")
	b.closedRounds(ctx, all)
	if base == nil || !base.running() {
		for _, l := range all {
			if l.running() {
				l.fail(errors.New("not measured at half load: (b) gave no throughput to derive the rate from"))
			}
		}
	} else {
		half := max(1, int(math.Round(base.res.closed.Throughput/2)))
		b.openRounds(ctx, all, half)
	}
	out := make([]inboundResult, 0, len(all))
	for _, l := range all {
		if l.running() {
			l.finish(ctx)
		}
		b.logf("(%s) %s", l.res.v.label, l.res.summary(b.opts.concurrency))
		out = append(out, l.res)
	}
	return out
}

// live is a started variant and what it has measured so far.
type live struct {
	res         inboundResult
	dir         string
	core        *proc
	server      *proc // the process under test: core or Caddy
	admin       int   // Caddy's admin port (0 for the core alone)
	newTargeter func() vegeta.Targeter
	check       checker
	closed      []attackResult
	open        []attackResult
	openLat     []time.Duration
	cpu         time.Duration
}

func liveByKey(all []*live, k string) *live {
	for _, l := range all {
		if l.res.v.key == k {
			return l
		}
	}
	return nil
}

// running tells whether the variant is still being measured.
func (l *live) running() bool { return l.server != nil && l.res.err == nil && l.res.skipped == "" }

func (l *live) fail(err error) {
	if l.res.err == nil {
		l.res.err = l.server.died(err)
	}
}

// stop stops the variant's processes and removes its folder (kept on
// failure until the run ends, for its logs).
func (l *live) stop(keep bool) {
	if l.server != nil && l.server != l.core {
		l.server.stop()
	}
	if l.core != nil {
		l.core.stop()
	}
	if l.dir != "" && l.res.err == nil && !keep {
		os.RemoveAll(l.dir)
	}
}

// startVariant starts a fresh core and, unless the variant is the core
// alone, a Caddy in front of it, and warms them up.
func (b *bench) startVariant(ctx context.Context, v variant) *live {
	l := &live{res: inboundResult{v: v}}
	var err error
	if l.dir, err = os.MkdirTemp(b.tmp, "variant-"+v.key+"-"); err != nil {
		l.res.err = err
		return l
	}
	core, coreAddr, err := b.startCore(ctx, l.dir)
	if err != nil {
		l.res.err = err
		return l
	}
	l.core, l.server = core, core
	target := "http://" + coreAddr + "/v1/proposals"
	l.newTargeter = func() vegeta.Targeter { return jsonTargeter(target, b.pool, b.ids) }
	l.check = coreOK
	if v.mode != modeCore {
		global, site := "", "reverse_proxy "+coreAddr
		if v.mode == modeGongbao {
			if global, err = b.gongbaoGlobal(v, l.dir); err != nil {
				l.res.err = err
				return l
			}
			site = "handle /gongbao* {\n\t\tgongbao\n\t\treverse_proxy " + coreAddr + "\n\t}"
		}
		caddy, port, admin, err := b.startCaddyAdmin(ctx, l.dir, "caddy-"+v.key, global, site)
		if err != nil {
			l.res.err = err
			return l
		}
		l.server, l.admin = caddy, admin
		proxied := fmt.Sprintf("http://127.0.0.1:%d/v1/proposals", port)
		l.newTargeter = func() vegeta.Targeter { return jsonTargeter(proxied, b.pool, b.ids) }
		if v.mode == modeGongbao {
			platform := fmt.Sprintf("http://127.0.0.1:%d/gongbao", port)
			l.newTargeter = func() vegeta.Targeter { return xmlTargeter(platform, b.pool, b.ids) }
			l.check = gongbaoOK(signKey)
		}
	}
	if warm := attack(ctx, b.closedSpec(l, b.opts.warmup)); warm.failed() {
		l.fail(fmt.Errorf("warm-up: %s", warm.failureSummary()))
	}
	return l
}

func (b *bench) closedSpec(l *live, d time.Duration) attackSpec {
	c := uint64(b.opts.concurrency)
	return attackSpec{name: l.res.v.key, targeter: l.newTargeter(), workers: c, maxWorkers: c, duration: d,
		check: l.check, verifyEvery: b.opts.verifyEvery}
}

// roundOrder is the variants still running, rotated by round.
func roundOrder(all []*live, round int) []*live {
	var run []*live
	for _, l := range all {
		if l.running() {
			run = append(run, l)
		}
	}
	if len(run) == 0 {
		return nil
	}
	k := round % len(run)
	return append(run[k:], run[:k]...)
}

// closedRounds measures throughput: every variant, round after round.
func (b *bench) closedRounds(ctx context.Context, all []*live) {
	d := b.opts.duration / time.Duration(b.opts.rounds)
	for round := range b.opts.rounds {
		for _, l := range roundOrder(all, round) {
			if ctx.Err() != nil {
				l.fail(fmt.Errorf("interrupted: %w", context.Cause(ctx)))
				continue
			}
			profiled := b.profileFor(ctx, l.admin, fmt.Sprintf("caddy-%s.closed-%d", l.res.v.key, round+1), max(1, int(d.Seconds())-1))
			cpu0, _ := l.server.cpuTime()
			r := attack(ctx, b.closedSpec(l, d))
			cpu1, _ := l.server.cpuTime()
			if err := <-profiled; err != nil {
				b.logf("(%s) CPU profile: %v", l.res.v.label, err)
			}
			l.cpu += cpu1 - cpu0
			l.closed = append(l.closed, r)
			if r.failed() {
				l.fail(fmt.Errorf("closed loop, round %d: %s", round+1, r.failureSummary()))
			}
		}
	}
	for _, l := range all {
		if l.running() || len(l.closed) > 0 {
			l.res.closed = merge(l.closed, nil)
			if l.res.closed.OK > 0 {
				l.res.cpuPerReq = l.cpu / time.Duration(l.res.closed.OK)
			}
		}
	}
}

// openRounds measures latency at a constant rate. Offered more than it
// can serve, a variant queues up and, past its store's 3 s bound, sheds
// load with signed 系统繁忙 replies: counted and reported, not a failure.
// Any other failure is one.
func (b *bench) openRounds(ctx context.Context, all []*live, rate int) {
	d := b.opts.duration / time.Duration(b.opts.rounds)
	c := uint64(b.opts.concurrency)
	for round := range b.opts.rounds {
		for _, l := range roundOrder(all, round) {
			if ctx.Err() != nil {
				l.fail(fmt.Errorf("interrupted: %w", context.Cause(ctx)))
				continue
			}
			l.res.openRate = rate
			r := attack(ctx, attackSpec{name: l.res.v.key, targeter: l.newTargeter(), rate: rate,
				workers: c, maxWorkers: 4 * c, duration: d, check: l.check, verifyEvery: b.opts.verifyEvery,
				allowShed: l.res.closed.Throughput < float64(rate), latencies: &l.openLat})
			l.open = append(l.open, r)
			if r.failed() {
				l.fail(fmt.Errorf("open loop at %d req/s, round %d: %s", rate, round+1, r.failureSummary()))
			}
		}
	}
	for _, l := range all {
		if len(l.open) > 0 {
			l.res.open = merge(l.open, l.openLat)
		}
	}
}

// finish reads the peak RSS of the variant's processes.
func (l *live) finish(ctx context.Context) {
	var err error
	if l.res.peakRSS, err = l.server.peakRSS(); err != nil {
		l.res.peakRSS = 0
	}
	if l.server != l.core {
		l.res.coreRSS, _ = l.core.peakRSS()
	}
	if ctx.Err() != nil {
		l.fail(context.Cause(ctx))
	}
}

func (r inboundResult) summary(concurrency int) string {
	switch {
	case r.skipped != "":
		return "skipped: " + r.skipped
	case r.err != nil:
		return "FAILED: " + r.err.Error()
	}
	return fmt.Sprintf("%.0f req/s at %d concurrent (%s CPU/req); p50 %s p99 %s at %d req/s (achieved %.0f, %d shed); peak RSS %.0f MiB",
		r.closed.Throughput, concurrency, micros(r.cpuPerReq), ms(r.open.P50), ms(r.open.P99), r.openRate, r.open.Rate, r.open.Shed, mib(r.peakRSS))
}

// died adds the server's log when it is no longer running.
func (p *proc) died(err error) error {
	if p.exited() {
		return p.failure(fmt.Errorf("%w (%w)", err, errExited))
	}
	return err
}

// startCore starts a fresh reference core (events off) on a free port.
func (b *bench) startCore(ctx context.Context, dir string) (*proc, string, error) {
	port, err := b.ports.free()
	if err != nil {
		return nil, "", err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	p, err := b.sup.start("mockcore", b.core, []string{"-listen", addr, "-events", ""}, nil, filepath.Join(dir, "mockcore.log"))
	if err != nil {
		return nil, "", err
	}
	if err := p.waitHTTP(ctx, "http://"+addr+"/healthz"); err != nil {
		p.stop()
		return nil, "", err
	}
	return p, addr, nil
}

// gongbaoGlobal is the gongbao global option of a variant. Callbacks go
// to a loopback port nobody listens on: the core's events are off, so
// there are none.
func (b *bench) gongbaoGlobal(v variant, dir string) (string, error) {
	port, err := b.ports.free()
	if err != nil {
		return "", err
	}
	lines := []string{
		"sign_key {env.GONGBAO_SIGN_KEY}",
		"insurance_code TEST",
		b.storeLine(v.store, dir, "v"+v.key),
		fmt.Sprintf("callbacks {\n\t\t\tbase http://127.0.0.1:%d\n\t\t}", port),
	}
	if !v.idempotency {
		lines = append(lines, "idempotency off")
	}
	if !v.journal {
		lines = append(lines, "journal off")
	}
	return "gongbao {\n\t\t" + strings.Join(lines, "\n\t\t") + "\n\t}", nil
}

// storeLine is the store subdirective: an SQLite file in dir, or a fresh
// PostgreSQL schema (the DSN comes from the environment, never the file).
func (b *bench) storeLine(store, dir, tag string) string {
	if store == "postgres" {
		return "store postgres {env.GONGBAO_BENCH_DSN} " + b.newSchema(tag)
	}
	return "store sqlite " + filepath.Join(dir, "gongbao.db")
}

// startCaddyAdmin starts the built Caddy with its own HOME, XDG folders,
// admin port and site port, and waits until the site answers. It returns
// the site and admin ports.
func (b *bench) startCaddyAdmin(ctx context.Context, dir, name, global, site string) (*proc, int, int, error) {
	port, err := b.ports.free()
	if err != nil {
		return nil, 0, 0, err
	}
	admin, err := b.ports.free()
	if err != nil {
		return nil, 0, 0, err
	}
	caddyfile := fmt.Sprintf(`{
	admin 127.0.0.1:%d
	persist_config off
	auto_https off
	skip_install_trust
	http_port %d
	grace_period 2s
	%s
}

http://127.0.0.1:%d {
	bind 127.0.0.1
	%s
}
`, admin, port, global, port, site)
	path := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(path, []byte(caddyfile), 0o600); err != nil {
		return nil, 0, 0, err
	}
	env := []string{
		"HOME=" + filepath.Join(dir, "home"),
		"XDG_CONFIG_HOME=" + filepath.Join(dir, "config"),
		"XDG_DATA_HOME=" + filepath.Join(dir, "data"),
		"GONGBAO_SIGN_KEY=" + signKey,
		"GONGBAO_BENCH_DSN=" + b.opts.postgresDSN,
	}
	for _, d := range env[:3] {
		if err := os.MkdirAll(strings.SplitN(d, "=", 2)[1], 0o700); err != nil {
			return nil, 0, 0, err
		}
	}
	p, err := b.sup.start(name, b.caddy, []string{"run", "--config", path, "--adapter", "caddyfile"}, env, filepath.Join(dir, name+".log"))
	if err != nil {
		return nil, 0, 0, err
	}
	if err := p.waitHTTP(ctx, fmt.Sprintf("http://127.0.0.1:%d/", port)); err != nil {
		p.stop()
		return nil, 0, 0, err
	}
	return p, port, admin, nil
}

// profileFor takes a CPU profile of the Caddy whose admin endpoint is on
// admin for the given seconds (when -profile is set), and saves it as
// <name>.cpu.pprof. The channel yields once it is done.
func (b *bench) profileFor(ctx context.Context, admin int, name string, seconds int) <-chan error {
	done := make(chan error, 1)
	if b.opts.profileDir == "" || admin == 0 {
		done <- nil
		return done
	}
	go func() {
		done <- func() error {
			if err := os.MkdirAll(b.opts.profileDir, 0o755); err != nil {
				return err
			}
			url := fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/profile?seconds=%d", admin, seconds)
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			if err != nil {
				return err
			}
			client := &http.Client{Timeout: time.Duration(seconds)*time.Second + 30*time.Second, Transport: &http.Transport{Proxy: nil}}
			defer client.CloseIdleConnections()
			resp, err := client.Do(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("%s: HTTP %d", url, resp.StatusCode)
			}
			f, err := os.Create(filepath.Join(b.opts.profileDir, name+".cpu.pprof"))
			if err != nil {
				return err
			}
			if _, err := io.Copy(f, resp.Body); err != nil {
				f.Close()
				return err
			}
			return f.Close()
		}()
	}()
	return done
}
