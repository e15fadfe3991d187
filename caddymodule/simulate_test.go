package caddymodule_test

import (
	"bytes"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddy-gongbao/gongbao/caddymodule"
	"github.com/caddy-gongbao/gongbao/internal/mockcore"
)

// simulatePersonalData is personal data in the simulator's messages that
// must never reach its output unmasked.
var simulatePersonalData = []string{
	"浙江宏达建设工程有限公司", "13858012345", "91330106MA2GL8XK3X", "杭州市城市建设发展有限公司",
	"13631292501", "913301007042061234", "1202020209000012345", "finance@hongda-build.example.com",
}

// eventCore is the reference core posting its events to the test Caddy's
// intake, as in the quick start.
func eventCore(t *testing.T) *coreFixture {
	t.Helper()
	fx := &coreFixture{}
	fx.srv = httptest.NewServer(http.HandlerFunc(fx.serve))
	fx.core = mockcore.New(mockcore.Config{PublicURL: fx.srv.URL, EventsURL: eventsSite})
	t.Cleanup(func() { fx.srv.Close(); fx.core.Close() })
	return fx
}

// freeAddr is a loopback address nothing listens on, for the simulator's
// callback receiver.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// runSimulate runs `caddy gongbao simulate` in-process against the test
// Caddy, its receiver on addr, and returns its output and exit status.
func runSimulate(t *testing.T, addr string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return runSimulateArgs(t, append([]string{"--url", sidecarURL, "--callback-listen", addr,
		"--key-env", "GONGBAO_TEST_KEY", "--timeout", "60s"}, args...)...)
}

func runSimulateArgs(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := caddymodule.SimulateCommandForTest()
	var out, errOut bytes.Buffer
	cmd.SetArgs(args)
	cmd.SilenceUsage = true // as under caddy's root command
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	err := cmd.Execute()
	if code = caddymodule.ExitStatusForTest(err); err != nil {
		errOut.WriteString(err.Error())
	}
	all := out.String() + errOut.String()
	if strings.Contains(all, testKey) {
		t.Fatal("the simulator printed the key")
	}
	for _, p := range simulatePersonalData {
		if strings.Contains(all, p) {
			t.Errorf("the simulator printed %q unmasked", p)
		}
	}
	t.Logf("simulate exit %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errOut.String())
	return out.String(), errOut.String(), code
}

// TestSimulateLifecycle: the simulator runs the whole lifecycle through
// real Caddy, the sidecar and the reference core, receiving the three
// callbacks itself, and exits 0.
func TestSimulateLifecycle(t *testing.T) {
	fx := eventCore(t)
	addr := freeAddr(t)
	startSidecar(t, callbackConfig(t, fx.srv.Listener.Addr().String(), "http://"+addr))

	stdout, _, code := runSimulate(t, addr, "--invoice-type", "2")
	if code != 0 {
		t.Fatalf("simulate exit %d, want 0", code)
	}
	for _, want := range []string{"ok: lifecycle complete", "queryPolicyRequest", "queryInvoiceRequest", "querySurrendRequest",
		"insuranceCode=PICC-TEST", "expressNo=SF", "已退款至原账户", "138****2345"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("transcript lacks %q", want)
		}
	}
	effects := fx.core.Stats().Effects
	for _, op := range []string{mockcore.OpProposals, mockcore.OpPayments, mockcore.OpEndorsements, mockcore.OpClaims, mockcore.OpInvoices, mockcore.OpSurrenders} {
		if effects[op] != 1 {
			t.Errorf("core effects[%s] = %d, want 1", op, effects[op])
		}
	}
}

// TestSimulateFailsWhenCoreRefuses: a core refusing claims ends the run
// at the claim step with the core's message and exit status 3.
func TestSimulateFailsWhenCoreRefuses(t *testing.T) {
	fx := eventCore(t)
	fx.setOverride(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/claims" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnprocessableEntity)
			w.Write([]byte(`{"accepted":false,"message":"理赔服务维护中"}`))
			return
		}
		fx.core.Handler().ServeHTTP(w, r)
	})
	addr := freeAddr(t)
	startSidecar(t, callbackConfig(t, fx.srv.Listener.Addr().String(), "http://"+addr))

	stdout, stderr, code := runSimulate(t, addr)
	if code != 3 || !strings.Contains(stderr, "step claim") || !strings.Contains(stderr, "理赔服务维护中") {
		t.Fatalf("exit %d, stderr %q: want 3 and the core's refusal at step claim", code, stderr)
	}
	if !strings.Contains(stdout, "FAIL") || strings.Contains(stdout, "invoiceRequest") {
		t.Errorf("the transcript should end at the refused claim")
	}
}

// TestSimulateFailsWhenMappingBroken: a policy-paid mapping that puts the
// proposal number where the policy number belongs makes the payment
// callback name the wrong policy; the run stops there with status 4.
func TestSimulateFailsWhenMappingBroken(t *testing.T) {
	fx := eventCore(t)
	addr := freeAddr(t)
	good, err := filepath.Abs(repoPath("mappings"))
	if err != nil {
		t.Fatal(err)
	}
	broken := copyMappings(t, good)
	paid := filepath.Join(broken, "policy-paid.yaml")
	data, err := os.ReadFile(paid)
	if err != nil {
		t.Fatal(err)
	}
	const row = "  - xml: policyNo                                  # 保单号 varchar(50) 不为空\n    json: policyNo\n"
	if !strings.Contains(string(data), row) {
		t.Fatalf("policy-paid.yaml changed; update this test's edit")
	}
	edited := strings.Replace(string(data), row, strings.Replace(row, "json: policyNo", "json: proposalNo", 1), 1)
	if err := os.WriteFile(paid, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(callbackConfig(t, fx.srv.Listener.Addr().String(), "http://"+addr), "mappings "+good, "mappings "+broken, 1)
	startSidecar(t, cfg)

	_, stderr, code := runSimulate(t, addr)
	if code != 4 || !strings.Contains(stderr, "step payment callback") || !strings.Contains(stderr, "announces policy TB") {
		t.Fatalf("exit %d, stderr %q: want 4 and the payment callback naming the wrong policy", code, stderr)
	}
}

// copyMappings copies the shipped mappings to a temporary folder.
func copyMappings(t *testing.T, from string) string {
	t.Helper()
	dir := t.TempDir()
	entries, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		data, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestSimulateUsageErrors: what stops the simulator before it starts is
// exit status 1 with a message, and never shows the key.
func TestSimulateUsageErrors(t *testing.T) {
	for _, c := range []struct {
		name, want string
		args       []string
	}{
		{"no url", "--url is required", []string{"--key-env", "GONGBAO_TEST_KEY"}},
		{"no key", "GONGBAO_SIMULATE_NO_SUCH_KEY is empty", []string{"--url", sidecarURL, "--key-env", "GONGBAO_SIMULATE_NO_SUCH_KEY"}},
		{"invoice type", "invoice type \"9\"", []string{"--url", sidecarURL, "--key-env", "GONGBAO_TEST_KEY", "--invoice-type", "9"}},
		{"templates", "no-such-dir", []string{"--url", sidecarURL, "--key-env", "GONGBAO_TEST_KEY", "--templates", filepath.Join(t.TempDir(), "no-such-dir")}},
	} {
		_, stderr, code := runSimulateArgs(t, c.args...)
		if code != 1 || !strings.Contains(stderr, c.want) {
			t.Errorf("%s: exit %d, stderr %q; want 1 and %q", c.name, code, stderr, c.want)
		}
	}
}
