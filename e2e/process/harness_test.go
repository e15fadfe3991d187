package process

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-gongbao/gongbao/caddymodule/protocol"
	"github.com/caddy-gongbao/gongbao/internal/mockcore"
)

// testKey is the platform's published test key (DESIGN §1.2). The
// sidecars read it from the environment, as production reads its key.
const testKey = "MeTKJnC3fIAxeer8erADRTlJ"

// testInsuranceCode fills insuranceCode in callbacks; the built-in
// mappings include callbacks, so the sidecar requires one.
const testInsuranceCode = "TESTINS01"

// Bounds of the waits on a child process. They are generous because the
// children are -race builds on a shared two-core machine; they bound a
// failure, they are not how long a passing test takes.
const (
	readyTimeout = 30 * time.Second
	reapTimeout  = 10 * time.Second
	replyTimeout = 30 * time.Second
)

// Reply messages of DESIGN §4 the tests look for.
const (
	msgInProgress = "处理中"
	msgBusy       = "系统繁忙"
)

// givenPorts are the ports freePort handed out in this process: the kernel
// may offer a port again once its probe listener is closed, and two
// sidecars must never be configured with the same one.
var givenPorts = struct {
	sync.Mutex
	m map[int]bool
}{m: map[int]bool{}}

// freePort returns a port on 127.0.0.1 that nothing listened on a moment
// ago and that no other sidecar of this process was given. Another
// process could take it before the sidecar does; the sidecar then fails
// to start and the test says so.
func freePort(t testing.TB) int {
	t.Helper()
	givenPorts.Lock()
	defer givenPorts.Unlock()
	for range 100 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("finding a free port: %v", err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if !givenPorts.m[port] {
			givenPorts.m[port] = true
			return port
		}
	}
	t.Fatal("no fresh free port after 100 tries")
	return 0
}

// sidecarConfig describes what one sidecar process runs.
type sidecarConfig struct {
	// Core is the host:port of the core the default site proxies to.
	Core string
	// Gongbao holds extra lines for the global gongbao block (store,
	// idempotency, callbacks, …). sign_key is always
	// {env.GONGBAO_TEST_KEY} and insurance_code testInsuranceCode; a line
	// here may set insurance_code again (the last one wins).
	Gongbao string
	// Site replaces the default site body, which routes /gongbao* through
	// the gongbao handler to Core.
	Site string
}

// sidecar is one child process running the built sidecar (this test
// binary with GONGBAO_TEST_RUN_CADDY=1) on its own ports, admin endpoint,
// config and data folders. Start, Kill and Restart may be called in any
// order; the process is always killed and reaped at the end of the test.
type sidecar struct {
	t         testing.TB
	name      string
	dir       string
	caddyfile string
	logPath   string
	// HTTPPort serves the platform endpoint; AdminPort is Caddy's admin API.
	HTTPPort, AdminPort int

	client *http.Client
	starts int
	served bool // it has served once: its ports are its own
	cfg    sidecarConfig

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error
}

// newSidecar writes the sidecar's Caddyfile without starting it.
func newSidecar(t testing.TB, name string, cfg sidecarConfig) *sidecar {
	t.Helper()
	dir := t.TempDir()
	s := &sidecar{
		t: t, name: name, dir: dir,
		caddyfile: filepath.Join(dir, "Caddyfile"),
		logPath:   filepath.Join(dir, "caddy.log"),
		HTTPPort:  freePort(t), AdminPort: freePort(t),
		client: &http.Client{Timeout: replyTimeout, Transport: &http.Transport{
			MaxIdleConnsPerHost: 64,
			Proxy:               nil, // never through an HTTP proxy from the environment
		}},
	}
	s.cfg = cfg
	s.writeCaddyfile()
	t.Cleanup(s.cleanup)
	return s
}

func (s *sidecar) writeCaddyfile() {
	if err := os.WriteFile(s.caddyfile, []byte(s.render(s.cfg)), 0o600); err != nil {
		s.t.Fatal(err)
	}
}

// render is the sidecar's Caddyfile.
func (s *sidecar) render(cfg sidecarConfig) string {
	site := cfg.Site
	if site == "" {
		site = fmt.Sprintf(`handle /gongbao* {
		gongbao
		reverse_proxy %s {
			transport http {
				dial_timeout 2s
			}
		}
	}`, cfg.Core)
	}
	return fmt.Sprintf(`{
	admin 127.0.0.1:%d
	persist_config off
	auto_https off
	skip_install_trust
	http_port %d
	grace_period 1s
	log default {
		exclude admin.api
	}
	gongbao {
		sign_key {env.GONGBAO_TEST_KEY}
		insurance_code %s
		# The tests resend the shipped samples under fresh requestUUIDs;
		# a content_replay in cfg.Gongbao replaces this one.
		content_replay {
			allow insureRequest surrendRequest correctRequest claimRequest invoiceRequest
		}
		%s
	}
}

http://127.0.0.1:%d {
	bind 127.0.0.1
	%s
}
`, s.AdminPort, s.HTTPPort, testInsuranceCode, cfg.Gongbao, s.HTTPPort, site)
}

// startSidecar starts one sidecar and waits until it serves.
func startSidecar(t testing.TB, name string, cfg sidecarConfig) *sidecar {
	t.Helper()
	s := newSidecar(t, name, cfg)
	s.Start()
	return s
}

// startSidecars starts several sidecars at once (their start-up, not the
// test, is the slow part) and waits until all serve.
func startSidecars(t testing.TB, cfgs ...sidecarConfig) []*sidecar {
	t.Helper()
	out := make([]*sidecar, len(cfgs))
	for i, cfg := range cfgs {
		out[i] = newSidecar(t, fmt.Sprintf("sidecar-%d", i+1), cfg)
		if err := out[i].launch(); err != nil {
			t.Fatalf("%s: %v", out[i].name, err)
		}
	}
	for _, s := range out {
		err := s.waitReady()
		if err == nil {
			s.served = true
			continue
		}
		s.Kill()
		if !s.portTaken() {
			t.Fatalf("%s: %v (its log follows)", s.name, err)
		}
		s.takeNewPorts()
		s.Start()
	}
	return out
}

// Start starts the process (again) and waits until it serves. A free
// port picked before the sidecar first served can be taken by another
// process (the tests run in parallel, beside other test binaries) before
// the sidecar binds it; then the sidecar gets new ports and tries again.
// Once it has served, it keeps its ports: a restart is the same sidecar.
func (s *sidecar) Start() {
	s.t.Helper()
	for attempt := 1; ; attempt++ {
		if err := s.launch(); err != nil {
			s.t.Fatalf("%s: %v", s.name, err)
		}
		err := s.waitReady()
		if err == nil {
			s.served = true
			return
		}
		s.Kill()
		if attempt < 3 && !s.served && s.portTaken() {
			s.takeNewPorts()
			continue
		}
		s.t.Fatalf("%s: %v (its log follows)", s.name, err)
	}
}

// takeNewPorts gives a sidecar that never served new ports.
func (s *sidecar) takeNewPorts() {
	s.HTTPPort, s.AdminPort = freePort(s.t), freePort(s.t)
	s.writeCaddyfile()
}

// portTaken tells whether the last start failed on a port in use.
func (s *sidecar) portTaken() bool {
	data, err := os.ReadFile(s.logPath)
	if err != nil {
		return false
	}
	last := data[bytes.LastIndex(data, []byte("===== "))+1:]
	return bytes.Contains(last, []byte("address already in use"))
}

// Restart kills the process, as kill -9 would, and starts it again on the
// same ports, config and data.
func (s *sidecar) Restart() {
	s.t.Helper()
	s.Kill()
	s.Start()
}

// launch starts the child process. Its output goes to caddy.log in the
// sidecar's folder, one section per start.
func (s *sidecar) launch() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return errors.New("already running")
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	logFile, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logFile.Close() // the child has its own descriptor
	s.starts++
	fmt.Fprintf(logFile, "===== %s start %d\n", s.name, s.starts)
	cmd := exec.Command(exe, "run", "--config", s.caddyfile, "--adapter", "caddyfile")
	cmd.Dir = s.dir
	cmd.Env = append(os.Environ(),
		envRunCaddy+"=1",
		"GONGBAO_TEST_KEY="+testKey,
		"HOME="+s.dir,
		"XDG_CONFIG_HOME="+filepath.Join(s.dir, "config"),
		"XDG_DATA_HOME="+filepath.Join(s.dir, "data"),
	)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting the sidecar: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		err := cmd.Wait()
		s.mu.Lock()
		s.waitErr = err
		s.mu.Unlock()
		close(exited)
	}()
	s.cmd, s.exited = cmd, exited
	return nil
}

// waitReady polls the admin API until the gongbao app of the loaded config
// answers: Caddy makes a config active only once all its apps (the HTTP
// server included) have started.
func (s *sidecar) waitReady() error {
	s.mu.Lock()
	exited := s.exited
	s.mu.Unlock()
	deadline := time.Now().Add(readyTimeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		status, _, err := s.Admin(http.MethodGet, "/gongbao/requests?limit=1", nil)
		if err == nil && status == http.StatusOK {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %s (last: status %d, %v)", readyTimeout, status, err)
		}
		select {
		case <-exited:
			s.mu.Lock()
			err := s.waitErr
			s.mu.Unlock()
			return fmt.Errorf("exited before serving: %v", err)
		case <-tick.C:
		}
	}
}

// Kill sends SIGKILL, like kill -9, and reaps the process. Nothing of the
// sidecar runs afterwards: no deferred function, no graceful shutdown.
func (s *sidecar) Kill() {
	s.t.Helper()
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd, s.exited = nil, nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	if err := cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		s.t.Errorf("%s: kill: %v", s.name, err)
	}
	select {
	case <-exited:
	case <-time.After(reapTimeout):
		s.t.Errorf("%s: not reaped %s after SIGKILL", s.name, reapTimeout)
	}
	s.client.CloseIdleConnections()
}

// cleanup kills the process and fails the test if the child's race
// detector reported anything (its exit status is lost to SIGKILL). The
// child's log is shown when the test failed, or always with
// GONGBAO_TEST_SIDECAR_LOGS=1.
func (s *sidecar) cleanup() {
	s.Kill()
	data, _ := os.ReadFile(s.logPath)
	if i := bytes.Index(data, []byte("WARNING: DATA RACE")); i >= 0 {
		s.t.Errorf("%s: the race detector fired in the sidecar:\n%s", s.name, clip(data[i:], 8000))
	}
	if s.t.Failed() || os.Getenv("GONGBAO_TEST_SIDECAR_LOGS") == "1" {
		s.t.Logf("%s log (%s):\n%s", s.name, s.logPath, s.logTail())
	}
}

// logTail is the end of the child's output, for failure messages.
func (s *sidecar) logTail() string {
	data, err := os.ReadFile(s.logPath)
	if err != nil {
		return err.Error()
	}
	const max = 12000
	if len(data) > max {
		data = data[len(data)-max:]
	}
	return string(data)
}

func clip(b []byte, n int) string {
	if len(b) > n {
		b = b[:n]
	}
	return string(b)
}

// URL is the platform endpoint.
func (s *sidecar) URL() string { return fmt.Sprintf("http://127.0.0.1:%d/gongbao", s.HTTPPort) }

// Send posts a platform message and returns the raw reply body. Anything
// but HTTP 200 is an error: the sidecar answers every message with 200
// and a signed XML reply.
func (s *sidecar) Send(msg []byte) ([]byte, error) {
	resp, err := s.client.Post(s.URL(), "application/xml; charset=UTF-8", bytes.NewReader(msg))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return raw, fmt.Errorf("HTTP %d: %s", resp.StatusCode, clip(raw, 500))
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/xml") {
		return raw, fmt.Errorf("reply Content-Type %q", ct)
	}
	return raw, nil
}

// SetReplyTimeout changes how long Send waits for a reply (default
// replyTimeout). Not safe while requests are in flight.
func (s *sidecar) SetReplyTimeout(d time.Duration) { s.client.Timeout = d }

// Post sends a message and returns the verified reply and its bytes.
func (s *sidecar) Post(t testing.TB, msg []byte) (*protocol.Envelope, []byte) {
	t.Helper()
	raw, err := s.Send(msg)
	if err != nil {
		t.Fatalf("%s: posting: %v", s.name, err)
	}
	return verifyReply(t, raw), raw
}

// PostUntilSettled resends msg, as the platform does, until the reply is
// no longer 处理中 or the bound passes.
func (s *sidecar) PostUntilSettled(t testing.TB, msg []byte, bound time.Duration) (*protocol.Envelope, []byte) {
	t.Helper()
	return s.PostUntil(t, msg, bound, msgInProgress)
}

// PostUntil resends msg, as the platform does, while the reply refuses it
// with a message containing one of retryOn (e.g. 处理中, 系统繁忙), within
// bound, and returns the first other reply.
func (s *sidecar) PostUntil(t testing.TB, msg []byte, bound time.Duration, retryOn ...string) (*protocol.Envelope, []byte) {
	t.Helper()
	deadline := time.Now().Add(bound)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		env, raw := s.Post(t, msg)
		if !isRetryable(env, retryOn) {
			return env, raw
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still %q after resending for %s", s.name, resultMessage(env), bound)
		}
		<-tick.C // the platform's resend interval, not a synchronisation
	}
}

func isRetryable(env *protocol.Envelope, retryOn []string) bool {
	if resultFlag(env) == "true" {
		return false
	}
	for _, m := range retryOn {
		if strings.Contains(resultMessage(env), m) {
			return true
		}
	}
	return false
}

// SendUnread writes msg on a raw connection and never reads the answer:
// the platform that sent it does not get the reply. The connection is
// closed at the end of the test at the latest.
func (s *sidecar) SendUnread(t testing.TB, msg []byte) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", s.HTTPPort))
	if err != nil {
		t.Fatalf("%s: %v", s.name, err)
	}
	t.Cleanup(func() { conn.Close() })
	head := fmt.Sprintf("POST /gongbao HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/xml; charset=UTF-8\r\nContent-Length: %d\r\n\r\n", s.HTTPPort, len(msg))
	if _, err := conn.Write(append([]byte(head), msg...)); err != nil {
		t.Fatalf("%s: writing the request: %v", s.name, err)
	}
	return conn
}

// Admin calls the sidecar's admin API.
func (s *sidecar) Admin(method, path string, body []byte) (int, []byte, error) {
	req, err := http.NewRequest(method, fmt.Sprintf("http://127.0.0.1:%d%s", s.AdminPort, path), bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp.StatusCode, data, err
}

// requestRecord is an idempotency record as the admin API shows it.
type requestRecord struct {
	Scope       string `json:"scope"`
	RequestUUID string `json:"request_uuid"`
	State       string `json:"state"`
	Attempts    int    `json:"attempts"`
	Note        string `json:"note"`
	Reply       string `json:"reply"`
}

// Record reads the record of requestUUID from the admin API; false if
// there is none.
func (s *sidecar) Record(t testing.TB, requestUUID string) (requestRecord, bool) {
	t.Helper()
	status, body, err := s.Admin(http.MethodGet, "/gongbao/requests/"+requestUUID, nil)
	switch {
	case err != nil:
		t.Fatalf("%s: admin API: %v", s.name, err)
	case status == http.StatusNotFound:
		return requestRecord{}, false
	case status != http.StatusOK:
		t.Fatalf("%s: GET /gongbao/requests/%s: %d %s", s.name, requestUUID, status, body)
	}
	var rec requestRecord
	if err := json.Unmarshal(body, &rec); err != nil {
		t.Fatalf("%s: admin API answer: %v\n%s", s.name, err, body)
	}
	return rec, true
}

// WaitState polls the admin API until the record of requestUUID is in
// state, within bound.
func (s *sidecar) WaitState(t testing.TB, requestUUID, state string, bound time.Duration) requestRecord {
	t.Helper()
	deadline := time.Now().Add(bound)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		rec, ok := s.Record(t, requestUUID)
		if ok && rec.State == state {
			return rec
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: request %s is %+v (exists: %v) after %s, want state %s", s.name, requestUUID, rec, ok, bound, state)
		}
		<-tick.C // polling an external process
	}
}

// verifyReply parses a reply and checks it is signed with our key.
func verifyReply(t testing.TB, raw []byte) *protocol.Envelope {
	t.Helper()
	env, err := protocol.Parse(raw, protocol.Limits{})
	if err != nil {
		t.Fatalf("the reply is not a well-formed message: %v\n%s", err, raw)
	}
	if _, ok := protocol.VerifyAny(env.SignedValue(), env.Sign, []string{testKey}); !ok {
		t.Fatalf("the reply's signature does not verify:\n%s", raw)
	}
	return env
}

func resultFlag(env *protocol.Envelope) string    { s, _ := env.Text("resultFlag"); return s }
func resultMessage(env *protocol.Envelope) string { s, _ := env.Text("resultMessage"); return s }

func assertAccepted(t testing.TB, env *protocol.Envelope) {
	t.Helper()
	if resultFlag(env) != "true" {
		t.Fatalf("resultFlag = %q (%s), want true", resultFlag(env), resultMessage(env))
	}
}

func assertRefused(t testing.TB, env *protocol.Envelope, want string) {
	t.Helper()
	if resultFlag(env) != "false" || !strings.Contains(resultMessage(env), want) {
		t.Fatalf("resultFlag=%q resultMessage=%q, want false and a message containing %q", resultFlag(env), resultMessage(env), want)
	}
}

// sampleMessage reads testdata/messages/<name> of the repository.
func sampleMessage(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "testdata", "messages", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// newMessage is the sample message name signed with the test key under a
// fresh requestUUID, and that requestUUID.
func newMessage(t testing.TB, name string) ([]byte, string) {
	t.Helper()
	id := protocol.NewUUID()
	msg, err := protocol.Resign(sampleMessage(t, name), testKey, id)
	if err != nil {
		t.Fatalf("signing %s: %v", name, err)
	}
	return msg, id
}

// coreCall is one API call as the core received it.
type coreCall struct {
	Method, Path, Key string
	Status            int
	Replayed          bool // the core answered from its Idempotency-Key record
}

// testCore is the reference core in the test process, behind a wrapper
// that records every API call and can hold an answer back.
type testCore struct {
	Core *mockcore.Core
	srv  *httptest.Server

	mu    sync.Mutex
	calls []coreCall
	holds []*coreHold // applied to the next API calls, in order
	all   []*coreHold
}

// coreHold holds back the core's answer to one call: the core acts and
// commits, then the answer waits until Release (or until the caller hangs
// up), like a core that stalls after committing.
type coreHold struct {
	acted   chan struct{}
	release chan struct{}
	once    sync.Once
	answer  []byte
}

// startCore starts the reference core for one test.
func startCore(t testing.TB) *testCore {
	t.Helper()
	c := &testCore{}
	c.srv = httptest.NewServer(http.HandlerFunc(c.serve))
	c.Core = mockcore.New(mockcore.Config{PublicURL: c.srv.URL})
	t.Cleanup(func() {
		c.mu.Lock()
		holds := c.all
		c.mu.Unlock()
		for _, h := range holds {
			h.Release()
		}
		c.srv.Close()
		c.Core.Close()
	})
	return c
}

// Addr is the core's host:port.
func (c *testCore) Addr() string { return c.srv.Listener.Addr().String() }

func (c *testCore) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || !strings.HasPrefix(r.URL.Path, "/v1/") {
		c.Core.Handler().ServeHTTP(w, r)
		return
	}
	c.mu.Lock()
	i := len(c.calls)
	c.calls = append(c.calls, coreCall{Method: r.Method, Path: r.URL.Path, Key: r.Header.Get("Idempotency-Key")})
	var hold *coreHold
	if len(c.holds) > 0 {
		hold, c.holds = c.holds[0], c.holds[1:]
	}
	c.mu.Unlock()

	rec := httptest.NewRecorder()
	c.Core.Handler().ServeHTTP(rec, r)
	c.mu.Lock()
	c.calls[i].Status = rec.Code
	c.calls[i].Replayed = rec.Header().Get("Idempotent-Replayed") == "true"
	c.mu.Unlock()

	if hold != nil {
		hold.answer = rec.Body.Bytes()
		close(hold.acted)
		select {
		case <-hold.release:
		case <-r.Context().Done():
			return // the sidecar is gone
		}
	}
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	w.Write(rec.Body.Bytes())
}

// HoldNext makes the next API call act at the core and then hold its
// answer until the hold is released.
func (c *testCore) HoldNext() *coreHold {
	h := &coreHold{acted: make(chan struct{}), release: make(chan struct{})}
	c.mu.Lock()
	c.holds = append(c.holds, h)
	c.all = append(c.all, h)
	c.mu.Unlock()
	return h
}

// WaitActed waits until the held call has acted at the core.
func (h *coreHold) WaitActed(t testing.TB, bound time.Duration) {
	t.Helper()
	select {
	case <-h.acted:
	case <-time.After(bound):
		t.Fatalf("the core was not called within %s", bound)
	}
}

// Answer is the core's held answer (valid once acted).
func (h *coreHold) Answer() []byte {
	<-h.acted
	return h.answer
}

// Release lets the held answer go.
func (h *coreHold) Release() { h.once.Do(func() { close(h.release) }) }

// Calls returns the API calls that carried Idempotency-Key key ("" for all).
func (c *testCore) Calls(key string) []coreCall {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []coreCall
	for _, call := range c.calls {
		if key == "" || call.Key == key {
			out = append(out, call)
		}
	}
	return out
}

// Effects is how many times the core performed op (mockcore.OpProposals, …).
func (c *testCore) Effects(op string) int { return c.Core.Stats().Effects[op] }

// tcpProxy forwards TCP connections to a target (the store's server) and
// can take the path down, as a database host that crashes, restarts or is
// cut off by the network does.
type tcpProxy struct {
	t      testing.TB
	addr   string
	target string

	mu      sync.Mutex
	ln      net.Listener
	conns   map[net.Conn]struct{}
	stalled chan struct{} // non-nil while stalled; closed to resume
	wg      sync.WaitGroup
}

// startProxy listens on a free port of 127.0.0.1 and forwards to target.
func startProxy(t testing.TB, target string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{t: t, addr: ln.Addr().String(), target: target, conns: map[net.Conn]struct{}{}}
	p.serve(ln)
	t.Cleanup(func() {
		p.Down()
		p.wg.Wait()
	})
	return p
}

// Addr is the proxy's host:port.
func (p *tcpProxy) Addr() string { return p.addr }

// Down stops listening (new connections are refused) and closes every
// forwarded connection in both directions. It ends a stall.
func (p *tcpProxy) Down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stalled != nil {
		close(p.stalled)
		p.stalled = nil
	}
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
}

// Stall keeps every connection open but forwards nothing, in either
// direction, until Resume: a database host that stopped answering, or a
// network that drops packets without resetting connections. New
// connections are accepted and wait too.
func (p *tcpProxy) Stall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stalled == nil {
		p.stalled = make(chan struct{})
	}
}

// Resume ends a stall; what was held back is forwarded.
func (p *tcpProxy) Resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stalled != nil {
		close(p.stalled)
		p.stalled = nil
	}
}

// gate blocks while the proxy is stalled, or until conn is closed.
func (p *tcpProxy) gate() {
	p.mu.Lock()
	stalled := p.stalled
	p.mu.Unlock()
	if stalled != nil {
		<-stalled
	}
}

// Up listens again on the same address.
func (p *tcpProxy) Up() {
	p.t.Helper()
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.t.Fatalf("proxy: listening again on %s: %v", p.addr, err)
	}
	p.serve(ln)
}

func (p *tcpProxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	p.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Go(func() { p.forward(c) })
		}
	})
}

func (p *tcpProxy) forward(client net.Conn) {
	p.gate()
	server, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		client.Close()
		return
	}
	if !p.track(client, server) {
		client.Close()
		server.Close()
		return
	}
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				p.gate()
				if _, werr := dst.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		done <- struct{}{}
	}
	go pipe(server, client)
	go pipe(client, server)
	<-done
	client.Close()
	server.Close()
	<-done
	p.mu.Lock()
	delete(p.conns, client)
	delete(p.conns, server)
	p.mu.Unlock()
}

// track registers a forwarded pair, unless the proxy went down meanwhile.
func (p *tcpProxy) track(conns ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln == nil {
		return false
	}
	for _, c := range conns {
		p.conns[c] = struct{}{}
	}
	return true
}
