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
	opens     []openPhase   // one per -open-loads fraction, in order: the first is the half load
	cpuPerReq time.Duration // server CPU (user+system) per request, closed loop
	peakRSS   int64         // KiB, the server under test
	coreRSS   int64         // KiB, the core behind it
}

// openPhase is a variant's open-loop measurement at one rate.
type openPhase struct {
	fraction  float64 // of (b)'s closed-loop throughput
	rate      int     // offered, req/s
	res       attackResult
	cpuPerReq time.Duration // server CPU per answered request; 0: unknown
	busy      float64       // machine-wide CPU busy fraction over its rounds; -1: unknown
	ownBusy   float64       // the part of it used by this process, the server and its core; -1: unknown
}

// openAt is the i-th open-loop phase, or an empty one when the variant
// did not reach it.
func (r inboundResult) openAt(i int) openPhase {
	if i < len(r.opens) {
		return r.opens[i]
	}
	return openPhase{busy: -1, ownBusy: -1}
}

// runInbound measures every selected variant side by side: all of them
// are started first (each with its own fresh core), then measured in
// interleaved rounds, the order rotating every round, so that a
// disturbance from outside (the machine may be shared) spreads over all
// variants instead of spoiling one. Closed-loop rounds come first; each
// -open-loads fraction of (b)'s closed-loop throughput is then the rate
// of one open-loop phase (half of it first, the definition).
// Results come back in table order.
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
				l.fail(errors.New("not measured in the open loop: (b) gave no throughput to derive the rates from"))
			}
		}
	} else {
		// The rates are fixed now, from (b)'s closed loop: should (b)
		// fail in an open-loop phase, the others still run theirs.
		baseThroughput := base.res.closed.Throughput
		for _, f := range b.opts.openLoads {
			b.openRounds(ctx, all, f, max(1, int(math.Round(baseThroughput*f))))
		}
	}
	out := make([]inboundResult, 0, len(all))
	for _, l := range all {
		if l.running() {
			l.finish(ctx)
		}
		b.logf("(%s) %s", l.res.v.label, l.res.summary(b.opts.concurrency))
		if len(l.closed) > 1 || len(l.opens) > 1 {
			b.logf("(%s) per round: %s", l.res.v.label, l.rounds())
		}
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
	opens       []*openAcc // one per open-loop phase it ran
	cpu         time.Duration
}

// openAcc gathers a variant's rounds of one open-loop phase.
type openAcc struct {
	fraction float64
	rate     int
	rounds   []attackResult
	lat      []time.Duration // every request's, for exact quantiles
	cpu      time.Duration   // the server's
	machine  busyMeter
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

// openRounds measures latency at a constant rate, fraction of (b)'s
// throughput: one phase, split into rounds like the closed loop. Offered
// more than it can serve, a variant queues up and, past its store's 3 s
// bound, sheds load with signed 系统繁忙 replies: counted and reported,
// not a failure. Any other failure is one.
func (b *bench) openRounds(ctx context.Context, all []*live, fraction float64, rate int) {
	d := b.opts.duration / time.Duration(b.opts.rounds)
	phase := map[*live]*openAcc{}
	for round := range b.opts.rounds {
		for _, l := range roundOrder(all, round) {
			if ctx.Err() != nil {
				l.fail(fmt.Errorf("interrupted: %w", context.Cause(ctx)))
				continue
			}
			a := phase[l]
			if a == nil {
				a = &openAcc{fraction: fraction, rate: rate}
				phase[l] = a
				l.opens = append(l.opens, a)
			}
			profiled := b.profileFor(ctx, l.admin, fmt.Sprintf("caddy-%s.open%02.0f-%d", l.res.v.key, 100*fraction, round+1), max(1, int(d.Seconds())-1))
			r := b.openRound(ctx, l, a, d)
			if err := <-profiled; err != nil {
				b.logf("(%s) CPU profile: %v", l.res.v.label, err)
			}
			if r.failed() {
				l.fail(fmt.Errorf("open loop at %d req/s (%s of (b)), round %d: %s", rate, pct(fraction), round+1, r.failureSummary()))
			}
		}
	}
	// A variant stopped before this phase has no entry, so the i-th
	// entry of every variant is the i-th fraction.
	for _, l := range all {
		if a := phase[l]; a != nil {
			l.res.opens = append(l.res.opens, a.result())
		}
	}
}

// openRound is one round of an open-loop phase. Around it are read the
// server's CPU time and the whole machine's busy time: an open loop costs
// more CPU per request than a closed one (every request is its own
// wake-up chain through the load generator, Caddy and the core), and the
// load generator shares the CPUs, so a rate the server alone could serve
// easily may still saturate the machine.
func (b *bench) openRound(ctx context.Context, l *live, a *openAcc, d time.Duration) attackResult {
	c := uint64(b.opts.concurrency)
	spec := attackSpec{name: l.res.v.key, targeter: l.newTargeter(), rate: a.rate,
		workers: c, maxWorkers: 4 * c, duration: d, check: l.check, verifyEvery: b.opts.verifyEvery,
		allowShed: l.res.closed.Throughput < float64(a.rate), latencies: &a.lat}
	var r attackResult
	cpu0, err0 := l.server.cpuTime()
	others0, errO0 := l.othersCPU()
	a.machine.around(func() { r = attack(ctx, spec) })
	cpu1, err1 := l.server.cpuTime()
	others1, errO1 := l.othersCPU()
	if err0 == nil && err1 == nil {
		a.cpu += cpu1 - cpu0
	}
	a.machine.addOwn(cpu1-cpu0+others1-others0, errors.Join(err0, err1, errO0, errO1))
	a.rounds = append(a.rounds, r)
	return r
}

// othersCPU is the CPU time used so far by the benchmark's processes in a
// round besides the server: this one (vegeta runs in it) and the core
// behind a Caddy. With the server's, it tells the machine's busy time
// the benchmark caused from other load on a shared machine.
func (l *live) othersCPU() (time.Duration, error) {
	self, err := pidCPUTime(os.Getpid())
	if err != nil || l.core == l.server {
		return self, err
	}
	core, err := l.core.cpuTime()
	return self + core, err
}

// result merges the phase's rounds. Server CPU is per answered request:
// a shed reply costs CPU too.
func (a *openAcc) result() openPhase {
	p := openPhase{fraction: a.fraction, rate: a.rate, res: merge(a.rounds, a.lat),
		busy: a.machine.fraction(), ownBusy: a.machine.ownFraction()}
	if p.res.Requests > 0 {
		p.cpuPerReq = a.cpu / time.Duration(p.res.Requests)
	}
	return p
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
	s := fmt.Sprintf("%.0f req/s at %d concurrent (%s CPU/req)", r.closed.Throughput, concurrency, micros(r.cpuPerReq))
	for _, p := range r.opens {
		s += fmt.Sprintf("; at %s of (b), %d req/s (achieved %.0f, %d shed): p50 %s p99 %s, %s CPU/req, machine CPU busy %s",
			pct(p.fraction), p.rate, p.res.Rate, p.res.Shed, ms(p.res.P50), ms(p.res.P99), micros(p.cpuPerReq), busyText(p.busy, p.ownBusy))
	}
	return s + fmt.Sprintf("; peak RSS %.0f MiB", mib(r.peakRSS))
}

// rounds lists each round's throughput and p99, to tell a disturbance
// (one bad round) from a steady cost.
func (l *live) rounds() string {
	var parts []string
	for i, r := range l.closed {
		parts = append(parts, fmt.Sprintf("closed %d: %.0f req/s", i+1, r.Throughput))
	}
	for _, a := range l.opens {
		for i, r := range a.rounds {
			parts = append(parts, fmt.Sprintf("open %s %d: p99 %s", pct(a.fraction), i+1, ms(r.P99)))
		}
	}
	return strings.Join(parts, "; ")
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
	} else {
		// The load reuses a pool of signed bodies under fresh requestUUIDs,
		// which the content_replay guard refuses. A 1 ms window keeps the
		// guard's work on every request (the same statement, the same
		// index look-up) while letting a body come round again.
		lines = append(lines, "content_replay {\n\t\t\twindow 1ms\n\t\t}")
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
	// -caddy-global lines go into every Caddy's global options (for
	// experiments, e.g. a log level); "\n" in the flag is a new line.
	if extra := strings.ReplaceAll(b.opts.caddyGlobal, `\n`, "\n"); extra != "" {
		global = extra + "\n\t" + global
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
