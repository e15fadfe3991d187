package caddymodule_test

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/caddy-gongbao/gongbao/caddymodule"
	"github.com/caddy-gongbao/gongbao/caddymodule/protocol"
	"github.com/caddy-gongbao/gongbao/internal/mockcore"
)

// The test Caddy's addresses, on ports free when the test binary starts
// (pickTestPorts), so that packages which start Caddy can run in parallel.
var (
	adminAddr   string // the admin endpoint, host:port
	sidecarSite string // the site of the platform endpoint
	sidecarURL  string // the platform endpoint
	eventsSite  string // the site of the events intake
	httpPort    int
	httpsPort   int
)

// pickTestPorts chooses the test Caddy's ports. caddytest starts Caddy
// once per test binary, with the first admin address it is given, so the
// admin port is chosen once for the whole run.
func pickTestPorts() error {
	ports, err := freePorts(4)
	if err != nil {
		return err
	}
	caddytest.Default.AdminPort = ports[0]
	adminAddr = fmt.Sprintf("localhost:%d", ports[0])
	httpPort, httpsPort = ports[1], ports[2]
	sidecarSite = fmt.Sprintf("http://localhost:%d", httpPort)
	sidecarURL = sidecarSite + "/gongbao"
	eventsSite = fmt.Sprintf("http://localhost:%d", ports[3])
	return nil
}

// freePorts asks the kernel for n distinct free loopback ports.
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer ln.Close() // held until all are chosen, so they differ
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// recordedCall is one request as the core received it.
type recordedCall struct {
	Method, Path string
	Host         string
	Header       http.Header
	Body         []byte
}

// coreFixture is the reference core behind a recorder, with an optional
// override that replaces it to inject failures.
type coreFixture struct {
	core *mockcore.Core
	srv  *httptest.Server

	mu       sync.Mutex
	calls    []recordedCall
	override http.HandlerFunc
}

func startCore(t *testing.T) *coreFixture {
	t.Helper()
	f := &coreFixture{}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	f.core = mockcore.New(mockcore.Config{PublicURL: f.srv.URL})
	t.Cleanup(func() {
		f.srv.Close()
		f.core.Close()
	})
	return f
}

func (f *coreFixture) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	f.mu.Lock()
	if strings.HasPrefix(r.URL.Path, "/v1/") && r.Method == http.MethodPost {
		f.calls = append(f.calls, recordedCall{r.Method, r.URL.Path, r.Host, r.Header.Clone(), body})
	}
	override := f.override
	f.mu.Unlock()
	if override != nil {
		override(w, r)
		return
	}
	f.core.Handler().ServeHTTP(w, r)
}

func (f *coreFixture) setOverride(h http.HandlerFunc) {
	f.mu.Lock()
	f.override = h
	f.mu.Unlock()
}

// callCount is how many API calls reached the core.
func (f *coreFixture) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

func (f *coreFixture) lastCall(t *testing.T) recordedCall {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.calls) == 0 {
		t.Fatal("the core was not called")
	}
	return f.calls[len(f.calls)-1]
}

// allowRepeatedSamples: the tests post the
// shipped samples again and again under fresh requestUUIDs, which the
// content_replay guard would refuse; it is off here unless extraGlobal
// sets it (a later content_replay replaces this one). The guard's own
// tests run it as configured by default (security_test.go).
const allowRepeatedSamples = `content_replay {
			allow insureRequest surrendRequest correctRequest claimRequest invoiceRequest
		}`

// sidecarConfig is the Caddyfile the tests run: the platform endpoint in
// front of coreAddr, with the repository's mappings.
func sidecarConfig(t *testing.T, coreAddr, extraGlobal, extraProxy string) string {
	t.Helper()
	mappings, err := filepath.Abs(repoPath("mappings"))
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf(`{
	admin %s
	http_port %d
	https_port %d
	skip_install_trust
	persist_config off
	gongbao {
		sign_key {env.GONGBAO_TEST_KEY}
		mappings %s
		max_body_size 64KiB
		store sqlite %s
		%s
		%s
	}
}

%s {
	handle /gongbao* {
		gongbao
		reverse_proxy %s {
			transport http {
				dial_timeout 2s
				response_header_timeout 1s
			}
			%s
		}
	}
}
`, adminAddr, httpPort, httpsPort, mappings, caddymodule.FreshStoreForTest(t), allowRepeatedSamples, extraGlobal,
		sidecarSite, coreAddr, extraProxy)
}

// startSidecar loads cfg into the test Caddy. caddytest skips (passes
// silently) when Caddy cannot start; here that is a failure.
func startSidecar(t *testing.T, cfg string) *caddytest.Tester {
	t.Helper()
	t.Cleanup(func() {
		if t.Skipped() {
			t.Error("caddytest skipped the test: Caddy did not start (run without -short and without -trimpath)")
		}
	})
	// A load stops the previous config (its callback engine included),
	// which takes longer than caddytest's 5 s default on a busy machine.
	tester := caddytest.NewTester(t).WithDefaultOverrides(caddytest.Config{
		LoadRequestTimeout: 30 * time.Second,
		TestRequestTimeout: 30 * time.Second,
	})
	tester.InitServer(cfg, "caddyfile")
	// Cleanups run last-registered first: the config stops here, while
	// the test's store file (in t.TempDir) still exists. Left running, it
	// would be stopped by the next test's load, after the file is gone, and
	// its delivery engine would retry for seconds before giving up.
	t.Cleanup(func() { unloadSidecar(t) })
	return tester
}

// unloadSidecar replaces the test config with one that runs nothing but
// the admin endpoint.
func unloadSidecar(t *testing.T) {
	t.Helper()
	empty := fmt.Sprintf(`{"admin": {"listen": %q, "config": {"persist": false}}}`, adminAddr)
	resp, err := http.Post("http://"+adminAddr+"/load", "application/json", strings.NewReader(empty))
	if err != nil {
		t.Errorf("stopping the test config: %v", err)
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		t.Errorf("stopping the test config: HTTP %d: %s", resp.StatusCode, body)
	}
}

// post sends a platform message and returns the parsed, verified reply.
func post(t *testing.T, tester *caddytest.Tester, url string, msg []byte) (*protocol.Envelope, []byte) {
	t.Helper()
	return postWith(t, tester.Client, url, msg)
}

// postWith is post through client: the test Caddy's or an inProcess one.
func postWith(t *testing.T, client *http.Client, url string, msg []byte) (*protocol.Envelope, []byte) {
	t.Helper()
	resp, err := postResending(client, url, msg)
	if err != nil {
		t.Fatalf("posting to the sidecar: %v", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, body %s", resp.StatusCode, raw)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/xml; charset=UTF-8" {
		t.Errorf("Content-Type = %q", ct)
	}
	env, err := protocol.Parse(raw, protocol.Limits{})
	if err != nil {
		t.Fatalf("the reply is not a well-formed message: %v\n%s", err, raw)
	}
	checkReplySign(t, env, raw)
	return env, raw
}

// checkReplySign: a reply is signed with our key, or it is an unsigned
// refusal (the answer to a request that did not verify) — never a signed
// reply that does not verify, never an unsigned acceptance.
func checkReplySign(t *testing.T, env *protocol.Envelope, raw []byte) {
	t.Helper()
	if env.Sign == "" {
		if text(env, "resultFlag") != "false" {
			t.Fatalf("an unsigned reply that is not a refusal:\n%s", raw)
		}
		return
	}
	if _, ok := protocol.VerifyAny(env.SignedValue(), env.Sign, []string{testKey}); !ok {
		t.Fatalf("the reply's signature does not verify:\n%s", raw)
	}
}

// postResending posts msg, resending (as the platform does) when the
// connection breaks before any answer. Right after a config load, Caddy's
// old server may still accept a connection and then close it unanswered
// (plain Caddy does the same); a real failure of ours repeats on resend.
func postResending(client *http.Client, url string, msg []byte) (*http.Response, error) {
	var err error
	for range 3 {
		var resp *http.Response
		resp, err = client.Post(url, "application/xml; charset=UTF-8", bytes.NewReader(msg))
		if err == nil {
			return resp, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil, err
}

// text reads a body leaf of a reply.
func text(env *protocol.Envelope, path ...string) string {
	s, _ := env.Text(path...)
	return s
}

// sample reads testdata/messages/<name>.
func sample(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(repoPath("testdata", "messages", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// signed re-signs msg with key and a fresh requestUUID, after replacing
// each old→new pair in its body.
func signed(t *testing.T, msg []byte, key string, replace ...string) []byte {
	t.Helper()
	msg = []byte(strings.NewReplacer(replace...).Replace(string(msg)))
	out, err := protocol.Resign(msg, key, protocol.NewUUID())
	if err != nil {
		t.Fatalf("signing: %v", err)
	}
	return out
}

// resignKeepingUUID re-signs msg keeping its requestUUID.
func resignKeepingUUID(t *testing.T, msg []byte, uuid string) []byte {
	t.Helper()
	out, err := protocol.Resign(msg, testKey, uuid)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
