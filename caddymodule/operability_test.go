package caddymodule_test

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/caddy-gongbao/gongbao/internal/mockcore"
)

// TestJournal: an exchange is found by requestUUID, proposal number and
// policy number, with every body: what the platform sent, what the core
// was asked and answered, and what we replied; the policy's delivered
// callback is found with it, with every attempt.
func TestJournal(t *testing.T) {
	platform := startPlatform(t)
	fx := &coreFixture{}
	fx.srv = httptest.NewServer(http.HandlerFunc(fx.serve))
	t.Cleanup(fx.srv.Close)
	// The core emits its events to an intake of the in-process app, which
	// exists only once the app does: the core is made after it.
	gw := startInProcess(t, fx, callbackGlobal(platform.srv.URL))
	fx.core = mockcore.New(mockcore.Config{PublicURL: fx.srv.URL, EventsURL: gw.serveEvents(t)})
	t.Cleanup(fx.core.Close)
	insure := insureSample(t, testKey)
	reply, replyRaw := postWith(t, gw.Client, sidecarURL, insure)
	proposalNo := text(reply, "proposalNo")
	policyNo := pay(t, text(reply, "yeepayurl"))
	claim := signed(t, sample(t, "claimRequest.xml"), testKey, samplePolicyNo, policyNo)
	postWith(t, gw.Client, sidecarURL, claim)
	badSign := signed(t, sample(t, "claimRequest.xml"), "wrong-key", samplePolicyNo, policyNo)
	postWith(t, gw.Client, sidecarURL, badSign)

	type entry struct {
		Message     string `json:"message"`
		RequestUUID string `json:"request_uuid"`
		PolicyNo    string `json:"policy_no"`
		ProposalNo  string `json:"proposal_no"`
		Outcome     string `json:"outcome"`
		CoreStatus  int    `json:"core_status"`
		RequestXML  string `json:"request_xml"`
		CoreRequest string `json:"core_request"`
		CoreReply   string `json:"core_reply"`
		ReplyXML    string `json:"reply_xml"`
	}
	// findN polls until at least n exchanges match: the journal and the
	// proposal→policy link are written in the background.
	findN := func(query string, n int) []entry {
		var out struct {
			Exchanges []entry `json:"exchanges"`
		}
		for range 200 {
			adminJSONWith(t, gw.Admin, http.MethodGet, "/gongbao/journal?"+query, "", http.StatusOK, &out)
			if len(out.Exchanges) >= n {
				break
			}
		}
		return out.Exchanges
	}
	find := func(query string) []entry { return findN(query, 1) }
	uuid := between(string(insure), "<requestUUID>", "</requestUUID>")
	got := find("request_uuid=" + uuid)
	if len(got) != 1 {
		t.Fatalf("by requestUUID: %+v", got)
	}
	e := got[0]
	if e.Message != "insureRequest" || e.Outcome != "ok" || e.CoreStatus != 201 || e.ProposalNo != proposalNo ||
		e.RequestXML != string(insure) || e.ReplyXML != string(replyRaw) ||
		!strings.Contains(e.CoreRequest, `"sumPremium":20.00`) || !strings.Contains(e.CoreReply, proposalNo) {
		t.Errorf("journal entry lacks the exchange: %+v", e)
	}
	// The payment callback links the proposal to its policy: either number
	// finds the insure exchange and the claim. A request whose signature
	// fails is journalled (by its requestUUID), but nothing it claims, such
	// as a policy number, is believed.
	if got := findN("proposal_no="+proposalNo, 2); len(got) != 2 || got[0].RequestUUID != uuid || got[1].RequestXML != string(claim) {
		t.Errorf("by proposal number: %+v", got)
	}
	byPolicy := findN("policy_no="+policyNo, 2)
	if len(byPolicy) != 2 || byPolicy[0].RequestUUID != uuid || byPolicy[1].Outcome != "ok" || byPolicy[1].RequestXML != string(claim) {
		t.Errorf("by policy number: %+v", byPolicy)
	}
	badUUID := between(string(badSign), "<requestUUID>", "</requestUUID>")
	if bad := find("request_uuid=" + badUUID); len(bad) != 1 || bad[0].Outcome != "bad_signature" || bad[0].PolicyNo != "" || bad[0].RequestXML != string(badSign) {
		t.Errorf("the refused request in the journal: %+v", bad)
	}

	// The payment callback, once delivered, is in the journal too.
	platform.waitFor(t, 1)
	_, raw := platform.callbacks()
	callbackUUID := between(string(raw[0]), "<requestUUID>", "</requestUUID>")
	type callback struct {
		RequestUUID string `json:"request_uuid"`
		State       string `json:"state"`
		Body        string `json:"body"`
		Attempts    []struct {
			Outcome    string `json:"outcome"`
			HTTPStatus int    `json:"http_status"`
			Reply      string `json:"reply"`
		} `json:"attempts"`
	}
	var journal struct {
		Callbacks []callback `json:"callbacks"`
	}
	for range 200 {
		adminJSONWith(t, gw.Admin, http.MethodGet, "/gongbao/journal?policy_no="+policyNo, "", http.StatusOK, &journal)
		if len(journal.Callbacks) == 1 && journal.Callbacks[0].State == "delivered" {
			break
		}
	}
	if len(journal.Callbacks) != 1 {
		t.Fatalf("callbacks by policy number: %+v", journal.Callbacks)
	}
	cb := journal.Callbacks[0]
	if cb.RequestUUID != callbackUUID || cb.Body != string(raw[0]) || len(cb.Attempts) != 1 ||
		cb.Attempts[0].Outcome != "accepted" || !strings.Contains(cb.Attempts[0].Reply, "queryPolicyResponse") {
		t.Errorf("the callback in the journal lacks what was sent and answered: %+v", cb)
	}
	adminJSONWith(t, gw.Admin, http.MethodGet, "/gongbao/journal?request_uuid="+callbackUUID, "", http.StatusOK, &journal)
	if len(journal.Callbacks) != 1 || journal.Callbacks[0].RequestUUID != callbackUUID {
		t.Errorf("callback by requestUUID: %+v", journal.Callbacks)
	}
}

// TestMetrics: the series appear on the app's metrics registry (what
// Caddy's /metrics serves) with the counts of a scripted run (deltas: the
// counters live for the whole test process).
func TestMetrics(t *testing.T) {
	fx := startCore(t)
	gw := startInProcess(t, fx, "")
	before := gw.scrape(t)
	msg := insureSample(t, testKey)
	postWith(t, gw.Client, sidecarURL, msg)
	postWith(t, gw.Client, sidecarURL, msg) // replay
	postWith(t, gw.Client, sidecarURL, insureSample(t, "wrong-key"))
	postWith(t, gw.Client, sidecarURL, insureSample(t, testKey, "<insureRequest>", "<evilRequest>", "</insureRequest>", "</evilRequest>"))
	after := gw.scrape(t)

	for series, want := range map[string]float64{
		`gongbao_requests_total{message="insureRequest",outcome="ok"}`:            1,
		`gongbao_requests_total{message="insureRequest",outcome="replay"}`:        1,
		`gongbao_requests_total{message="insureRequest",outcome="bad_signature"}`: 1,
		`gongbao_requests_total{message="unknown",outcome="unknown_message"}`:     1,
		`gongbao_signature_failures_total{message="insureRequest"}`:               1,
		`gongbao_idempotent_replays_total{message="insureRequest"}`:               1,
		`gongbao_core_duration_seconds_count{message="insureRequest"}`:            1,
	} {
		if got := after[series] - before[series]; got != want {
			t.Errorf("%s grew by %v, want %v", series, got, want)
		}
	}
	// Whole-store gauges carry the store's name (the same on every
	// instance of a store), so dashboards take max by store, never sum.
	for _, series := range []string{`gongbao_callbacks{state="pending",store="sqlite:`, `gongbao_callback_queue_depth{store="sqlite:`,
		`gongbao_callback_dead_letters{store="sqlite:`, `gongbao_callback_oldest_pending_age_seconds{store="sqlite:`} {
		if !hasSeriesPrefix(after, series) {
			t.Errorf("%s…} is not exposed", series)
		}
	}
	for series := range after {
		if strings.Contains(series, "evilRequest") {
			t.Errorf("a label came from request data: %s", series)
		}
	}
}

// hasSeriesPrefix tells whether a scraped series starts with prefix.
func hasSeriesPrefix(scraped map[string]float64, prefix string) bool {
	for series := range scraped {
		if strings.HasPrefix(series, prefix) {
			return true
		}
	}
	return false
}

var seriesLine = regexp.MustCompile(`^(gongbao_[^ ]+) ([0-9.eE+-]+)$`)

// scrape reads the gongbao series from the admin endpoint's /metrics.
func scrape(t *testing.T) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + adminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	return parseSeries(resp.Body)
}

// parseSeries reads the gongbao series of a Prometheus text exposition.
func parseSeries(exposition io.Reader) map[string]float64 {
	out := map[string]float64{}
	sc := bufio.NewScanner(exposition)
	for sc.Scan() {
		if m := seriesLine.FindStringSubmatch(sc.Text()); m != nil {
			v, _ := strconv.ParseFloat(m[2], 64)
			out[m[1]] = v
		}
	}
	return out
}

// personalData are the names, mobiles, ID numbers, bank accounts and
// addresses in the sample messages and the core's data.
var personalData = []string{
	"浙江宏达建设工程有限公司", "13858012345", "91330106MA2GL8XK3X", // applicant
	"杭州市城市建设发展有限公司", "13631292501", "913301007042061234", // insured, claimant
}

// TestLogsHoldNoKeysOrPersonalData runs a lifecycle with failures and
// reads every log line Caddy wrote.
func TestLogsHoldNoKeysOrPersonalData(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "caddy.log")
	fx := startCore(t)
	cfg := strings.Replace(sidecarConfig(t, fx.srv.Listener.Addr().String(), "", ""), "\tpersist_config off\n",
		fmt.Sprintf("\tpersist_config off\n\tlog {\n\t\toutput file %s\n\t\tformat json\n\t\tlevel DEBUG\n\t}\n", logFile), 1)
	cfg = strings.Replace(cfg, sidecarSite+" {\n", sidecarSite+" {\n\tlog {\n\t\toutput file "+logFile+"\n\t}\n", 1)
	tester := startSidecar(t, cfg)

	reply, _ := post(t, tester, sidecarURL, insureSample(t, testKey))
	policyNo := pay(t, text(reply, "yeepayurl"))
	for _, name := range []string{"correctRequest.xml", "claimRequest.xml", "invoiceRequest.xml", "surrendRequest.xml"} {
		post(t, tester, sidecarURL, signed(t, sample(t, name), testKey, samplePolicyNo, policyNo))
	}
	post(t, tester, sidecarURL, insureSample(t, "wrong-key"))
	post(t, tester, sidecarURL, insureSample(t, testKey, "<mobile>13858012345</mobile>", "<mobile>138580123456789012345678901234567890</mobile>"))
	post(t, tester, sidecarURL, insureSample(t, testKey, "<sumPremium>20.00</sumPremium>", "<sumPremium>abc</sumPremium>"))
	post(t, tester, sidecarURL, signed(t, sample(t, "claimRequest.xml"), testKey)) // refused by the core

	f, err := os.Open(logFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	data, _ := io.ReadAll(f)
	if !strings.Contains(string(data), `"msg":"exchange"`) {
		t.Fatalf("the exchange log lines are missing from %s:\n%s", logFile, data)
	}
	for _, secret := range append([]string{testKey, strings.ToLower(testKey)}, personalData...) {
		if strings.Contains(string(data), secret) {
			t.Errorf("a log line contains %q", secret)
		}
	}
}

// TestKeyRotation: with two verify keys, requests signed with either are
// accepted and replies are signed with the sign key; the next config,
// which drops the old key, rejects it.
func TestKeyRotation(t *testing.T) {
	const oldKey = "old-key-from-2019"
	t.Setenv("GONGBAO_OLD_KEY", oldKey)
	fx := startCore(t)
	both := startInProcess(t, fx, "verify_key {env.GONGBAO_OLD_KEY} {env.GONGBAO_TEST_KEY}")
	for _, key := range []string{oldKey, testKey} {
		reply, _ := postWith(t, both.Client, sidecarURL, insureSample(t, key)) // post verifies the reply with testKey
		assertAccepted(t, reply)
	}

	// The next config drops the old key.
	testOnly := startInProcess(t, fx, "")
	reply, _ := postWith(t, testOnly.Client, sidecarURL, insureSample(t, oldKey))
	assertRefused(t, reply, "验签失败")
	reply, _ = postWith(t, testOnly.Client, sidecarURL, insureSample(t, testKey))
	assertAccepted(t, reply)
}
