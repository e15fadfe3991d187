package caddymodule_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
)

// samplePolicyNo is the policy number the sample messages carry; the tests
// swap it for the one the reference core issues.
const samplePolicyNo = "BD20190401000002"

// TestInboundLifecycle runs the five platform messages through real Caddy,
// reverse_proxy and the reference core: insure, pay (the core's payment
// link), correct, claim, invoice, surrender. For each it checks the exact
// JSON the core received against the mapping's golden file, the headers
// the core saw, and that the signed reply carries the core's values.
func TestInboundLifecycle(t *testing.T) {
	fx := startCore(t)
	tester := startSidecar(t, sidecarConfig(t, fx.srv.Listener.Addr().String(), "", ""))

	insure := signed(t, sample(t, "insureRequest.xml"), testKey)
	reply, _ := post(t, tester, sidecarURL, insure)
	assertAccepted(t, reply)
	call := fx.lastCall(t)
	assertCoreCall(t, call, "/v1/proposals", "insureRequest.json", insure)
	proposalNo, payURL := text(reply, "proposalNo"), text(reply, "yeepayurl")
	if proposalNo == "" || !strings.Contains(payURL, proposalNo) {
		t.Fatalf("insure reply lacks the core's proposal/payment URL: proposalNo=%q yeepayurl=%q", proposalNo, payURL)
	}
	if root := reply.Root; root != "insureResponse" {
		t.Errorf("reply root = %s", root)
	}

	policyNo := pay(t, payURL)

	steps := []struct {
		sample, path, golden string
		check                func(t *testing.T, replyText func(...string) string)
	}{
		{"correctRequest.xml", "/v1/endorsements", "correctRequest.json", func(t *testing.T, get func(...string) string) {
			if get("InsurancePhone") == "" || !strings.Contains(get("downLoadUrl"), policyNo) {
				t.Errorf("correct reply lacks the core's phone/policy URL: %q %q", get("InsurancePhone"), get("downLoadUrl"))
			}
			if want := "2019-04-01 00:00:00 至 2019-04-30 23:59:59"; get("InsuranceTime") != want {
				t.Errorf("InsuranceTime = %q, want %q", get("InsuranceTime"), want)
			}
		}},
		{"claimRequest.xml", "/v1/claims", "claimRequest.json", nil},
		{"invoiceRequest.xml", "/v1/invoices", "invoiceRequest.json", nil},
		{"surrendRequest.xml", "/v1/surrenders", "surrendRequest.json", nil},
	}
	for _, step := range steps {
		msg := signed(t, sample(t, step.sample), testKey, samplePolicyNo, policyNo)
		reply, _ := post(t, tester, sidecarURL, msg)
		assertAccepted(t, reply)
		assertCoreCall(t, fx.lastCall(t), step.path, step.golden, msg, policyNo, samplePolicyNo)
		if step.check != nil {
			step.check(t, func(p ...string) string { return text(reply, p...) })
		}
	}
}

// TestPathNamesTheMessage covers /gongbao/<rootElement> and its mismatch.
func TestPathNamesTheMessage(t *testing.T) {
	fx := startCore(t)
	gw := startInProcess(t, fx, "")
	insure := signed(t, sample(t, "insureRequest.xml"), testKey)

	reply, _ := postWith(t, gw.Client, sidecarURL+"/insureRequest", insure)
	assertAccepted(t, reply)

	before := fx.callCount()
	reply, raw := postWith(t, gw.Client, sidecarURL+"/claimRequest", signed(t, sample(t, "insureRequest.xml"), testKey))
	assertRefused(t, reply, "报文根节点与请求地址不符")
	if reply.Sign != "" || strings.Contains(string(raw), "claimRequest") {
		t.Errorf("the refusal must be unsigned and must not repeat the path:\n%s", raw)
	}
	if fx.callCount() != before {
		t.Error("the core was called for a mismatched path")
	}
}

// TestBusinessRefusalPassesThrough: the core's own refusal reaches the
// platform as resultFlag=false with the core's message.
func TestBusinessRefusalPassesThrough(t *testing.T) {
	fx := startCore(t)
	gw := startInProcess(t, fx, "")
	reply, _ := postWith(t, gw.Client, sidecarURL, signed(t, sample(t, "claimRequest.xml"), testKey))
	assertRefused(t, reply, "保单 "+samplePolicyNo+" 不存在或未生效")
	if fx.callCount() != 1 {
		t.Errorf("core calls = %d, want 1", fx.callCount())
	}
}

// pay opens the core's payment link, as the applicant's browser would, and
// returns the issued policy number.
func pay(t *testing.T, payURL string) string {
	t.Helper()
	resp, err := http.Get(payURL)
	if err != nil {
		t.Fatalf("opening the payment link: %v", err)
	}
	defer resp.Body.Close()
	var receipt struct {
		PolicyNo string `json:"policyNo"`
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &receipt) != nil || receipt.PolicyNo == "" {
		t.Fatalf("payment failed: %d %s", resp.StatusCode, body)
	}
	return receipt.PolicyNo
}

func assertAccepted(t *testing.T, env interface {
	Text(...string) (string, bool)
}) {
	t.Helper()
	flag, _ := env.Text("resultFlag")
	msg, _ := env.Text("resultMessage")
	if flag != "true" {
		t.Fatalf("resultFlag = %q (%s), want true", flag, msg)
	}
}

func assertRefused(t *testing.T, env interface {
	Text(...string) (string, bool)
}, wantMessage string) {
	t.Helper()
	flag, _ := env.Text("resultFlag")
	msg, _ := env.Text("resultMessage")
	if flag != "false" || !strings.Contains(msg, wantMessage) {
		t.Fatalf("reply resultFlag=%q resultMessage=%q, want false and a message containing %q", flag, msg, wantMessage)
	}
}

// assertCoreCall checks the request the core received: path, headers and
// the JSON body against testdata/golden/<golden> (after the replacements,
// which put the sample's policy number back).
func assertCoreCall(t *testing.T, call recordedCall, path, golden string, msg []byte, replace ...string) {
	t.Helper()
	if call.Method != http.MethodPost || call.Path != path {
		t.Errorf("core call %s %s, want POST %s", call.Method, call.Path, path)
	}
	if ct := call.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("core Content-Type = %q", ct)
	}
	if key := call.Header.Get("Idempotency-Key"); key == "" || !bytes.Contains(msg, []byte("<requestUUID>"+key+"</requestUUID>")) {
		t.Errorf("core Idempotency-Key = %q, want the message's requestUUID", key)
	}
	if call.Header.Get("X-Request-Id") == "" {
		t.Error("core request has no X-Request-ID")
	}
	body := string(call.Body)
	if len(replace) > 0 {
		body = strings.NewReplacer(replace...).Replace(body)
	}
	var got bytes.Buffer
	if err := json.Indent(&got, []byte(body), "", "  "); err != nil {
		t.Fatalf("the core received invalid JSON: %v\n%s", err, call.Body)
	}
	want, err := os.ReadFile(repoPath("testdata", "golden", golden))
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(got.String()) != strings.TrimSpace(string(want)) {
		t.Errorf("core received\n%s\nwant (testdata/golden/%s)\n%s", got.String(), golden, want)
	}
}
