package caddymodule_test

// The forgery routes of SECURITY.md, each tried as an attacker would,
// against the reference core: through real Caddy and real HTTP where the
// route involves Caddy's wiring (hosts, timeouts, a client hanging up),
// against the handler in process otherwise, reading the journal and the
// records through the admin API's own handlers (inProcess.Admin).

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-gongbao/gongbao/caddymodule/protocol"
)

// guardedConfig is the test sidecar with the content_replay guard as
// shipped (the other tests allow repeated samples).
func guardedConfig(t *testing.T, fx *coreFixture) string {
	return sidecarConfig(t, fx.srv.Listener.Addr().String(), guardedGlobal, "")
}

// guardedGlobal sets the content_replay guard as shipped.
const guardedGlobal = "content_replay {\n\t\t\twindow 1h\n\t\t}"

// rawPost posts body with method to url and returns the status, headers
// and body of the answer, whatever they are.
func rawPost(t *testing.T, client *http.Client, method, url string, body []byte) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/xml; charset=UTF-8")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, raw
}

// TestOracleAttackThroughRefusals: the two refusals that used to repeat
// sender input before verification (path/root mismatch, unknown message)
// no longer sign anything, so their answer cannot be reused to sign a
// forged claim, and the forged claim never reaches the core.
func TestOracleAttackThroughRefusals(t *testing.T) {
	fx := startCore(t)
	gw := startInProcess(t, fx, guardedGlobal)
	// P: what the attacker wants signed — a claim on someone else's policy.
	parts := []string{samplePolicyNo, "攻击者", "13900000000", "伪造理赔"}
	p := strings.Join(parts, "")
	claim := signed(t, sample(t, "claimRequest.xml"), testKey)

	oracles := map[string]func() (*protocol.Envelope, []byte){
		"path names another root": func() (*protocol.Envelope, []byte) {
			return postWith(t, gw.Client, sidecarURL+"/"+url.PathEscape(p)+"Request", claim)
		},
		"unknown root": func() (*protocol.Envelope, []byte) {
			body := strings.NewReplacer("<claimRequest>", "<Z"+"Request>", "</claimRequest>", "</Z"+"Request>").Replace(string(claim))
			return postWith(t, gw.Client, sidecarURL, []byte(body))
		},
	}
	for name, ask := range oracles {
		t.Run(name, func(t *testing.T) {
			before := fx.callCount()
			reply, raw := ask()
			if reply.Sign != "" {
				t.Fatalf("a refusal before verification is signed:\n%s", raw)
			}
			if bytes.Contains(raw, []byte(parts[1])) || bytes.Contains(raw, []byte("ZRequest")) {
				t.Fatalf("the refusal repeats sender input:\n%s", raw)
			}
			// The forged claim: body texts that concatenate to the refusal's
			// V, with the refusal's sign — all the attacker has.
			v := string(reply.SignedValue())
			forged := "<claimRequest><requestHead><requestUUID>" + protocol.NewUUID() + "</requestUUID><sign>" + reply.Sign +
				"</sign></requestHead><requestBody><z>" + strings.TrimSuffix(v, p) + "</z><policyno>" + parts[0] +
				"</policyno><claimName>" + parts[1] + "</claimName><claimPhone>" + parts[2] +
				"</claimPhone><cliaimReason>" + parts[3] + "</cliaimReason></requestBody></claimRequest>"
			refusal, _ := postWith(t, gw.Client, sidecarURL, []byte(forged))
			assertRefused(t, refusal, "验签失败")
			if fx.callCount() != before {
				t.Fatalf("the core was called %d times", fx.callCount()-before)
			}
		})
	}
}

// TestNewRequestUUIDDoesNotActTwice: a genuine message resent under a new
// requestUUID (which the signature does not cover) is refused without a
// core call, journalled with a reference to the original, and counted.
func TestNewRequestUUIDDoesNotActTwice(t *testing.T) {
	fx := startCore(t)
	gw := startInProcess(t, fx, guardedGlobal)
	first := signed(t, sample(t, "insureRequest.xml"), testKey)
	reply, _ := postWith(t, gw.Client, sidecarURL, first)
	assertAccepted(t, reply)
	calls := fx.callCount()
	metricsBefore := gw.scrape(t)

	again, err := protocol.Resign(first, testKey, protocol.NewUUID())
	if err != nil {
		t.Fatal(err)
	}
	refusal, raw := postWith(t, gw.Client, sidecarURL, again)
	assertRefused(t, refusal, "报文内容与此前已受理的请求完全相同")
	if refusal.Sign == "" {
		t.Errorf("the refusal of a verified request must be signed:\n%s", raw)
	}
	if fx.callCount() != calls {
		t.Fatalf("the core acted again: %d calls", fx.callCount()-calls)
	}
	series := `gongbao_requests_total{message="insureRequest",outcome="content_replay"}`
	if got := gw.scrape(t)[series] - metricsBefore[series]; got != 1 {
		t.Errorf("%s grew by %v, want 1", series, got)
	}
	firstUUID := between(string(first), "<requestUUID>", "</requestUUID>")
	e := journalEntry(t, gw.Admin, between(string(again), "<requestUUID>", "</requestUUID>"))
	if e.Outcome != "content_replay" || e.ReplayOf != firstUUID || e.CoreRequest != "" {
		t.Errorf("journal entry: %+v, want content_replay of %s without a core request", e, firstUUID)
	}
}

// TestPaddedReplayKeepsABoundedJournal: a resend padded with a comment (it
// keeps the signature) is answered from the record; the journal keeps a
// reference and a bounded prefix, not the padded body.
func TestPaddedReplayKeepsABoundedJournal(t *testing.T) {
	fx := startCore(t)
	gw := startInProcess(t, fx, guardedGlobal)
	msg := signed(t, sample(t, "insureRequest.xml"), testKey)
	first, firstRaw := postWith(t, gw.Client, sidecarURL, msg)
	assertAccepted(t, first)
	calls := fx.callCount()
	padded := bytes.Replace(msg, []byte("</requestBody>"), []byte("<!--"+strings.Repeat("x", 60<<10)+"--></requestBody>"), 1)
	_, raw := postWith(t, gw.Client, sidecarURL, padded)
	if !bytes.Equal(raw, firstRaw) {
		t.Fatalf("the padded resend was not answered with the stored reply")
	}
	if fx.callCount() != calls {
		t.Fatal("the core was called for a resend")
	}
	uuid := between(string(msg), "<requestUUID>", "</requestUUID>")
	var replay journalView
	for _, e := range journalEntries(t, gw.Admin, uuid, 2) {
		if e.Outcome == "replay" {
			replay = e
		}
	}
	if replay.ReplayOf != uuid || len(replay.RequestXML) > 2<<10 || replay.CoreRequest != "" {
		t.Errorf("replay entry keeps %d bytes of the request (want ≤ 2 KiB), replay_of %q", len(replay.RequestXML), replay.ReplayOf)
	}
}

// TestCoreSeesItsOwnHost: the platform's Host never reaches the core,
// neither as Host nor as X-Forwarded-Host.
func TestCoreSeesItsOwnHost(t *testing.T) {
	fx := startCore(t)
	tester := startSidecar(t, guardedConfig(t, fx))
	req, _ := http.NewRequest(http.MethodPost, sidecarURL, bytes.NewReader(signed(t, sample(t, "insureRequest.xml"), testKey)))
	req.Host = "localhost" // the site matches on it; the core must not see it
	req.Header.Set("X-Forwarded-Host", "evil.example")
	req.Header.Set("Forwarded", "host=evil.example")
	resp, err := tester.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	call := fx.lastCall(t)
	if want := fx.srv.Listener.Addr().String(); call.Host != want {
		t.Errorf("the core saw Host %q, want its upstream address %q", call.Host, want)
	}
	for name, values := range call.Header {
		for _, v := range values {
			if strings.Contains(v, "evil.example") || strings.Contains(v, "localhost") {
				t.Errorf("the core received %s: %s", name, v)
			}
		}
	}
	if _, ok := call.Header["X-Forwarded-Host"]; ok {
		t.Errorf("the core received X-Forwarded-Host: %q", call.Header.Get("X-Forwarded-Host"))
	}
}

// TestCoreErrorTextStaysInTheJournal: a core 4xx that is not a business
// answer is reported with its status only; its text (a stack trace, a
// password) is for operators, in the journal.
func TestCoreErrorTextStaysInTheJournal(t *testing.T) {
	fx := startCore(t)
	gw := startInProcess(t, fx, guardedGlobal)
	const leak = `{"accepted":false,"message":"NullPointerException at Dao.java:42 password=hunter2"}`
	for _, status := range []int{http.StatusBadRequest, http.StatusUnprocessableEntity} {
		answer := leak
		if status == http.StatusUnprocessableEntity {
			// A 422 is a business answer only when it refuses.
			answer = strings.Replace(leak, `"accepted":false`, `"accepted":true`, 1)
		}
		fx.setOverride(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			io.WriteString(w, answer)
		})
		msg := signed(t, sample(t, "insureRequest.xml"), testKey)
		reply, raw := postWith(t, gw.Client, sidecarURL, msg)
		if got := text(reply, "resultMessage"); got != "核心系统拒绝请求(HTTP "+strconv.Itoa(status)+")" {
			t.Errorf("HTTP %d: resultMessage %q", status, got)
		}
		if bytes.Contains(raw, []byte("hunter2")) || bytes.Contains(raw, []byte("NullPointer")) {
			t.Errorf("HTTP %d: the core's text reached the platform:\n%s", status, raw)
		}
		e := journalEntry(t, gw.Admin, between(string(msg), "<requestUUID>", "</requestUUID>"))
		if e.Outcome != "core_rejected" || !strings.Contains(e.CoreReply, "NullPointerException") {
			t.Errorf("HTTP %d: journal %+v, want core_rejected with the core's text", status, e)
		}
	}
	// A 422 that refuses is the core's business answer: its message passes.
	fx.setOverride(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnprocessableEntity)
		io.WriteString(w, `{"accepted":false,"message":"投保人不在白名单"}`)
	})
	reply, _ := postWith(t, gw.Client, sidecarURL, signed(t, sample(t, "insureRequest.xml"), testKey))
	assertRefused(t, reply, "投保人不在白名单")
}

// TestRequestUUIDIsChecked: control characters, spaces and excess length
// in the unsigned requestUUID are refused before anything uses it, with
// an unsigned fixed message, no core call and no record.
func TestRequestUUIDIsChecked(t *testing.T) {
	fx := startCore(t)
	gw := startInProcess(t, fx, guardedGlobal)
	cases := map[string]string{
		"CR LF":      "abc&#xD;&#xA;Injected: 1",
		"DEL":        "abc\x7fdef",
		"space":      "abc def",
		"non-ASCII":  "请求号123",
		"60000 long": strings.Repeat("a", 60000),
	}
	for name, id := range cases {
		t.Run(name, func(t *testing.T) {
			msg := resignKeepingUUID(t, sample(t, "claimRequest.xml"), "PLACEHOLDER-UUID")
			msg = bytes.Replace(msg, []byte("PLACEHOLDER-UUID"), []byte(id), 1)
			before := fx.callCount()
			reply, raw := postWith(t, gw.Client, sidecarURL, msg)
			assertRefused(t, reply, "requestUUID")
			if reply.Sign != "" || len(raw) > 1024 || bytes.Contains(raw, []byte("Injected")) {
				t.Errorf("want a short unsigned refusal repeating nothing:\n%.300s", raw)
			}
			if fx.callCount() != before {
				t.Error("the core was called")
			}
		})
	}
	var unknown []struct {
		Key string `json:"key"`
	}
	adminJSONWith(t, gw.Admin, http.MethodGet, "/gongbao/requests?state=unknown", "", http.StatusOK, &unknown)
	if len(unknown) != 0 {
		t.Errorf("records left unknown: %+v", unknown)
	}
}

// TestOnlyPOSTIsAPlatformMessage: other methods get 405 and Allow: POST.
func TestOnlyPOSTIsAPlatformMessage(t *testing.T) {
	fx := startCore(t)
	gw := startInProcess(t, fx, guardedGlobal)
	for _, method := range []string{http.MethodGet, http.MethodPut, http.MethodDelete, http.MethodPatch, "PROPFIND"} {
		status, hdr, body := rawPost(t, gw.Client, method, sidecarURL, signed(t, sample(t, "claimRequest.xml"), testKey))
		if status != http.StatusMethodNotAllowed || hdr.Get("Allow") != http.MethodPost {
			t.Errorf("%s: status %d Allow %q, want 405 and POST (%s)", method, status, hdr.Get("Allow"), body)
		}
	}
	if fx.callCount() != 0 {
		t.Errorf("the core was called %d times", fx.callCount())
	}
}

// TestOutcomesTellOperatorsWhatHappened: each failure kind has its own
// outcome label, so a dashboard tells a business refusal from a failure
// and a timeout (may have acted) from an outage (certainly did not).
func TestOutcomesTellOperatorsWhatHappened(t *testing.T) {
	fx := startCore(t)
	tester := startSidecar(t, sidecarConfig(t, fx.srv.Listener.Addr().String(), "", ""))
	release := make(chan struct{})
	var releaseOnce sync.Once
	defer releaseOnce.Do(func() { close(release) })
	json := func(status int, body string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			io.WriteString(w, body)
		}
	}
	cases := []struct {
		outcome string
		core    http.HandlerFunc
	}{
		{"refused", json(http.StatusOK, `{"accepted":false,"message":"不予承保"}`)},
		{"core_unavailable", json(http.StatusServiceUnavailable, `{}`)},
		{"core_error", json(http.StatusInternalServerError, `{}`)},
		{"core_timeout", func(w http.ResponseWriter, r *http.Request) {
			select { // past response_header_timeout (1s)
			case <-release:
			case <-r.Context().Done():
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.outcome, func(t *testing.T) {
			fx.setOverride(tc.core)
			defer fx.setOverride(nil)
			series := `gongbao_requests_total{message="insureRequest",outcome="` + tc.outcome + `"}`
			before := scrape(t)[series]
			post(t, tester, sidecarURL, signed(t, sample(t, "insureRequest.xml"), testKey))
			if got := scrape(t)[series] - before; got != 1 {
				t.Errorf("%s grew by %v, want 1", series, got)
			}
		})
	}

	t.Run("client_gone", func(t *testing.T) {
		// The first request holds the core; a duplicate waits for it and
		// its client hangs up meanwhile.
		hold := make(chan struct{})
		fx.setOverride(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-hold:
			case <-release:
			}
			json(http.StatusOK, `{"accepted":false,"message":"x"}`)(w, r)
		})
		defer fx.setOverride(nil)
		series := `gongbao_requests_total{message="insureRequest",outcome="client_gone"}`
		before := scrape(t)[series]
		msg := signed(t, sample(t, "insureRequest.xml"), testKey)
		calls := fx.callCount()
		firstDone := make(chan struct{})
		go func() {
			defer close(firstDone)
			resp, err := tester.Client.Post(sidecarURL, "application/xml", bytes.NewReader(msg))
			if err == nil {
				resp.Body.Close()
			}
		}()
		waitFor(t, func() bool { return fx.callCount() > calls }) // the first holds the core
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, sidecarURL, bytes.NewReader(msg))
		if _, err := tester.Client.Do(req); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("the duplicate was answered while the first was held: %v", err)
		}
		waitFor(t, func() bool { return scrape(t)[series]-before == 1 })
		close(hold)
		<-firstDone
	})
}

// waitFor polls cond every 10 ms for up to 10 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatal("condition not reached in 10 s")
		}
	}
}

// journalView is a journal entry as the admin API shows it.
type journalView struct {
	RequestUUID string   `json:"request_uuid"`
	Outcome     string   `json:"outcome"`
	ReplayOf    string   `json:"replay_of"`
	RequestXML  string   `json:"request_xml"`
	CoreRequest string   `json:"core_request"`
	CoreReply   string   `json:"core_reply"`
	Error       string   `json:"error"`
	Unmapped    []string `json:"unmapped"`
}

// journalEntries waits for n journal entries of a requestUUID (the
// journal is written in the background), read through admin (gw.Admin).
func journalEntries(t *testing.T, admin *http.Client, uuid string, n int) []journalView {
	t.Helper()
	var out struct {
		Exchanges []journalView `json:"exchanges"`
	}
	waitFor(t, func() bool {
		adminJSONWith(t, admin, http.MethodGet, "/gongbao/journal?request_uuid="+url.QueryEscape(uuid), "", http.StatusOK, &out)
		return len(out.Exchanges) >= n
	})
	return out.Exchanges
}

// journalEntry is the one journal entry of a requestUUID.
func journalEntry(t *testing.T, admin *http.Client, uuid string) journalView {
	t.Helper()
	return journalEntries(t, admin, uuid, 1)[0]
}

// TestCapturedMessageManipulations: edits of a genuine signed message that
// keep its signature valid (V unchanged) but would change what the core
// gets are refused, and the core is not called.
func TestCapturedMessageManipulations(t *testing.T) {
	fx := startCore(t)
	gw := startInProcess(t, fx, guardedGlobal)
	cases := []struct {
		name  string
		edits []string // old, new pairs
		want  string
	}{
		{"value split by a child element", []string{"<sumAmount>40000.00</sumAmount>", "<sumAmount>40000<x>.</x>00</sumAmount>"}, "policyInfo/sumAmount"},
		{"name cut by a child element", []string{"<name>浙江宏达建设工程有限公司</name>", "<name>浙江<x>宏达建设工程</x>有限公司</name>"}, "applicantInfo/name"},
		{"text moved into an unknown element", []string{"<sumAmount>40000.00</sumAmount>", "<sumAmount>4000</sumAmount><Extra>0.00</Extra>"}, ""},
		{"field renamed", []string{"<ProjectType>", "<ProjectTyp>", "</ProjectType>", "</ProjectTyp>"}, "未知字段"},
		{"loose text in a container", []string{"<sumAmount>40000.00</sumAmount>\n      <endorseText>", "<sumAmount>4000</sumAmount>0.00<endorseText>"}, ""},
		{"duplicate attribute", []string{"<requestBody>", `<requestBody a="1" a="2">`}, "报文不是合法的XML"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			genuine := signed(t, sample(t, "insureRequest.xml"), testKey)
			edited := []byte(strings.NewReplacer(tc.edits...).Replace(string(genuine)))
			if bytes.Equal(edited, genuine) {
				t.Fatal("the edit changed nothing")
			}
			if !sameV(genuine, edited) && tc.name != "duplicate attribute" {
				t.Fatal("the edit changed V: the signature no longer verifies, so this is no manipulation")
			}
			before := fx.callCount()
			reply, raw := postWith(t, gw.Client, sidecarURL, edited)
			assertRefused(t, reply, tc.want)
			if fx.callCount() != before {
				t.Fatal("the core was called")
			}
			if bytes.Contains(raw, []byte("ProjectTyp<")) || bytes.Contains(raw, []byte("Extra")) {
				t.Errorf("the refusal repeats a sender-chosen name:\n%s", raw)
			}
			if tc.name == "field renamed" {
				// Operators still learn which element it was.
				uuid := between(string(edited), "<requestUUID>", "</requestUUID>")
				if e := journalEntry(t, gw.Admin, uuid); !strings.Contains(e.Error, "element ProjectTyp") {
					t.Errorf("the journal does not name the unknown element: %q", e.Error)
				}
			}
		})
	}
}

// sameV tells whether two messages have the same signed value.
func sameV(a, b []byte) bool {
	ea, err := protocol.Parse(a, protocol.Limits{})
	if err != nil {
		return false
	}
	eb, err := protocol.Parse(b, protocol.Limits{})
	if err != nil {
		return false
	}
	return bytes.Equal(ea.SignedValue(), eb.SignedValue())
}
