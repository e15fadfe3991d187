package mockcore_test

import (
	"bytes"
	"net/http"
	"strings"
	"testing"

	"github.com/caddy-gongbao/gongbao/internal/mockcore"
)

func TestLifecycle(t *testing.T) {
	h := newHarness(t, 0)

	// Proposal: numbers and times are deterministic under the fake clock.
	r := h.post("/v1/proposals", "k-proposal", proposalBody())
	h.expect(r, http.StatusCreated, "投保成功")
	proposalNo := r.str("proposalNo")
	if proposalNo != "TB20190401000001" {
		t.Errorf("proposalNo = %q", proposalNo)
	}
	if got, want := r.str("paymentUrl"), h.url+"/pay/"+proposalNo; got != want {
		t.Errorf("paymentUrl = %q, want %q", got, want)
	}
	if got := r.str("processedAt"); got != "2019-04-01T10:00:00+08:00" {
		t.Errorf("processedAt = %q", got)
	}

	// Before payment there is no policy to act on.
	h.expect(h.post("/v1/claims", "", claimBody(proposalNo)), http.StatusUnprocessableEntity, "不存在或未生效")

	// Payment issues the policy and emits policy-paid.
	pay := h.get(r.str("paymentUrl"))
	h.expect(pay, http.StatusOK, "支付成功")
	policyNo := pay.str("policyNo")
	ev := h.rc.next(t)
	if ev.path != "/events/policy-paid" || ev.contentType != "application/json" {
		t.Fatalf("event %s %s", ev.path, ev.contentType)
	}
	if ev.key == "" || ev.key != ev.body["eventId"] {
		t.Errorf("Idempotency-Key %q, eventId %v", ev.key, ev.body["eventId"])
	}
	wantPaid := map[string]any{
		"policyNo": policyNo, "proposalNo": proposalNo, "payType": "3",
		"paidAt": "2019-04-01T10:00:00+08:00", "policyUrl": h.url + "/policies/" + policyNo + ".pdf",
	}
	for k, v := range wantPaid {
		if ev.body[k] != v {
			t.Errorf("policy-paid %s = %v, want %v", k, ev.body[k], v)
		}
	}

	// The policy document reflects the spec's default period (+30 d, 90 d).
	doc := h.get(wantPaid["policyUrl"].(string))
	if doc.status != http.StatusOK || !bytes.Contains(doc.raw, []byte("2019-05-01 00:00:00 至 2019-07-29 23:59:59")) {
		t.Fatalf("policy document %d: %s", doc.status, doc.raw)
	}

	// Endorsement returns phone, URL and the new period in platform format.
	e := h.post("/v1/endorsements", "", endorsementBody(policyNo))
	h.expect(e, http.StatusOK, "批改成功")
	if e.str("insurerPhone") != "0571-88888888" || e.str("policyUrl") != wantPaid["policyUrl"] ||
		e.str("insurancePeriod") != "2019-04-01 00:00:00 至 2019-04-30 23:59:59" {
		t.Errorf("endorsement answer: %s", e.raw)
	}

	c := h.post("/v1/claims", "", claimBody(policyNo))
	h.expect(c, http.StatusOK, "受理申请")
	if !strings.HasPrefix(c.str("claimNo"), "LP20190401") {
		t.Errorf("claimNo = %q", c.str("claimNo"))
	}

	// Electronic invoice: issued at once with a download URL that works.
	inv := h.post("/v1/invoices", "", invoiceBody(policyNo, mockcore.InvoiceElectronic))
	h.expect(inv, http.StatusOK, "受理申请")
	ev = h.rc.next(t)
	if ev.path != "/events/invoice-issued" || ev.body["invoiceNo"] != inv.str("invoiceNo") || ev.body["express"] != nil {
		t.Fatalf("invoice-issued: %s %v", ev.path, ev.body)
	}
	if d := h.get(ev.body["downloadUrl"].(string)); d.status != http.StatusOK {
		t.Errorf("invoice download %d", d.status)
	}

	// Paper invoice: shipped, express details instead of a URL.
	h.expect(h.post("/v1/invoices", "", invoiceBody(policyNo, mockcore.InvoicePaper)), http.StatusOK, "受理申请")
	ev = h.rc.next(t)
	express, _ := ev.body["express"].(map[string]any)
	if ev.body["downloadUrl"] != nil || express["company"] != "顺丰速运" || !strings.HasPrefix(express["trackingNo"].(string), "SF") {
		t.Fatalf("paper invoice-issued: %v", ev.body)
	}

	// Surrender settles at once and the policy is closed to changes.
	h.expect(h.post("/v1/surrenders", "", surrenderBody(policyNo)), http.StatusOK, "退保成功")
	ev = h.rc.next(t)
	if ev.path != "/events/surrender-settled" || ev.body["refunded"] != true ||
		ev.body["message"] != "已退款至原账户" || ev.body["policyNo"] != policyNo {
		t.Fatalf("surrender-settled: %s %v", ev.path, ev.body)
	}
	for path, body := range map[string]any{
		"/v1/endorsements": endorsementBody(policyNo),
		"/v1/claims":       claimBody(policyNo),
		"/v1/invoices":     invoiceBody(policyNo, mockcore.InvoiceElectronic),
		"/v1/surrenders":   surrenderBody(policyNo),
	} {
		h.expect(h.post(path, "", body), http.StatusUnprocessableEntity, "已退保")
	}

	want := map[string]int{mockcore.OpProposals: 1, mockcore.OpPayments: 1, mockcore.OpEndorsements: 1,
		mockcore.OpClaims: 1, mockcore.OpInvoices: 2, mockcore.OpSurrenders: 1}
	st := h.core.Stats()
	for op, n := range want {
		if st.Effects[op] != n {
			t.Errorf("effects[%s] = %d, want %d", op, st.Effects[op], n)
		}
	}
	if st.Calls[mockcore.OpClaims] != 3 {
		t.Errorf("calls[claims] = %d, want 3", st.Calls[mockcore.OpClaims])
	}
}

func TestPaymentIsIdempotent(t *testing.T) {
	h := newHarness(t, 0)
	_, policyNo := h.issuePolicy()
	r := h.post("/v1/proposals", "", proposalBody()) // a second, unrelated proposal
	_ = r
	// Paying the first proposal again shows the same policy, no new effect.
	again := h.get(h.url + "/pay/TB20190401000001")
	h.expect(again, http.StatusOK, "支付成功")
	if again.str("policyNo") != policyNo {
		t.Errorf("second payment policyNo %q, want %q", again.str("policyNo"), policyNo)
	}
	st := h.core.Stats()
	if st.Effects[mockcore.OpPayments] != 1 || st.Calls[mockcore.OpPayments] != 2 || st.Events.Queued != 1 {
		t.Errorf("stats after repeated payment: %+v", st)
	}
	h.expect(h.get(h.url+"/pay/TB19700101999999"), http.StatusNotFound, "不存在")
	if d := h.get(h.url + "/policies/BD0.pdf"); d.status != http.StatusNotFound {
		t.Errorf("unknown policy document: %d", d.status)
	}
}

func TestRefusesUnknownPolicy(t *testing.T) {
	h := newHarness(t, 0)
	for path, body := range map[string]any{
		"/v1/endorsements": endorsementBody("P123"),
		"/v1/claims":       claimBody("P123"),
		"/v1/invoices":     invoiceBody("P123", mockcore.InvoiceSpecial),
		"/v1/surrenders":   surrenderBody("P123"),
	} {
		t.Run(path, func(t *testing.T) {
			h.t = t
			h.expect(h.post(path, "", body), http.StatusUnprocessableEntity, "保单 P123 不存在或未生效")
		})
	}
	h.t = t
	st := h.core.Stats()
	for op, n := range st.Effects {
		if n != 0 {
			t.Errorf("effects[%s] = %d after refusals", op, n)
		}
	}
}

func TestValidation(t *testing.T) {
	h := newHarness(t, 0)
	_, policyNo := h.issuePolicy()
	with := func(body map[string]any, path string, v any) map[string]any {
		parts := strings.Split(path, ".")
		m := body
		for _, p := range parts[:len(parts)-1] {
			m = m[p].(map[string]any)
		}
		if v == nil {
			delete(m, parts[len(parts)-1])
		} else {
			m[parts[len(parts)-1]] = v
		}
		return body
	}
	cases := []struct {
		name, path string
		body       any
		message    string
	}{
		{"missing applicant name", "/v1/proposals", with(proposalBody(), "applicant.name", nil), "缺少必填字段 applicant.name"},
		{"blank tenderee code", "/v1/proposals", with(proposalBody(), "project.tenderee.code", " "), "缺少必填字段 project.tenderee.code"},
		{"bad premium", "/v1/proposals", with(proposalBody(), "policy.sumPremium", "abc"), "policy.sumPremium"},
		{"zero premium", "/v1/proposals", with(proposalBody(), "policy.sumPremium", "0.00"), "不是有效的金额"},
		{"three decimals", "/v1/proposals", with(proposalBody(), "policy.sumAmount", 1.005), "policy.sumAmount"},
		{"wrong type", "/v1/proposals", with(proposalBody(), "applicant.mobile", 138), "字段 applicant.mobile 类型错误"},
		{"unknown field", "/v1/proposals", with(proposalBody(), "applicant.nmae", "x"), "未知字段 nmae"},
		{"not JSON", "/v1/proposals", "<xml/>", "不是有效的 JSON"},
		{"trailing data", "/v1/claims", `{"policyNo":"x"} {}`, "不是有效的 JSON"},
		{"missing custom flag", "/v1/endorsements", with(endorsementBody(policyNo), "specialTerms.custom", nil), "specialTerms.custom"},
		{"bad start", "/v1/endorsements", with(endorsementBody(policyNo), "period.start", "2019-04-01 00:00:00"), "period.start 不是 RFC3339"},
		{"end before start", "/v1/endorsements", with(endorsementBody(policyNo), "period.end", "2019-03-01T00:00:00+08:00"), "period.end 必须晚于"},
		{"zero days", "/v1/endorsements", with(endorsementBody(policyNo), "period.days", 0), "period.days"},
		{"claim reason", "/v1/claims", with(claimBody(policyNo), "reason", ""), "缺少必填字段 reason"},
		{"invoice type", "/v1/invoices", with(invoiceBody(policyNo, "vat"), "type", "vat"), "字段 type 取值无效"},
		{"paper without address", "/v1/invoices", with(invoiceBody(policyNo, mockcore.InvoicePaper), "delivery.address", nil), "delivery.address"},
		{"special without bank", "/v1/invoices", with(invoiceBody(policyNo, mockcore.InvoiceSpecial), "special.bank", ""), "special.bank"},
		{"refund account", "/v1/surrenders", with(surrenderBody(policyNo), "refund.accountNo", nil), "refund.accountNo"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h.t = t
			h.expect(h.post(tc.path, "", tc.body), http.StatusBadRequest, tc.message)
		})
	}
	h.t = t
	// Electronic invoices need no postal details.
	body := with(invoiceBody(policyNo, mockcore.InvoiceElectronic), "delivery", nil)
	h.expect(h.post("/v1/invoices", "", with(body, "special", nil)), http.StatusOK, "受理申请")
	if n := h.core.Stats().Effects[mockcore.OpProposals]; n != 1 {
		t.Errorf("effects[proposals] = %d after invalid proposals", n)
	}
}

func TestIdempotencyKey(t *testing.T) {
	h := newHarness(t, 0)
	first := h.post("/v1/proposals", "uuid-1", proposalBody())
	h.expect(first, http.StatusCreated, "投保成功")

	// Same key, same body: the stored answer, byte for byte, no new proposal.
	h.clock.mu.Lock()
	h.clock.now = h.clock.now.Add(3600e9) // a later replay must not change processedAt
	h.clock.mu.Unlock()
	again := h.post("/v1/proposals", "uuid-1", proposalBody())
	if again.status != first.status || !bytes.Equal(again.raw, first.raw) {
		t.Fatalf("replay differs:\n%s\n%s", first.raw, again.raw)
	}
	if again.header.Get("Idempotent-Replayed") != "true" {
		t.Error("replay not marked")
	}

	// Same key, other body: conflict, nothing done.
	other := proposalBody()
	other["policy"].(map[string]any)["sumPremium"] = "30.00"
	h.expect(h.post("/v1/proposals", "uuid-1", other), http.StatusConflict, "uuid-1")

	// Refusals are answers too: replayed, not re-evaluated.
	refused := h.post("/v1/claims", "uuid-2", claimBody("P123"))
	h.expect(refused, http.StatusUnprocessableEntity, "不存在")
	replayed := h.post("/v1/claims", "uuid-2", claimBody("P123"))
	if replayed.status != http.StatusUnprocessableEntity || !bytes.Equal(replayed.raw, refused.raw) {
		t.Errorf("refusal replay: %d %s", replayed.status, replayed.raw)
	}

	// Without a key every call is new.
	h.expect(h.post("/v1/proposals", "", proposalBody()), http.StatusCreated, "投保成功")

	st := h.core.Stats()
	if st.Calls[mockcore.OpProposals] != 4 || st.Effects[mockcore.OpProposals] != 2 {
		t.Errorf("proposals calls/effects = %d/%d, want 4/2", st.Calls[mockcore.OpProposals], st.Effects[mockcore.OpProposals])
	}
	stats := h.get(h.url + "/v1/stats")
	calls, _ := stats.body["calls"].(map[string]any)
	if stats.status != http.StatusOK || calls["proposals"] != float64(4) {
		t.Errorf("GET /v1/stats: %s", stats.raw)
	}
}

func TestUnknownRoute(t *testing.T) {
	h := newHarness(t, 0)
	h.expect(h.get(h.url+"/v2/nothing"), http.StatusNotFound, "未知接口")
	// The catch-all answers JSON for wrong methods too.
	h.expect(h.get(h.url+"/v1/proposals"), http.StatusNotFound, "GET /v1/proposals")
}
