package mockcore_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-gongbao/gongbao/internal/mockcore"
)

// fakeClock stands still at a fixed instant and records every backoff wait.
// Its timers fire at once unless block is set, so retry logic runs without
// any wall-clock sleep.
type fakeClock struct {
	mu    sync.Mutex
	now   time.Time
	waits []time.Duration
	block bool
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2019, 4, 1, 10, 0, 0, 0, mockcore.CST)}
}

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeClock) After(d time.Duration) <-chan time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.waits = append(f.waits, d)
	ch := make(chan time.Time, 1)
	if !f.block {
		ch <- f.now
	}
	return ch
}

func (f *fakeClock) recordedWaits() []time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Duration(nil), f.waits...)
}

// received is one event POST as the receiver saw it.
type received struct {
	path        string
	key         string
	contentType string
	body        map[string]any
}

// receiver is a real HTTP server standing in for the sidecar's event
// endpoint. It answers 503 to the first failFirst attempts.
type receiver struct {
	srv       *httptest.Server
	got       chan received
	mu        sync.Mutex
	failFirst int
	attempts  int
	hold      chan struct{} // when non-nil, each request waits on it (guarded by mu)
}

func (rc *receiver) setHold(ch chan struct{}) {
	rc.mu.Lock()
	rc.hold = ch
	rc.mu.Unlock()
}

func newReceiver(t *testing.T, failFirst int) *receiver {
	t.Helper()
	rc := &receiver{got: make(chan received, 64), failFirst: failFirst}
	rc.srv = httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	data, _ := io.ReadAll(r.Body)
	var body map[string]any
	_ = json.Unmarshal(data, &body)
	rc.got <- received{path: r.URL.Path, key: r.Header.Get("Idempotency-Key"),
		contentType: r.Header.Get("Content-Type"), body: body}
	rc.mu.Lock()
	hold := rc.hold
	rc.mu.Unlock()
	if hold != nil {
		<-hold
	}
	rc.mu.Lock()
	rc.attempts++
	fail := rc.attempts <= rc.failFirst
	rc.mu.Unlock()
	if fail {
		http.Error(w, "not yet", http.StatusServiceUnavailable)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// next waits for the next event POST; the timeout only guards against a
// hung test, no logic depends on it.
func (rc *receiver) next(t *testing.T) received {
	t.Helper()
	select {
	case ev := <-rc.got:
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no event received")
		return received{}
	}
}

// harness runs a Core behind a real HTTP server whose URL is also its
// public URL, so payment and document links can be followed.
type harness struct {
	t     *testing.T
	core  *mockcore.Core
	url   string
	clock *fakeClock
	rc    *receiver
}

func newHarness(t *testing.T, failFirst int, mutate ...func(*mockcore.Config)) *harness {
	t.Helper()
	h := &harness{t: t, clock: newFakeClock(), rc: newReceiver(t, failFirst)}
	srv := httptest.NewUnstartedServer(nil)
	h.url = "http://" + srv.Listener.Addr().String()
	cfg := mockcore.Config{
		PublicURL:    h.url,
		EventsURL:    h.rc.srv.URL,
		InsurerPhone: "0571-88888888",
		Clock:        h.clock,
	}
	for _, m := range mutate {
		m(&cfg)
	}
	h.core = mockcore.New(cfg)
	srv.Config.Handler = h.core.Handler()
	srv.Start()
	t.Cleanup(func() {
		srv.Close()
		h.core.Close()
	})
	return h
}

type reply struct {
	status int
	header http.Header
	raw    []byte
	body   map[string]any
}

func (r reply) str(key string) string {
	s, _ := r.body[key].(string)
	return s
}

func (h *harness) do(req *http.Request) reply {
	h.t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	r := reply{status: resp.StatusCode, header: resp.Header, raw: raw}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(raw, &r.body); err != nil {
			h.t.Fatalf("answer is not JSON: %v: %s", err, raw)
		}
	}
	return r
}

// post sends body (a string is sent verbatim, anything else JSON-encoded).
func (h *harness) post(path, key string, body any) reply {
	h.t.Helper()
	var data []byte
	if s, ok := body.(string); ok {
		data = []byte(s)
	} else {
		var err error
		if data, err = json.Marshal(body); err != nil {
			h.t.Fatal(err)
		}
	}
	req, err := http.NewRequest(http.MethodPost, h.url+path, bytes.NewReader(data))
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	return h.do(req)
}

func (h *harness) get(url string) reply {
	h.t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	return h.do(req)
}

func (h *harness) expect(r reply, status int, msgContains string) {
	h.t.Helper()
	if r.status != status {
		h.t.Fatalf("status %d, want %d: %s", r.status, status, r.raw)
	}
	if !strings.Contains(r.str("message"), msgContains) {
		h.t.Fatalf("message %q does not contain %q", r.str("message"), msgContains)
	}
	wantAccepted := status >= 200 && status < 300
	if got, _ := r.body["accepted"].(bool); got != wantAccepted {
		h.t.Fatalf("accepted = %v, want %v: %s", got, wantAccepted, r.raw)
	}
}

// issuePolicy creates and pays a proposal, consuming its policy-paid event.
func (h *harness) issuePolicy() (proposalNo, policyNo string) {
	h.t.Helper()
	r := h.post("/v1/proposals", "", proposalBody())
	h.expect(r, http.StatusCreated, "投保成功")
	pay := h.get(r.str("paymentUrl"))
	h.expect(pay, http.StatusOK, "支付成功")
	ev := h.rc.next(h.t)
	if ev.path != "/events/policy-paid" {
		h.t.Fatalf("event path %s", ev.path)
	}
	return r.str("proposalNo"), pay.str("policyNo")
}

func proposalBody() map[string]any {
	return map[string]any{
		"applicant": map[string]any{"name": "浙江宏达建设有限公司", "mobile": "13812345678", "idNumber": "91330100MA2B3C4D5E"},
		"project": map[string]any{
			"name": "c2VjcmV0LXByb2plY3Q=", "bidSectionCode": "YmlkLTAwMQ==",
			"tenderee": map[string]any{"name": "dGVuZGVyZWU=", "code": "Y29kZQ==", "address": "", "phone": ""},
		},
		"policy": map[string]any{"sumPremium": json.Number("20.00"), "sumAmount": json.Number("40000.00"), "endorseText": "特别约定"},
	}
}

func endorsementBody(policyNo string) map[string]any {
	return map[string]any{
		"policyNo":     policyNo,
		"specialTerms": map[string]any{"custom": true, "text": "起保日期以政府批文为准"},
		"period":       map[string]any{"start": "2019-04-01T00:00:00+08:00", "end": "2019-04-30T23:59:59+08:00", "days": 30},
		"insured":      map[string]any{"name": "杭州市城建开发有限公司", "idNumber": "91330100123456789X", "mobile": "13631292501"},
		"project":      map[string]any{"name": "某某道路改造工程", "number": "HZ-2019-001", "tendereeAddress": "杭州市西湖区某路 1 号"},
	}
}

func claimBody(policyNo string) map[string]any {
	return map[string]any{
		"policyNo": policyNo,
		"claimant": map[string]any{"name": "杭州市城建开发有限公司", "phone": "13631292501"},
		"reason":   "中标人放弃中标",
	}
}

func invoiceBody(policyNo, typ string) map[string]any {
	return map[string]any{
		"policyNo": policyNo, "type": typ, "title": "浙江宏达建设有限公司", "taxpayerId": "91330100MA2B3C4D5E",
		"email":    "finance@example.com",
		"delivery": map[string]any{"recipient": "王会计", "phone": "13900001111", "address": "杭州市滨江区某路 8 号"},
		"special":  map[string]any{"registeredAddress": "杭州市滨江区某路 8 号", "bank": "工商银行杭州分行", "bankAccount": "1202020209000012345", "phone": "0571-86000000"},
	}
}

func surrenderBody(policyNo string) map[string]any {
	return map[string]any{
		"policyNo": policyNo, "reason": "项目取消",
		"refund": map[string]any{"bankName": "工商银行杭州分行", "accountName": "浙江宏达建设有限公司", "accountNo": "1202020209000012345"},
	}
}
