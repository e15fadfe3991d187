package process

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/caddy-gongbao/gongbao/caddymodule/delivery"
	"github.com/caddy-gongbao/gongbao/caddymodule/protocol"
	"github.com/caddy-gongbao/gongbao/internal/mockcore"
)

// scalePlatform stands in for 工保网's callback endpoint in the scale-out
// tests. By policy-number prefix it answers at once, slowly (SLOW: after
// slowFor), not until released or the caller hangs up (HOLD), or refuses
// (DEAD). It records every callback it received, in arrival order.
type scalePlatform struct {
	srv     *httptest.Server
	slowFor time.Duration

	mu       sync.Mutex
	release  chan struct{}
	arrivals []arrival
	received map[string]int // requestUUID → callbacks received
	accepted map[string]int // requestUUID → callbacks accepted
	held     int
	badSig   int
}

type arrival struct {
	policy, root, uuid string
	at, answered       time.Time
}

func startScalePlatform(t testing.TB, slowFor time.Duration) *scalePlatform {
	t.Helper()
	p := &scalePlatform{slowFor: slowFor, release: make(chan struct{}),
		received: map[string]int{}, accepted: map[string]int{}}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(func() { p.Release(); p.srv.Close() })
	return p
}

// Release lets every held callback (and later HOLD ones) be answered.
func (p *scalePlatform) Release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.release:
	default:
		close(p.release)
	}
}

func (p *scalePlatform) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	env, err := protocol.Parse(body, protocol.Limits{})
	if err != nil {
		http.Error(w, "bad xml", http.StatusBadRequest)
		return
	}
	policy, _ := env.Text("policyNo")
	p.mu.Lock()
	i := len(p.arrivals)
	p.arrivals = append(p.arrivals, arrival{policy: policy, root: env.Root, uuid: env.RequestUUID, at: time.Now()})
	p.received[env.RequestUUID]++
	_, ok := protocol.VerifyAny(env.SignedValue(), env.Sign, []string{testKey})
	if !ok {
		p.badSig++
	}
	release := p.release
	p.mu.Unlock()

	flag := "true"
	switch {
	case strings.HasPrefix(policy, "HOLD"):
		p.mu.Lock()
		p.held++
		p.mu.Unlock()
		select {
		case <-release:
		case <-r.Context().Done():
			return // the sender is gone (killed) or gave up
		}
	case strings.HasPrefix(policy, "SLOW") && env.Root == "queryPolicyRequest":
		timer := time.NewTimer(p.slowFor) // the platform's own slowness
		defer timer.Stop()
		select {
		case <-timer.C:
		case <-r.Context().Done():
			return
		}
	case strings.HasPrefix(policy, "DEAD"):
		flag = "false"
	}
	if !ok {
		flag = "false"
	}
	p.mu.Lock()
	p.arrivals[i].answered = time.Now()
	if flag == "true" {
		p.accepted[env.RequestUUID]++
	}
	p.mu.Unlock()
	w.Write(protocol.BuildResponse(strings.TrimSuffix(env.Root, "Request")+"Response", protocol.NewUUID(),
		[]protocol.Element{{Name: "resultFlag", Text: flag}, {Name: "resultMessage", Text: "成功"}}, testKey))
}

func (p *scalePlatform) heldNow() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.held
}

func (p *scalePlatform) acceptedOf(uuid string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted[uuid]
}

func (p *scalePlatform) receivedOf(uuid string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.received[uuid]
}

func (p *scalePlatform) arrivalsOf(policy string) []arrival {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []arrival
	for _, a := range p.arrivals {
		if a.policy == policy {
			out = append(out, a)
		}
	}
	return out
}

// pollUntil calls cond on a ticker until it holds or bound passes; it
// reports whether cond held.
func pollUntil(bound time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(bound)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		<-tick.C
	}
	return true
}

// postEvent posts one event to a sidecar's intake as the core would.
func postEvent(s *sidecar, event, key, body string) (int, eventAnswer, error) {
	req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/events/%s", s.HTTPPort, event), strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, eventAnswer{}, err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var a eventAnswer
	if resp.StatusCode/100 == 2 {
		if err := json.Unmarshal(data, &a); err != nil {
			return resp.StatusCode, a, fmt.Errorf("answer %s: %w", data, err)
		}
	}
	return resp.StatusCode, a, nil
}

// mustPostEvent posts an event and fails the test unless it is accepted.
func mustPostEvent(t *testing.T, s *sidecar, event, key, body string) eventAnswer {
	t.Helper()
	status, a, err := postEvent(s, event, key, body)
	if err != nil || status/100 != 2 || a.RequestUUID == "" {
		t.Fatalf("%s: event %s: %d %+v %v", s.name, key, status, a, err)
	}
	return a
}

func paid(policy string) string {
	return fmt.Sprintf(`{"eventId":"paid-%s","policyNo":%q,"proposalNo":"TB-%s","payType":"3",`+
		`"paidAt":"2026-11-27T10:00:00+08:00","policyUrl":"http://core.example/p.pdf"}`, policy, policy, policy)
}

func invoiced(policy string) string {
	return fmt.Sprintf(`{"eventId":"inv-%s","policyNo":%q,"downloadUrl":"http://core.example/i.pdf"}`, policy, policy)
}

// adminDelivery is the admin API's view of a delivery.
type adminDelivery struct {
	State    string `json:"state"`
	Attempts []struct {
		Outcome  string `json:"outcome"`
		Error    string `json:"error"`
		Instance string `json:"instance"`
	} `json:"attempts"`
}

func getDelivery(t *testing.T, s *sidecar, id int64) adminDelivery {
	t.Helper()
	status, body, err := s.Admin(http.MethodGet, fmt.Sprintf("/gongbao/deliveries/%d", id), nil)
	if err != nil || status != http.StatusOK {
		t.Fatalf("%s: delivery %d: %d %s %v", s.name, id, status, body, err)
	}
	var d adminDelivery
	if err := json.Unmarshal(body, &d); err != nil {
		t.Fatal(err)
	}
	return d
}

// scaleSidecarConfig is one instance of the scale-out tests: the platform
// endpoint, the events intake, a PostgreSQL store shared with the others,
// short leases and rescue times so that recovery fits in a test.
func scaleSidecarConfig(core, dsn, schema, name, platform string) sidecarConfig {
	return sidecarConfig{
		Core: core,
		Gongbao: postgresStore(dsn, schema) + fmt.Sprintf(`
		instance_name %s
		idempotency {
			lease 6s
			wait_in_flight 1s
		}
		callbacks {
			base %s
			poll_interval 100ms
			attempt_timeout 2s
			rescue_after 13s
			refusal dead_letter
		}`, name, platform),
		Site: fmt.Sprintf(`handle /gongbao* {
		gongbao
		reverse_proxy %s {
			transport http {
				dial_timeout 2s
			}
		}
	}
	handle /events/* {
		gongbao_notify
	}`, core),
	}
}

// TestScaleOutTwoInstancesPostgres: two sidecars on one PostgreSQL schema
// in front of one core behave as one (issue 16):
//   - a resend to the other instance after the first answered gets the
//     stored reply, byte for byte, without a core call; the journal names
//     the instance of each exchange;
//   - one event posted to both intakes at once makes one delivery;
//   - per-policy order holds across instances (an invoice callback queued
//     on B waits for the slow payment callback queued on A);
//   - a dead letter retried on both admin APIs at once: one 200, one 409;
//   - kill -9 of the instance with callbacks and a core call in flight:
//     the other delivers every callback (only ever with the requestUUID
//     the intake answered), shows the interrupted attempt as "instance
//     died during the attempt" and logs the rescue; the in-flight request
//     is answered 处理中 until its lease expires, then resolved with the
//     same Idempotency-Key at the core, which acts once.
func TestScaleOutTwoInstancesPostgres(t *testing.T) {
	t.Parallel()
	dsn := postgresDSN(t)
	schema := freshSchema(t, dsn)
	plat := startScalePlatform(t, 1500*time.Millisecond)
	c := startCore(t)
	sc := startSidecars(t,
		scaleSidecarConfig(c.Addr(), dsn, schema, "scale-a", plat.srv.URL),
		scaleSidecarConfig(c.Addr(), dsn, schema, "scale-b", plat.srv.URL))
	a, b := sc[0], sc[1]
	byName := map[string]*sidecar{"scale-a": a, "scale-b": b}
	requests := 0

	// A resend to the other instance after the first answered.
	msg, id := newMessage(t, "insureRequest.xml")
	envA, rawA := a.Post(t, msg)
	assertAccepted(t, envA)
	_, rawB := b.Post(t, msg)
	requests += 2
	if !bytes.Equal(rawA, rawB) {
		t.Errorf("the resend to B got another reply:\n%s\n%s", rawB, rawA)
	}
	if calls := c.Calls(id); len(calls) != 1 {
		t.Errorf("core calls for the resent request: %d, want 1", len(calls))
	}
	status, body, err := b.Admin(http.MethodGet, "/gongbao/journal?request_uuid="+id, nil)
	var journal struct {
		Exchanges []struct {
			Instance string `json:"instance"`
			ReplayOf string `json:"replay_of"`
		} `json:"exchanges"`
	}
	if err != nil || status != http.StatusOK || json.Unmarshal(body, &journal) != nil {
		t.Fatalf("journal: %d %s %v", status, body, err)
	}
	if !pollUntil(10*time.Second, func() bool {
		_, body, _ = b.Admin(http.MethodGet, "/gongbao/journal?request_uuid="+id, nil)
		return json.Unmarshal(body, &journal) == nil && len(journal.Exchanges) == 2
	}) || journal.Exchanges[0].Instance != "scale-a" || journal.Exchanges[1].Instance != "scale-b" {
		t.Errorf("journal of the resent request: %+v, want the exchange by scale-a, the replay by scale-b", journal.Exchanges)
	}

	// One event posted to both intakes at once: one delivery.
	var both [2]eventAnswer
	var wg sync.WaitGroup
	for i, s := range []*sidecar{a, b} {
		wg.Go(func() { both[i] = mustPostEvent(t, s, "policy-paid", "paid-BOTH-1", paid("BOTH-1")) })
	}
	wg.Wait()
	if both[0] != both[1] {
		t.Errorf("the same event on both intakes: %+v and %+v, want one delivery", both[0], both[1])
	}

	// Per-policy order across instances.
	order := []eventAnswer{
		mustPostEvent(t, a, "policy-paid", "paid-SLOW-1", paid("SLOW-1")),
		mustPostEvent(t, b, "invoice-issued", "inv-SLOW-1", invoiced("SLOW-1")),
	}

	// A dead letter retried on both admin APIs at once.
	dead := mustPostEvent(t, a, "policy-paid", "paid-DEAD-1", paid("DEAD-1"))
	if !pollUntil(30*time.Second, func() bool { return getDelivery(t, b, dead.ID).State == "dead" }) {
		t.Fatalf("the refused callback did not become a dead letter")
	}
	var codes [2]int
	for i, s := range []*sidecar{a, b} {
		wg.Go(func() {
			codes[i], _, _ = s.Admin(http.MethodPost, fmt.Sprintf("/gongbao/deliveries/%d/retry", dead.ID), nil)
		})
	}
	wg.Wait()
	if got := slices.Sorted(slices.Values(codes[:])); got[0] != http.StatusOK || got[1] != http.StatusConflict {
		t.Errorf("retry on both admin APIs at once: %v, want one 200 and one 409", codes)
	}

	// Callbacks in flight: the platform holds every HOLD callback.
	const held = 6
	var hold []eventAnswer
	for n := range held {
		s := []*sidecar{a, b}[n%2]
		policy := fmt.Sprintf("HOLD-%d", n)
		hold = append(hold, mustPostEvent(t, s, "policy-paid", "paid-"+policy, paid(policy)))
	}
	if !pollUntil(30*time.Second, func() bool { return plat.heldNow() >= 1 }) {
		t.Fatal("no callback reached the platform")
	}
	// The victim is an instance with an attempt of a held callback running
	// (another callback's attempt may look running for the instant it is
	// sent, and be over by the kill).
	heldIDs := make([]int64, len(hold))
	for i, e := range hold {
		heldIDs[i] = e.ID
	}
	var victimName string
	if !pollUntil(10*time.Second, func() bool {
		victimName = runningAttemptInstance(t, dsn, schema, heldIDs)
		return victimName != ""
	}) {
		t.Fatal("no attempt recorded as running while the platform holds one")
	}
	victim := byName[victimName]
	survivor := a
	if victim == a {
		survivor = b
	}
	// And a core call in flight on the victim.
	msg2, id2 := newMessage(t, "insureRequest.xml")
	proposalsBefore := c.Effects(mockcore.OpProposals)
	coreHold := c.HoldNext()
	go victim.Send(msg2) //nolint:errcheck // the victim is killed before it answers
	coreHold.WaitActed(t, 30*time.Second)

	killed := time.Now()
	victim.Kill()
	plat.Release()

	// The in-flight request: 处理中 until its lease expires, then resolved.
	env2, _ := survivor.PostUntil(t, msg2, 60*time.Second, msgInProgress)
	requests += 2
	assertAccepted(t, env2)
	requestRecovered := time.Since(killed)
	calls := c.Calls(id2)
	if len(calls) != 2 || c.Effects(mockcore.OpProposals) != proposalsBefore+1 {
		t.Errorf("the in-flight request: %d core calls (%+v), %d proposals made, want 2 calls under one key and 1 proposal",
			len(calls), calls, c.Effects(mockcore.OpProposals)-proposalsBefore)
	}

	// Every callback delivered, only ever under its own requestUUID.
	all := append(append([]eventAnswer{both[0]}, order...), hold...)
	if !pollUntil(120*time.Second, func() bool {
		for _, e := range all {
			if plat.acceptedOf(e.RequestUUID) == 0 {
				return false
			}
		}
		return true
	}) {
		for _, e := range all {
			t.Errorf("delivery %d: received %d, accepted %d", e.ID, plat.receivedOf(e.RequestUUID), plat.acceptedOf(e.RequestUUID))
		}
		t.FailNow()
	}
	callbacksRecovered := time.Since(killed)
	received, dup := 0, 0
	for _, e := range append(all, dead) {
		n := plat.receivedOf(e.RequestUUID)
		received += n
		if n > 1 {
			dup += n - 1
		}
	}
	plat.mu.Lock()
	foreign := len(plat.arrivals) - received
	badSig := plat.badSig
	plat.mu.Unlock()
	if foreign != 0 || badSig != 0 {
		t.Errorf("%d callbacks under an unknown requestUUID, %d not verifying", foreign, badSig)
	}

	// Order: the invoice callback (queued on B) went out after the payment
	// callback (queued on A) was answered.
	arr := plat.arrivalsOf("SLOW-1")
	if len(arr) < 2 || arr[0].root != "queryPolicyRequest" || arr[len(arr)-1].at.Before(arr[0].answered) {
		t.Errorf("callbacks of one policy out of order across instances: %+v", arr)
	}

	// The interrupted attempt is on record, and the rescue in the log.
	died := countRows(t, dsn, schema, "gongbao_delivery_attempts", "error = $1 AND instance = $2",
		delivery.NoteInstanceDied, victimName)
	if died == 0 {
		t.Errorf("no attempt of %s recorded as %q", victimName, delivery.NoteInstanceDied)
	}
	if log, _ := os.ReadFile(survivor.logPath); !bytes.Contains(log, []byte("rescued a callback")) {
		t.Errorf("%s did not log the rescue", survivor.name)
	}
	t.Logf("requests %d, core calls %d; callbacks expected %d, accepted all, received %d posts (%d duplicates, same requestUUID); "+
		"killed %s with %d attempts cut; in-flight request answered %s after the kill, callbacks all delivered %s after",
		requests, len(c.Calls("")), len(all), received, dup, victimName, died,
		requestRecovered.Round(100*time.Millisecond), callbacksRecovered.Round(100*time.Millisecond))
}

// runningAttemptInstance names the instance of an attempt of one of the
// given deliveries recorded as running, read straight from PostgreSQL
// ("" if none).
func runningAttemptInstance(t testing.TB, dsn, schema string, deliveries []int64) string {
	t.Helper()
	for _, name := range []string{"scale-a", "scale-b"} {
		if countRows(t, dsn, schema, "gongbao_delivery_attempts", "ended = 0 AND instance = $1 AND delivery_id = ANY($2)", name, deliveries) > 0 {
			return name
		}
	}
	return ""
}

// stopGracefully sends SIGTERM, as systemd or a rolling restart does,
// and waits until the process exits; it returns how long that took.
func stopGracefully(t *testing.T, s *sidecar, bound time.Duration) time.Duration {
	t.Helper()
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.mu.Unlock()
	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(bound):
		t.Fatalf("%s still running %s after SIGTERM", s.name, bound)
	}
	took := time.Since(start)
	s.mu.Lock()
	s.cmd, s.exited = nil, nil
	s.mu.Unlock()
	return took
}

// reloadConfig makes the running sidecar load its config again (the same
// config, forced), as `caddy reload` does.
func reloadConfig(t *testing.T, s *sidecar) {
	t.Helper()
	status, cfg, err := s.Admin(http.MethodGet, "/config/", nil)
	if err != nil || status != http.StatusOK {
		t.Fatalf("reading the config: %d %v", status, err)
	}
	req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/load", s.AdminPort), bytes.NewReader(cfg))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Cache-Control", "must-revalidate")
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("reload: %d %s", resp.StatusCode, data)
	}
}

// TestStopAndReloadSlowPlatform: the platform takes 11 s to answer a
// callback, longer than the fixed 10 s a stop used to wait; the attempt
// timeout is 15 s. A reload during the attempt does not touch it, and a
// graceful stop (SIGTERM) waits for it: one POST, recorded as accepted,
// nothing left to send again.
func TestStopAndReloadSlowPlatform(t *testing.T) {
	t.Parallel()
	const slow = 11 * time.Second
	dsn := postgresDSN(t)
	schema := freshSchema(t, dsn)
	plat := startScalePlatform(t, slow)
	c := startCore(t)
	cfg := scaleSidecarConfig(c.Addr(), dsn, schema, "slow-a", plat.srv.URL)
	cfg.Gongbao = strings.Replace(cfg.Gongbao, "attempt_timeout 2s\n\t\t\trescue_after 13s", "attempt_timeout 15s", 1)
	s := startSidecar(t, "sidecar", cfg)

	e := mustPostEvent(t, s, "policy-paid", "paid-SLOW-9", paid("SLOW-9"))
	if !pollUntil(30*time.Second, func() bool { return plat.receivedOf(e.RequestUUID) == 1 }) {
		t.Fatal("the callback never reached the platform")
	}
	sent := time.Now()
	reloadConfig(t, s)
	took := stopGracefully(t, s, 40*time.Second)
	if got := plat.receivedOf(e.RequestUUID); got != 1 || plat.acceptedOf(e.RequestUUID) != 1 {
		t.Errorf("the platform received %d copies (%d answered), want 1 answered", got, plat.acceptedOf(e.RequestUUID))
	}
	if n := countRows(t, dsn, schema, "gongbao_delivery_attempts", "outcome = 'accepted' AND ended = 1"); n != 1 {
		t.Errorf("%d accepted attempts recorded, want 1", n)
	}
	if n := countRows(t, dsn, schema, "gongbao_deliveries", "state = 'delivered'"); n != 1 {
		t.Errorf("%d deliveries delivered, want 1", n)
	}
	t.Logf("platform answering after %s: reload, then SIGTERM %s into the attempt; the stop took %s",
		slow, (time.Since(sent) - took).Round(100*time.Millisecond), took.Round(100*time.Millisecond))
}
