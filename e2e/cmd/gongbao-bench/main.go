// Command gongbao-bench measures caddy-gongbao side by side with plain
// Caddy and with the core alone, on this machine, in one run (issue 6).
//
// It lives in the e2e module (its vegeta dependency stays out of the
// plugin's go.mod). Run it from anywhere in that module:
//
//	cd e2e && go run ./cmd/gongbao-bench [-smoke] [-duration 20s] [-concurrency 64] [-open-loads 0.5,0.25] [-out ../PERFORMANCE.md]
//
// It finds the repository through the e2e module's replace of
// github.com/caddy-gongbao/gongbao, builds the repository's ./cmd/caddy
// and ./cmd/mockcore into a temporary folder and,
// with vegeta (github.com/tsenart/vegeta) as the load generator, measures
// platform requests (insureRequest) against
//
//	(a)  the reference core called directly with the JSON the sidecar sends,
//	(b)  plain Caddy reverse_proxy to the core, same JSON,
//	(c)  gongbao with idempotency off and journal off,
//	(d)  gongbao with the SQLite store (idempotency and journal on: the default),
//	(d′) gongbao with the SQLite store, journal off (to tell the two costs apart),
//	(e)  gongbao with the PostgreSQL store (idempotency and journal on),
//
// each with its own fresh core and server: throughput at fixed
// concurrency (closed loop), then p50/p99 latency at constant rates
// (open loop), the server's CPU time per request in both and its peak
// RSS (VmHWM). All variants run side by side: each phase is split into
// -rounds interleaved rounds (default 4), the variant order rotating
// every round, so a disturbance from outside spreads over all of them.
// Every request carries a fresh requestUUID (and Idempotency-Key); the
// signed messages are prepared before the run.
//
// The open-loop rates are -open-loads fractions of (b)'s closed-loop
// throughput, one phase each (default 0.5,0.25). The first, half of (b),
// is the definition: the main table and the goal table use it.
// It is not half of the machine, though: an open loop costs more CPU per
// request than a closed one (every request is its own wake-up chain
// through vegeta, Caddy and the core), and vegeta shares the CPUs, so on
// a small machine even (b) runs near saturation there and latencies are
// mostly queueing. Each open-loop round therefore also records the
// machine-wide CPU busy share (from /proc/stat, all processes) and the
// server's CPU per request, and each lighter load gets its own table
// (and an informational goal row) showing the added latency where the
// machine has headroom.
//
// For callbacks, on SQLite and on PostgreSQL: the rate at which the
// intake durably accepts events posted at full speed, beside the raw rate
// of one-row INSERT+COMMIT transactions with the same store settings, then
// the drain of that backlog to a local platform stand-in that verifies
// every signature and answers signed resultFlag=true (rate, RSS over the
// drain).
//
// PostgreSQL is GONGBAO_TEST_POSTGRES (default
// postgres://root@127.0.0.1:5432/test?sslmode=disable); every server gets
// a fresh schema, dropped at the end. Without a reachable server the
// PostgreSQL rows are skipped with a note, unless GONGBAO_REQUIRE_POSTGRES=1
// (or -require-postgres), which makes that a failure.
//
// Everything listens on loopback ports chosen at run time; every Caddy has
// its own HOME and XDG folders, admin endpoint and persist_config off.
// Every phase is bounded in time and count, and every child process is
// stopped when the run ends, also on an error or Ctrl-C.
//
// -profile DIR saves a CPU profile of every Caddy during each round of
// its closed- and open-loop phases, taken from its admin endpoint's
// /debug/pprof (read them with go tool pprof -top
// DIR/caddy-d.closed-1.cpu.pprof; open-loop ones are named open50-1, …).
//
// -smoke runs the same pipeline in seconds (1 s per phase, every
// -open-loads fraction included, 200 events) for CI. The exit status is non-zero when any variant fails to produce
// successful responses (errors, non-2xx, a gongbao reply that is not a
// signed resultFlag=true, an event not accepted, a callback not delivered);
// timings are reported, never asserted.
//
// With -out FILE the results are written to FILE: between the markers
// "<!-- gongbao-bench:begin -->" and "<!-- gongbao-bench:end -->" when the
// file has them (so the prose around the table survives a re-run), else
// as the whole file.
//
// It drives Caddy and the reference core as separate processes, so it must
// not import Caddy nor caddymodule (the sidecar is measured as shipped); it
// imports only the engine packages it needs to prepare signed messages and
// the PostgreSQL schemas (protocol, mapping, store).
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// signKey is a fresh random key for each run: the benchmark plays both
// sides of every exchange (it signs the platform's messages and checks the
// sidecars' replies), and the sidecars get it through their environment
// ({env.GONGBAO_SIGN_KEY}), as in production.
var signKey = rand.Text()

// defaultPostgresDSN is the development and CI database (TOOLCHAIN.md).
const defaultPostgresDSN = "postgres://root@127.0.0.1:5432/test?sslmode=disable"

// errFailed is a run in which some variant did not succeed.
var errFailed = errors.New("benchmark failed")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "gongbao-bench:", err)
		os.Exit(1)
	}
}

// options are the command-line settings.
type options struct {
	smoke           bool
	duration        time.Duration // each measured phase of a variant
	warmup          time.Duration
	concurrency     int
	out             string
	events          int
	rawDuration     time.Duration
	poolSize        int
	verifyEvery     uint64
	postgresDSN     string
	requirePostgres bool
	keep            bool
	variants        map[string]bool
	callbacks       bool
	profileDir      string
	cbWorkers       int           // callbacks { workers }; 0: the sidecar's default
	rounds          int           // interleaved rounds per phase
	openLoads       []float64     // open-loop rates as fractions of (b)'s throughput; the first is the half load
	caddyGlobal     string        // extra global options of every Caddy
	limit           time.Duration // the whole run
}

func parseOptions(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("gongbao-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.BoolVar(&o.smoke, "smoke", false, "short run for CI: seconds per phase, 200 events; fails on any unsuccessful response, never on timing")
	fs.DurationVar(&o.duration, "duration", 0, "length of each measured phase (default 20s, smoke 1s)")
	fs.IntVar(&o.concurrency, "concurrency", 64, "concurrent requests of the closed-loop phases")
	fs.StringVar(&o.out, "out", "", "write the results to this markdown file (between gongbao-bench markers when present)")
	fs.IntVar(&o.events, "events", 0, "callback events enqueued and drained per backend (default 50000, smoke 200)")
	fs.IntVar(&o.poolSize, "pool", 256, "distinct signed messages prepared before the run")
	fs.BoolVar(&o.requirePostgres, "require-postgres", os.Getenv("GONGBAO_REQUIRE_POSTGRES") == "1", "fail instead of skipping when PostgreSQL is unreachable")
	fs.BoolVar(&o.keep, "keep", false, "keep the temporary folder (binaries, configs, logs, databases)")
	only := fs.String("variants", allVariantKeys(), "platform-request variants to run (b always runs: it sets the open-loop rates)")
	fs.BoolVar(&o.callbacks, "callbacks", true, "measure callbacks (enqueue, raw writes, drain)")
	fs.StringVar(&o.caddyGlobal, "caddy-global", "", `extra global options for every Caddy, "\n" for new lines (experiments, e.g. 'log default {\n level WARN\n}')`)
	loads := fs.String("open-loads", defaultOpenLoads, "open-loop phases, as fractions of (b)'s closed-loop throughput, each as long as -duration and split into -rounds: the first (0.5, the issue's half load) feeds the main and goal tables, each further one its own table (a lighter load leaves the machine CPU headroom)")
	fs.IntVar(&o.rounds, "rounds", 0, "interleaved rounds each phase's duration is split into (default 4, smoke 1)")
	fs.IntVar(&o.cbWorkers, "callback-workers", 0, "callbacks { workers N } of the drain (default: the sidecar's default, 10)")
	fs.StringVar(&o.profileDir, "profile", "", "save a CPU profile of each Caddy during every closed- and open-loop round (from its admin /debug/pprof) in this folder")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	o.postgresDSN = os.Getenv("GONGBAO_TEST_POSTGRES")
	if o.postgresDSN == "" {
		o.postgresDSN = defaultPostgresDSN
	}
	openLoads, err := parseLoads(*loads)
	if err != nil {
		return o, err
	}
	o.openLoads = openLoads
	o.variants = map[string]bool{"b": true}
	for _, k := range strings.Split(*only, ",") {
		if k = strings.TrimSpace(k); k != "" {
			if _, ok := variantByKey(k); !ok {
				return o, fmt.Errorf("unknown variant %q", k)
			}
			o.variants[k] = true
		}
	}
	if o.smoke {
		o.warmup, o.rawDuration, o.verifyEvery, o.limit = 200*time.Millisecond, 500*time.Millisecond, 1, 15*time.Minute
		o.duration = defaultDuration(o.duration, time.Second)
		o.events = defaultInt(o.events, 200)
		o.rounds = defaultInt(o.rounds, 1)
	} else {
		o.warmup, o.rawDuration, o.verifyEvery, o.limit = 2*time.Second, 10*time.Second, 64, 90*time.Minute
		o.duration = defaultDuration(o.duration, 20*time.Second)
		o.events = defaultInt(o.events, 50000)
		o.rounds = defaultInt(o.rounds, 4)
	}
	switch {
	case o.concurrency < 1 || o.concurrency > 4096:
		return o, errors.New("-concurrency must be between 1 and 4096")
	case o.duration < 100*time.Millisecond || o.duration > 10*time.Minute:
		return o, errors.New("-duration must be between 100ms and 10m")
	case o.events < 1 || o.events > 1_000_000:
		return o, errors.New("-events must be between 1 and 1000000")
	case o.rounds < 1 || o.rounds > 100 || o.duration/time.Duration(o.rounds) < 100*time.Millisecond:
		return o, errors.New("-rounds must be between 1 and 100, and leave each round 100ms or more")
	case o.cbWorkers < 0 || o.cbWorkers > 1000:
		return o, errors.New("-callback-workers must be between 0 and 1000")
	case o.poolSize < 1 || o.poolSize > 100_000:
		return o, errors.New("-pool must be between 1 and 100000")
	}
	return o, nil
}

// defaultOpenLoads: the half load, then a quarter load. On a
// small machine the half load keeps every CPU busy (an open loop costs
// more CPU per request than the closed loop it is derived from, and the
// load generator shares the CPUs), so its latencies are mostly queueing;
// the quarter load shows what the sidecar adds with headroom.
const defaultOpenLoads = "0.5,0.25"

// parseLoads reads -open-loads: 1 to 5 comma-separated fractions in
// (0, 2] (above 1 overloads (b) on purpose), no duplicates.
func parseLoads(s string) ([]float64, error) {
	var loads []float64
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		x, err := strconv.ParseFloat(f, 64)
		if err != nil || !(x > 0 && x <= 2) {
			return nil, fmt.Errorf("-open-loads: %q is not a fraction in (0, 2]", f)
		}
		if slices.Contains(loads, x) {
			return nil, fmt.Errorf("-open-loads: %s given twice", f)
		}
		loads = append(loads, x)
	}
	if len(loads) < 1 || len(loads) > 5 {
		return nil, errors.New("-open-loads must give 1 to 5 fractions, e.g. 0.5,0.25")
	}
	return loads, nil
}

// loadsText is -open-loads as given to parseLoads.
func loadsText(loads []float64) string {
	parts := make([]string, len(loads))
	for i, x := range loads {
		parts[i] = strconv.FormatFloat(x, 'g', -1, 64)
	}
	return strings.Join(parts, ",")
}

func defaultDuration(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

func defaultInt(n, def int) int {
	if n == 0 {
		return def
	}
	return n
}

// run is the whole benchmark: the report goes to stdout, progress to
// stderr. It returns errFailed (after writing the report) when a variant
// did not succeed.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	opts, err := parseOptions(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, opts.limit)
	defer cancel()
	b, err := newBench(ctx, opts, stderr)
	if err != nil {
		return err
	}
	defer b.close()
	rep := b.runAll(ctx)
	md := rep.markdown()
	if _, err := io.WriteString(stdout, md); err != nil {
		return err
	}
	if opts.out != "" {
		if err := writeReport(opts.out, md); err != nil {
			return err
		}
		b.logf("results written to %s", opts.out)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("run interrupted: %w", context.Cause(ctx))
	}
	if len(rep.failures) > 0 {
		return fmt.Errorf("%w:\n  %s", errFailed, strings.Join(rep.failures, "\n  "))
	}
	return nil
}

// Markers delimiting the generated part of the -out file.
const (
	beginMarker = "<!-- gongbao-bench:begin -->"
	endMarker   = "<!-- gongbao-bench:end -->"
)

// writeReport puts md into path: between the markers when the file has
// them, else as the whole file.
func writeReport(path, md string) error {
	block := beginMarker + "\n" + md + endMarker + "\n"
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	text := string(old)
	i := strings.Index(text, beginMarker)
	j := strings.Index(text, endMarker)
	if i >= 0 && j > i {
		end := j + len(endMarker)
		if end < len(text) && text[end] == '\n' {
			end++
		}
		return os.WriteFile(path, []byte(text[:i]+block+text[end:]), 0o644)
	}
	return os.WriteFile(path, []byte("# caddy-gongbao performance\n\n"+block), 0o644)
}
