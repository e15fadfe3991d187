package caddymodule

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-gongbao/gongbao/caddymodule/delivery"
	"github.com/caddy-gongbao/gongbao/caddymodule/protocol"
	"github.com/caddy-gongbao/gongbao/caddymodule/simulator"
	"github.com/caddy-gongbao/gongbao/caddymodule/store"
	"github.com/caddy-gongbao/gongbao/internal/mockcore"
)

// consoleKey is the platform's published test key (DESIGN §1.2).
const consoleKey = "MeTKJnC3fIAxeer8erADRTlJ"

// consoleFixture is a provisioned gongbao app over a real SQLite file, with
// the real platform handler in front of the reference core and the real
// events intake, served on a loopback test server; and the console on that
// app, answering through httptest recorders.
type consoleFixture struct {
	t       *testing.T
	app     *App
	console *Console
	logs    *observer.ObservedLogs
	sidecar *httptest.Server // /gongbao → handler → core; /events/ → intake
	core    *mockcore.Core
}

// newConsoleFixture provisions the app with callbacks going to
// callbackBase, and starts delivery. deadline, when set, is the callbacks'
// deadline.
func newConsoleFixture(t *testing.T, callbackBase string, deadline time.Duration) *consoleFixture {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	app := &App{
		SignKey:       consoleKey,
		Mappings:      filepath.Join("..", "mappings"),
		InsuranceCode: "TESTINS01",
		Store:         &StoreConfig{Driver: "sqlite", Path: FreshStoreForTest(t)},
		Callbacks: &CallbackConfig{Base: callbackBase, PollInterval: caddy.Duration(50 * time.Millisecond),
			Deadline: caddy.Duration(deadline)},
	}
	if err := app.Provision(ctx); err != nil {
		cancel()
		t.Fatal(err)
	}
	if err := app.Validate(); err != nil {
		cancel()
		t.Fatal(err)
	}
	if err := app.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	f := &consoleFixture{t: t, app: app}
	f.sidecar = httptest.NewServer(http.HandlerFunc(f.serveSidecar))
	f.core = mockcore.New(mockcore.Config{PublicURL: f.sidecar.URL + "/core", EventsURL: f.sidecar.URL})
	t.Cleanup(func() {
		f.core.Close()
		f.sidecar.Close()
		if err := app.Stop(); err != nil {
			t.Error(err)
		}
		if err := app.Cleanup(); err != nil {
			t.Error(err)
		}
		cancel()
	})
	f.console = f.newConsole(false)
	return f
}

// newConsole is a console on the fixture's app; its logs are observed.
func (f *consoleFixture) newConsole(showPersonalData bool) *Console {
	f.t.Helper()
	core, logs := observer.New(zap.InfoLevel)
	c := &Console{ShowPersonalData: showPersonalData, logger: zap.New(core)}
	if err := c.setup(f.app); err != nil {
		f.t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		f.t.Fatal(err)
	}
	f.logs = logs
	return c
}

// serveSidecar routes as the README's Caddyfile does: the platform
// endpoint through the gongbao handler to the core, the events intake, and
// the core's own pages (the payment link) under /core.
func (f *consoleFixture) serveSidecar(w http.ResponseWriter, r *http.Request) {
	switch {
	case strings.HasPrefix(r.URL.Path, "/gongbao"):
		h := &Handler{app: f.app, logger: zap.NewNop(), MaxCoreReplySize: defaultMaxCoreReplySize}
		next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
			f.core.Handler().ServeHTTP(w, r)
			return nil
		})
		_ = h.ServeHTTP(w, r, next)
	case strings.HasPrefix(r.URL.Path, "/events/"):
		n := &NotifyHandler{app: f.app, logger: zap.NewNop(), MaxEventSize: defaultMaxEventSize}
		_ = n.ServeHTTP(w, r, nil)
	case strings.HasPrefix(r.URL.Path, "/core/"):
		r.URL.Path = strings.TrimPrefix(r.URL.Path, "/core")
		f.core.Handler().ServeHTTP(w, r)
	default:
		http.NotFound(w, r)
	}
}

// newLifecycleFixture runs the simulator's whole lifecycle (insure → pay →
// payment callback → correct → claim → invoice → invoice callback →
// surrender → surrender callback) through the fixture and waits until the
// journal holds all of it.
func newLifecycleFixture(t *testing.T) (*consoleFixture, *simulator.Result) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := newConsoleFixture(t, "http://"+ln.Addr().String(), 0)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := simulator.Run(ctx, simulator.Config{URL: f.sidecar.URL + "/gongbao", Key: consoleKey, Listener: ln,
		Timeout: 30 * time.Second})
	if err != nil {
		t.Fatalf("the lifecycle did not complete: %v", err)
	}
	f.waitJournal(res.PolicyNo, 5)
	f.waitDelivered(res.PolicyNo, 3)
	return f, res
}

// waitDelivered polls until n callbacks of policyNo are recorded as
// delivered: the platform may have answered a callback a moment before
// the sidecar records its answer.
func (f *consoleFixture) waitDelivered(policyNo string, n int) {
	f.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		found, err := f.app.store.deliveries.engine.Find(context.Background(), delivery.FindOptions{OrderKey: policyNo})
		delivered := 0
		for _, d := range found {
			if d.State == delivery.StateDelivered {
				delivered++
			}
		}
		if err == nil && delivered >= n {
			return
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("%d callbacks of %s delivered after 10s (want %d): %v", delivered, policyNo, n, err)
		}
		<-time.After(20 * time.Millisecond)
	}
}

// waitJournal polls until the journal has n exchanges of policyNo: the
// journal is written in the background.
func (f *consoleFixture) waitJournal(policyNo string, n int) {
	f.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		entries, err := f.app.store.journal.journal.Find(context.Background(), store.JournalQuery{PolicyNo: policyNo})
		if err == nil && len(entries) >= n {
			return
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("the journal has %d exchanges of %s after 10s (want %d): %v", len(entries), policyNo, n, err)
		}
		<-time.After(20 * time.Millisecond)
	}
}

// waitState polls until delivery id is in state.
func (f *consoleFixture) waitState(id int64, state delivery.State) delivery.Delivery {
	f.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		d, err := f.app.store.deliveries.engine.Get(context.Background(), id)
		if err == nil && d.State == state {
			return d
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("delivery %d is %q after 15s, want %q (%v)", id, d.State, state, err)
		}
		<-time.After(20 * time.Millisecond)
	}
}

// get asks the console for a page.
func (f *consoleFixture) get(c *Console, target string) *httptest.ResponseRecorder {
	f.t.Helper()
	return f.do(c, httptest.NewRequest(http.MethodGet, target, nil))
}

// post submits a console form as the console's own page does (same
// origin), as operator when not empty.
func (f *consoleFixture) post(c *Console, target string, form url.Values, operator string) *httptest.ResponseRecorder {
	f.t.Helper()
	r := httptest.NewRequest(http.MethodPost, target, strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("Sec-Fetch-Site", "same-origin")
	if operator != "" {
		repl := caddy.NewReplacer()
		repl.Set("http.auth.user.id", operator)
		r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl))
	}
	return f.do(c, r)
}

func (f *consoleFixture) do(c *Console, r *http.Request) *httptest.ResponseRecorder {
	f.t.Helper()
	rec := httptest.NewRecorder()
	if err := c.ServeHTTP(rec, r, nil); err != nil {
		f.t.Fatalf("%s %s: %v", r.Method, r.URL, err)
	}
	return rec
}

// postEvent posts a core event to the intake and returns the delivery id.
func (f *consoleFixture) postEvent(event, body string) int64 {
	f.t.Helper()
	resp, err := http.Post(f.sidecar.URL+"/events/"+event, "application/json", strings.NewReader(body))
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusAccepted {
		f.t.Fatalf("event %s: HTTP %d: %s", event, resp.StatusCode, data)
	}
	var answer struct{ ID int64 }
	if err := json.Unmarshal(data, &answer); err != nil || answer.ID == 0 {
		f.t.Fatalf("event %s: no delivery id in %s", event, data)
	}
	return answer.ID
}

// testPlatform stands in for the platform's callback endpoint: it answers
// resultFlag=false (a refusal) while refuse is set, true otherwise.
type testPlatform struct {
	srv    *httptest.Server
	refuse atomic.Bool
	posts  atomic.Int64
}

func startTestPlatform(t *testing.T) *testPlatform {
	t.Helper()
	p := &testPlatform{}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.posts.Add(1)
		body, _ := io.ReadAll(r.Body)
		env, err := protocol.Parse(body, protocol.Limits{})
		if err != nil {
			http.Error(w, "bad xml", http.StatusBadRequest)
			return
		}
		flag, msg := "true", "成功"
		if p.refuse.Load() {
			flag, msg = "false", "保单不存在"
		}
		w.Header().Set("Content-Type", "application/xml; charset=UTF-8")
		_, _ = w.Write(protocol.BuildResponse(strings.TrimSuffix(env.Root, "Request")+"Response", protocol.NewUUID(),
			[]protocol.Element{{Name: "resultFlag", Text: flag}, {Name: "resultMessage", Text: msg}}, consoleKey))
	}))
	t.Cleanup(p.srv.Close)
	return p
}
