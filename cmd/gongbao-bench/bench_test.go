package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	vegeta "github.com/tsenart/vegeta/v12/lib"

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
	for _, want := range []string{"Hand-written text.", "More text.", "| (a) |", "| (b) |", "| (c) |", "| (d) |", "| sqlite |", "| postgres |"} {
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
	p, err := newMessagePool(filepath.Join("..", ".."), 3, signKey)
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
		{Name: "resultFlag", Text: "false"}, {Name: "resultMessage", Text: msgBusy},
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
