package process

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-gongbao/gongbao/caddymodule/protocol"
)

// testPlatform stands in for 工保网's callback endpoint: it verifies each
// callback and remembers every requestUUID it saw per policy.
type testPlatform struct {
	srv *httptest.Server

	mu     sync.Mutex
	seen   map[string]map[string]bool // policyNo → requestUUIDs
	posts  int
	badSig int
}

func startPlatform(t testing.TB) *testPlatform {
	t.Helper()
	p := &testPlatform{seen: map[string]map[string]bool{}}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *testPlatform) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	env, err := protocol.Parse(body, protocol.Limits{})
	if err != nil {
		http.Error(w, "bad xml", http.StatusBadRequest)
		return
	}
	flag := "true"
	p.mu.Lock()
	p.posts++
	if _, ok := protocol.VerifyAny(env.SignedValue(), env.Sign, []string{testKey}); !ok {
		p.badSig++
		flag = "false"
	} else {
		policy, _ := env.Text("policyNo")
		if p.seen[policy] == nil {
			p.seen[policy] = map[string]bool{}
		}
		p.seen[policy][env.RequestUUID] = true
	}
	p.mu.Unlock()
	w.Write(protocol.BuildResponse(strings.TrimSuffix(env.Root, "Request")+"Response", protocol.NewUUID(),
		[]protocol.Element{{Name: "resultFlag", Text: flag}, {Name: "resultMessage", Text: "成功"}}, testKey))
}

// delivered returns, per policy, the requestUUIDs the platform received.
func (p *testPlatform) delivered() map[string][]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string][]string{}
	for policy, uuids := range p.seen {
		for u := range uuids {
			out[policy] = append(out[policy], u)
		}
	}
	return out
}

// eventAnswer is the intake's answer to an accepted event.
type eventAnswer struct {
	ID          int64  `json:"id"`
	RequestUUID string `json:"requestUUID"`
}

// paidEvent is the n-th policy-paid event of a test, for policy prefix-n.
func paidEvent(prefix string, n int) string {
	return fmt.Sprintf(`{"eventId":"evt-%d","policyNo":"%s-%04d","proposalNo":"TB-%04d","payType":"3",`+
		`"paidAt":"2026-11-27T10:00:00+08:00","policyUrl":"http://core.example/p/%d.pdf"}`, n, prefix, n, n, n)
}

// postEventUntilAccepted posts one event as a core would: again and again
// (same Idempotency-Key) until it gets a 2xx, across sidecar restarts.
func postEventUntilAccepted(t *testing.T, s *sidecar, prefix string, n int, bound time.Duration) eventAnswer {
	t.Helper()
	body := paidEvent(prefix, n)
	client := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(bound)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/events/policy-paid", s.HTTPPort), strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", fmt.Sprintf("evt-%d", n))
		resp, err := client.Do(req)
		if err == nil {
			data, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode/100 == 2 {
				var a eventAnswer
				if err := json.Unmarshal(data, &a); err != nil || a.RequestUUID == "" {
					t.Fatalf("event %d: 2xx without a delivery: %s", n, data)
				}
				return a
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("event %d not accepted within %s (last error %v)", n, bound, err)
		}
		<-tick.C
	}
}

// TestKillWhileEventsArrive: the core posts events while the sidecar is
// killed with SIGKILL again and again. After the last restart, every event
// that got a 2xx is delivered, and every callback of an event carries the
// requestUUID the intake answered with, whatever the number of attempts.
func TestKillWhileEventsArrive(t *testing.T) {
	t.Parallel()
	const events, kills = 80, 3
	platform := startPlatform(t)
	core := startCore(t)
	s := startSidecar(t, "sidecar", sidecarConfig{
		Core: core.Addr(),
		// Attempts cut short by a kill are rescued after rescue_after (plus
		// up to 30 s until River's rescuer runs).
		Gongbao: fmt.Sprintf("store sqlite %s\n\t\tcallbacks {\n\t\t\tbase %s\n\t\t\tpoll_interval 100ms\n\t\t\tattempt_timeout 2s\n\t\t\trescue_after 15s\n\t\t}",
			filepath.Join(t.TempDir(), "gongbao.db"), platform.srv.URL),
		Site: "handle /events/* {\n\t\tgongbao_notify\n\t}",
	})

	answers := make(map[int]eventAnswer, events)
	for n := 0; n < events; n++ {
		if n > 0 && n%(events/(kills+1)) == 0 {
			s.Restart() // SIGKILL, then start again on the same store
		}
		answers[n] = postEventUntilAccepted(t, s, "BD-KILL", n, 60*time.Second)
	}

	deadline := time.Now().Add(120 * time.Second)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		got := platform.delivered()
		if len(got) == events || time.Now().After(deadline) {
			break
		}
		<-tick.C
	}
	got := platform.delivered()
	for n, a := range answers {
		policy := fmt.Sprintf("BD-KILL-%04d", n)
		uuids := got[policy]
		switch {
		case len(uuids) == 0:
			t.Errorf("event %d (accepted as delivery %d) was never delivered", n, a.ID)
		case len(uuids) > 1 || uuids[0] != a.RequestUUID:
			t.Errorf("event %d: callbacks carried %v, want only %s", n, uuids, a.RequestUUID)
		}
	}
	if platform.badSig > 0 {
		t.Errorf("%d callbacks did not verify", platform.badSig)
	}
	t.Logf("%d events, %d kills, %d callback posts received", events, kills, platform.posts)
}

// TestEventsStoreDownAndStalled: when the store is down or stalls, the
// core gets a 503 (promptly) for every event, never a 2xx; nothing is left
// half-written; the same events are accepted and delivered once the store
// is back.
func TestEventsStoreDownAndStalled(t *testing.T) {
	t.Parallel()
	dsn := postgresDSN(t)
	proxy := startProxy(t, postgresHost(t, dsn))
	schema := freshSchema(t, dsn)
	platform := startPlatform(t)
	core := startCore(t)
	s := startSidecar(t, "sidecar", sidecarConfig{
		Core: core.Addr(),
		Gongbao: postgresStore(withHost(dsn, proxy.Addr()), schema) +
			fmt.Sprintf("\n\t\tcallbacks {\n\t\t\tbase %s\n\t\t\tpoll_interval 100ms\n\t\t}", platform.srv.URL),
		Site: "handle /events/* {\n\t\tgongbao_notify\n\t}",
	})
	if status, body := postEventStatus(t, s, "BD-DOWN", 0); status != http.StatusAccepted {
		t.Fatalf("with the store up: %d %s", status, body)
	}
	// Let the first callback go out before the outage. Cut in the middle
	// of River fetching its job, the job would stay "running" until the
	// rescuer's next pass after rescue_after (minutes): delivered late,
	// not lost, which the kill tests cover; here it would only make the
	// count below depend on timing.
	waitDelivered(t, platform, 1, 30*time.Second)

	for _, fault := range []struct {
		name       string
		down, back func()
	}{{"down", proxy.Down, proxy.Up}, {"stalled", proxy.Stall, proxy.Resume}} {
		fault.down()
		for n := 1; n <= 3; n++ {
			start := time.Now()
			status, body := postEventStatus(t, s, "BD-DOWN", n)
			if status != http.StatusServiceUnavailable || !strings.Contains(body, "store_unavailable") {
				t.Errorf("store %s, event %d: %d %s, want 503 store_unavailable", fault.name, n, status, body)
			}
			if took := time.Since(start); took > 15*time.Second {
				t.Errorf("store %s, event %d: the answer took %s", fault.name, n, took)
			}
		}
		fault.back()
	}
	// Nothing was half-written: none of the refused events is in the store
	// (River's job table is written in the same transaction).
	if rows := countRows(t, dsn, schema, "gongbao_deliveries", "true"); rows != 1 {
		t.Errorf("%d deliveries stored, want only the one accepted before the outage", rows)
	}
	// The core resends until accepted; every event is then delivered once.
	for n := 1; n <= 3; n++ {
		postEventUntilAccepted(t, s, "BD-DOWN", n, 30*time.Second)
	}
	waitDelivered(t, platform, 4, 30*time.Second)
}

// waitDelivered waits until the platform has seen callbacks for n
// policies, failing the test after limit.
func waitDelivered(t *testing.T, platform *testPlatform, n int, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for len(platform.delivered()) < n && time.Now().Before(deadline) {
		<-tick.C // polling the platform
	}
	if got := len(platform.delivered()); got != n {
		t.Errorf("%d events delivered, want %d", got, n)
	}
}
