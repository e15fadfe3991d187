package caddymodule_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/caddy-gongbao/gongbao/internal/mockcore"
)

// postRaw sends a message and returns the reply bytes unparsed.
func postRaw(t *testing.T, client *http.Client, msg []byte) []byte {
	t.Helper()
	resp, err := client.Post(sidecarURL, "application/xml; charset=UTF-8", bytes.NewReader(msg))
	if err != nil {
		t.Errorf("posting: %v", err)
		return nil
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return body
}

func TestResendReplaysStoredReply(t *testing.T) {
	fx := startCore(t)
	gw := startInProcess(t, fx, "")
	msg := insureSample(t, testKey)

	first, firstRaw := postWith(t, gw.Client, sidecarURL, msg)
	assertAccepted(t, first)
	_, secondRaw := postWith(t, gw.Client, sidecarURL, msg)
	if !bytes.Equal(firstRaw, secondRaw) {
		t.Errorf("the resend's reply differs:\n%s\n%s", firstRaw, secondRaw)
	}
	if n := fx.callCount(); n != 1 {
		t.Errorf("core calls = %d, want 1", n)
	}
}

// TestConcurrentDuplicates sends 50 identical requests at once, in
// several rounds: the core is called once per round and every reply is
// the same bytes.
func TestConcurrentDuplicates(t *testing.T) {
	fx := startCore(t)
	gw := startInProcess(t, fx, "")
	const rounds, parallel = 8, 50
	for round := 0; round < rounds; round++ {
		before := fx.callCount()
		msg := insureSample(t, testKey)
		replies := make([][]byte, parallel)
		var wg sync.WaitGroup
		for i := range parallel {
			wg.Go(func() { replies[i] = postRaw(t, gw.Client, msg) })
		}
		wg.Wait()
		if n := fx.callCount() - before; n != 1 {
			t.Fatalf("round %d: core calls = %d, want 1", round, n)
		}
		for i, r := range replies {
			if !bytes.Equal(r, replies[0]) {
				t.Fatalf("round %d: reply %d differs:\n%s\n%s", round, i, r, replies[0])
			}
		}
		if !bytes.Contains(replies[0], []byte("<resultFlag>true</resultFlag>")) {
			t.Fatalf("round %d: %s", round, replies[0])
		}
	}
}

func TestSameUUIDDifferentBody(t *testing.T) {
	fx := startCore(t)
	gw := startInProcess(t, fx, "")
	msg := insureSample(t, testKey)
	first, _ := postWith(t, gw.Client, sidecarURL, msg)
	assertAccepted(t, first)

	uuid := between(string(msg), "<requestUUID>", "</requestUUID>")
	other := strings.Replace(string(msg), "<sumPremium>20.00</sumPremium>", "<sumPremium>30.00</sumPremium>", 1)
	reply, _ := postWith(t, gw.Client, sidecarURL, resignKeepingUUID(t, []byte(other), uuid))
	assertRefused(t, reply, "requestUUID 已用于内容不同的报文")
	if n := fx.callCount(); n != 1 {
		t.Errorf("core calls = %d, want 1", n)
	}
	// The original record is untouched: the first body still replays.
	_, again := postWith(t, gw.Client, sidecarURL, msg)
	if !bytes.Contains(again, []byte("<resultFlag>true</resultFlag>")) {
		t.Errorf("the original request no longer replays: %s", again)
	}
}

// TestUnavailableCoreReleases: a core that says 503 did not act, so the
// resend runs normally and the effect happens once.
func TestUnavailableCoreReleases(t *testing.T) {
	fx := startCore(t)
	gw := startInProcess(t, fx, "")
	msg := insureSample(t, testKey)
	fx.setOverride(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "maintenance", http.StatusServiceUnavailable)
	})
	reply, _ := postWith(t, gw.Client, sidecarURL, msg)
	assertRefused(t, reply, "系统繁忙")
	fx.setOverride(nil)
	reply, _ = postWith(t, gw.Client, sidecarURL, msg)
	assertAccepted(t, reply)
	if n := fx.core.Stats().Effects[mockcore.OpProposals]; n != 1 {
		t.Errorf("proposals created = %d, want 1", n)
	}
}

// commitThenStall lets the core act, then never answers: the answer is
// lost after the effect happened.
func commitThenStall(fx *coreFixture, release chan struct{}) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		fx.core.Handler().ServeHTTP(httptest.NewRecorder(), r)
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}
}

// commitThenReset lets the core act, then breaks the connection in the
// middle of the answer.
func commitThenReset(fx *coreFixture) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		fx.core.Handler().ServeHTTP(httptest.NewRecorder(), r)
		conn, buf, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		writeHalfAnswer(buf)
		conn.Close()
	}
}

func writeHalfAnswer(buf *bufio.ReadWriter) {
	buf.WriteString("HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n{\"accepted\":tr")
	buf.Flush()
}

// TestLostAnswerRetry: the core acted but its answer was lost (a stall
// past the timeout, or a reset mid-answer). The record is unknown; under
// the default policy the resend calls the core again with the same
// Idempotency-Key and the reference core does not act twice.
func TestLostAnswerRetry(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault func(fx *coreFixture, release chan struct{}) http.HandlerFunc
	}{
		{"stall past timeout", commitThenStall},
		{"reset mid-answer", func(fx *coreFixture, _ chan struct{}) http.HandlerFunc { return commitThenReset(fx) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fx := startCore(t)
			gw := startInProcessBehindProxy(t, fx, fx.srv.Listener.Addr().String(), "")
			release := make(chan struct{})
			defer close(release)
			msg := insureSample(t, testKey)
			uuid := between(string(msg), "<requestUUID>", "</requestUUID>")

			fx.setOverride(tc.fault(fx, release))
			reply, _ := postWith(t, gw.Client, sidecarURL, msg)
			assertRefused(t, reply, "系统繁忙")
			if rec := adminRecord(t, gw.Admin, uuid); rec.State != "unknown" {
				t.Fatalf("record state = %q, want unknown", rec.State)
			}
			fx.setOverride(nil)
			reply, _ = postWith(t, gw.Client, sidecarURL, msg)
			assertAccepted(t, reply)
			stats := fx.core.Stats()
			if stats.Effects[mockcore.OpProposals] != 1 || stats.Calls[mockcore.OpProposals] != 2 {
				t.Errorf("core calls=%d effects=%d, want 2 calls and 1 effect", stats.Calls[mockcore.OpProposals], stats.Effects[mockcore.OpProposals])
			}
			if rec := adminRecord(t, gw.Admin, uuid); rec.State != "completed" {
				t.Errorf("record state after the resend = %q, want completed", rec.State)
			}
		})
	}
}

// TestLostAnswerHold: under unknown_outcome hold the resend is told 处理中,
// the record is listed for operators, and an operator can release it.
func TestLostAnswerHold(t *testing.T) {
	fx := startCore(t)
	gw := startInProcessBehindProxy(t, fx, fx.srv.Listener.Addr().String(), "idempotency {\n\t\t\tunknown_outcome hold\n\t\t}")
	release := make(chan struct{})
	defer close(release)
	msg := insureSample(t, testKey)
	uuid := between(string(msg), "<requestUUID>", "</requestUUID>")

	fx.setOverride(commitThenStall(fx, release))
	postWith(t, gw.Client, sidecarURL, msg)
	fx.setOverride(nil)
	reply, _ := postWith(t, gw.Client, sidecarURL, msg)
	assertRefused(t, reply, "处理中")
	if n := fx.core.Stats().Calls[mockcore.OpProposals]; n != 1 {
		t.Errorf("core calls = %d, want 1 (hold must not call the core)", n)
	}

	var listed []struct {
		RequestUUID string `json:"request_uuid"`
	}
	adminJSONWith(t, gw.Admin, http.MethodGet, "/gongbao/requests?state=unknown", "", http.StatusOK, &listed)
	if len(listed) != 1 || listed[0].RequestUUID != uuid {
		t.Fatalf("unknown records listed = %+v, want %s", listed, uuid)
	}
	adminJSONWith(t, gw.Admin, http.MethodPost, "/gongbao/requests/"+uuid+"/resolve", `{"state":"released","note":"checked with the core: not created"}`, http.StatusOK, nil)
	reply, _ = postWith(t, gw.Client, sidecarURL, msg)
	assertAccepted(t, reply)
}

type adminRecordJSON struct {
	State string `json:"state"`
	Reply string `json:"reply"`
}

// adminRecord reads a request record through admin (gw.Admin).
func adminRecord(t *testing.T, admin *http.Client, uuid string) adminRecordJSON {
	t.Helper()
	var rec adminRecordJSON
	adminJSONWith(t, admin, http.MethodGet, "/gongbao/requests/"+uuid, "", http.StatusOK, &rec)
	return rec
}

// adminJSON calls the test Caddy's admin API.
func adminJSON(t *testing.T, method, path, body string, wantStatus int, out any) {
	t.Helper()
	adminJSONWith(t, http.DefaultClient, method, path, body, wantStatus, out)
}

// adminJSONWith calls the admin API through client: http.DefaultClient
// for the test Caddy's, an inProcess's Admin for its app's.
func adminJSONWith(t *testing.T, client *http.Client, method, path, body string, wantStatus int, out any) {
	t.Helper()
	req, _ := http.NewRequest(method, "http://"+adminAddr+path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != wantStatus {
		t.Fatalf("%s %s: status %d, want %d: %s", method, path, resp.StatusCode, wantStatus, data)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, data)
		}
	}
}

func between(s, open, close string) string {
	_, rest, _ := strings.Cut(s, open)
	v, _, _ := strings.Cut(rest, close)
	return v
}
