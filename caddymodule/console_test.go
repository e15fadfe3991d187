package caddymodule

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-gongbao/gongbao/caddymodule/delivery"
	"github.com/caddy-gongbao/gongbao/caddymodule/store"
)

// lifecycleSteps are the nine steps of a policy's whole life, in the order
// the timeline must show them: the payment at the core (reported by the
// payment callback), the platform's five requests and our three callbacks.
var lifecycleSteps = []string{
	"Insure", "Premium paid at the core", "Payment callback", "Correct", "Claim",
	"Invoice", "Invoice callback", "Surrender", "Surrender callback",
}

// TestConsoleTimeline: after a whole lifecycle, searching the policy
// number finds every exchange and callback, the insure exchange included
// (it only knows the proposal number), in time order; the proposal number
// and the insure requestUUID lead to the same timeline.
func TestConsoleTimeline(t *testing.T) {
	f, res := newLifecycleFixture(t)

	rec := f.get(f.console, "/search?q="+url.QueryEscape(res.PolicyNo))
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/policy/"+url.PathEscape(res.PolicyNo) {
		t.Fatalf("search by policy: %d → %q", rec.Code, rec.Header().Get("Location"))
	}
	page := f.get(f.console, "/policy/"+url.PathEscape(res.PolicyNo))
	if page.Code != http.StatusOK {
		t.Fatalf("timeline: HTTP %d\n%s", page.Code, page.Body)
	}
	body := page.Body.String()
	assertInOrder(t, body, lifecycleSteps)
	for _, want := range []string{res.ProposalNo, "Payment callback", "delivered", "&lt;insureRequest&gt;", "&lt;resultFlag&gt;true&lt;/resultFlag&gt;"} {
		if !strings.Contains(body, want) {
			t.Errorf("the timeline lacks %q", want)
		}
	}

	// The proposal number is linked to its policy by the payment callback.
	rec = f.get(f.console, "/policy/"+url.PathEscape(res.ProposalNo))
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/policy/"+url.PathEscape(res.PolicyNo) {
		t.Errorf("proposal number: %d → %q, want the policy's timeline", rec.Code, rec.Header().Get("Location"))
	}
	insure, err := f.app.store.journal.journal.Find(context.Background(), store.JournalQuery{ProposalNo: res.ProposalNo})
	if err != nil || len(insure) == 0 || insure[0].Message != "insureRequest" {
		t.Fatalf("the insure exchange by proposal: %v %+v", err, insure)
	}
	rec = f.get(f.console, "/search?q="+insure[0].RequestUUID)
	if loc := rec.Header().Get("Location"); rec.Code != http.StatusSeeOther || !strings.HasSuffix(loc, fmt.Sprintf("#x%d", insure[0].ID)) {
		t.Errorf("search by requestUUID: %d → %q", rec.Code, loc)
	}
}

// assertInOrder checks that every item occurs in s, each after the one
// before it.
func assertInOrder(t *testing.T, s string, items []string) {
	t.Helper()
	at := 0
	for _, item := range items {
		i := strings.Index(s[at:], `<span class="name">`+item+" · ")
		if i < 0 {
			t.Fatalf("%s missing from the timeline, or out of order (after position %d)", item, at)
		}
		at += i + len(item)
	}
}

// TestConsoleMasksPersonalData: bodies are masked with the journal's masker
// unless show_personal_data is set.
func TestConsoleMasksPersonalData(t *testing.T) {
	f, res := newLifecycleFixture(t)
	const mobile = "13858012345" // applicantInfo/mobile of the simulator's insureRequest
	masked := f.get(f.console, "/policy/"+url.PathEscape(res.PolicyNo)).Body.String()
	if strings.Contains(masked, mobile) {
		t.Error("the applicant's mobile is shown by default")
	}
	if !strings.Contains(masked, "&lt;mobile&gt;138****2345&lt;/mobile&gt;") || !strings.Contains(masked, "Personal data is masked") {
		t.Error("the masked timeline does not say or show the mask")
	}
	shown := f.get(f.newConsole(true), "/policy/"+url.PathEscape(res.PolicyNo)).Body.String()
	if !strings.Contains(shown, mobile) {
		t.Error("show_personal_data does not show the applicant's mobile")
	}
	if strings.Contains(masked+shown, consoleKey) {
		t.Error("a page prints the signing key")
	}
}

// TestConsoleOverview: the last day's counts and the two charts.
func TestConsoleOverview(t *testing.T) {
	f, _ := newLifecycleFixture(t)
	rec := f.get(f.console, "/")
	body := rec.Body.String()
	if rec.Code != http.StatusOK {
		t.Fatalf("overview: HTTP %d\n%s", rec.Code, body)
	}
	for _, want := range []string{`<span class="n">5</span><span class="l">platform requests`,
		`<span class="n">3</span><span class="l">callbacks asked for`, "<svg", "<title>ok: 5</title>",
		"<title>delivered: 3</title>", "dead letters"} {
		if !strings.Contains(body, want) {
			t.Errorf("the overview lacks %q", want)
		}
	}
	if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("Content-Security-Policy %q", csp)
	}
}

// TestConsoleCallbacksAndRetry: a refused callback becomes a dead letter,
// the callbacks page lists it under dead, its page shows the attempt, and
// Retry (as the admin API's retry) delivers it; the action is logged with
// the operator.
func TestConsoleCallbacksAndRetry(t *testing.T) {
	platform := startTestPlatform(t)
	platform.refuse.Store(true)
	// The retry still keeps the 10 s gap after the refused attempt; a
	// clock 600 times faster than the wall makes that 17 ms.
	saved := deliveryClock
	deliveryClock = delivery.ScaledClock(600)
	t.Cleanup(func() { deliveryClock = saved })
	// A deadline shorter than the first attempt makes its failure final,
	// whatever the refusal policy.
	f := newConsoleFixture(t, platform.srv.URL, time.Millisecond)
	id := f.postEvent("policy-paid", `{"eventId":"e1","policyNo":"BD-CONSOLE-1","proposalNo":"TB-CONSOLE-1","payType":"3",`+
		`"paidAt":"2026-11-27T10:00:00+08:00","policyUrl":"http://core.example/p/1.pdf"}`)
	f.waitState(id, delivery.StateDead)

	list := f.get(f.console, "/callbacks?state=dead").Body.String()
	if !strings.Contains(list, fmt.Sprintf(`href="/callbacks/%d"`, id)) || !strings.Contains(list, "保单不存在") {
		t.Errorf("the dead letter is not listed with its error:\n%s", list)
	}
	if pending := f.get(f.console, "/callbacks?state=pending").Body.String(); strings.Contains(pending, "BD-CONSOLE-1") {
		t.Error("the dead letter is listed as pending")
	}
	if byPolicy := f.get(f.console, "/callbacks?policy=BD-CONSOLE-1").Body.String(); !strings.Contains(byPolicy, "BD-CONSOLE-1") {
		t.Error("the policy filter does not find the callback")
	}
	page := f.get(f.console, fmt.Sprintf("/callbacks/%d", id)).Body.String()
	for _, want := range []string{`id="retry"`, platform.srv.URL, "refused", "&lt;resultFlag&gt;false&lt;/resultFlag&gt;", "&lt;queryPolicyRequest&gt;"} {
		if !strings.Contains(page, want) {
			t.Errorf("the dead letter's page lacks %q", want)
		}
	}

	platform.refuse.Store(false)
	rec := f.post(f.console, fmt.Sprintf("/callbacks/%d/retry", id), nil, "alice")
	if rec.Code != http.StatusSeeOther {
		t.Fatalf("retry: HTTP %d\n%s", rec.Code, rec.Body)
	}
	d := f.waitState(id, delivery.StateDelivered)
	if len(d.Attempts) != 2 {
		t.Errorf("attempts after the retry: %d, want 2", len(d.Attempts))
	}
	logged := f.logs.FilterMessage("console: dead letter retried").All()
	if len(logged) != 1 || logged[0].ContextMap()["operator"] != "alice" {
		t.Errorf("the retry is not logged with its operator: %+v", logged)
	}
	page = f.get(f.console, fmt.Sprintf("/callbacks/%d", id)).Body.String()
	if strings.Contains(page, `id="retry"`) || !strings.Contains(page, "delivered") {
		t.Error("a delivered callback still offers Retry")
	}
	if rec := f.post(f.console, fmt.Sprintf("/callbacks/%d/retry", id), nil, ""); rec.Code != http.StatusConflict {
		t.Errorf("retrying a delivered callback: HTTP %d, want 409", rec.Code)
	}
}

// TestConsoleCrossSitePostRefused: a state-changing POST from another site
// is refused with 403 and changes nothing.
func TestConsoleCrossSitePostRefused(t *testing.T) {
	platform := startTestPlatform(t)
	platform.refuse.Store(true)
	f := newConsoleFixture(t, platform.srv.URL, time.Millisecond)
	id := f.postEvent("policy-paid", `{"eventId":"e2","policyNo":"BD-CSRF-1","proposalNo":"TB-CSRF-1","payType":"3",`+
		`"paidAt":"2026-11-27T10:00:00+08:00","policyUrl":"http://core.example/p/2.pdf"}`)
	f.waitState(id, delivery.StateDead)
	for _, header := range [][2]string{{"Sec-Fetch-Site", "cross-site"}, {"Origin", "https://evil.example"}} {
		r := httptest.NewRequest(http.MethodPost, fmt.Sprintf("http://console.internal/callbacks/%d/retry", id), nil)
		r.Header.Set(header[0], header[1])
		if rec := f.do(f.console, r); rec.Code != http.StatusForbidden {
			t.Errorf("POST with %s: %s: HTTP %d, want 403", header[0], header[1], rec.Code)
		}
	}
	r := httptest.NewRequest(http.MethodPost, "http://console.internal/requests/some-uuid/resolve",
		strings.NewReader("state=released"))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("Sec-Fetch-Site", "cross-site")
	if rec := f.do(f.console, r); rec.Code != http.StatusForbidden {
		t.Errorf("cross-site resolve: HTTP %d, want 403", rec.Code)
	}
	if d, _ := f.app.store.deliveries.engine.Get(context.Background(), id); d.State != delivery.StateDead {
		t.Errorf("a refused cross-site retry changed the delivery to %s", d.State)
	}
}

// TestConsoleNotFound: unknown ids and pages answer 404.
func TestConsoleNotFound(t *testing.T) {
	f := newConsoleFixture(t, "http://127.0.0.1:1", 0)
	for _, target := range []string{"/callbacks/999999", "/callbacks/abc", "/policy/NO-SUCH-POLICY", "/no/such/page", "/static/nope.css"} {
		if rec := f.get(f.console, target); rec.Code != http.StatusNotFound {
			t.Errorf("GET %s: HTTP %d, want 404", target, rec.Code)
		}
	}
	for _, target := range []string{"/callbacks/999999/retry", "/requests/no-such-uuid/resolve", "/callbacks/1/delete"} {
		if rec := f.post(f.console, target, url.Values{"state": {"released"}}, ""); rec.Code != http.StatusNotFound {
			t.Errorf("POST %s: HTTP %d, want 404", target, rec.Code)
		}
	}
	if rec := f.get(f.console, "/callbacks?state=lost"); rec.Code != http.StatusBadRequest {
		t.Errorf("an unknown state filter: HTTP %d, want 400", rec.Code)
	}
}

// TestConsoleRequestsInDoubt: a request whose outcome is unknown is listed
// and resolved (as the admin API resolves), with the operator in the note
// and the log; resolving it again is refused.
func TestConsoleRequestsInDoubt(t *testing.T) {
	f := newConsoleFixture(t, "http://127.0.0.1:1", 0)
	ctx, scope, key := context.Background(), f.app.Idempotency.Scope, "5b0e6c1e-doubt-0001"
	_, _, token, err := f.app.idem.Begin(ctx, scope, key, "fp", time.Now(), time.Minute, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.app.idem.MarkUnknown(ctx, scope, key, token, "core timed out", time.Now()); err != nil {
		t.Fatal(err)
	}
	page := f.get(f.console, "/requests").Body.String()
	if !strings.Contains(page, key) || !strings.Contains(page, "core timed out") {
		t.Fatalf("the request in doubt is not listed:\n%s", page)
	}
	if rec := f.post(f.console, "/requests/"+key+"/resolve", url.Values{"state": {"completed"}}, "bob"); rec.Code != http.StatusBadRequest {
		t.Errorf("completed without a reply: HTTP %d, want 400", rec.Code)
	}
	rec := f.post(f.console, "/requests/"+key+"/resolve", url.Values{"state": {"released"}, "note": {"core has no proposal"}}, "bob")
	if rec.Code != http.StatusSeeOther {
		t.Fatalf("resolve: HTTP %d\n%s", rec.Code, rec.Body)
	}
	got, err := f.app.idem.Get(ctx, scope, key)
	if err != nil || got.State != store.StateReleased || !strings.Contains(got.Note, "bob") {
		t.Errorf("after resolving: %v %+v", err, got)
	}
	if logged := f.logs.FilterMessage("console: request resolved").All(); len(logged) != 1 || logged[0].ContextMap()["operator"] != "bob" {
		t.Errorf("the resolution is not logged with its operator: %+v", logged)
	}
	if !strings.Contains(f.get(f.console, rec.Header().Get("Location")).Body.String(), "No request is in doubt") {
		t.Error("the resolved request is still listed")
	}
	if rec := f.post(f.console, "/requests/"+key+"/resolve", url.Values{"state": {"released"}}, "bob"); rec.Code != http.StatusConflict {
		t.Errorf("resolving twice: HTTP %d, want 409", rec.Code)
	}
}

// TestConsoleUnderPathPrefix: served with handle_path /console/*, links and
// redirects keep the prefix; the stylesheet is embedded.
func TestConsoleUnderPathPrefix(t *testing.T) {
	f := newConsoleFixture(t, "http://127.0.0.1:1", 0)
	orig := httptest.NewRequest(http.MethodGet, "/console/search?q=X1", nil)
	r := orig.Clone(context.WithValue(orig.Context(), caddyhttp.OriginalRequestCtxKey, *orig))
	r.URL.Path = "/search"
	rec := f.do(f.console, r)
	if loc := rec.Header().Get("Location"); loc != "/console/policy/X1" {
		t.Errorf("redirect under a prefix: %q", loc)
	}
	orig = httptest.NewRequest(http.MethodGet, "/console/", nil)
	r = orig.Clone(context.WithValue(orig.Context(), caddyhttp.OriginalRequestCtxKey, *orig))
	r.URL.Path = "/"
	if body := f.do(f.console, r).Body.String(); !strings.Contains(body, `href="/console/static/console.css"`) {
		t.Error("page links ignore the prefix")
	}
	css := f.get(f.console, "/static/console.css")
	if css.Code != http.StatusOK || !strings.HasPrefix(css.Header().Get("Content-Type"), "text/css") {
		t.Errorf("stylesheet: HTTP %d %q", css.Code, css.Header().Get("Content-Type"))
	}
}
