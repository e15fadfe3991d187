package delivery

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-gongbao/gongbao/caddymodule/protocol"
	"github.com/caddy-gongbao/gongbao/caddymodule/store"
	"github.com/caddy-gongbao/gongbao/caddymodule/store/storetest"
)

// testKey is the spec's test key; the platform and the insurer share it in
// these tests.
const testKey = "MeTKJnC3fIAxeer8erADRTlJ"

// testFactor runs schedule time this much faster than the wall: an hour
// of retries per wall second. A 10 s wait is ~3 ms of wall time.
const testFactor = 3600

// A backend makes fresh, empty storage for one test and opens a handle.
type backend struct {
	name string
	open func(t testing.TB) *store.DB
	// migrated, if set, makes fresh storage that already holds River's and
	// the engine's tables, as New leaves them; newTestEnv uses it.
	migrated func(t testing.TB) *store.DB
}

var backends = []backend{
	{name: store.DriverSQLite, open: openSQLite, migrated: openMigratedSQLite},
	{name: store.DriverPostgres, open: openPostgres},
}

// openForEngine opens storage for a test engine: migrated if the backend
// can, else empty (New migrates it).
func (b backend) openForEngine(t testing.TB) *store.DB {
	if b.migrated != nil {
		return b.migrated(t)
	}
	return b.open(t)
}

// forEachBackend runs f as a parallel subtest per backend. Every
// conformance test runs in parallel with the others: the SQLite backend is
// bound to one connection, so the suite's wall time is that of its longest
// test, not of the sum. Assertions on schedule time are lower bounds, which
// a busy machine can only make easier to meet.
func forEachBackend(t *testing.T, f func(t *testing.T, b backend)) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f(t, b)
		})
	}
}

// forEachBackendFirst runs f per backend, one after the other, within the
// test's own parallel slot. For the package's longest test: parallel
// subtests wait for a slot behind every subtest queued before them (10 to
// 25 s, measured, with -test.parallel 4), while a top-level test gets its
// slot at once, so the longest one starts first and the others run
// alongside it.
func forEachBackendFirst(t *testing.T, f func(t *testing.T, b backend)) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { f(t, b) })
	}
}

func openSQLite(t testing.TB) *store.DB {
	t.Helper()
	path := filepath.Join(sqliteDir(t), sqliteFile)
	db, err := store.Open(context.Background(), store.Config{Driver: store.DriverSQLite, Path: path})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// memoryDir is a RAM-backed directory, when the machine has one.
const memoryDir = "/dev/shm"

// sqliteDir is a fresh directory for one test's database, removed when the
// test ends. It is RAM-backed where possible: the store runs SQLite with
// synchronous=FULL, and on the CI machine's virtual disk the fsyncs made
// the 1,000-delivery backlog test on SQLite a third slower (58 s against 44 s), while
// no test can observe durability across a power cut anyway. Every
// statement, lock and WAL write is the same as on a disk.
func sqliteDir(t testing.TB) string {
	t.Helper()
	if fi, err := os.Stat(memoryDir); err != nil || !fi.IsDir() {
		return t.TempDir()
	}
	dir, err := os.MkdirTemp(memoryDir, "gongbao-delivery-test-")
	if err != nil {
		return t.TempDir()
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// sqliteTemplate is a SQLite database migrated once per test binary by
// New; tests that do not test migration start from a copy of it. Under
// -race, River's migrations cost a quarter of a second of CPU per fresh
// database, run by some forty tests. TestMain removes it.
var sqliteTemplate struct {
	once sync.Once
	dir  string
	err  error
}

const sqliteFile = "gongbao.db"

// migratedSQLiteTemplate returns the template's directory, making it the
// first time.
func migratedSQLiteTemplate() (string, error) {
	sqliteTemplate.once.Do(func() {
		sqliteTemplate.dir, sqliteTemplate.err = makeSQLiteTemplate()
	})
	return sqliteTemplate.dir, sqliteTemplate.err
}

func makeSQLiteTemplate() (string, error) {
	parent := os.TempDir()
	if fi, err := os.Stat(memoryDir); err == nil && fi.IsDir() {
		parent = memoryDir
	}
	dir, err := os.MkdirTemp(parent, "gongbao-delivery-template-")
	if err != nil {
		return "", err
	}
	ctx := context.Background()
	db, err := store.Open(ctx, store.Config{Driver: store.DriverSQLite, Path: filepath.Join(dir, sqliteFile)})
	if err != nil {
		return dir, err
	}
	_, err = New(ctx, minimalConfig(db)) // migrates; never started
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	return dir, err
}

// removeSQLiteTemplate deletes the template, if one was made.
func removeSQLiteTemplate() {
	if sqliteTemplate.dir != "" {
		os.RemoveAll(sqliteTemplate.dir)
	}
}

// openMigratedSQLite opens a copy of the migrated template in a fresh
// directory: New finds every migration applied.
func openMigratedSQLite(t testing.TB) *store.DB {
	t.Helper()
	from, err := migratedSQLiteTemplate()
	if err != nil {
		t.Fatalf("migrating the SQLite template: %v", err)
	}
	to := sqliteDir(t)
	// The WAL and shared-memory files, if the close left any, belong to
	// the database as much as the main file.
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if err := copyFile(filepath.Join(from, sqliteFile+suffix), filepath.Join(to, sqliteFile+suffix)); err != nil {
			t.Fatal(err)
		}
	}
	db, err := store.Open(context.Background(), store.Config{Driver: store.DriverSQLite, Path: filepath.Join(to, sqliteFile)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// copyFile copies from to to; a missing from is no error.
func copyFile(from, to string) error {
	data, err := os.ReadFile(from)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return os.WriteFile(to, data, 0o600)
}

// openPostgres opens a handle on a new schema, dropped when the test ends.
func openPostgres(t testing.TB) *store.DB {
	t.Helper()
	dsn := storetest.DSN(t)
	schema := storetest.FreshSchema(t, dsn, "gbdeliv")
	db, err := store.Open(context.Background(), store.Config{Driver: store.DriverPostgres, DSN: dsn, Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// ---- the test platform ----

// reply is how the test platform answers one request.
type reply int

const (
	replyAccept         reply = iota // signed, resultFlag=true
	replyRefuse                      // signed, resultFlag=false, resultMessage "保单不存在"
	replyDown                        // HTTP 503, no body
	replyBadSign                     // resultFlag=true signed with another key
	replyMalformed                   // 200 with broken XML
	replyUnsigned                    // resultFlag=true with an empty sign
	replyRefuseUnsigned              // resultFlag=false with an empty sign
	replyRefuseBadSign               // resultFlag=false signed with another key
)

const refuseMessage = "保单不存在"

// platform is an httptest server playing 工保网: it parses and verifies
// every callback (a bad one fails the test) and answers per decide.
type platform struct {
	t     testing.TB
	clock Clock
	srv   *httptest.Server

	mu       sync.Mutex
	before   func(w http.ResponseWriter, r *http.Request) bool // true: handled
	decide   func(env *protocol.Envelope, at time.Time) reply
	received map[string][]time.Time // requestUUID → schedule time of each receipt
	bodies   map[string][][]byte    // requestUUID → every body received
	accepted map[string]int         // requestUUID → accepted receipts
}

func newPlatform(t testing.TB, clock Clock) *platform {
	p := &platform{
		t: t, clock: clock,
		decide:   func(*protocol.Envelope, time.Time) reply { return replyAccept },
		received: map[string][]time.Time{},
		bodies:   map[string][][]byte{},
		accepted: map[string]int{},
	}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.srv.Close)
	return p
}

// setDecide sets how the platform answers; at is the schedule time the
// request arrived.
func (p *platform) setDecide(f func(env *protocol.Envelope, at time.Time) reply) {
	p.mu.Lock()
	p.decide = f
	p.mu.Unlock()
}

// setBefore installs a hook run before anything else; returning true
// means it answered the request itself.
func (p *platform) setBefore(f func(w http.ResponseWriter, r *http.Request) bool) {
	p.mu.Lock()
	p.before = f
	p.mu.Unlock()
}

func (p *platform) url() string { return p.srv.URL + "/queryPolicyRequest" }

func (p *platform) serve(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	before := p.before
	p.mu.Unlock()
	if before != nil && before(w, r) {
		return
	}
	now := p.clock.Now()
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/xml; charset=UTF-8" {
		p.t.Errorf("platform: Content-Type %q", ct)
	}
	env, err := protocol.Parse(body, protocol.Limits{})
	if err != nil {
		p.t.Errorf("platform: callback does not parse: %v", err)
		http.Error(w, "bad", http.StatusBadRequest)
		return
	}
	if _, ok := protocol.VerifyAny(env.SignedValue(), env.Sign, []string{testKey}); !ok {
		p.t.Errorf("platform: callback %s signature does not verify", env.RequestUUID)
	}
	p.mu.Lock()
	p.received[env.RequestUUID] = append(p.received[env.RequestUUID], now)
	p.bodies[env.RequestUUID] = append(p.bodies[env.RequestUUID], body)
	decision := p.decide(env, now)
	if decision == replyAccept {
		p.accepted[env.RequestUUID]++
	}
	p.mu.Unlock()

	root := strings.TrimSuffix(env.Root, "Request") + "Response"
	switch decision {
	case replyDown:
		http.Error(w, "platform down", http.StatusServiceUnavailable)
		return
	case replyMalformed:
		w.Write([]byte("<queryPolicyResponse><responseHead>")) //nolint:errcheck
		return
	}
	key, flag, msg := testKey, "true", "成功"
	switch decision {
	case replyRefuse:
		flag, msg = "false", refuseMessage
	case replyBadSign:
		key = "not-the-platform-key"
	case replyUnsigned:
		key = ""
	case replyRefuseUnsigned:
		key, flag, msg = "", "false", refuseMessage
	case replyRefuseBadSign:
		key, flag, msg = "not-the-platform-key", "false", refuseMessage
	}
	w.Header().Set("Content-Type", "application/xml; charset=UTF-8")
	w.Write(platformReply(root, flag, msg, key)) //nolint:errcheck
}

// platformReply builds a reply; an empty key leaves the sign empty, as a
// platform that does not sign its replies would.
func platformReply(root, flag, msg, key string) []byte {
	body := []protocol.Element{{Name: "resultFlag", Text: flag}}
	if msg != "" {
		body = append(body, protocol.Element{Name: "resultMessage", Text: msg})
	}
	if key == "" {
		signed := protocol.BuildResponse(root, protocol.NewUUID(), body, "any")
		return signPattern.ReplaceAll(signed, []byte("<sign></sign>"))
	}
	return protocol.BuildResponse(root, protocol.NewUUID(), body, key)
}

var signPattern = regexp.MustCompile(`<sign>[^<]*</sign>`)

func (p *platform) receipts(uuid string) []time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]time.Time(nil), p.received[uuid]...)
}

func (p *platform) bodiesOf(uuid string) [][]byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([][]byte(nil), p.bodies[uuid]...)
}

// ---- engines and deliveries ----

type testEnv struct {
	t     *testing.T
	db    *store.DB
	e     *Engine
	clock Clock
	plat  *platform
	cfg   Config
	// policy is what Config.Policy returns; setPolicy swaps it, as a
	// configuration reload does.
	policy atomic.Pointer[Policy]
	// noStart: the engine is not started by newTestEnv.
	noStart bool
}

// setPolicy changes the policy the engine reads at its next attempt.
func (env *testEnv) setPolicy(f func(p *Policy)) {
	p := *env.policy.Load()
	f(&p)
	env.policy.Store(&p)
}

// withPolicy adjusts the starting policy (keys: the test key; URLs: none,
// so every delivery goes to the URL it was queued with).
func withPolicy(f func(p *Policy)) option { return func(env *testEnv) { env.setPolicy(f) } }

type option func(*testEnv)

// noStart leaves the engine unstarted (Enqueue works, nothing is sent).
func noStart(env *testEnv) { env.noStart = true }

func withDeadline(d time.Duration) option { return func(env *testEnv) { env.cfg.Deadline = d } }
func withWorkers(n int) option            { return func(env *testEnv) { env.cfg.MaxWorkers = n } }
func withConfig(f func(*Config)) option   { return func(env *testEnv) { f(&env.cfg) } }

// newTestEnv opens fresh storage on b, a test platform and a started engine
// on a scaled clock.
func newTestEnv(t *testing.T, b backend, opts ...option) *testEnv {
	t.Helper()
	clock := ScaledClock(testFactor)
	db := b.openForEngine(t)
	env := &testEnv{t: t, db: db, clock: clock, plat: newPlatform(t, clock)}
	env.policy.Store(&Policy{Keys: []string{testKey}})
	env.cfg = Config{
		Store:          db,
		Policy:         func() *Policy { return env.policy.Load() },
		AttemptTimeout: 5 * time.Second,
		PollInterval:   20 * time.Millisecond,
		Clock:          clock,
		Logger:         slog.New(slog.NewTextHandler(io.Discard, nil)),
		testOnly:       true,
	}
	if testing.Verbose() && os.Getenv("GONGBAO_TEST_LOG") != "" {
		env.cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	for _, o := range opts {
		o(env)
	}
	env.e = env.newEngine()
	if !env.noStart {
		env.start(env.e)
	}
	return env
}

func (env *testEnv) newEngine() *Engine {
	env.t.Helper()
	e, err := New(context.Background(), env.cfg)
	if err != nil {
		env.t.Fatal(err)
	}
	return e
}

func (env *testEnv) start(e *Engine) {
	env.t.Helper()
	if err := e.Start(context.Background()); err != nil {
		env.t.Fatal(err)
	}
	env.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := e.Stop(ctx); err != nil {
			env.t.Errorf("stopping engine: %v", err)
		}
	})
}

// newDelivery builds a signed queryPolicyRequest for policy policyNo.
func (env *testEnv) newDelivery(key, orderKey string) NewDelivery {
	uuid := protocol.NewUUID()
	body := protocol.BuildRequest("queryPolicyRequest", uuid, []protocol.Element{
		{Name: "policyNo", Text: "P-" + key},
		{Name: "payType", Text: "3"},
		{Name: "payTime", Text: "2024-05-01 10:00:00"},
		{Name: "insuranceCode", Text: "TEST"},
	}, testKey)
	return NewDelivery{
		Event: "policy-paid", Callback: "queryPolicyRequest", ReplyRoot: "queryPolicyResponse",
		URL: env.plat.url(), RequestUUID: uuid, IdempotencyKey: "evt-" + key, OrderKey: orderKey,
		Body: body,
	}
}

func (env *testEnv) enqueue(n NewDelivery) Delivery {
	env.t.Helper()
	d, created, err := env.e.Enqueue(context.Background(), n)
	if err != nil {
		env.t.Fatal(err)
	}
	if !created {
		env.t.Fatalf("delivery %s: created=false", n.IdempotencyKey)
	}
	return d
}

func (env *testEnv) get(id int64) Delivery {
	env.t.Helper()
	d, err := env.e.Get(context.Background(), id)
	if err != nil {
		env.t.Fatal(err)
	}
	return d
}

// pollEvery is how often waitFor reads the store. Each read takes the
// SQLite handle's only connection from the engine under test, and costs
// milliseconds of CPU under -race: polling faster slows what it waits for.
const pollEvery = 20 * time.Millisecond

// waitFor polls cond (a read of the store, not a timer) on a ticker until
// it holds or the wall-clock limit passes. It waits for asynchronous work;
// no schedule logic depends on it.
func (env *testEnv) waitFor(what string, limit time.Duration, cond func() bool) {
	env.t.Helper()
	env.waitForEvery(what, limit, pollEvery, cond)
}

// waitForEvery is waitFor polling every interval: for a wait of many
// seconds on a costly cond.
func (env *testEnv) waitForEvery(what string, limit, interval time.Duration, cond func() bool) {
	env.t.Helper()
	if cond() {
		return
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	for {
		select {
		case <-tick.C:
			if cond() {
				return
			}
		case <-deadline.C:
			if cond() {
				return
			}
			env.t.Fatalf("timed out after %s waiting for %s", limit, what)
		}
	}
}

func (env *testEnv) waitState(id int64, want State, limit time.Duration) Delivery {
	env.t.Helper()
	var d Delivery
	env.waitFor(fmt.Sprintf("delivery %d %s", id, want), limit, func() bool {
		d = env.get(id)
		return d.State == want
	})
	return d
}

func (env *testEnv) stats() Stats {
	env.t.Helper()
	s, err := env.e.Stats(context.Background())
	if err != nil {
		env.t.Fatal(err)
	}
	return s
}
