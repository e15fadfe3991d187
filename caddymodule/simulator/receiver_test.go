package simulator

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddy-gongbao/gongbao/caddymodule/protocol"
)

func paymentBody(proposal, policy string) []protocol.Element {
	return []protocol.Element{{Name: "policyNo", Text: policy}, {Name: "proposalNo", Text: proposal},
		{Name: "payType", Text: "3"}, {Name: "payTime", Text: "2026-01-01 10:00:00"},
		{Name: "insuranceCode", Text: "TEST"}, {Name: "downLoadUrl", Text: "http://core/p.pdf"}}
}

func invoiceBody(policy string) []protocol.Element {
	return []protocol.Element{{Name: "policyNo", Text: policy}, {Name: "downLoadUrl", Text: "http://core/i.pdf"},
		{Name: "insuranceCode", Text: "TEST"}}
}

// TestReceiverAnswersLikeThePlatform posts callbacks, in order, to a
// receiver expecting fakeProposal, and checks each signed answer.
func TestReceiverAnswersLikeThePlatform(t *testing.T) {
	rcv := newReceiver(testKey, realClock{})
	rcv.expectProposal(fakeProposal)
	srv := httptest.NewServer(rcv)
	defer srv.Close()

	payment := protocol.BuildRequest(rootPaymentCallback, "uuid-pay-1", paymentBody(fakeProposal, fakePolicy), testKey)
	noPayTime := paymentBody(fakeProposal, fakePolicy)
	noPayTime[3].Text = ""
	cases := []struct {
		name, path         string
		msg                []byte
		wantRoot, wantFlag string
		wantMessage        string
		wantKind           error
		wantDup            bool
	}{
		{"payment callback", "/queryPolicyRequest", payment, "queryPolicyResponse", "true", "成功", nil, false},
		{"resent as is", "/queryPolicyRequest", payment, "queryPolicyResponse", "true", "成功", nil, true},
		{"same requestUUID, other body", "/queryPolicyRequest",
			protocol.BuildRequest(rootPaymentCallback, "uuid-pay-1", paymentBody(fakeProposal, "BD2"), testKey),
			"queryPolicyResponse", "false", "requestUUID 重复", ErrProtocol, false},
		{"bad sign", "/queryInvoiceRequest",
			protocol.BuildRequest(rootInvoiceCallback, "uuid-inv-1", invoiceBody(fakePolicy), "not-the-key"),
			"queryInvoiceResponse", "false", "验签失败", ErrBadSignature, false},
		{"not XML", "/queryInvoiceRequest", []byte("hello"), "queryInvoiceResponse", "false", "报文不是合法的XML", ErrProtocol, false},
		{"missing field", "/queryPolicyRequest",
			protocol.BuildRequest(rootPaymentCallback, "uuid-pay-2", noPayTime, testKey),
			"queryPolicyResponse", "false", "缺少必填字段 payTime", ErrProtocol, false},
		{"another policy", "/queryInvoiceRequest",
			protocol.BuildRequest(rootInvoiceCallback, "uuid-inv-2", invoiceBody("BD19990101000009"), testKey),
			"queryInvoiceResponse", "false", "保单 BD19990101000009 不存在", ErrWrongPolicy, false},
		{"another proposal", "/queryPolicyRequest",
			protocol.BuildRequest(rootPaymentCallback, "uuid-pay-3", paymentBody("TB1", fakePolicy), testKey),
			"queryPolicyResponse", "false", "投保单 TB1 不存在", ErrWrongPolicy, false},
		{"not a callback", "/queryPolicyRequest",
			protocol.BuildRequest("insureRequest", "uuid-x", invoiceBody(fakePolicy), testKey),
			"insureResponse", "false", "不支持的报文类型 insureRequest", ErrProtocol, false},
		{"posted to another callback's address", "/queryPolicyRequest",
			protocol.BuildRequest(rootInvoiceCallback, "uuid-inv-3", invoiceBody(fakePolicy), testKey),
			"queryInvoiceResponse", "false", "报文类型与请求地址不符", ErrProtocol, false},
		{"invoice callback", "/queryInvoiceRequest",
			protocol.BuildRequest(rootInvoiceCallback, "uuid-inv-4", invoiceBody(fakePolicy), testKey),
			"queryInvoiceResponse", "true", "成功", nil, false},
	}
	for _, c := range cases {
		resp, err := http.Post(srv.URL+c.path, "application/xml; charset=UTF-8", bytes.NewReader(c.msg))
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/xml; charset=UTF-8" {
			t.Errorf("%s: status %d, Content-Type %q", c.name, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		env, err := protocol.Parse(raw, protocol.Limits{})
		if err != nil {
			t.Fatalf("%s: the answer is not a message: %v\n%s", c.name, err, raw)
		}
		if _, ok := protocol.VerifyAny(env.SignedValue(), env.Sign, []string{testKey}); !ok {
			t.Errorf("%s: the answer is not signed with the key", c.name)
		}
		if env.Root != c.wantRoot || text(env, "resultFlag") != c.wantFlag || !strings.Contains(text(env, "resultMessage"), c.wantMessage) {
			t.Errorf("%s: answered %s resultFlag=%s resultMessage=%q, want %s %s %q", c.name,
				env.Root, text(env, "resultFlag"), text(env, "resultMessage"), c.wantRoot, c.wantFlag, c.wantMessage)
		}
		// The answer is flushed before the callback is queued: wait for it.
		select {
		case <-rcv.notify:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: nothing queued", c.name)
		}
		q := rcv.take()
		if len(q) != 1 {
			t.Fatalf("%s: %d callbacks queued, want 1", c.name, len(q))
		}
		if q[0].kind != c.wantKind || q[0].dup != c.wantDup {
			t.Errorf("%s: queued kind=%v dup=%v, want %v %v", c.name, q[0].kind, q[0].dup, c.wantKind, c.wantDup)
		}
	}

	resp, err := http.Get(srv.URL + "/queryPolicyRequest")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET: status %d", resp.StatusCode)
	}
}

func TestReplyRoot(t *testing.T) {
	for in, want := range map[string]string{
		"queryPolicyRequest": "queryPolicyResponse",
		"Request":            "errorResponse",
		"gongbao":            "errorResponse",
		"a b Request":        "errorResponse",
		"/":                  "errorResponse",
	} {
		if got := replyRoot(in); got != want {
			t.Errorf("replyRoot(%q) = %q, want %q", in, got, want)
		}
	}
}
