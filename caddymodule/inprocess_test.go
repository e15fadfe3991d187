package caddymodule_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/caddy-gongbao/gongbao/caddymodule"
)

// inProcess is the gongbao app and handler of a test config, provisioned
// in this process through Caddy's own API (caddy.ProvisionContext, as
// Caddy's module tests do) and served without a listener: a request goes
// through the handler's ServeHTTP into a recorder, and next is the core
// fixture, called directly in place of reverse_proxy. Tests whose subject
// is our handler, not Caddy's wiring, run here: no Caddy config load,
// no Caddy listener.
type inProcess struct {
	ctx        caddy.Context
	handlerCtx caddy.Context
	app        *caddymodule.App
	handler    caddyhttp.MiddlewareHandler
	next       caddyhttp.Handler
	core       *coreFixture
	// Client sends requests to the handler, as tester.Client does to Caddy.
	Client *http.Client
	// Admin sends requests under /gongbao/ to the app's admin endpoints,
	// as http.DefaultClient does to the test Caddy's admin address.
	Admin *http.Client
}

// startInProcess provisions the app of sidecarConfig(extraGlobal) — the
// same gongbao options the caddytest tests load — and a bare gongbao
// handler in front of fx.
func startInProcess(t *testing.T, fx *coreFixture, extraGlobal string) *inProcess {
	t.Helper()
	appJSON := gongbaoAppJSON(t, sidecarConfig(t, fx.srv.Listener.Addr().String(), extraGlobal, ""))
	ctx, err := caddy.ProvisionContext(&caddy.Config{AppsRaw: caddy.ModuleMap{"gongbao": appJSON}})
	if err != nil {
		t.Fatalf("provisioning the gongbao app: %v", err)
	}
	app, err := ctx.App("gongbao")
	if err != nil {
		t.Fatal(err)
	}
	// ProvisionContext provisions but does not start; Caddy would start
	// the app after a load, and stop and clean it up before the next.
	if err := app.(caddy.App).Start(); err != nil {
		t.Fatalf("starting the gongbao app: %v", err)
	}
	handlerCtx, cancel := caddy.NewContext(ctx)
	handler, err := handlerCtx.LoadModuleByID("http.handlers.gongbao", json.RawMessage(`{}`))
	if err != nil {
		t.Fatalf("provisioning the gongbao handler: %v", err)
	}
	t.Cleanup(func() {
		cancel() // cleans up the handler
		if err := app.(caddy.App).Stop(); err != nil {
			t.Error(err)
		}
		if err := app.(caddy.CleanerUpper).Cleanup(); err != nil {
			t.Error(err)
		}
	})
	p := &inProcess{ctx: ctx, handlerCtx: handlerCtx, app: app.(*caddymodule.App), handler: handler.(caddyhttp.MiddlewareHandler), core: fx}
	p.next = caddyhttp.HandlerFunc(p.callCore)
	p.Client = &http.Client{Transport: p}
	p.Admin = &http.Client{Transport: adminTransport{p.app}}
	return p
}

// startInProcessBehindProxy is startInProcess with next the test
// Caddyfile's own reverse_proxy, provisioned in process, instead of a
// direct call on the core fixture: for tests of how the handler reads
// reverse_proxy's failures (a timeout, an answer broken off, no core).
func startInProcessBehindProxy(t *testing.T, fx *coreFixture, coreAddr, extraGlobal string) *inProcess {
	t.Helper()
	p := startInProcess(t, fx, extraGlobal)
	proxyJSON := reverseProxyJSON(t, sidecarConfig(t, coreAddr, extraGlobal, ""))
	proxy, err := p.handlerCtx.LoadModuleByID("http.handlers.reverse_proxy", proxyJSON)
	if err != nil {
		t.Fatalf("provisioning reverse_proxy: %v", err)
	}
	terminal := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })
	p.next = caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		return proxy.(caddyhttp.MiddlewareHandler).ServeHTTP(w, r, terminal)
	})
	return p
}

// reverseProxyJSON adapts a test Caddyfile and returns its reverse_proxy
// handler, without the "handler" key that names the module.
func reverseProxyJSON(t *testing.T, caddyfile string) json.RawMessage {
	t.Helper()
	adapted, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), nil)
	if err != nil {
		t.Fatalf("adapting the test Caddyfile: %v", err)
	}
	var cfg any
	if err := json.Unmarshal(adapted, &cfg); err != nil {
		t.Fatal(err)
	}
	proxy := findHandler(cfg, "reverse_proxy")
	if proxy == nil {
		t.Fatalf("the test Caddyfile has no reverse_proxy:\n%s", adapted)
	}
	delete(proxy, "handler")
	raw, err := json.Marshal(proxy)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// findHandler is the first object in v, depth first, whose "handler" is
// name.
func findHandler(v any, name string) map[string]any {
	switch v := v.(type) {
	case map[string]any:
		if v["handler"] == name {
			return v
		}
		for _, child := range v {
			if found := findHandler(child, name); found != nil {
				return found
			}
		}
	case []any:
		for _, child := range v {
			if found := findHandler(child, name); found != nil {
				return found
			}
		}
	}
	return nil
}

// serveEvents starts an events intake (gongbao_notify, provisioned in
// process, as the callback tests' Caddyfile configures it) on a test
// listener and returns its base URL, for the core's EventsURL.
func (p *inProcess) serveEvents(t *testing.T) string {
	t.Helper()
	notify, err := p.handlerCtx.LoadModuleByID("http.handlers.gongbao_notify", json.RawMessage(`{}`))
	if err != nil {
		t.Fatalf("provisioning gongbao_notify: %v", err)
	}
	intake := notify.(caddyhttp.MiddlewareHandler)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		serveAsCaddy(w, r, intake, nil)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// gongbaoAppJSON adapts a test Caddyfile and returns its gongbao app.
func gongbaoAppJSON(t *testing.T, caddyfile string) json.RawMessage {
	t.Helper()
	adapted, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), nil)
	if err != nil {
		t.Fatalf("adapting the test Caddyfile: %v", err)
	}
	_ = warnings // "input is not formatted": the tests build it with Sprintf
	var cfg struct {
		Apps map[string]json.RawMessage `json:"apps"`
	}
	if err := json.Unmarshal(adapted, &cfg); err != nil {
		t.Fatal(err)
	}
	app, ok := cfg.Apps["gongbao"]
	if !ok {
		t.Fatalf("the test Caddyfile has no gongbao app:\n%s", adapted)
	}
	return app
}

// RoundTrip serves req with the gongbao handler into a recorder. An error
// the handler returns is answered as Caddy's server does without an
// error route: its status and an empty body.
func (p *inProcess) RoundTrip(req *http.Request) (*http.Response, error) {
	r := req.Clone(req.Context())
	r.RequestURI = req.URL.RequestURI()
	r.RemoteAddr = "192.0.2.1:40000"
	if r.Body == nil {
		r.Body = http.NoBody
	}
	rec := httptest.NewRecorder()
	serveAsCaddy(rec, r, p.handler, p.next)
	resp := rec.Result()
	resp.Request = req
	return resp, nil
}

// serveAsCaddy runs handler with the request values Caddy's server sets
// (reverse_proxy reads the server's; a zero one, as Caddy's own
// reverse_proxy tests use). An error the handler returns is answered as
// Caddy's server does without an error route: its status and an empty
// body.
func serveAsCaddy(w http.ResponseWriter, r *http.Request, handler caddyhttp.MiddlewareHandler, next caddyhttp.Handler) {
	r = caddyhttp.PrepareRequest(r, caddy.NewReplacer(), w, &caddyhttp.Server{})
	if err := handler.ServeHTTP(w, r, next); err != nil {
		status := http.StatusInternalServerError
		var herr caddyhttp.HandlerError
		if errors.As(err, &herr) && herr.StatusCode != 0 {
			status = herr.StatusCode
		}
		w.WriteHeader(status)
	}
}

// adminTransport answers admin requests from app with the admin API's
// own routes and handlers; an error is written as Caddy's admin server
// writes it: its status and {"error": text}.
type adminTransport struct{ app *caddymodule.App }

func (a adminTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	r := req.Clone(req.Context())
	r.RequestURI = req.URL.RequestURI()
	if r.Body == nil {
		r.Body = http.NoBody
	}
	rec := httptest.NewRecorder()
	if err := caddymodule.ServeAdminForTest(a.app, rec, r); err != nil {
		status := http.StatusInternalServerError
		var apiErr caddy.APIError
		if errors.As(err, &apiErr) && apiErr.HTTPStatus != 0 {
			status = apiErr.HTTPStatus
		}
		rec.Header().Set("Content-Type", "application/json")
		rec.WriteHeader(status)
		json.NewEncoder(rec).Encode(map[string]string{"error": strings.TrimSpace(err.Error())})
	}
	resp := rec.Result()
	resp.Request = req
	return resp, nil
}

// callCore is next: the core fixture answers the call the handler built,
// as reverse_proxy would have it do.
func (p *inProcess) callCore(w http.ResponseWriter, r *http.Request) error {
	p.core.serve(w, r)
	return nil
}

// scrape reads the gongbao series as Caddy's /metrics would show them:
// from the registry the app registered its metrics on.
func (p *inProcess) scrape(t *testing.T) map[string]float64 {
	t.Helper()
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(p.ctx.GetMetricsRegistry(), promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	return parseSeries(rec.Body)
}
