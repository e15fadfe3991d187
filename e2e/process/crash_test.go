package process

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-gongbao/gongbao/caddymodule/protocol"
	"github.com/caddy-gongbao/gongbao/internal/mockcore"
)

// Process-level acceptance tests of issue 17 (crash recovery on the
// embedded store): the built sidecar on its SQLite file, killed with
// SIGKILL right after replies reached the platform, and with requests
// mid-call and callbacks mid-attempt.

// journalHas reports how many journal entries the sidecar's admin API
// finds for requestUUID id.
func journalHas(t *testing.T, s *sidecar, id string) int {
	t.Helper()
	code, body, err := s.Admin(http.MethodGet, "/gongbao/journal?request_uuid="+url.QueryEscape(id), nil)
	if err != nil || code != http.StatusOK {
		t.Fatalf("journal of %s: HTTP %d %v %s", id, code, err, body)
	}
	var j struct {
		Exchanges []struct {
			RequestUUID string `json:"request_uuid"`
		} `json:"exchanges"`
	}
	if err := json.Unmarshal(body, &j); err != nil {
		t.Fatalf("journal of %s: %v %s", id, err, body)
	}
	return len(j.Exchanges)
}

// TestKillRightAfterReplies: eight platform connections send fresh
// insureRequests; the moment the client has read the N-th signed reply of
// the round, the sidecar is killed with SIGKILL, other requests in
// flight. After the restart, every exchange whose reply the client read —
// including replies read from the socket after the kill — has its journal
// entry. Ten rounds on one SQLite file.
func TestKillRightAfterReplies(t *testing.T) {
	t.Parallel()
	const rounds, senders, perRound = 10, 8, 25
	c := startCore(t)
	db := filepath.Join(t.TempDir(), "gongbao.db")
	s := startSidecar(t, "sidecar", sidecarConfig{Core: c.Addr(), Gongbao: "store sqlite " + db})

	var answered []string // requestUUIDs whose verified reply the client read
	sent := 0
	for round := 1; round <= rounds; round++ {
		msgs := make(chan [2]string, senders*perRound)
		for range cap(msgs) {
			msg, id := newMessage(t, "insureRequest.xml")
			msgs <- [2]string{string(msg), id}
		}
		close(msgs)
		var (
			mu     sync.Mutex
			got    []string
			killed sync.Once
			wg     sync.WaitGroup
		)
		for range senders {
			wg.Go(func() {
				for m := range msgs {
					mu.Lock()
					sent++
					mu.Unlock()
					raw, err := s.Send([]byte(m[0]))
					if err != nil {
						return // the sidecar is gone
					}
					env, err := protocol.Parse(raw, protocol.Limits{})
					if err != nil || resultFlag(env) != "true" || env.RequestUUID == "" {
						t.Errorf("round %d: reply to %s: %v %s", round, m[1], err, clip(raw, 300))
						return
					}
					mu.Lock()
					got = append(got, m[1])
					n := len(got)
					mu.Unlock()
					if n == perRound {
						killed.Do(s.Kill) // right after the client read this reply
					}
				}
			})
		}
		wg.Wait()
		killed.Do(s.Kill)
		answered = append(answered, got...)
		restart := time.Now()
		s.Start()
		t.Logf("round %d: %d replies read before the kill; restarted in %s", round, len(got), time.Since(restart).Round(time.Millisecond))
	}
	missing := 0
	for _, id := range answered {
		if n := journalHas(t, s, id); n != 1 {
			missing++
			t.Errorf("request %s was answered but has %d journal entries, want 1", id, n)
		}
	}
	if acted := c.Effects(mockcore.OpProposals); acted > sent {
		t.Errorf("the core made %d proposals for %d requests", acted, sent)
	}
	t.Logf("%d rounds: %d requests sent, %d replies read by the client, %d of them missing from the journal", rounds, sent, len(answered), missing)
}

// holdingPlatform is 工保网's callback endpoint that never answers the
// first attempt of each callback (it waits until the sidecar is gone) and
// accepts the next ones; it records when each attempt arrived.
type holdingPlatform struct {
	srv *httptest.Server

	mu       sync.Mutex
	received map[string][]time.Time // requestUUID → arrivals
	bodies   map[string][]string
	held     chan string // requestUUIDs whose first attempt is being held
}

func startHoldingPlatform(t testing.TB) *holdingPlatform {
	t.Helper()
	p := &holdingPlatform{received: map[string][]time.Time{}, bodies: map[string][]string{}, held: make(chan string, 64)}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *holdingPlatform) serve(w http.ResponseWriter, r *http.Request) {
	at := time.Now()
	body, _ := io.ReadAll(r.Body)
	env, err := protocol.Parse(body, protocol.Limits{})
	if err != nil {
		http.Error(w, "bad xml", http.StatusBadRequest)
		return
	}
	p.mu.Lock()
	p.received[env.RequestUUID] = append(p.received[env.RequestUUID], at)
	p.bodies[env.RequestUUID] = append(p.bodies[env.RequestUUID], string(body))
	first := len(p.received[env.RequestUUID]) == 1
	p.mu.Unlock()
	if first {
		p.held <- env.RequestUUID
		<-r.Context().Done() // the attempt runs until the sidecar dies
		return
	}
	w.Write(protocol.BuildResponse(strings.TrimSuffix(env.Root, "Request")+"Response", protocol.NewUUID(),
		[]protocol.Element{{Name: "resultFlag", Text: "true"}, {Name: "resultMessage", Text: "成功"}}, testKey))
}

func (p *holdingPlatform) arrivals(id string) ([]time.Time, []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]time.Time(nil), p.received[id]...), append([]string(nil), p.bodies[id]...)
}

// TestKillMidCallAndMidAttempt: the sidecar on its default lease (2 min)
// and rescue timing is killed with SIGKILL while three requests wait for
// the core (which has acted) and two callbacks wait for the platform.
// After the restart the resends get a definitive answer within seconds
// (the records are unknown at once and retried with the same
// Idempotency-Key: the core replays, it does not act again), and the
// callbacks are attempted again within seconds, never sooner than 10 s
// after the interrupted attempt began, with the same body.
func TestKillMidCallAndMidAttempt(t *testing.T) {
	t.Parallel()
	const requests, callbacks = 3, 2
	c := startCore(t)
	platform := startHoldingPlatform(t)
	db := filepath.Join(t.TempDir(), "gongbao.db")
	s := startSidecar(t, "sidecar", sidecarConfig{
		Gongbao: fmt.Sprintf("store sqlite %s\n\t\tcallbacks {\n\t\t\tbase %s\n\t\t\tpoll_interval 100ms\n\t\t}", db, platform.srv.URL),
		Site:    fmt.Sprintf("handle /events/* {\n\t\tgongbao_notify\n\t}\n\thandle /gongbao* {\n\t\tgongbao\n\t\treverse_proxy %s\n\t}", c.Addr()),
	})

	// Callbacks mid-attempt.
	uuids := make([]string, callbacks)
	for i := range callbacks {
		uuids[i] = postEventUntilAccepted(t, s, "BD-CRASH", i, 20*time.Second).RequestUUID
	}
	for range callbacks {
		select {
		case <-platform.held:
		case <-time.After(20 * time.Second):
			t.Fatal("the callbacks' first attempts did not reach the platform")
		}
	}
	// Requests mid-call: the core has acted and holds its answers.
	msgs := make([][]byte, requests)
	ids := make([]string, requests)
	lost := make(chan error, requests)
	for i := range requests {
		msgs[i], ids[i] = newMessage(t, "insureRequest.xml")
		hold := c.HoldNext()
		go func() { _, err := s.Send(msgs[i]); lost <- err }()
		hold.WaitActed(t, replyTimeout)
	}
	s.Kill()
	for range requests {
		if err := <-lost; err == nil {
			t.Fatal("a request held at the core got a reply from the killed sidecar")
		}
	}

	restart := time.Now()
	s.Start()
	ready := time.Since(restart)
	for i, id := range ids {
		start := time.Now()
		resends := 0
		var env *protocol.Envelope
		for {
			env, _ = s.Post(t, msgs[i])
			resends++
			if !strings.Contains(resultMessage(env), msgInProgress) || time.Since(start) > settleBound {
				break
			}
		}
		assertAccepted(t, env)
		t.Logf("request %d: definitive answer %s after the restart was ready (%s after the kill), %d resend(s)",
			i, time.Since(start).Round(time.Millisecond), time.Since(restart).Round(time.Millisecond), resends)
		if resends != 1 || time.Since(start) > 5*time.Second {
			t.Errorf("request %s: %d resends over %s before a definitive answer, want the first within seconds", id, resends, time.Since(start))
		}
		calls := c.Calls(id)
		if actedCalls(calls) != 1 {
			t.Errorf("the core acted %d times for %s (calls %+v)", actedCalls(calls), id, calls)
		}
	}
	if n := c.Effects(mockcore.OpProposals); n != requests {
		t.Errorf("the core made %d proposals for %d requests", n, requests)
	}

	deadline := time.Now().Add(45 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for _, id := range uuids {
		var at []time.Time
		var bodies []string
		for {
			at, bodies = platform.arrivals(id)
			if len(at) >= 2 || time.Now().After(deadline) {
				break
			}
			<-tick.C
		}
		if len(at) != 2 {
			t.Fatalf("callback %s: %d attempts reached the platform, want 2", id, len(at))
		}
		gap, afterRestart := at[1].Sub(at[0]), at[1].Sub(restart)
		t.Logf("callback %s: attempted again %s after the interrupted attempt reached the platform, %s after the restart began (ready after %s)",
			id, gap.Round(time.Millisecond), afterRestart.Round(time.Millisecond), ready.Round(time.Millisecond))
		if gap < 10*time.Second {
			t.Errorf("callback %s attempted again %s after the interrupted attempt, want ≥ 10 s", id, gap)
		}
		if afterRestart > 20*time.Second {
			t.Errorf("callback %s attempted again %s after the restart, want within seconds", id, afterRestart)
		}
		if bodies[0] != bodies[1] {
			t.Errorf("callback %s was sent again with another body", id)
		}
	}
}

// TestSecondCaddyRunRefused: a second `caddy run` on the SQLite file of a
// running sidecar exits at once with an error naming the file and the
// owning process; the first keeps serving.
func TestSecondCaddyRunRefused(t *testing.T) {
	t.Parallel()
	c := startCore(t)
	db := filepath.Join(t.TempDir(), "gongbao.db")
	first := startSidecar(t, "first", sidecarConfig{Core: c.Addr(), Gongbao: "store sqlite " + db})
	first.mu.Lock()
	ownerPid := first.cmd.Process.Pid
	first.mu.Unlock()

	second := newSidecar(t, "second", sidecarConfig{Core: c.Addr(), Gongbao: "store sqlite " + db})
	start := time.Now()
	if err := second.launch(); err != nil {
		t.Fatal(err)
	}
	second.mu.Lock()
	exited := second.exited
	second.mu.Unlock()
	select {
	case <-exited:
	case <-time.After(20 * time.Second):
		t.Fatalf("the second caddy run still runs after %s (its log follows)\n%s", time.Since(start), second.logTail())
	}
	took := time.Since(start)
	second.mu.Lock()
	waitErr := second.waitErr
	second.cmd, second.exited = nil, nil
	second.mu.Unlock()
	log := second.logTail()
	if waitErr == nil {
		t.Errorf("the second caddy run exited with status 0")
	}
	for _, want := range []string{db, fmt.Sprintf("pid %d", ownerPid), "in use by another process"} {
		if !strings.Contains(log, want) {
			t.Errorf("the second caddy run's output does not name %q:\n%s", want, log)
		}
	}
	t.Logf("second caddy run exited after %s: %v", took.Round(time.Millisecond), waitErr)
	if i := strings.Index(log, "sqlite store "); i >= 0 {
		t.Logf("its message: %s", strings.SplitN(log[i:], "\n", 2)[0])
	}
	msg, _ := newMessage(t, "insureRequest.xml")
	env, _ := first.Post(t, msg)
	assertAccepted(t, env)
}
