package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/caddy-gongbao/gongbao/caddymodule/gateway"
	"github.com/caddy-gongbao/gongbao/caddymodule/protocol"
)

// TestSmoke runs the benchmark's smoke mode end to end: it builds Caddy
// and the reference core (plain builds, even under -race), runs every
// variant and both callback backends for a second or so, and fails when
// any of them did not answer successfully. It asserts nothing about
// timing. PostgreSQL rows are skipped when no server is reachable, unless
// GONGBAO_REQUIRE_POSTGRES=1.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end benchmark smoke run (builds Caddy); skipped with -short")
	}
	out := filepath.Join(t.TempDir(), "PERFORMANCE.md")
	prose := "# Performance\n\nHand-written text.\n\n" + beginMarker + "\nold table\n" + endMarker + "\n\nMore text.\n"
	if err := os.WriteFile(out, []byte(prose), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout bytes.Buffer
	err := run(t.Context(), []string{"-smoke", "-out", out}, &stdout, t.Output())
	t.Logf("report:\n%s", stdout.String())
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	for _, want := range []string{"Hand-written text.", "More text.", "| (a) |", "| (b) |", "| (c) |", "| (d) |", "| sqlite |", "| postgres |",
		"#### Open loop at 25 % of (b)'s closed-loop throughput", "at 25 % of (b)'s throughput"} {
		if !strings.Contains(text, want) {
			t.Errorf("the report file lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "old table") {
		t.Error("the generated part was not replaced")
	}
}

func TestUUIDsAreFreshAndWellFormed(t *testing.T) {
	ids := newUUIDs()
	shape := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-8[0-9a-f]{3}-[0-9a-f]{12}$`)
	seen := map[string]bool{}
	for range 1000 {
		id := ids.next()
		if !shape.MatchString(id) {
			t.Fatalf("malformed UUID %q", id)
		}
		if seen[id] {
			t.Fatalf("UUID %q given twice", id)
		}
		seen[id] = true
	}
}

// TestPoolMessagesStaySigned: overwriting the requestUUID of a pool
// message keeps its signature valid (the head is not signed), and the
// pool's messages differ from each other.
func TestPoolMessagesStaySigned(t *testing.T) {
	p, err := newMessagePool(filepath.Join("..", "..", ".."), 3, signKey)
	if err != nil {
		t.Fatal(err)
	}
	tr := xmlTargeter("http://127.0.0.1:1/gongbao", p, newUUIDs())
	signs := map[string]bool{}
	seenUUIDs := map[string]bool{}
	for range 6 {
		var tgt vegeta.Target
		if err := tr(&tgt); err != nil {
			t.Fatal(err)
		}
		env, err := protocol.Parse(tgt.Body, protocol.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := protocol.VerifyAny(env.SignedValue(), env.Sign, []string{signKey}); !ok {
			t.Fatal("a pool message does not verify after its requestUUID was replaced")
		}
		signs[env.Sign] = true
		seenUUIDs[env.RequestUUID] = true
	}
	if len(signs) != 3 || len(seenUUIDs) != 6 {
		t.Fatalf("got %d distinct bodies and %d distinct requestUUIDs, want 3 and 6", len(signs), len(seenUUIDs))
	}
	for i, body := range p.json {
		if !bytes.Contains(body, []byte(`"applicant"`)) {
			t.Fatalf("pool JSON %d is not the core's proposal request: %s", i, body)
		}
	}
}

func TestEventTargeterStopsAfterItsCount(t *testing.T) {
	tr := eventTargeter("http://127.0.0.1:1/events/policy-paid", 0, 2, newUUIDs())
	var tgt vegeta.Target
	for range 2 {
		if err := tr(&tgt); err != nil {
			t.Fatal(err)
		}
	}
	if err := tr(&tgt); err != vegeta.ErrNoTargets {
		t.Fatalf("third target: got %v, want ErrNoTargets", err)
	}
}

// TestGongbaoCheckRefusesWhatIsNotASignedSuccess is what makes the smoke
// run fail on a broken sidecar.
func TestGongbaoCheckRefusesWhatIsNotASignedSuccess(t *testing.T) {
	reply := func(flag, key string) []byte {
		return protocol.BuildResponse("insureResponse", protocol.NewUUID(), []protocol.Element{
			{Name: "resultFlag", Text: flag}, {Name: "resultMessage", Text: "x"},
		}, key)
	}
	check := gongbaoOK(signKey)
	if err := check(http.StatusOK, reply("true", signKey), true); err != nil {
		t.Fatalf("a signed success was refused: %v", err)
	}
	if err := check(http.StatusOK, reply("false", signKey), true); err == nil || errors.Is(err, errShed) {
		t.Fatalf("resultFlag=false with another message: got %v", err)
	}
	busy := protocol.BuildResponse("insureResponse", protocol.NewUUID(), []protocol.Element{
		{Name: "resultFlag", Text: "false"}, {Name: "resultMessage", Text: gateway.MsgBusy},
	}, signKey)
	if err := check(http.StatusOK, busy, false); !errors.Is(err, errShed) {
		t.Fatalf("a signed busy reply: got %v, want errShed", err)
	}
	for name, c := range map[string]struct {
		code int
		body []byte
		full bool
	}{
		"resultFlag=false": {http.StatusOK, reply("false", signKey), false},
		"wrong signature":  {http.StatusOK, reply("true", "another key"), true},
		"HTTP 502":         {http.StatusBadGateway, reply("true", signKey), false},
		"empty body":       {http.StatusOK, nil, false},
	} {
		if err := check(c.code, c.body, c.full); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestWriteReportWithoutMarkersWritesTheWholeFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.md")
	if err := writeReport(path, "table\n"); err != nil {
		t.Fatal(err)
	}
	if err := writeReport(path, "newer table\n"); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	if got := string(data); strings.Count(got, beginMarker) != 1 || !strings.Contains(got, "newer table") || strings.Contains(got, "\ntable") {
		t.Fatalf("unexpected file:\n%s", got)
	}
}

// TestEnqueuePostsRefusedEventsAgain: events the intake refuses with 503
// store_unavailable are replaced by new ones until the count is stored,
// every one for its own policy.
func TestEnqueuePostsRefusedEventsAgain(t *testing.T) {
	var mu sync.Mutex
	policies := map[string]bool{}
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev struct{ PolicyNo string }
		if err := json.NewDecoder(r.Body).Decode(&ev); err != nil {
			t.Error(err)
		}
		mu.Lock()
		defer mu.Unlock()
		calls++
		if calls%4 == 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `{"error":"store_unavailable"}`)
			return
		}
		if policies[ev.PolicyNo] {
			t.Errorf("policy %s stored twice", ev.PolicyNo)
		}
		policies[ev.PolicyNo] = true
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, `{"id":1,"requestUUID":"x","state":"pending"}`)
	}))
	defer srv.Close()
	res, stored := enqueue(t.Context(), srv.URL+"/events/policy-paid", 40, 4, newUUIDs())
	if stored != 40 || res.failed() || res.Shed == 0 {
		t.Fatalf("stored %d (want 40), shed %d, failures %v", stored, res.Shed, res.Failures)
	}
	if len(policies) != 40 {
		t.Fatalf("%d distinct policies stored, want 40", len(policies))
	}
}

func TestParseCPUStat(t *testing.T) {
	// user nice system idle iowait irq softirq steal guest guest_nice
	s, err := parseCPUStat("cpu  100 5 30 800 20 1 4 0 50 0")
	if err != nil {
		t.Fatal(err)
	}
	if s.total != 960 || s.busy != 140 {
		t.Fatalf("got busy %d of %d, want 140 of 960 (guest is inside user)", s.busy, s.total)
	}
	for _, bad := range []string{"cpu0 1 2 3 4 5", "intr 1 2 3 4 5", "cpu 1 x 3 4 5", "cpu 1 2"} {
		if _, err := parseCPUStat(bad); err == nil {
			t.Errorf("%q: accepted", bad)
		}
	}
	var m busyMeter
	if m.fraction() != -1 {
		t.Error("an empty meter claims a busy share")
	}
	m.busy, m.total = 100, 200 // 2 s of CPU time, 1 s busy
	m.addOwn(500*time.Millisecond, nil)
	if m.fraction() != 0.5 || m.ownFraction() != 0.25 {
		t.Fatalf("busy %v, own %v; want 0.5 and 0.25", m.fraction(), m.ownFraction())
	}
	m.addOwn(0, errors.New("no /proc"))
	if m.ownFraction() != -1 {
		t.Error("a failed own sample still gives a share")
	}
	m.unknown = true
	m.busy, m.total = 1, 2
	if m.fraction() != -1 {
		t.Error("a meter with a failed sample claims a busy share")
	}
}

func TestParseLoads(t *testing.T) {
	got, err := parseLoads(" 0.5, 0.25 ,")
	if err != nil || len(got) != 2 || got[0] != 0.5 || got[1] != 0.25 {
		t.Fatalf("got %v, %v", got, err)
	}
	if loadsText(got) != defaultOpenLoads {
		t.Fatalf("loadsText = %q", loadsText(got))
	}
	for _, bad := range []string{"", "0", "-0.5", "2.5", "x", "0.5,0.5", "0.1,0.2,0.3,0.4,0.5,0.6"} {
		if _, err := parseLoads(bad); err == nil {
			t.Errorf("%q: accepted", bad)
		}
	}
}

// TestCommandLineRepeatsTheRun: the printed command parses back into the
// same settings.
func TestCommandLineRepeatsTheRun(t *testing.T) {
	args := []string{"-duration", "8s", "-rounds", "2", "-variants", "c,a", "-callbacks=false", "-open-loads", "0.5,0.1", "-pool", "16"}
	o, err := parseOptions(args, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	cmd := commandLine(o)
	again, err := parseOptions(strings.Fields(cmd)[6:], io.Discard)
	if err != nil {
		t.Fatalf("%s: %v", cmd, err)
	}
	if fmt.Sprint(again.duration, again.rounds, again.variants, again.callbacks, again.openLoads, again.poolSize) !=
		fmt.Sprint(o.duration, o.rounds, o.variants, o.callbacks, o.openLoads, o.poolSize) {
		t.Fatalf("%s does not repeat %v", cmd, args)
	}
	if d, _ := parseOptions(nil, io.Discard); strings.Contains(commandLine(d), "-open-loads") || strings.Contains(commandLine(d), "-variants") {
		t.Fatalf("default settings printed: %s", commandLine(d))
	}
}

// TestReportOpenLoads renders the open-loop tables and goal rows from
// made-up results: the goal only at half load, the lighter loads as
// informational rows, unknown busy shares (outside Linux) as "—".
func TestReportOpenLoads(t *testing.T) {
	phase := func(f float64, rate int, p99 time.Duration, busy float64) openPhase {
		return openPhase{fraction: f, rate: rate, res: attackResult{Rate: float64(rate), P99: p99}, busy: busy, ownBusy: busy}
	}
	result := func(key string, p99Half, p99Quarter time.Duration, busy float64) inboundResult {
		v, _ := variantByKey(key)
		return inboundResult{v: v, closed: attackResult{Throughput: 4000}, peakRSS: 1024,
			opens: []openPhase{phase(0.5, 2000, p99Half, busy), phase(0.25, 1000, p99Quarter, -1)}}
	}
	rep := &report{opts: options{openLoads: []float64{0.5, 0.25}, rounds: 1},
		inbound: []inboundResult{result("b", 90*time.Millisecond, 4*time.Millisecond, 0.97), result("c", 100*time.Millisecond, 4500*time.Microsecond, 0.99)}}
	md := rep.markdown()
	for _, want := range []string{
		"| (c) p99 added over (b) ≤ 1 ms at half load | +10.00 ms; machine CPU busy: (b) 97 % (own 97 %), (c) 99 % (own 99 %) | **no** |",
		"#### Open loop at 25 % of (b)'s closed-loop throughput",
		"| (c) | gongbao, idempotency off, journal off | 1000 (1000) | 0.00 ms | 4.50 ms | +0.50 ms | — | — |",
		"| (c) p99 added over (b) at 25 % of (b)'s throughput (machine CPU busy not measured; informational) | +0.50 ms; machine CPU busy: (b) —, (c) — | n/a |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("the report lacks %q:\n%s", want, md)
		}
	}
	rep.opts.openLoads = []float64{0.25, 0.5}
	if md := rep.markdown(); !strings.Contains(md, "at half load | not measured: the first -open-loads is 25 %, not 0.5 | n/a |") {
		t.Errorf("a first load other than 0.5 was judged as the half load:\n%s", md)
	}
}
