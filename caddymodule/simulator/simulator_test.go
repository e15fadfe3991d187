package simulator

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
)

// personal data in the built-in templates that must never reach the
// transcript unmasked.
var personalData = []string{
	"浙江宏达建设工程有限公司", "13858012345", "91330106MA2GL8XK3X", "杭州市城市建设发展有限公司",
	"13631292501", "913301007042061234", "王晓红", "13900001111", "1202020209000012345",
	"finance@hongda-build.example.com",
}

func checkTranscript(t *testing.T, out string) {
	t.Helper()
	if strings.Contains(out, testKey) {
		t.Fatal("the transcript contains the key")
	}
	for _, p := range personalData {
		if strings.Contains(out, p) {
			t.Errorf("the transcript shows %q unmasked", p)
		}
	}
}

// runFake runs the simulator against a fake system with faults.
func runFake(t *testing.T, f faults, edit func(*Config, *fakeSystem)) (*fakeSystem, *Result, error, string) {
	t.Helper()
	fs, ln := startFake(t, f)
	var out bytes.Buffer
	cfg := fs.config(ln, &out)
	if edit != nil {
		edit(&cfg, fs)
	}
	res, err := Run(context.Background(), cfg)
	checkTranscript(t, out.String())
	return fs, res, err, out.String()
}

func wantDeviation(t *testing.T, err error, kind error, step string, contains ...string) {
	t.Helper()
	var dev *Deviation
	if !errors.As(err, &dev) || !errors.Is(err, kind) {
		t.Fatalf("err = %v, want a %v deviation", err, kind)
	}
	if dev.Step != step {
		t.Errorf("deviation at step %q, want %q (%v)", dev.Step, step, err)
	}
	for _, c := range contains {
		if !strings.Contains(err.Error(), c) {
			t.Errorf("error %q does not say %q", err, c)
		}
	}
}

func TestRunLifecycle(t *testing.T) {
	fs, res, err, out := runFake(t, faults{}, nil)
	if err != nil {
		t.Fatalf("run failed: %v\n%s", err, out)
	}
	if res.ProposalNo != fakeProposal || res.PolicyNo != fakePolicy {
		t.Errorf("result %+v", res)
	}
	received, answers, payGets := fs.snapshot()
	uuids := map[string]bool{}
	for _, root := range []string{"insureRequest", "correctRequest", "claimRequest", "invoiceRequest", "surrendRequest"} {
		if len(received[root]) != 1 {
			t.Fatalf("the system received %d %s, want 1", len(received[root]), root)
		}
		env := received[root][0]
		if uuids[env.RequestUUID] || len(env.RequestUUID) != 36 {
			t.Errorf("%s requestUUID %q is not fresh", root, env.RequestUUID)
		}
		uuids[env.RequestUUID] = true
	}
	if got := text(received["claimRequest"][0], "policyno"); got != fakePolicy {
		t.Errorf("claimRequest policyno = %q, want the paid policy", got)
	}
	if got := text(received["invoiceRequest"][0], "InvoiceType"); got != "1" {
		t.Errorf("InvoiceType = %q, want the default 1", got)
	}
	if payGets != 1 {
		t.Errorf("payment link opened %d times", payGets)
	}
	// The fake emits callbacks from goroutines, so they may arrive in any
	// order; each must be answered once, verified and accepted.
	if len(answers) != 3 {
		t.Fatalf("receiver answered %d callbacks, want 3", len(answers))
	}
	answered := map[string]bool{}
	for i, a := range answers {
		answered[a.root] = true
		if !a.verified || a.env.Root != replyRoot(a.root) ||
			text(a.env, "resultFlag") != "true" || text(a.env, "resultMessage") != "成功" {
			t.Errorf("answer %d to %s: root %s verified=%v flag=%q msg=%q", i, a.root, a.env.Root, a.verified,
				text(a.env, "resultFlag"), text(a.env, "resultMessage"))
		}
	}
	for _, root := range []string{rootPaymentCallback, rootInvoiceCallback, rootSurrenderCallback} {
		if !answered[root] {
			t.Errorf("no %s was answered", root)
		}
	}
	var steps []string
	for _, e := range res.Entries {
		steps = append(steps, e.Step)
		if e.Result != resultOK {
			t.Errorf("entry %s: result %s", e.Step, e.Result)
		}
	}
	want := "insure pay payment callback correct claim invoice invoice callback surrender surrender callback"
	if strings.Join(steps, " ") != want {
		t.Errorf("steps = %q\nwant    %q", strings.Join(steps, " "), want)
	}
	for _, s := range []string{fakeProposal, fakePolicy, "138****2345", "913***********XK3X", "浙***********", "已退款至原账户", "ok: lifecycle complete"} {
		if !strings.Contains(out, s) {
			t.Errorf("transcript lacks %q:\n%s", s, out)
		}
	}
	t.Logf("transcript:\n%s", out)
}

func TestRunRefusal(t *testing.T) {
	fs, _, err, out := runFake(t, faults{refuse: map[string]string{"claimRequest": "保单 " + fakePolicy + " 不存在或未生效"}}, nil)
	wantDeviation(t, err, ErrRefused, "claim", "resultFlag=false", "不存在或未生效")
	received, _, _ := fs.snapshot()
	if len(received["invoiceRequest"]) != 0 {
		t.Error("the run went on after a refusal")
	}
	if !strings.Contains(out, "FAIL") {
		t.Errorf("transcript does not show the failure:\n%s", out)
	}
}

func TestRunBadReplySignature(t *testing.T) {
	_, _, err, _ := runFake(t, faults{badReplySign: map[string]bool{"insureRequest": true}}, nil)
	wantDeviation(t, err, ErrBadSignature, "insure", "insureResponse", "not signed with the agreed key")
}

func TestRunInsureReplyWithoutPaymentLink(t *testing.T) {
	_, _, err, _ := runFake(t, faults{noPayLink: true}, nil)
	wantDeviation(t, err, ErrProtocol, "insure", "yeepayurl")
}

func TestRunCallbacksOutOfOrder(t *testing.T) {
	_, _, err, _ := runFake(t, faults{outOfOrder: true}, nil)
	wantDeviation(t, err, ErrProtocol, "invoice callback", "received querySurrendRequest", "while waiting for queryInvoiceRequest")
}

func TestRunMalformedReply(t *testing.T) {
	_, _, err, _ := runFake(t, faults{notXML: map[string]bool{"correctRequest": true}}, nil)
	wantDeviation(t, err, ErrProtocol, "correct", "not a valid message")
}

func TestRunSidecarDown(t *testing.T) {
	_, _, err, _ := runFake(t, faults{}, func(c *Config, _ *fakeSystem) {
		c.URL = "http://" + closedAddr(t) + "/gongbao"
	})
	wantDeviation(t, err, ErrProtocol, "insure", "posting insureRequest")
}

func TestRunMissingCallback(t *testing.T) {
	clock := newFakeClock()
	_, _, err, out := runFake(t, faults{skipCallback: map[string]bool{rootInvoiceCallback: true}}, func(c *Config, fs *fakeSystem) {
		c.Clock, fs.clock = clock, clock
	})
	wantDeviation(t, err, ErrNoCallback, "invoice callback", "no queryInvoiceRequest for policy "+fakePolicy+" within 10s")
	if !strings.Contains(out, "no callback within 10s") {
		t.Errorf("transcript:\n%s", out)
	}
}

func TestRunBadCallbackSignature(t *testing.T) {
	fs, _, err, _ := runFake(t, faults{badCallbackSign: map[string]bool{rootPaymentCallback: true}}, nil)
	wantDeviation(t, err, ErrBadSignature, "payment callback", "queryPolicyRequest", "not signed with the agreed key")
	_, answers, _ := fs.snapshot()
	if len(answers) != 1 {
		t.Fatalf("answers: %d", len(answers))
	}
	a := answers[0]
	if !a.verified || a.env.Root != "queryPolicyResponse" || text(a.env, "resultFlag") != "false" || text(a.env, "resultMessage") != "验签失败" {
		t.Errorf("the receiver answered root=%s verified=%v flag=%q msg=%q, want a signed refusal 验签失败",
			a.env.Root, a.verified, text(a.env, "resultFlag"), text(a.env, "resultMessage"))
	}
}

func TestRunCallbackForWrongPolicy(t *testing.T) {
	t.Run("payment callback for another proposal", func(t *testing.T) {
		fs, _, err, _ := runFake(t, faults{paymentProposal: "TB19990101000009"}, nil)
		wantDeviation(t, err, ErrWrongPolicy, "payment callback", "TB19990101000009", fakeProposal)
		_, answers, _ := fs.snapshot()
		if len(answers) != 1 || text(answers[0].env, "resultFlag") != "false" {
			t.Errorf("the receiver accepted a callback for another proposal")
		}
	})
	t.Run("invoice callback for another policy", func(t *testing.T) {
		_, _, err, _ := runFake(t, faults{callbackPolicy: "BD19990101000009"}, nil)
		wantDeviation(t, err, ErrWrongPolicy, "invoice callback", "queryInvoiceRequest for policy BD19990101000009", fakePolicy)
	})
	t.Run("payment page and callback disagree", func(t *testing.T) {
		_, _, err, _ := runFake(t, faults{payPagePolicy: "BD19990101000009"}, nil)
		wantDeviation(t, err, ErrWrongPolicy, "payment callback", "BD19990101000009", fakePolicy)
	})
}

func TestRunDuplicateCallbacksAreNotADeviation(t *testing.T) {
	fs, res, err, out := runFake(t, faults{twice: true}, nil)
	if err != nil {
		t.Fatalf("run failed: %v\n%s", err, out)
	}
	_, answers, _ := fs.snapshot()
	for _, a := range answers {
		if text(a.env, "resultFlag") != "true" {
			t.Errorf("a resent %s was refused: %s", a.root, text(a.env, "resultMessage"))
		}
	}
	if res.PolicyNo != fakePolicy {
		t.Errorf("policy %q", res.PolicyNo)
	}
}

func TestRunSurrenderNotSettled(t *testing.T) {
	_, _, err, _ := runFake(t, faults{surrenderFailed: true}, nil)
	wantDeviation(t, err, ErrRefused, "surrender callback", "not settled", "账户已销户")
}

func TestRunPaperInvoice(t *testing.T) {
	for _, typ := range []string{"2", "3"} {
		fs, _, err, out := runFake(t, faults{}, func(c *Config, _ *fakeSystem) { c.InvoiceType = typ })
		if err != nil {
			t.Fatalf("invoice type %s: %v\n%s", typ, err, out)
		}
		received, _, _ := fs.snapshot()
		if got := text(received["invoiceRequest"][0], "InvoiceType"); got != typ {
			t.Errorf("InvoiceType = %q, want %s", got, typ)
		}
		if !strings.Contains(out, "expressNo=SF000000000001") {
			t.Errorf("transcript lacks the tracking number:\n%s", out)
		}
	}
	_, _, err, _ := runFake(t, faults{noExpress: true}, func(c *Config, _ *fakeSystem) { c.InvoiceType = "2" })
	wantDeviation(t, err, ErrProtocol, "invoice callback", "no expressNo")
}

// TestRunNoPay: with NoPay the simulator leaves the link alone and waits;
// here the test pays, as a human would, once the transcript shows the link.
func TestRunNoPay(t *testing.T) {
	fs, ln := startFake(t, faults{})
	link := fs.srv.URL + "/pay/" + fakeProposal
	out := &watchWriter{want: "yeepayurl=" + link, seen: make(chan struct{})}
	cfg := fs.config(ln, out)
	cfg.NoPay = true
	go func() {
		<-out.seen
		resp, err := http.Get(link)
		if err == nil {
			resp.Body.Close()
		}
	}()
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("run failed: %v\n%s", err, out.String())
	}
	_, _, payGets := fs.snapshot()
	if payGets != 1 || res.PolicyNo != fakePolicy {
		t.Errorf("payGets=%d policy=%q", payGets, res.PolicyNo)
	}
	if !strings.Contains(out.String(), "skipped") {
		t.Errorf("the transcript does not show the payment as skipped:\n%s", out.String())
	}
}

// watchWriter collects output and closes seen once want has been written.
type watchWriter struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	want string
	seen chan struct{}
	done bool
}

func (w *watchWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n, err := w.buf.Write(p)
	if !w.done && strings.Contains(w.buf.String(), w.want) {
		w.done = true
		close(w.seen)
	}
	return n, err
}

func (w *watchWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

func TestRunTemplates(t *testing.T) {
	claim, err := os.ReadFile(filepath.Join("templates", "claimRequest.xml"))
	if err != nil {
		t.Fatal(err)
	}
	custom := strings.Replace(string(claim), "杭州市城市建设发展有限公司", "测试理赔人", 1)
	fs, _, err, out := runFake(t, faults{}, func(c *Config, _ *fakeSystem) {
		c.Templates = fstest.MapFS{"claimRequest.xml": {Data: []byte(custom)}}
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	received, _, _ := fs.snapshot()
	if got := text(received["claimRequest"][0], "claimName"); got != "测试理赔人" {
		t.Errorf("claimName = %q, want the override's", got)
	}

	for name, data := range map[string]string{
		"wrong root":  strings.ReplaceAll(custom, "claimRequest", "claimResponse"),
		"no policyno": strings.ReplaceAll(custom, "policyno", "reference"),
		"not XML":     "claim",
	} {
		_, _, err, _ := runFake(t, faults{}, func(c *Config, _ *fakeSystem) {
			c.Templates = fstest.MapFS{"claimRequest.xml": {Data: []byte(data)}}
		})
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "claimRequest.xml") {
			t.Errorf("%s: err = %v, want a configuration error naming the template", name, err)
		}
	}
}

func TestRunConfigErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for name, cfg := range map[string]Config{
		"no url":        {Key: testKey},
		"ftp url":       {URL: "ftp://x/gongbao", Key: testKey},
		"no key":        {URL: "http://127.0.0.1:1/gongbao"},
		"invoice type":  {URL: "http://127.0.0.1:1/gongbao", Key: testKey, InvoiceType: "4"},
		"listener busy": {URL: "http://127.0.0.1:1/gongbao", Key: testKey, CallbackListen: busy.Addr().String()},
	} {
		var out bytes.Buffer
		cfg.Out = &out
		if _, err := Run(context.Background(), cfg); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: err = %v, want ErrConfig", name, err)
		}
		if strings.Contains(out.String()+fmtErr(err), testKey) {
			t.Errorf("%s: the key was printed", name)
		}
	}
}

func fmtErr(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// closedAddr is an address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
