package main

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

// postEventUntilAccepted posts one event as a core would: again and again
// (same Idempotency-Key) until it gets a 2xx, across sidecar restarts.
func postEventUntilAccepted(t *testing.T, s *sidecar, n int, bound time.Duration) eventAnswer {
	t.Helper()
	body := fmt.Sprintf(`{"eventId":"evt-%d","policyNo":"BD-KILL-%04d","proposalNo":"TB-%04d","payType":"3",`+
		`"paidAt":"2026-11-27T10:00:00+08:00","policyUrl":"http://core.example/p/%d.pdf"}`, n, n, n, n)
	client := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(bound)
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
		time.Sleep(20 * time.Millisecond)
	}
}

// TestKillWhileEventsArrive: the core posts events while the sidecar is
// killed with SIGKILL again and again. After the last restart, every event
// that got a 2xx is delivered, and every callback of an event carries the
// requestUUID the intake answered with, whatever the number of attempts.
func TestKillWhileEventsArrive(t *testing.T) {
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
		answers[n] = postEventUntilAccepted(t, s, n, 60*time.Second)
	}

	deadline := time.Now().Add(120 * time.Second)
	for {
		got := platform.delivered()
		if len(got) == events || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
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
