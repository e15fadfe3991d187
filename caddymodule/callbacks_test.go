package caddymodule_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-gongbao/gongbao/caddymodule/protocol"
	"github.com/caddy-gongbao/gongbao/internal/mockcore"
)

// platformFixture stands in for 工保网's callback endpoint: it verifies
// every callback's signature and answers with a signed reply.
type platformFixture struct {
	srv *httptest.Server

	mu       sync.Mutex
	received []*protocol.Envelope
	raw      [][]byte
	refuse   string // when set, answer resultFlag=false with this message
	badSign  bool
	arrived  chan struct{}
}

func startPlatform(t *testing.T) *platformFixture {
	t.Helper()
	p := &platformFixture{arrived: make(chan struct{}, 1000)}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *platformFixture) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	env, err := protocol.Parse(body, protocol.Limits{})
	if err != nil {
		http.Error(w, "bad xml", http.StatusBadRequest)
		return
	}
	flag, msg := "true", "成功"
	if _, ok := protocol.VerifyAny(env.SignedValue(), env.Sign, []string{testKey}); !ok {
		flag, msg = "false", "验签失败"
	}
	p.mu.Lock()
	if flag == "true" && p.refuse != "" {
		flag, msg = "false", p.refuse
	}
	key := testKey
	if p.badSign {
		key = "not-the-key"
	}
	p.received = append(p.received, env)
	p.raw = append(p.raw, body)
	p.mu.Unlock()
	replyRoot := strings.TrimSuffix(env.Root, "Request") + "Response"
	w.Header().Set("Content-Type", "application/xml; charset=UTF-8")
	w.Write(protocol.BuildResponse(replyRoot, protocol.NewUUID(), []protocol.Element{
		{Name: "resultFlag", Text: flag}, {Name: "resultMessage", Text: msg},
	}, key))
	p.arrived <- struct{}{}
}

func (p *platformFixture) set(refuse string, badSign bool) {
	p.mu.Lock()
	p.refuse, p.badSign = refuse, badSign
	p.mu.Unlock()
}

// waitFor waits (bounded) until n callbacks have arrived in total.
func (p *platformFixture) waitFor(t *testing.T, n int) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		p.mu.Lock()
		got := len(p.received)
		p.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-p.arrived:
		case <-deadline:
			t.Fatalf("the platform received %d callbacks, want %d", got, n)
		}
	}
}

func (p *platformFixture) callbacks() ([]*protocol.Envelope, [][]byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*protocol.Envelope(nil), p.received...), append([][]byte(nil), p.raw...)
}

// callbackConfig runs the platform endpoint in front of coreAddr and the
// events intake, delivering callbacks to platformURL.
func callbackConfig(t *testing.T, coreAddr, platformURL string) string {
	t.Helper()
	return sidecarConfig(t, coreAddr, callbackGlobal(platformURL), "") + eventsSite + ` {
	handle /events/* {
		gongbao_notify
	}
}
`
}

// callbackGlobal is the gongbao options of callbackConfig: callbacks
// delivered to platformURL, polled often.
func callbackGlobal(platformURL string) string {
	return fmt.Sprintf("insurance_code PICC-TEST\n\t\tcallbacks {\n\t\t\tbase %s\n\t\t\tpoll_interval 50ms\n\t\t}", platformURL)
}

// postEvent posts a core event to the test Caddy's intake and decodes
// the intake's JSON answer.
func postEvent(t *testing.T, event, body string, header ...string) (int, map[string]any) {
	t.Helper()
	return postEventTo(t, eventsSite, event, body, header...)
}

// postEventTo is postEvent to the intake at base (an inProcess's
// serveEvents).
func postEventTo(t *testing.T, base, event, body string, header ...string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/events/"+event, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("posting the event: %v", err)
	}
	defer resp.Body.Close()
	var out map[string]any
	data, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatalf("the intake answered %d with non-JSON: %s", resp.StatusCode, data)
	}
	return resp.StatusCode, out
}

// TestCallbackLifecycle is the whole story with the reference core
// emitting its events to the sidecar: insure through the sidecar, pay,
// invoice and surrender; the platform receives the three callbacks, each
// signed, in order, with insuranceCode filled in.
func TestCallbackLifecycle(t *testing.T) {
	platform := startPlatform(t)
	fx := &coreFixture{}
	fx.srv = httptest.NewServer(http.HandlerFunc(fx.serve))
	fx.core = mockcore.New(mockcore.Config{PublicURL: fx.srv.URL, EventsURL: eventsSite})
	t.Cleanup(func() { fx.srv.Close(); fx.core.Close() })
	tester := startSidecar(t, callbackConfig(t, fx.srv.Listener.Addr().String(), platform.srv.URL))

	reply, _ := post(t, tester, sidecarURL, insureSample(t, testKey))
	assertAccepted(t, reply)
	policyNo := pay(t, text(reply, "yeepayurl"))
	for _, name := range []string{"invoiceRequest.xml", "surrendRequest.xml"} {
		reply, _ := post(t, tester, sidecarURL, signed(t, sample(t, name), testKey, samplePolicyNo, policyNo))
		assertAccepted(t, reply)
	}
	defer func() {
		if t.Failed() {
			var all any
			adminJSON(t, http.MethodGet, "/gongbao/deliveries", "", http.StatusOK, &all)
			t.Logf("deliveries: %v\ncore events: %+v", all, fx.core.Stats().Events)
		}
	}()
	platform.waitFor(t, 3)
	got, _ := platform.callbacks()
	wantRoots := []string{"queryPolicyRequest", "queryInvoiceRequest", "querySurrendRequest"}
	for i, env := range got {
		if env.Root != wantRoots[i] {
			t.Errorf("callback %d is %s, want %s", i, env.Root, wantRoots[i])
		}
		if _, ok := protocol.VerifyAny(env.SignedValue(), env.Sign, []string{testKey}); !ok {
			t.Errorf("callback %s does not verify", env.Root)
		}
		if text(env, "policyNo") != policyNo || text(env, "insuranceCode") != "PICC-TEST" {
			t.Errorf("callback %s: policyNo=%q insuranceCode=%q", env.Root, text(env, "policyNo"), text(env, "insuranceCode"))
		}
	}
	if text(got[0], "payType") != "3" || !strings.Contains(text(got[0], "downLoadUrl"), policyNo) {
		t.Errorf("payment callback lacks the core's values: payType=%q downLoadUrl=%q", text(got[0], "payType"), text(got[0], "downLoadUrl"))
	}
	if text(got[2], "resultFlag") != "true" || text(got[2], "resultMessage") != "已退款至原账户" {
		t.Errorf("surrender callback: resultFlag=%q resultMessage=%q", text(got[2], "resultFlag"), text(got[2], "resultMessage"))
	}
}

// TestEventResentOnce: the core posting the same event three times gets
// the same delivery, and the platform receives one callback.
func TestEventResentOnce(t *testing.T) {
	platform := startPlatform(t)
	fx := startCore(t)
	startSidecar(t, callbackConfig(t, fx.srv.Listener.Addr().String(), platform.srv.URL))
	event := string(sample(t, "policy-paid.json"))

	var first map[string]any
	for i := 0; i < 3; i++ {
		status, out := postEvent(t, "policy-paid", event, "Idempotency-Key", "evt-42")
		if i == 0 {
			first = out
			if status != http.StatusAccepted || out["state"] != "pending" || out["requestUUID"] == "" {
				t.Fatalf("first post: %d %v", status, out)
			}
			continue
		}
		if status != http.StatusOK || out["id"] != first["id"] || out["requestUUID"] != first["requestUUID"] || out["duplicate"] != true {
			t.Fatalf("resend %d: %d %v, want the first delivery %v", i, status, out, first)
		}
	}
	platform.waitFor(t, 1)
	var shown struct {
		State       string `json:"state"`
		RequestUUID string `json:"request_uuid"`
		Attempts    []struct {
			Outcome string `json:"outcome"`
		} `json:"attempts"`
	}
	waitDelivered(t, first["id"], &shown)
	if shown.RequestUUID != first["requestUUID"] || len(shown.Attempts) != 1 || shown.Attempts[0].Outcome != "accepted" {
		t.Errorf("delivery as shown: %+v", shown)
	}
	if got, _ := platform.callbacks(); len(got) != 1 {
		t.Errorf("platform received %d callbacks, want 1", len(got))
	}
}

// waitDelivered polls the admin API (bounded) until the delivery is no
// longer pending.
func waitDelivered(t *testing.T, id any, out any) {
	t.Helper()
	path := fmt.Sprintf("/gongbao/deliveries/%v", id)
	deadline := time.Now().Add(20 * time.Second)
	for {
		var probe struct {
			State string `json:"state"`
		}
		adminJSON(t, http.MethodGet, path, "", http.StatusOK, &probe)
		if probe.State != "pending" || time.Now().After(deadline) {
			adminJSON(t, http.MethodGet, path, "", http.StatusOK, out)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestBadEvents: the intake refuses an event it cannot deliver, saying
// why, and nothing reaches the platform.
func TestBadEvents(t *testing.T) {
	platform := startPlatform(t)
	fx := startCore(t)
	gw := startInProcess(t, fx, callbackGlobal(platform.srv.URL))
	events := gw.serveEvents(t)

	status, out := postEventTo(t, events, "policy-paid", `{"eventId":"e1","proposalNo":"TB1","payType":"3","paidAt":"2019-04-20T15:28:39+08:00","policyUrl":"http://x/p.pdf"}`)
	if status != http.StatusBadRequest || out["field"] != "policyNo" || !strings.Contains(fmt.Sprint(out["message"]), "policyNo") {
		t.Errorf("missing policyNo: %d %v", status, out)
	}
	status, out = postEventTo(t, events, "policy-paid", `{not json`)
	if status != http.StatusBadRequest || out["error"] != "invalid_event" {
		t.Errorf("not JSON: %d %v", status, out)
	}
	status, out = postEventTo(t, events, "policy-cancelled", `{}`)
	if status != http.StatusNotFound || !strings.Contains(fmt.Sprint(out["message"]), "policy-paid") {
		t.Errorf("unknown event: %d %v", status, out)
	}
	if got, _ := platform.callbacks(); len(got) != 0 {
		t.Errorf("the platform received %d callbacks for refused events", len(got))
	}
}

// TestRefusedCallbackDeadLettersAndRetry: under refusal dead_letter, a
// platform refusal is a dead letter carrying the platform's message; an
// operator retry delivers the same signed body again.
func TestRefusedCallbackDeadLettersAndRetry(t *testing.T) {
	platform := startPlatform(t)
	fx := startCore(t)
	cfg := strings.Replace(callbackConfig(t, fx.srv.Listener.Addr().String(), platform.srv.URL),
		"poll_interval 50ms", "poll_interval 50ms\n\t\t\trefusal dead_letter", 1)
	// The operator's retry still keeps the 10 s gap after the refused
	// attempt; the scaled clock makes that 17 ms.
	scaledDelivery(t)
	startSidecar(t, cfg)
	platform.set("保单号不存在", false)

	_, out := postEvent(t, "policy-paid", string(sample(t, "policy-paid.json")))
	var dead struct {
		State     string `json:"state"`
		LastError string `json:"last_error"`
	}
	waitDelivered(t, out["id"], &dead)
	if dead.State != "dead" || !strings.Contains(dead.LastError, "保单号不存在") {
		t.Fatalf("after a refusal: %+v", dead)
	}
	var listed struct {
		Deliveries []struct {
			ID any `json:"id"`
		} `json:"deliveries"`
	}
	adminJSON(t, http.MethodGet, "/gongbao/deliveries?state=dead", "", http.StatusOK, &listed)
	if len(listed.Deliveries) != 1 || fmt.Sprint(listed.Deliveries[0].ID) != fmt.Sprint(out["id"]) {
		t.Fatalf("dead letters listed: %+v", listed)
	}

	platform.set("", false)
	adminJSON(t, http.MethodPost, fmt.Sprintf("/gongbao/deliveries/%v/retry", out["id"]), "{}", http.StatusOK, nil)
	var delivered struct {
		State string `json:"state"`
	}
	waitDelivered(t, out["id"], &delivered)
	if delivered.State != "delivered" {
		t.Fatalf("after the operator retry: %+v", delivered)
	}
	_, raw := platform.callbacks()
	if len(raw) != 2 || !bytes.Equal(raw[0], raw[1]) {
		t.Errorf("the retry did not resend the same signed body:\n%s\n%s", raw[0], raw[len(raw)-1])
	}
}
