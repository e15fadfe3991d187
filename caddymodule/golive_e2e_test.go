package caddymodule_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-gongbao/gongbao/caddymodule"
	"github.com/caddy-gongbao/gongbao/caddymodule/delivery"
	"github.com/caddy-gongbao/gongbao/caddymodule/protocol"
)

// End-to-end through real Caddy: callback replies judged as the platform
// answers, addresses and keys as the current config says.

// standIn is a platform callback endpoint whose answers a test scripts:
// answer gets each callback and how many times its requestUUID arrived.
type standIn struct {
	srv *httptest.Server

	mu       sync.Mutex
	answer   func(w http.ResponseWriter, env *protocol.Envelope, n int)
	received map[string]int // requestUUID → arrivals
}

func startStandIn(t *testing.T, answer func(w http.ResponseWriter, env *protocol.Envelope, n int)) *standIn {
	t.Helper()
	s := &standIn{answer: answer, received: map[string]int{}}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		env, err := protocol.Parse(body, protocol.Limits{})
		if err != nil {
			http.Error(w, "bad xml", http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		s.received[env.RequestUUID]++
		n := s.received[env.RequestUUID]
		s.mu.Unlock()
		s.answer(w, env, n)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *standIn) arrivals(uuid string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.received[uuid]
}

var signElement = regexp.MustCompile(`<sign>[^<]*</sign>`)

// writeReply answers a callback; key "" sends an empty sign.
func writeReply(w http.ResponseWriter, env *protocol.Envelope, flag, msg, key string) {
	root := strings.TrimSuffix(env.Root, "Request") + "Response"
	body := []protocol.Element{{Name: "resultFlag", Text: flag}, {Name: "resultMessage", Text: msg}}
	out := protocol.BuildResponse(root, protocol.NewUUID(), body, key)
	if key == "" {
		out = signElement.ReplaceAll(protocol.BuildResponse(root, protocol.NewUUID(), body, "x"), []byte("<sign></sign>"))
	}
	w.Header().Set("Content-Type", "application/xml; charset=UTF-8")
	w.Write(out)
}

// scaledDelivery runs the callback schedule 600 times faster than the
// wall for stores opened by this test: a 10 s retry takes ~17 ms.
func scaledDelivery(t *testing.T) {
	restore := caddymodule.SetDeliveryClockForTest(delivery.ScaledClock(600))
	t.Cleanup(restore)
}

// paidEventFor is the policy-paid sample as a new event for another policy.
func paidEventFor(t *testing.T, policyNo string) string {
	event := strings.ReplaceAll(string(sample(t, "policy-paid.json")), "BD20190401000002", policyNo)
	return strings.Replace(event, "3f2b8c1e-7d4a-4e9b-a6c5-0d1e2f3a4b5c", protocol.NewUUID(), 1)
}

// deliveryShown is a delivery as the admin API shows it.
type deliveryShown struct {
	State       string `json:"state"`
	RequestUUID string `json:"request_uuid"`
	URL         string `json:"url"`
	LastError   string `json:"last_error"`
	Attempts    []struct {
		URL            string `json:"url"`
		Outcome        string `json:"outcome"`
		ReplySignature string `json:"reply_signature"`
		Error          string `json:"error"`
	} `json:"attempts"`
}

// waitDelivery polls the admin API until cond holds (bounded).
func waitDelivery(t *testing.T, id any, what string, cond func(d deliveryShown) bool) deliveryShown {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(30 * time.Second)
	for {
		var d deliveryShown
		adminJSON(t, http.MethodGet, fmt.Sprintf("/gongbao/deliveries/%v", id), "", http.StatusOK, &d)
		if cond(d) {
			return d
		}
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("delivery %v: timed out waiting for %s: %+v", id, what, d)
		}
	}
}

func isState(s string) func(deliveryShown) bool {
	return func(d deliveryShown) bool { return d.State == s }
}

// TestCallbackReplySignaturesCounted: a platform that answers without a
// sign, or with a wrong one, has its callbacks delivered at the first
// attempt under the default reply_signature optional; both are recorded on
// the attempt and counted in gongbao_callback_reply_signature_total.
func TestCallbackReplySignaturesCounted(t *testing.T) {
	platform := startStandIn(t, func(w http.ResponseWriter, env *protocol.Envelope, _ int) {
		key := ""
		if text(env, "policyNo") == "BD-WRONGSIGN" {
			key = "not-the-platform-key"
		}
		writeReply(w, env, "true", "成功", key)
	})
	fx := startCore(t)
	startSidecar(t, callbackConfig(t, fx.srv.Listener.Addr().String(), platform.srv.URL))
	before := scrape(t)

	want := map[string]string{"BD-UNSIGNED": "unsigned", "BD-WRONGSIGN": "mismatch"}
	for policy, sig := range want {
		_, out := postEvent(t, "policy-paid", paidEventFor(t, policy))
		d := waitDelivery(t, out["id"], "delivered", isState("delivered"))
		if len(d.Attempts) != 1 || d.Attempts[0].ReplySignature != sig || d.Attempts[0].Outcome != "accepted" {
			t.Errorf("%s: %+v", policy, d)
		}
	}
	after := scrape(t)
	for _, sig := range []string{"unsigned", "mismatch"} {
		series := fmt.Sprintf(`gongbao_callback_reply_signature_total{result=%q}`, sig)
		if got := after[series] - before[series]; got != 1 {
			t.Errorf("%s grew by %v, want 1", series, got)
		}
	}
	if got := after[`gongbao_callback_attempts_total{outcome="accepted"}`] - before[`gongbao_callback_attempts_total{outcome="accepted"}`]; got != 2 {
		t.Errorf("accepted attempts grew by %v, want 2", got)
	}
}

// TestCallbackRefusedTwiceThenAccepted: by default a refusal is resent on
// the schedule with the same requestUUID; each refusal is an attempt and
// is counted.
func TestCallbackRefusedTwiceThenAccepted(t *testing.T) {
	scaledDelivery(t)
	platform := startStandIn(t, func(w http.ResponseWriter, env *protocol.Envelope, n int) {
		if n < 3 {
			writeReply(w, env, "false", "系统繁忙", testKey)
			return
		}
		writeReply(w, env, "true", "成功", testKey)
	})
	fx := startCore(t)
	startSidecar(t, callbackConfig(t, fx.srv.Listener.Addr().String(), platform.srv.URL))
	before := scrape(t)
	_, out := postEvent(t, "policy-paid", paidEventFor(t, "BD-REFUSED-TWICE"))
	d := waitDelivery(t, out["id"], "delivered", isState("delivered"))
	if len(d.Attempts) != 3 || d.Attempts[0].Outcome != "refused" || d.Attempts[1].Outcome != "refused" ||
		!strings.Contains(d.Attempts[0].Error, "系统繁忙") {
		t.Fatalf("attempts: %+v", d.Attempts)
	}
	if n := platform.arrivals(d.RequestUUID); n != 3 {
		t.Errorf("the platform saw the requestUUID %d times, want 3", n)
	}
	after := scrape(t)
	if got := after[`gongbao_callback_attempts_total{outcome="refused"}`] - before[`gongbao_callback_attempts_total{outcome="refused"}`]; got != 2 {
		t.Errorf("refused attempts grew by %v, want 2", got)
	}
}

// TestCallbackAddressFollowsReload: with a wrong callback base, callbacks
// wait (one is dead-lettered); after the base is fixed and the config
// reloaded, the pending ones and the operator-retried dead one arrive at
// the new address, and their attempts show both addresses.
func TestCallbackAddressFollowsReload(t *testing.T) {
	scaledDelivery(t)
	wrong := startStandIn(t, func(w http.ResponseWriter, env *protocol.Envelope, _ int) {
		if text(env, "policyNo") == "BD-DEAD" {
			writeReply(w, env, "false", "保单不存在", testKey)
			return
		}
		http.NotFound(w, nil)
	})
	right := startStandIn(t, func(w http.ResponseWriter, env *protocol.Envelope, _ int) {
		writeReply(w, env, "true", "成功", testKey)
	})
	fx := startCore(t)
	wrongBase, rightBase := wrong.srv.URL+"/old", right.srv.URL+"/new"
	before := strings.Replace(callbackConfig(t, fx.srv.Listener.Addr().String(), wrongBase),
		"poll_interval 50ms", "poll_interval 50ms\n\t\t\trefusal dead_letter", 1)
	tester := startSidecar(t, before)

	_, dead := postEvent(t, "policy-paid", paidEventFor(t, "BD-DEAD"))
	waitDelivery(t, dead["id"], "dead", isState("dead"))
	var pending []any
	for _, policy := range []string{"BD-PENDING-1", "BD-PENDING-2"} {
		_, out := postEvent(t, "policy-paid", paidEventFor(t, policy))
		waitDelivery(t, out["id"], "a failed attempt", func(d deliveryShown) bool {
			// An attempt is listed as running from before it is sent.
			return len(d.Attempts) >= 1 && d.Attempts[0].Outcome == "failed"
		})
		pending = append(pending, out["id"])
	}

	tester.InitServer(strings.Replace(before, wrongBase, rightBase, 1), "caddyfile")
	adminJSON(t, http.MethodPost, fmt.Sprintf("/gongbao/deliveries/%v/retry", dead["id"]), "{}", http.StatusOK, nil)

	wrongURL, rightURL := wrongBase+"/queryPolicyRequest", rightBase+"/queryPolicyRequest"
	for _, id := range append(pending, dead["id"]) {
		d := waitDelivery(t, id, "delivered", isState("delivered"))
		last := d.Attempts[len(d.Attempts)-1]
		if d.Attempts[0].URL != wrongURL || last.URL != rightURL || last.Outcome != "accepted" {
			t.Errorf("delivery %v: first attempt to %s, last to %s (%s); want %s then %s",
				id, d.Attempts[0].URL, last.URL, last.Outcome, wrongURL, rightURL)
		}
		if right.arrivals(d.RequestUUID) != 1 {
			t.Errorf("delivery %v reached the new address %d times", id, right.arrivals(d.RequestUUID))
		}
	}
}

// TestReloadWithUnsetKeyFails: a reload whose verify_key placeholder
// resolves to nothing fails with a message naming it; the running config
// keeps verifying with its keys.
func TestReloadWithUnsetKeyFails(t *testing.T) {
	os.Unsetenv("GONGBAO_UNSET_KEY")
	fx := startCore(t)
	good := sidecarConfig(t, fx.srv.Listener.Addr().String(), "", "")
	tester := startSidecar(t, good)
	bad := strings.Replace(good, "sign_key {env.GONGBAO_TEST_KEY}",
		"sign_key {env.GONGBAO_TEST_KEY}\n\t\tverify_key {env.GONGBAO_TEST_KEY} {env.GONGBAO_UNSET_KEY}", 1)

	req, _ := http.NewRequest(http.MethodPost, "http://"+adminAddr+"/load", strings.NewReader(bad))
	req.Header.Set("Content-Type", "text/caddyfile")
	resp, err := (&http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK || !strings.Contains(string(body), "verify_key #2") ||
		!strings.Contains(string(body), "{env.GONGBAO_UNSET_KEY}") {
		t.Fatalf("reload: %d %s", resp.StatusCode, body)
	}
	if strings.Contains(string(body), testKey) {
		t.Fatal("the error shows a key")
	}
	reply, _ := post(t, tester, sidecarURL, insureSample(t, testKey))
	assertAccepted(t, reply)
}

// TestAdminBadParameters: every admin endpoint answers a bad query
// parameter with 400 naming what is allowed, never a 5xx, never silence.
func TestAdminBadParameters(t *testing.T) {
	fx := startCore(t)
	startSidecar(t, callbackConfig(t, fx.srv.Listener.Addr().String(), "http://127.0.0.1:1"))
	cases := []struct{ path, says string }{
		{"/gongbao/deliveries?state=bogus", "pending, delivered, dead"},
		{"/gongbao/deliveries?limit=abc", "from 1 to 1000"},
		{"/gongbao/deliveries?limit=0", "from 1 to 1000"},
		{"/gongbao/deliveries?limit=100000", "from 1 to 1000"},
		{"/gongbao/deliveries?after=-3", "delivery id"},
		{"/gongbao/deliveries?status=dead", "takes state, limit, after"},
		{"/gongbao/deliveries?state=dead&state=pending", "once"},
		{"/gongbao/deliveries?state=%zz", "malformed query"},
		{"/gongbao/deliveries/stats?x=1", "takes no parameters"},
		{"/gongbao/deliveries/1?verbose=1", "takes no parameters"},
		{"/gongbao/deliveries/abc", "not a number"},
		{"/gongbao/requests?state=bogus", "in_progress, completed, released, unknown"},
		{"/gongbao/requests?limit=-1", "from 1 to 1000"},
		{"/gongbao/requests/some-uuid?scop=x", "takes scope"},
		{"/gongbao/journal?policy_no=P1&limit=x", "from 1 to 1000"},
		{"/gongbao/journal?policy=P1", "takes request_uuid, policy_no, proposal_no, limit"},
	}
	for _, c := range cases {
		resp, err := http.Get("http://" + adminAddr + c.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), c.says) {
			t.Errorf("GET %s: %d %s, want 400 saying %q", c.path, resp.StatusCode, body, c.says)
		}
	}
	// Good parameters still work.
	adminJSON(t, http.MethodGet, "/gongbao/deliveries?state=dead&limit=10&after=0", "", http.StatusOK, nil)
	adminJSON(t, http.MethodGet, "/gongbao/requests?state=unknown&limit=5", "", http.StatusOK, nil)
}

// TestDoctorAgainstRunningServer: without --config the doctor checks the
// running server's config through the admin API, store in use included.
func TestDoctorAgainstRunningServer(t *testing.T) {
	platform := startStandIn(t, func(w http.ResponseWriter, env *protocol.Envelope, _ int) {
		t.Errorf("the doctor sent a callback")
	})
	fx := startCore(t)
	cfg := strings.Replace(callbackConfig(t, fx.srv.Listener.Addr().String(), platform.srv.URL),
		"insurance_code PICC-TEST", "insurance_code 12345", 1)
	startSidecar(t, cfg)

	t.Setenv("GONGBAO_SIGN_KEY", testKey)
	cmd := caddymodule.DoctorCommandForTest()
	var out strings.Builder
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs([]string{"--address", adminAddr})
	code := caddymodule.ExitStatusForTest(cmd.Execute())
	if code != 0 || strings.Contains(out.String(), "✗") || !strings.Contains(out.String(), "✔ store: sqlite") {
		t.Fatalf("exit %d:\n%s", code, out.String())
	}
	if strings.Contains(out.String(), testKey) {
		t.Fatal("the doctor printed the key")
	}
}
