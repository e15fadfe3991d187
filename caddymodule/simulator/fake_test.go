package simulator

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-gongbao/gongbao/caddymodule/protocol"
)

// testKey is the platform's published test key (DESIGN §1.2).
const testKey = "MeTKJnC3fIAxeer8erADRTlJ"

const (
	fakeProposal = "TB20260101000001"
	fakePolicy   = "BD20260101000001"
)

// faults make the fake system deviate in one way.
type faults struct {
	refuse          map[string]string // request root → resultMessage of a resultFlag=false reply
	badReplySign    map[string]bool   // request root → reply signed with another key
	notXML          map[string]bool   // request root → reply is not XML
	skipCallback    map[string]bool   // callback root → never sent
	badCallbackSign map[string]bool   // callback root → signed with another key
	callbackPolicy  string            // policyNo the invoice and surrender callbacks carry instead of fakePolicy
	paymentProposal string            // proposalNo the payment callback carries instead of fakeProposal
	payPagePolicy   string            // policyNo the payment page shows instead of fakePolicy
	twice           bool              // every callback delivered twice (at least once)
	surrenderFailed bool              // surrender callback says resultFlag=false
	noExpress       bool              // paper invoice callback without expressNo
	noPayLink       bool              // insure reply without yeepayurl
	outOfOrder      bool              // the invoice request is followed by a surrender callback
}

// answer is the receiver's reply to one callback, as the fake saw it.
type answer struct {
	root     string
	env      *protocol.Envelope
	verified bool
}

// fakeSystem stands in for a sidecar and its core behind one URL: it
// verifies and answers the five requests like the sidecar would, serves
// the payment link, and posts signed callbacks to the simulator's receiver.
type fakeSystem struct {
	t            *testing.T
	srv          *httptest.Server
	callbackBase string
	faults       faults
	clock        *fakeClock // fired when a callback is skipped; may be nil

	mu       sync.Mutex
	received map[string][]*protocol.Envelope
	answers  []answer
	payGets  int
	wg       sync.WaitGroup
}

// startFake starts the fake system and a listener for the receiver.
func startFake(t *testing.T, f faults) (*fakeSystem, net.Listener) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fs := &fakeSystem{t: t, faults: f, callbackBase: "http://" + ln.Addr().String(),
		received: map[string][]*protocol.Envelope{}}
	fs.srv = httptest.NewServer(http.HandlerFunc(fs.serve))
	t.Cleanup(func() {
		fs.wg.Wait()
		fs.srv.Close()
	})
	return fs, ln
}

func (fs *fakeSystem) config(ln net.Listener, out io.Writer) Config {
	return Config{URL: fs.srv.URL + "/gongbao", Key: testKey, Listener: ln, Timeout: 10 * time.Second, Out: out}
}

func (fs *fakeSystem) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/pay/") {
		fs.pay(w, r)
		return
	}
	body, _ := io.ReadAll(r.Body)
	env, err := protocol.Parse(body, protocol.Limits{})
	if err != nil {
		fs.t.Errorf("fake: the simulator sent a malformed message: %v", err)
		http.Error(w, "bad", http.StatusBadRequest)
		return
	}
	fs.mu.Lock()
	fs.received[env.Root] = append(fs.received[env.Root], env)
	fs.mu.Unlock()
	if _, ok := protocol.VerifyAny(env.SignedValue(), env.Sign, []string{testKey}); !ok {
		fs.reply(w, env.Root, "false", "验签失败")
		return
	}
	if msg, ok := fs.faults.refuse[env.Root]; ok {
		fs.reply(w, env.Root, "false", msg)
		return
	}
	if env.Root != "insureRequest" && text(env, "policyno")+text(env, "policyNo") != fakePolicy {
		fs.reply(w, env.Root, "false", "保单 "+text(env, "policyno")+" 不存在或未生效")
		return
	}
	switch env.Root {
	case "insureRequest":
		payURL := fs.srv.URL + "/pay/" + fakeProposal
		if fs.faults.noPayLink {
			payURL = ""
		}
		fs.reply(w, env.Root, "true", "投保成功", protocol.Element{Name: "proposalNo", Text: fakeProposal},
			protocol.Element{Name: "yeepayurl", Text: payURL})
	case "correctRequest":
		fs.reply(w, env.Root, "true", "批改成功", protocol.Element{Name: "InsurancePhone", Text: "95500"},
			protocol.Element{Name: "downLoadUrl", Text: fs.srv.URL + "/policy.pdf"},
			protocol.Element{Name: "InsuranceTime", Text: "2019-04-01 00:00:00 至 2019-04-30 23:59:59"})
	case "invoiceRequest":
		fs.reply(w, env.Root, "true", "受理申请")
		if fs.faults.outOfOrder {
			fs.surrenderCallback()
			return
		}
		fs.invoiceCallback(text(env, "InvoiceType"))
	case "surrendRequest":
		fs.reply(w, env.Root, "true", "退保成功")
		fs.surrenderCallback()
	default:
		fs.reply(w, env.Root, "true", "受理申请")
	}
}

// reply answers a request like the sidecar: a signed <X>Response.
func (fs *fakeSystem) reply(w http.ResponseWriter, root, flag, msg string, extra ...protocol.Element) {
	w.Header().Set("Content-Type", "application/xml; charset=UTF-8")
	if fs.faults.notXML[root] {
		w.Write([]byte("<html>bad gateway</html"))
		return
	}
	key := testKey
	if fs.faults.badReplySign[root] {
		key = "not-the-key"
	}
	body := append([]protocol.Element{{Name: "responseTime", Text: "2026-01-01 10:00:00"},
		{Name: "resultFlag", Text: flag}, {Name: "resultMessage", Text: msg}}, extra...)
	w.Write(protocol.BuildResponse(strings.TrimSuffix(root, "Request")+"Response", protocol.NewUUID(), body, key))
}

func (fs *fakeSystem) pay(w http.ResponseWriter, r *http.Request) {
	fs.mu.Lock()
	fs.payGets++
	first := fs.payGets == 1
	fs.mu.Unlock()
	policy := fakePolicy
	if fs.faults.payPagePolicy != "" {
		policy = fs.faults.payPagePolicy
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"accepted": true, "message": "支付成功", "policyNo": policy})
	if first {
		proposal := fakeProposal
		if fs.faults.paymentProposal != "" {
			proposal = fs.faults.paymentProposal
		}
		fs.callback(rootPaymentCallback, []protocol.Element{{Name: "policyNo", Text: fakePolicy},
			{Name: "proposalNo", Text: proposal}, {Name: "payType", Text: "3"},
			{Name: "payTime", Text: "2026-01-01 10:00:00"}, {Name: "insuranceCode", Text: "TEST"},
			{Name: "downLoadUrl", Text: fs.srv.URL + "/policy.pdf"}})
	}
}

func (fs *fakeSystem) invoiceCallback(invoiceType string) {
	body := []protocol.Element{{Name: "policyNo", Text: fs.policy()}}
	switch {
	case invoiceType == "1":
		body = append(body, protocol.Element{Name: "downLoadUrl", Text: fs.srv.URL + "/invoice.pdf"},
			protocol.Element{Name: "expressName"}, protocol.Element{Name: "expressNo"})
	case fs.faults.noExpress:
		body = append(body, protocol.Element{Name: "downLoadUrl"}, protocol.Element{Name: "expressName", Text: "顺丰速运"},
			protocol.Element{Name: "expressNo"})
	default:
		body = append(body, protocol.Element{Name: "downLoadUrl"}, protocol.Element{Name: "expressName", Text: "顺丰速运"},
			protocol.Element{Name: "expressNo", Text: "SF000000000001"})
	}
	fs.callback(rootInvoiceCallback, append(body, protocol.Element{Name: "insuranceCode", Text: "TEST"}))
}

func (fs *fakeSystem) surrenderCallback() {
	flag, msg := "true", "已退款至原账户"
	if fs.faults.surrenderFailed {
		flag, msg = "false", "退款失败：账户已销户"
	}
	fs.callback(rootSurrenderCallback, []protocol.Element{{Name: "policyNo", Text: fs.policy()},
		{Name: "resultFlag", Text: flag}, {Name: "resultMessage", Text: msg}, {Name: "insuranceCode", Text: "TEST"}})
}

func (fs *fakeSystem) policy() string {
	if fs.faults.callbackPolicy != "" {
		return fs.faults.callbackPolicy
	}
	return fakePolicy
}

// callback posts a signed callback to the receiver in the background, as
// the sidecar's delivery does, and records the answer.
func (fs *fakeSystem) callback(root string, body []protocol.Element) {
	if fs.faults.skipCallback[root] {
		if fs.clock != nil {
			fs.clock.fire()
		}
		return
	}
	key := testKey
	if fs.faults.badCallbackSign[root] {
		key = "not-the-key"
	}
	msg := protocol.BuildRequest(root, protocol.NewUUID(), body, key)
	times := 1
	if fs.faults.twice {
		times = 2
	}
	fs.wg.Add(1)
	go func() {
		defer fs.wg.Done()
		for i := range times {
			// A resend may meet the receiver shut down once the run has
			// what it needs; the sidecar would retry it, the fake drops it.
			fs.deliver(root, msg, i == 0)
		}
	}()
}

func (fs *fakeSystem) deliver(root string, msg []byte, mustArrive bool) {
	resp, err := http.Post(fs.callbackBase+"/"+root, "application/xml; charset=UTF-8", bytes.NewReader(msg))
	if err != nil {
		if mustArrive {
			fs.t.Errorf("fake: delivering %s: %v", root, err)
		}
		return
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	env, err := protocol.Parse(raw, protocol.Limits{})
	if err != nil {
		fs.t.Errorf("fake: the receiver's answer to %s is not a message: %v\n%s", root, err, raw)
		return
	}
	_, ok := protocol.VerifyAny(env.SignedValue(), env.Sign, []string{testKey})
	fs.mu.Lock()
	fs.answers = append(fs.answers, answer{root: root, env: env, verified: ok})
	fs.mu.Unlock()
}

func (fs *fakeSystem) snapshot() (map[string][]*protocol.Envelope, []answer, int) {
	fs.wg.Wait()
	fs.mu.Lock()
	defer fs.mu.Unlock()
	rec := map[string][]*protocol.Envelope{}
	for k, v := range fs.received {
		rec[k] = append([]*protocol.Envelope(nil), v...)
	}
	return rec, append([]answer(nil), fs.answers...), fs.payGets
}

// fakeClock makes every wait for a callback end at once, but only after
// the fake system has decided to skip a callback, so callbacks that are
// sent are never raced by the timeout.
type fakeClock struct {
	once sync.Once
	ch   chan time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{ch: make(chan time.Time)} }

func (c *fakeClock) Now() time.Time                       { return time.Unix(1767225600, 0) }
func (c *fakeClock) After(time.Duration) <-chan time.Time { return c.ch }
func (c *fakeClock) fire()                                { c.once.Do(func() { close(c.ch) }) }
