package caddymodule

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// adminStandIn serves the admin API's endpoints from the fixture's app,
// with the admin API's own routes and handlers.
func adminStandIn(t *testing.T, app *App) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := serveAdmin(app, w, r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// runCommand runs a gongbao subcommand and returns what it printed.
func runCommand(t *testing.T, cmd *cobra.Command, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	if err := cmd.Execute(); err != nil {
		t.Fatalf("%s %v: %v\n%s", cmd.Name(), args, err, out.String())
	}
	return out.String()
}

// TestJournalCommandText: `caddy gongbao journal` prints a readable time
// line by default — XML indented, not escaped; durations like 3ms — and
// the admin API's JSON with --json. A look-up by proposal number finds the
// payment callback (through the link), by policy number the insure
// exchange.
func TestJournalCommandText(t *testing.T) {
	f, res := newLifecycleFixture(t)
	addr := adminStandIn(t, f.app)

	byProposal := runCommand(t, journalCommand(), "--address", addr, "--proposal", res.ProposalNo)
	for _, want := range []string{"insureRequest  Insure · 投保  ok", "queryPolicyRequest", "surrendRequest",
		"  platform request:\n      <?xml", "\n        <requestHead>\n", "attempt 1 "} {
		if !strings.Contains(byProposal, want) {
			t.Errorf("the text view by proposal lacks %q:\n%s", want, byProposal)
		}
	}
	if strings.Contains(byProposal, `\u003c`) {
		t.Error("the text view escapes XML")
	}
	if !regexp.MustCompile(`  ok  [0-9.]+(µs|ms|s)  core HTTP 201`).MatchString(byProposal) {
		t.Errorf("no human duration in:\n%s", byProposal)
	}
	byPolicy := runCommand(t, journalCommand(), "--address", addr, "--policy", res.PolicyNo)
	if !strings.Contains(byPolicy, "insureRequest") {
		t.Error("a look-up by policy number misses the insure exchange")
	}

	raw := runCommand(t, journalCommand(), "--address", addr, "--policy", res.PolicyNo, "--json")
	var answer struct {
		Exchanges []map[string]any `json:"exchanges"`
		Callbacks []map[string]any `json:"callbacks"`
	}
	if err := json.Unmarshal([]byte(raw), &answer); err != nil || len(answer.Exchanges) != 5 || len(answer.Callbacks) != 3 {
		t.Errorf("--json: %v, %d exchanges, %d callbacks", err, len(answer.Exchanges), len(answer.Callbacks))
	}
}

// TestDeliveriesCommandText: list as a table, show with every attempt,
// stats in words; --json for machines.
func TestDeliveriesCommandText(t *testing.T) {
	f, res := newLifecycleFixture(t)
	addr := adminStandIn(t, f.app)

	list := runCommand(t, deliveriesCommand(), "--address", addr, "list")
	if !strings.HasPrefix(list, "ID  STATE") || strings.Count(list, "delivered") != 3 || !strings.Contains(list, res.PolicyNo) {
		t.Errorf("list:\n%s", list)
	}
	show := runCommand(t, deliveriesCommand(), "--address", addr, "show", "1")
	for _, want := range []string{"queryPolicyRequest  Payment callback", "  signed callback:\n", "<proposalNo>" + res.ProposalNo + "</proposalNo>",
		"attempt 1 ", "HTTP 200  accepted", "platform's reply:"} {
		if !strings.Contains(show, want) {
			t.Errorf("show lacks %q:\n%s", want, show)
		}
	}
	stats := runCommand(t, deliveriesCommand(), "--address", addr, "stats")
	if !strings.Contains(stats, "delivered  3") {
		t.Errorf("stats:\n%s", stats)
	}
	raw := runCommand(t, deliveriesCommand(), "--address", addr, "show", "1", "--json")
	var d struct {
		ID       int64 `json:"id"`
		Attempts []struct {
			Duration int64 `json:"duration"`
		} `json:"attempts"`
	}
	if err := json.Unmarshal([]byte(raw), &d); err != nil || d.ID != 1 || len(d.Attempts) != 1 {
		t.Errorf("show --json: %v %+v\n%s", err, d, raw)
	}
}
