package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// bench is one run: the built binaries, the children, the prepared load.
type bench struct {
	opts   options
	root   string // repository root: the caddy-gongbao module
	tmp    string
	caddy  string // built binaries
	core   string
	sup    supervisor
	ports  ports
	ids    *uuids
	pool   *messagePool
	stderr io.Writer
	start  time.Time

	pgReachable bool
	pgNote      string // why PostgreSQL rows are skipped
	schemasMu   sync.Mutex
	schemas     []string // PostgreSQL schemas to drop at the end
}

// newBench finds the module, builds the binaries and prepares the load.
func newBench(ctx context.Context, opts options, stderr io.Writer) (*bench, error) {
	b := &bench{opts: opts, stderr: stderr, ids: newUUIDs(), start: time.Now()}
	root, err := repositoryRoot(ctx)
	if err != nil {
		return nil, err
	}
	b.root = root
	if b.tmp, err = os.MkdirTemp("", "gongbao-bench-"); err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			b.close()
		}
	}()
	b.logf("working in %s", b.tmp)
	if err := b.build(ctx); err != nil {
		return nil, err
	}
	if b.pool, err = newMessagePool(root, opts.poolSize, signKey); err != nil {
		return nil, fmt.Errorf("preparing messages: %w", err)
	}
	b.checkPostgres(ctx)
	ok = true
	return b, nil
}

// close stops every child, drops the PostgreSQL schemas and removes the
// temporary folder.
func (b *bench) close() {
	b.sup.stopAll()
	b.dropSchemas()
	if b.opts.keep {
		b.logf("kept %s", b.tmp)
		return
	}
	if err := os.RemoveAll(b.tmp); err != nil {
		b.logf("removing %s: %v", b.tmp, err)
	}
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.stderr, "[%6.1fs] %s\n", time.Since(b.start).Seconds(), fmt.Sprintf(format, args...))
}

// goCommand is the go tool of the toolchain running this program when it
// can be found, else the one on PATH.
func goCommand() string {
	if p := filepath.Join(runtime.GOROOT(), "bin", "go"); runtime.GOROOT() != "" {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return "go"
}

// pluginModule is the module under test; the e2e module replaces it with
// the repository's root folder.
const pluginModule = "github.com/caddy-gongbao/gongbao"

// repositoryRoot is the folder of the caddy-gongbao module as the go.mod
// of the working directory resolves it: the repository root when run from
// the e2e module (its replace points there) or from the root module.
func repositoryRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, goCommand(), "list", "-m", "-f", "{{.Dir}}", pluginModule).Output()
	if err != nil {
		return "", fmt.Errorf("go list -m %s: %w: run from the caddy-gongbao repository (cd e2e)", pluginModule, err)
	}
	root := strings.TrimSpace(string(out))
	if root == "" {
		return "", fmt.Errorf("%s has no folder on this machine: run from the caddy-gongbao repository (cd e2e)", pluginModule)
	}
	if _, err := os.Stat(filepath.Join(root, "cmd", "mockcore")); err != nil {
		return "", fmt.Errorf("%s is not the caddy-gongbao repository (no cmd/mockcore)", root)
	}
	return root, nil
}

// build compiles Caddy with the module and the reference core. They are
// plain builds (no -race, even when this program is a -race test): they
// are separate processes and what they do is what is measured.
func (b *bench) build(ctx context.Context) error {
	bin := filepath.Join(b.tmp, "bin")
	b.caddy, b.core = filepath.Join(bin, "caddy"), filepath.Join(bin, "mockcore")
	for _, t := range []struct{ out, pkg string }{{b.caddy, "./cmd/caddy"}, {b.core, "./cmd/mockcore"}} {
		began := time.Now()
		cmd := exec.CommandContext(ctx, goCommand(), "build", "-o", t.out, t.pkg)
		cmd.Dir = b.root
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %w\n%s", t.pkg, err, out)
		}
		b.logf("built %s in %.1fs", t.pkg, time.Since(began).Seconds())
	}
	return nil
}

// checkPostgres decides whether the PostgreSQL rows can run.
func (b *bench) checkPostgres(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, b.opts.postgresDSN)
	if err == nil {
		err = conn.Ping(ctx)
		conn.Close(context.Background())
	}
	if err != nil {
		// The DSN may hold a password: name the variable, not the value.
		b.pgNote = "PostgreSQL unreachable (GONGBAO_TEST_POSTGRES or the default DSN): " + redactDSN(err.Error(), b.opts.postgresDSN)
		b.logf("%s", b.pgNote)
		return
	}
	b.pgReachable = true
}

func redactDSN(msg, dsn string) string { return strings.ReplaceAll(msg, dsn, "<dsn>") }

// newSchema names a fresh PostgreSQL schema for one server and remembers
// it for dropping.
func (b *bench) newSchema(tag string) string {
	b.schemasMu.Lock()
	defer b.schemasMu.Unlock()
	s := fmt.Sprintf("gongbao_bench_%d_%d_%s", os.Getpid(), len(b.schemas)+1, tag)
	b.schemas = append(b.schemas, s)
	return s
}

// dropSchemas removes the run's schemas; it runs at exit, so it does not
// use the run's (possibly cancelled) context.
func (b *bench) dropSchemas() {
	b.schemasMu.Lock()
	schemas := b.schemas
	b.schemas = nil
	b.schemasMu.Unlock()
	if len(schemas) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, b.opts.postgresDSN)
	if err != nil {
		b.logf("dropping benchmark schemas: %s", redactDSN(err.Error(), b.opts.postgresDSN))
		return
	}
	defer conn.Close(ctx)
	for _, s := range schemas {
		if _, err := conn.Exec(ctx, `DROP SCHEMA IF EXISTS "`+s+`" CASCADE`); err != nil {
			b.logf("dropping schema %s: %v", s, err)
		}
	}
}

// report is everything a run measured.
type report struct {
	opts      options
	machine   machine
	command   string
	inbound   []inboundResult
	callbacks []callbackResult
	failures  []string
	notes     []string
	elapsed   time.Duration
}

// runAll measures every selected variant, then callbacks.
func (b *bench) runAll(ctx context.Context) *report {
	rep := &report{opts: b.opts, machine: describeMachine(), command: commandLine(b.opts)}
	if b.pgNote != "" {
		rep.notes = append(rep.notes, b.pgNote)
		if b.opts.requirePostgres {
			rep.failures = append(rep.failures, "PostgreSQL required (GONGBAO_REQUIRE_POSTGRES=1) but unreachable")
		}
	}
	rep.inbound = b.runInbound(ctx)
	if b.opts.callbacks && ctx.Err() == nil {
		rep.callbacks = b.runCallbacks(ctx)
	}
	for _, r := range rep.inbound {
		if r.err != nil {
			rep.failures = append(rep.failures, fmt.Sprintf("(%s) %s: %v", r.v.label, r.v.title, r.err))
		}
	}
	for _, r := range rep.callbacks {
		if r.err != nil {
			rep.failures = append(rep.failures, fmt.Sprintf("callbacks on %s: %v", r.backend, r.err))
		}
	}
	rep.machine.loadEnd = loadAverage()
	rep.elapsed = time.Since(b.start)
	return rep
}

// commandLine is how to repeat this run, from the repository root; the
// report file is named as if it were there too.
func commandLine(o options) string {
	parts := []string{"cd e2e && go run ./cmd/gongbao-bench"}
	if o.smoke {
		parts = append(parts, "-smoke")
	}
	parts = append(parts, "-duration "+o.duration.String(), fmt.Sprintf("-concurrency %d", o.concurrency))
	if (o.smoke && o.events != 200) || (!o.smoke && o.events != 50000) {
		parts = append(parts, fmt.Sprintf("-events %d", o.events))
	}
	if (o.smoke && o.rounds != 1) || (!o.smoke && o.rounds != 4) {
		parts = append(parts, fmt.Sprintf("-rounds %d", o.rounds))
	}
	if loads := loadsText(o.openLoads); loads != defaultOpenLoads {
		parts = append(parts, "-open-loads "+loads)
	}
	if keys := variantKeys(o.variants); keys != allVariantKeys() {
		parts = append(parts, "-variants "+keys)
	}
	if !o.callbacks {
		parts = append(parts, "-callbacks=false")
	}
	if o.poolSize != 256 {
		parts = append(parts, fmt.Sprintf("-pool %d", o.poolSize))
	}
	if o.caddyGlobal != "" {
		parts = append(parts, fmt.Sprintf("-caddy-global %q", o.caddyGlobal))
	}
	if o.cbWorkers != 0 {
		parts = append(parts, fmt.Sprintf("-callback-workers %d", o.cbWorkers))
	}
	if o.out != "" {
		parts = append(parts, "-out ../"+filepath.Base(o.out))
	}
	return strings.Join(parts, " ")
}

// variantKeys is a -variants value selecting the given variants, in
// table order.
func variantKeys(selected map[string]bool) string {
	var keys []string
	for _, v := range variants {
		if selected[v.key] {
			keys = append(keys, v.key)
		}
	}
	return strings.Join(keys, ",")
}

func allVariantKeys() string {
	all := map[string]bool{}
	for _, v := range variants {
		all[v.key] = true
	}
	return variantKeys(all)
}
