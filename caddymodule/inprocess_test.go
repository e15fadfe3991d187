package caddymodule_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// inProcess is the gongbao app and handler of a test config, provisioned
// in this process through Caddy's own API (caddy.ProvisionContext, as
// Caddy's module tests do) and served without a listener: a request goes
// through the handler's ServeHTTP into a recorder, and next is the core
// fixture, called directly in place of reverse_proxy. Tests whose subject
// is our handler, not Caddy's wiring, run here: no Caddy config load,
// no Caddy listener.
type inProcess struct {
	ctx     caddy.Context
	handler caddyhttp.MiddlewareHandler
	core    *coreFixture
	// Client sends requests to the handler, as tester.Client does to Caddy.
	Client *http.Client
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
	p := &inProcess{ctx: ctx, handler: handler.(caddyhttp.MiddlewareHandler), core: fx}
	p.Client = &http.Client{Transport: p}
	return p
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
	r = caddyhttp.PrepareRequest(r, caddy.NewReplacer(), rec, nil)
	if err := p.handler.ServeHTTP(rec, r, caddyhttp.HandlerFunc(p.callCore)); err != nil {
		status := http.StatusInternalServerError
		var herr caddyhttp.HandlerError
		if errors.As(err, &herr) && herr.StatusCode != 0 {
			status = herr.StatusCode
		}
		rec.WriteHeader(status)
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
