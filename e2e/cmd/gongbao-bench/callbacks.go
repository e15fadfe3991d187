package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/caddy-gongbao/gongbao/caddymodule/mapping"
	"github.com/caddy-gongbao/gongbao/caddymodule/protocol"
	"github.com/caddy-gongbao/gongbao/caddymodule/store"
)

// callbackResult is one backend's callback measurements.
type callbackResult struct {
	backend       string
	skipped       string
	err           error
	events        int
	enqueue       attackResult
	cpuPerEvent   time.Duration
	raw           rawResult
	bodyBytes     int // size of one signed callback
	drainTime     time.Duration
	drainRate     float64
	rssBefore     int64 // KiB: when the drain starts (after the enqueue)
	rssMid        int64 // KiB: when half the backlog is delivered
	rssMax        int64 // KiB: the highest sample during the drain
	rssEnd        int64 // KiB: when the backlog is delivered
	peakRSS       int64 // KiB: VmHWM over enqueue and drain
	duplicates    int64 // callbacks received again after acceptance
	badSignatures int64
}

// rawResult is the raw durable-write rate of a store.
type rawResult struct {
	n       int
	elapsed time.Duration
	rate    float64
}

// runCallbacks measures both backends.
func (b *bench) runCallbacks(ctx context.Context) []callbackResult {
	var out []callbackResult
	for _, backend := range []string{"sqlite", "postgres"} {
		var r callbackResult
		switch {
		case ctx.Err() != nil:
			r = callbackResult{backend: backend, err: fmt.Errorf("not run: %w", context.Cause(ctx))}
		case backend == "postgres" && !b.pgReachable:
			r = callbackResult{backend: backend, skipped: "PostgreSQL unreachable"}
		default:
			b.logf("callbacks on %s: %d events", backend, b.opts.events)
			r = b.measureCallbacks(ctx, backend)
			if r.err != nil {
				b.logf("callbacks on %s: FAILED: %v", backend, r.err)
			} else {
				b.logf("callbacks on %s: enqueue %.0f/s (raw %.0f/s), drain %.0f/s in %s, RSS %d→%d MiB",
					backend, r.enqueue.Throughput, r.raw.rate, r.drainRate, r.drainTime.Round(time.Millisecond), r.rssBefore/1024, r.rssEnd/1024)
			}
		}
		out = append(out, r)
	}
	return out
}

// measureCallbacks: raw write rate; then a sidecar whose platform
// stand-in holds every callback until the whole backlog is enqueued
// (so the enqueue is measured alone and a backlog builds up); then the
// stand-in opens and the drain is timed.
func (b *bench) measureCallbacks(ctx context.Context, backend string) (res callbackResult) {
	res.backend, res.events = backend, b.opts.events
	dir, err := os.MkdirTemp(b.tmp, "callbacks-"+backend+"-")
	if err != nil {
		res.err = err
		return res
	}
	defer func() {
		if res.err == nil && !b.opts.keep {
			os.RemoveAll(dir)
		}
	}()
	set, err := mapping.LoadDir(filepath.Join(b.root, "mappings"))
	if err != nil {
		res.err = err
		return res
	}
	sample, err := sampleCallback(set)
	if err != nil {
		res.err = err
		return res
	}
	res.bodyBytes = len(sample)
	if backend == "postgres" {
		res.raw, err = rawPostgres(ctx, b.opts.postgresDSN, b.newSchema("raw"), b.opts.rawDuration, len(sample))
	} else {
		res.raw, err = rawSQLite(ctx, filepath.Join(dir, "raw.db"), b.opts.rawDuration, len(sample))
	}
	if err != nil {
		res.err = fmt.Errorf("raw durable writes: %w", err)
		return res
	}

	platform, err := newStandIn(set, signKey)
	if err != nil {
		res.err = err
		return res
	}
	defer platform.close()

	// The held attempts must outlast the enqueue phase, or they would be
	// retried 10 s later and the drain would measure the retry schedule.
	hold := enqueueLimit(b.opts) + time.Minute
	global := "gongbao {\n\t\t" + strings.Join([]string{
		"sign_key {env.GONGBAO_SIGN_KEY}",
		"insurance_code TEST",
		b.storeLine(backend, dir, "cb"),
		fmt.Sprintf("callbacks {\n\t\t\tbase %s\n\t\t\tattempt_timeout %s%s\n\t\t}", platform.url, hold, workersLine(b.opts.cbWorkers)),
	}, "\n\t\t") + "\n\t}"
	site := "handle /events/* {\n\t\tgongbao_notify\n\t}"
	caddy, port, admin, err := b.startCaddyAdmin(ctx, dir, "caddy-callbacks-"+backend, global, site)
	if err != nil {
		res.err = err
		return res
	}
	defer caddy.stop()

	// Enqueue: every event posted at full speed by the workers.
	enqCtx, cancel := context.WithTimeout(ctx, enqueueLimit(b.opts))
	c := uint64(b.opts.concurrency)
	seconds := max(1, int(b.opts.duration.Seconds()))
	profiled := b.profileFor(ctx, admin, "caddy-callbacks-"+backend+"-enqueue", seconds)
	cpu0, _ := caddy.cpuTime()
	var stored int
	res.enqueue, stored = enqueue(enqCtx, fmt.Sprintf("http://127.0.0.1:%d/events/policy-paid", port), b.opts.events, c, b.ids)
	cancel()
	cpu1, _ := caddy.cpuTime()
	if err := <-profiled; err != nil {
		b.logf("callbacks on %s: CPU profile: %v", backend, err)
	}
	if res.enqueue.OK > 0 {
		res.cpuPerEvent = (cpu1 - cpu0) / time.Duration(res.enqueue.OK)
	}
	if res.enqueue.failed() || stored != b.opts.events {
		res.err = caddy.died(fmt.Errorf("enqueue: %s (%d of %d events stored)", res.enqueue.failureSummary(), stored, b.opts.events))
		return res
	}

	// Drain: open the stand-in, time the backlog until every callback was
	// received (verified, answered resultFlag=true), sampling the RSS.
	profiled = b.profileFor(ctx, admin, "caddy-callbacks-"+backend+"-drain", seconds)
	res.err = b.drain(ctx, caddy, platform, &res)
	if err := <-profiled; err != nil {
		b.logf("callbacks on %s: CPU profile: %v", backend, err)
	}
	if res.err != nil {
		return res
	}
	res.err = confirmDelivered(ctx, admin, int64(b.opts.events))
	res.peakRSS, _ = caddy.peakRSS()
	res.duplicates, res.badSignatures = platform.duplicates.Load(), platform.bad.Load()
	if res.err == nil && res.badSignatures > 0 {
		res.err = fmt.Errorf("%d callbacks with a bad signature or body: %s", res.badSignatures, platform.firstBad())
	}
	return res
}

// maxEnqueuePasses bounds the rounds of posting again the events the
// intake refused with 503.
const maxEnqueuePasses = 5

// enqueue posts n events with c workers. Events refused with 503
// store_unavailable were not stored (the intake's contract); like the
// core, the benchmark posts again (new events) until n are stored. The
// rate counts stored events over the whole time.
func enqueue(ctx context.Context, url string, n int, c uint64, ids *uuids) (attackResult, int) {
	total := attackResult{Failures: map[string]uint64{}}
	began := time.Now()
	stored := 0
	for pass := 0; stored < n && pass < maxEnqueuePasses && ctx.Err() == nil; pass++ {
		r := attack(ctx, attackSpec{name: "events", workers: c, maxWorkers: c, check: eventOK, allowShed: true,
			targeter: eventTargeter(url, total.Requests, uint64(n-stored), ids)})
		total.Requests += r.Requests
		total.OK += r.OK
		total.Shed += r.Shed
		total.failures += r.failures
		for k, v := range r.Failures {
			total.Failures[k] += v
		}
		total.P50, total.P99, total.Max = max(total.P50, r.P50), max(total.P99, r.P99), max(total.Max, r.Max)
		stored += int(r.OK)
		if r.failures > 0 || r.OK == 0 {
			break
		}
	}
	total.Elapsed = time.Since(began)
	total.Rate = float64(total.Requests) / total.Elapsed.Seconds()
	total.Throughput = float64(total.OK) / total.Elapsed.Seconds()
	return total, stored
}

// workersLine sets the delivery workers when -callback-workers is given.
func workersLine(n int) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprintf("\n\t\t\tworkers %d", n)
}

// enqueueLimit bounds the enqueue phase.
func enqueueLimit(o options) time.Duration {
	if o.smoke {
		return 2 * time.Minute
	}
	return 20 * time.Minute
}

// drain opens the gate and waits for the whole backlog.
func (b *bench) drain(ctx context.Context, caddy *proc, platform *standIn, res *callbackResult) error {
	limit := 5 * time.Minute
	every := 250 * time.Millisecond
	if !b.opts.smoke {
		limit = 30 * time.Minute
	}
	if b.opts.smoke {
		every = 20 * time.Millisecond
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	want := int64(b.opts.events)
	res.rssBefore, _ = caddy.rss()
	began := time.Now()
	platform.open()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		got := platform.accepted.Load()
		if rss, err := caddy.rss(); err == nil {
			res.rssMax = max(res.rssMax, rss)
			if res.rssMid == 0 && got*2 >= want {
				res.rssMid = rss
			}
			res.rssEnd = rss
		}
		if got >= want {
			res.drainTime = time.Since(began)
			res.drainRate = float64(want) / res.drainTime.Seconds()
			return nil
		}
		select {
		case <-ctx.Done():
			return caddy.died(fmt.Errorf("drain: %d of %d callbacks delivered after %s: %w", got, want, time.Since(began).Round(time.Second), ctx.Err()))
		case <-caddy.done:
			return caddy.failure(errExited)
		case <-tick.C:
		}
	}
}

// confirmDelivered asks the sidecar's admin API until it counts every
// callback as delivered (it records an acceptance just after receiving it).
func confirmDelivered(ctx context.Context, admin int, want int64) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil}}
	defer client.CloseIdleConnections()
	url := fmt.Sprintf("http://127.0.0.1:%d/gongbao/deliveries/stats", admin)
	var last struct{ Pending, Delivered, Dead int64 }
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			err = json.NewDecoder(resp.Body).Decode(&last)
			resp.Body.Close()
		}
		if err == nil && last.Delivered == want && last.Pending == 0 && last.Dead == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the sidecar counts %d delivered, %d pending, %d dead (want %d delivered; last error: %v)",
				last.Delivered, last.Pending, last.Dead, want, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// sampleCallback is a signed policy-paid callback as the intake builds
// it, for the row size of the raw write loop.
func sampleCallback(set *mapping.Set) ([]byte, error) {
	m, ok := set.Outbound["policy-paid"]
	if !ok {
		return nil, errors.New("the mappings have no policy-paid event")
	}
	event := []byte(`{"eventId":"3f2b8c1e-7d4a-4e9b-a6c5-0d1e2f3a4b5c","policyNo":"BD20190401000002","proposalNo":"TB20190401000001","payType":"3","paidAt":"2019-04-01T10:05:30+08:00","policyUrl":"http://127.0.0.1:9000/policies/BD20190401000002.pdf"}`)
	elements, err := m.Body.JSONToXML(event, mapping.Vars{"insurance_code": "TEST", "now": time.Now().Format(time.DateTime)})
	if err != nil {
		return nil, fmt.Errorf("mapping the sample event: %w", err)
	}
	return protocol.BuildRequest(m.Callback, protocol.NewUUID(), elements, signKey), nil
}

// rawSQLite is the rate of one-row INSERT+COMMIT transactions on an
// SQLite file opened exactly as the sidecar opens its store (WAL,
// synchronous=FULL, one connection, BEGIN IMMEDIATE), one writer.
func rawSQLite(ctx context.Context, path string, d time.Duration, size int) (rawResult, error) {
	db, err := store.Open(ctx, store.Config{Driver: store.DriverSQLite, Path: path})
	if err != nil {
		return rawResult{}, err
	}
	defer db.Close()
	if _, err := db.SQL.ExecContext(ctx, `CREATE TABLE raw (id INTEGER PRIMARY KEY, k TEXT NOT NULL UNIQUE, body BLOB NOT NULL, created_at TEXT NOT NULL)`); err != nil {
		return rawResult{}, err
	}
	body := make([]byte, size)
	return rawLoop(ctx, d, func(i int) error {
		tx, err := db.SQL.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO raw (k, body, created_at) VALUES (?, ?, ?)`,
			fmt.Sprint("k", i), body, time.Now().UTC().Format(time.RFC3339Nano)); err != nil {
			tx.Rollback()
			return err
		}
		return tx.Commit()
	})
}

// rawPostgres is the same loop on one PostgreSQL connection, in a fresh
// schema.
func rawPostgres(ctx context.Context, dsn, schema string, d time.Duration, size int) (rawResult, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return rawResult{}, errors.New(redactDSN(err.Error(), dsn))
	}
	defer conn.Close(context.Background())
	for _, q := range []string{
		`CREATE SCHEMA "` + schema + `"`,
		`CREATE TABLE "` + schema + `".raw (id bigserial PRIMARY KEY, k text NOT NULL UNIQUE, body bytea NOT NULL, created_at timestamptz NOT NULL)`,
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			return rawResult{}, err
		}
	}
	body := make([]byte, size)
	insert := `INSERT INTO "` + schema + `".raw (k, body, created_at) VALUES ($1, $2, now())`
	return rawLoop(ctx, d, func(i int) error {
		tx, err := conn.Begin(ctx)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, insert, fmt.Sprint("k", i), body); err != nil {
			tx.Rollback(ctx)
			return err
		}
		return tx.Commit(ctx)
	})
}

// rawLoop runs write for d and reports its rate.
func rawLoop(ctx context.Context, d time.Duration, write func(i int) error) (rawResult, error) {
	began := time.Now()
	n := 0
	for time.Since(began) < d && ctx.Err() == nil {
		if err := write(n); err != nil {
			return rawResult{}, err
		}
		n++
	}
	elapsed := time.Since(began)
	return rawResult{n: n, elapsed: elapsed, rate: float64(n) / elapsed.Seconds()}, ctx.Err()
}

// standIn is a fast local platform: it verifies every callback's
// signature and answers a signed resultFlag=true. Until open is called it
// holds every callback unanswered, so a backlog builds up behind the
// sidecar's delivery workers.
type standIn struct {
	url     string
	key     string
	replies map[string][]byte // callback root → signed reply
	srv     *http.Server
	gate    chan struct{}
	once    sync.Once

	mu   sync.Mutex
	seen map[string]bool // requestUUIDs accepted
	bad1 string

	accepted, duplicates, bad atomic.Int64
}

func newStandIn(set *mapping.Set, key string) (*standIn, error) {
	s := &standIn{key: key, replies: map[string][]byte{}, gate: make(chan struct{}), seen: map[string]bool{}}
	for _, m := range set.Outbound {
		s.replies[m.Callback] = protocol.BuildResponse(m.ReplyRoot, protocol.NewUUID(), []protocol.Element{
			{Name: "resultFlag", Text: "true"}, {Name: "resultMessage", Text: "成功"},
		}, key)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s.url = "http://" + ln.Addr().String()
	s.srv = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

// open lets every held and future callback through.
func (s *standIn) open() { s.once.Do(func() { close(s.gate) }) }

func (s *standIn) close() {
	s.open()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil {
		s.srv.Close()
	}
}

func (s *standIn) firstBad() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bad1
}

func (s *standIn) refuse(w http.ResponseWriter, why string) {
	s.bad.Add(1)
	s.mu.Lock()
	if s.bad1 == "" {
		s.bad1 = why
	}
	s.mu.Unlock()
	// Not a signed refusal: a failed attempt is retried, and the run
	// fails on the count anyway.
	http.Error(w, why, http.StatusBadRequest)
}

func (s *standIn) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, protocol.DefaultMaxBytes))
	if err != nil {
		return
	}
	env, err := protocol.Parse(body, protocol.Limits{})
	if err != nil {
		s.refuse(w, "malformed callback: "+err.Error())
		return
	}
	if _, ok := protocol.VerifyAny(env.SignedValue(), env.Sign, []string{s.key}); !ok {
		s.refuse(w, "callback signature does not verify")
		return
	}
	reply, ok := s.replies[env.Root]
	if !ok {
		s.refuse(w, "unknown callback root "+env.Root)
		return
	}
	select {
	case <-s.gate:
	case <-r.Context().Done():
		return
	}
	s.mu.Lock()
	dup := s.seen[env.RequestUUID]
	s.seen[env.RequestUUID] = true
	s.mu.Unlock()
	if dup {
		s.duplicates.Add(1)
	} else {
		s.accepted.Add(1)
	}
	w.Header().Set("Content-Type", "application/xml; charset=UTF-8")
	_, _ = w.Write(reply)
}
