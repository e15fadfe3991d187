package process

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"golang.org/x/crypto/bcrypt"

	"github.com/caddy-gongbao/gongbao/caddymodule/protocol"
	"github.com/caddy-gongbao/gongbao/caddymodule/simulator"
	"github.com/caddy-gongbao/gongbao/internal/mockcore"
)

// Environment of the browser test.
const (
	// envRequireBrowser makes a missing chromium a failure (CI), not a skip.
	envRequireBrowser = "GONGBAO_REQUIRE_BROWSER"
	// envScreenshots names a folder for the console's screenshots (the
	// README's pictures are taken this way).
	envScreenshots = "GONGBAO_SCREENSHOTS"
)

// consoleUser and consolePassword guard the console with basic_auth.
const (
	consoleUser     = "ops"
	consolePassword = "console-test-password"
)

// timelineSteps are the nine steps of a policy's life as the console's
// timeline names them, in order.
var timelineSteps = []string{
	"Insure · 投保", "Premium paid at the core · 缴费", "Payment callback · 保单缴纳情况回执",
	"Correct · 批改", "Claim · 理赔", "Invoice · 申请发票", "Invoice callback · 发票信息回执",
	"Surrender · 退保", "Surrender callback · 退保状态回执",
}

// TestConsoleInBrowser drives the console in a real browser (Debian's
// chromium) against the built sidecar and the reference core: the
// simulator runs a policy's whole lifecycle, the operator searches the
// policy and sees all nine steps; a callback the platform refuses becomes
// a dead letter, the operator presses Retry and sees it delivered.
func TestConsoleInBrowser(t *testing.T) {
	t.Parallel()
	chromium := findChromium(t)
	platform := startPlatformStandIn(t)
	simListener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	platform.forwardTo(simListener.Addr().String())

	coreSrv, setCore := startLateCore(t)
	s := startSidecar(t, "console", sidecarConfig{
		// A deadline shorter than any attempt makes a refused callback
		// dead at once, whatever the refusal policy; delivered callbacks
		// are delivered at their first attempt.
		Gongbao: fmt.Sprintf("store sqlite %s\n\t\tcallbacks {\n\t\t\tbase %s\n\t\t\tpoll_interval 100ms\n\t\t\tdeadline 1ms\n\t\t}",
			filepath.Join(t.TempDir(), "gongbao.db"), platform.srv.URL),
		Site: consoleSite(t, coreSrv.Listener.Addr().String()),
	})
	setCore(mockcore.New(mockcore.Config{PublicURL: coreSrv.URL, EventsURL: fmt.Sprintf("http://127.0.0.1:%d", s.HTTPPort)}))

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	res, err := simulator.Run(ctx, simulator.Config{URL: s.URL(), Key: testKey, Listener: simListener, Timeout: 30 * time.Second})
	if err != nil {
		t.Fatalf("the lifecycle did not complete: %v", err)
	}

	b := newBrowser(t, ctx, chromium)
	consoleURL := fmt.Sprintf("http://127.0.0.1:%d/console", s.HTTPPort)
	b.do(chromedp.Navigate(consoleURL + "/"))
	b.do(chromedp.WaitVisible(chromedp.CSS(`svg.chart`)))
	b.screenshot("console-overview.png")
	b.do(chromedp.SendKeys(chromedp.CSS(`input[name="q"]`), res.PolicyNo))
	b.do(chromedp.Submit(chromedp.CSS(`input[name="q"]`)))
	b.do(chromedp.WaitVisible(chromedp.CSS(`ol.timeline`)))
	b.waitStepNames(timelineSteps, 10*time.Second)
	b.do(chromedp.Click(chromedp.CSS(`ol.timeline li:first-child details.body summary`)))
	b.screenshot("console-timeline.png")

	// The platform refuses the next callback: it becomes a dead letter.
	platform.mode.Store(platformRefuses)
	id := postInvoiceEvent(t, s, res.PolicyNo)
	waitDeliveryState(t, s, id, "dead", 30*time.Second)

	b.do(chromedp.Navigate(consoleURL + "/callbacks?state=dead"))
	b.do(chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`a[href$="/callbacks/%d"]`, id))))
	b.screenshot("console-callbacks.png")
	b.do(chromedp.Click(chromedp.CSS(fmt.Sprintf(`a[href$="/callbacks/%d"]`, id))))
	b.do(chromedp.WaitVisible(chromedp.CSS(`#retry`)))

	platform.mode.Store(platformAccepts)
	b.do(chromedp.Click(chromedp.CSS(`#retry`)))
	b.do(chromedp.WaitVisible(chromedp.CSS(`p.flash`)))
	b.waitBadge("delivered", 60*time.Second) // attempts are at least 10 s apart
	b.screenshot("console-callback.png")
}

// findChromium is Debian's chromium, or skips (fails with
// GONGBAO_REQUIRE_BROWSER=1) when it is not installed.
func findChromium(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err == nil {
		return path
	}
	if os.Getenv(envRequireBrowser) == "1" {
		t.Fatalf("chromium is not installed and %s=1: apt-get install -y chromium", envRequireBrowser)
	}
	t.Skipf("chromium is not installed: skipping the browser test (apt-get install -y chromium; %s=1 makes this a failure)", envRequireBrowser)
	return ""
}

// consoleSite is the sidecar's site: the platform endpoint, the events
// intake and the console behind basic_auth (on one loopback listener in
// this test; in production the console goes on an internal listener).
func consoleSite(t *testing.T, coreAddr string) string {
	t.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte(consolePassword), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf(`handle /gongbao* {
		gongbao
		reverse_proxy %s
	}
	handle /events/* {
		gongbao_notify
	}
	handle_path /console/* {
		basic_auth {
			%s %s
		}
		gongbao_console
	}`, coreAddr, consoleUser, hash)
}

// startLateCore serves the reference core on a test server whose core is
// set later: the core needs the sidecar's address for its events, the
// sidecar the core's address for its upstream.
func startLateCore(t *testing.T) (*httptest.Server, func(*mockcore.Core)) {
	t.Helper()
	var current atomic.Pointer[mockcore.Core]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := current.Load()
		if c == nil {
			http.Error(w, "core not ready", http.StatusServiceUnavailable)
			return
		}
		c.Handler().ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		srv.Close()
		if c := current.Load(); c != nil {
			c.Close()
		}
	})
	return srv, func(c *mockcore.Core) { current.Store(c) }
}

// Platform stand-in modes.
const (
	platformForwards int32 = iota // to the simulator's callback receiver
	platformRefuses               // signed resultFlag=false
	platformAccepts               // signed resultFlag=true
)

// platformStandIn is the platform's callback address: it forwards to the
// simulator while the lifecycle runs, then refuses or accepts by itself.
type platformStandIn struct {
	srv     *httptest.Server
	mode    atomic.Int32
	forward atomic.Pointer[httputil.ReverseProxy]
}

func startPlatformStandIn(t *testing.T) *platformStandIn {
	t.Helper()
	p := &platformStandIn{}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *platformStandIn) forwardTo(addr string) {
	p.forward.Store(httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: addr}))
}

func (p *platformStandIn) serve(w http.ResponseWriter, r *http.Request) {
	mode := p.mode.Load()
	if mode == platformForwards {
		p.forward.Load().ServeHTTP(w, r)
		return
	}
	env, err := protocol.Parse(readAll(r), protocol.Limits{})
	if err != nil {
		http.Error(w, "bad xml", http.StatusBadRequest)
		return
	}
	flag, msg := "true", "成功"
	if mode == platformRefuses {
		flag, msg = "false", "保单信息不一致"
	}
	w.Header().Set("Content-Type", "application/xml; charset=UTF-8")
	_, _ = w.Write(protocol.BuildResponse(strings.TrimSuffix(env.Root, "Request")+"Response", protocol.NewUUID(),
		[]protocol.Element{{Name: "resultFlag", Text: flag}, {Name: "resultMessage", Text: msg}}, testKey))
}

func readAll(r *http.Request) []byte {
	b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	return b
}

// postInvoiceEvent posts, as the core would, an invoice-issued event for
// policyNo, and returns its delivery id.
func postInvoiceEvent(t *testing.T, s *sidecar, policyNo string) int64 {
	t.Helper()
	body := fmt.Sprintf(`{"eventId":"console-extra-invoice","policyNo":%q,"downloadUrl":"http://core.example/invoice.pdf"}`, policyNo)
	resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/events/invoice-issued", s.HTTPPort), "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var a eventAnswer
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("the invoice event: HTTP %d, %v", resp.StatusCode, err)
	}
	return a.ID
}

// waitDeliveryState polls the admin API until delivery id is in state.
func waitDeliveryState(t *testing.T, s *sidecar, id int64, state string, bound time.Duration) {
	t.Helper()
	deadline := time.Now().Add(bound)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		status, body, err := s.Admin(http.MethodGet, fmt.Sprintf("/gongbao/deliveries/%d", id), nil)
		var d struct{ State string }
		if err == nil && status == http.StatusOK && json.Unmarshal(body, &d) == nil && d.State == state {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("delivery %d not %s within %s (last: %d %s %v)", id, state, bound, status, body, err)
		}
		<-tick.C
	}
}

// browser is one headless chromium tab, authenticated to the console.
type browser struct {
	t           *testing.T
	ctx         context.Context
	screenshots string
}

func newBrowser(t *testing.T, parent context.Context, chromium string) *browser {
	t.Helper()
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(parent,
		chromedp.ExecPath(chromium),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-proxy-server", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	ctx, cancelTab := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc()
	})
	b := &browser{t: t, ctx: ctx, screenshots: os.Getenv(envScreenshots)}
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(consoleUser+":"+consolePassword))
	if _, err := chromedp.Call(ctx, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{
		Headers: network.Headers{"Authorization": auth}}); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	return b
}

// do runs browser actions, failing the test on an error.
func (b *browser) do(steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, steps...); err != nil {
		b.t.Fatalf("browser: %v", err)
	}
}

// waitStepNames waits until the timeline shows exactly these steps.
func (b *browser) waitStepNames(want []string, bound time.Duration) {
	b.t.Helper()
	deadline := time.Now().Add(bound)
	for {
		got, err := chromedp.Run(b.ctx, chromedp.Evaluate[[]string](
			`Array.from(document.querySelectorAll("ol.timeline .name")).map(e => e.textContent.trim())`))
		if err == nil && strings.Join(got, "\n") == strings.Join(want, "\n") {
			return
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("the timeline shows\n  %s\nwant\n  %s\n(%v)", strings.Join(got, "\n  "), strings.Join(want, "\n  "), err)
		}
		b.do(chromedp.Reload())
	}
}

// waitBadge reloads the callback page until its state badge says state.
func (b *browser) waitBadge(state string, bound time.Duration) {
	b.t.Helper()
	deadline := time.Now().Add(bound)
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		got, err := chromedp.Run(b.ctx, chromedp.Text(chromedp.CSS(`.heading .badge`)))
		if err == nil && strings.TrimSpace(got) == state {
			return
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("the callback is %q after %s, want %q (%v)", got, bound, state, err)
		}
		<-tick.C
		b.do(chromedp.Reload())
	}
}

// screenshot saves the whole page as PNG when GONGBAO_SCREENSHOTS names
// a folder.
func (b *browser) screenshot(name string) {
	b.t.Helper()
	if b.screenshots == "" {
		return
	}
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(b.screenshots, name), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}
