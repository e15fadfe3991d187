package process

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-gongbao/gongbao/caddymodule/protocol"
)

// Reloads under load (issue 7, item 4): the sidecar's config is reloaded
// through the admin API, as `caddy reload` does, while platform requests
// and core events are in flight. Nothing may fail, run twice or get lost,
// and the reloads must not leak goroutines or file descriptors.

const (
	reloads        = 20
	reloadRequests = 100
	reloadFDSlack  = 4
	// reloadGorGrowth is how much one goroutine stack may grow: one
	// leaked per reload would grow by reloads; pooled connections (at most
	// maxPlatformConns) grow the HTTP client's stacks by less.
	reloadGorGrowth = reloads - 5
	// maxPlatformConns is the callback client's idle pool (one per
	// delivery worker, 10 by default); maxDatabaseConns bounds pgx's pool.
	maxPlatformConns = 10
	maxDatabaseConns = 16
	reloadDrainTime  = 90 * time.Second
)

// reloadSite serves the platform endpoint and the events intake. gen
// changes a response header, so a reload with another gen is a real
// config change.
func reloadSite(coreAddr string, gen int) string {
	return fmt.Sprintf(`header X-Config-Generation %d
	handle /gongbao* {
		gongbao
		reverse_proxy %s {
			transport http {
				dial_timeout 2s
				response_header_timeout 5s
				# Caddy leaves the idle core connections of a replaced
				# config open until they time out (2 min by default);
				# a short idle timeout lets the leak check see past them.
				keepalive 2s
			}
		}
	}
	handle /events/* {
		gongbao_notify
	}`, gen, coreAddr)
}

var reloadClient = &http.Client{Timeout: replyTimeout, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}

// Reload posts a Caddyfile to the admin API's /load, as `caddy reload`
// does. force makes Caddy reload even an unchanged config.
func (s *sidecar) Reload(t testing.TB, caddyfile string, force bool) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/load", s.AdminPort), strings.NewReader(caddyfile))
	req.Header.Set("Content-Type", "text/caddyfile")
	if force {
		req.Header.Set("Cache-Control", "must-revalidate")
	}
	// Caddy restarts its admin endpoint on every load, closing the
	// connection a load came on: a kept-alive connection would fail the
	// next load.
	resp, err := reloadClient.Do(req)
	if err != nil {
		t.Fatalf("%s: reload: %v", s.name, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: reload: %d %s", s.name, resp.StatusCode, body)
	}
}

// pid is the running sidecar's process id.
func (s *sidecar) pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd.Process.Pid
}

// FDs counts the sidecar's open file descriptors.
func (s *sidecar) FDs(t testing.TB) int {
	t.Helper()
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", s.pid()))
	if err != nil {
		t.Skipf("cannot count file descriptors: %v", err)
	}
	return len(entries)
}

// fdTargets lists what the sidecar's descriptors point to, with counts;
// a TCP socket is shown by its remote port (named when names has it) and
// state, so a leaked connection says where it goes.
func (s *sidecar) fdTargets(names map[string]string) string {
	dir := fmt.Sprintf("/proc/%d/fd", s.pid())
	sockets := tcpSockets(s.pid())
	entries, _ := os.ReadDir(dir)
	counts := map[string]int{}
	for _, e := range entries {
		target, _ := os.Readlink(filepath.Join(dir, e.Name()))
		if inode, ok := strings.CutPrefix(target, "socket:["); ok {
			target = "socket"
			if sock, ok := sockets[strings.TrimSuffix(inode, "]")]; ok {
				target = "tcp " + sock
				for port, name := range names {
					target = strings.ReplaceAll(target, ":"+port+" ", ":"+port+"("+name+") ")
				}
			}
		}
		counts[target]++
	}
	var b strings.Builder
	for target, n := range counts {
		fmt.Fprintf(&b, "%4d %s\n", n, target)
	}
	return b.String()
}

// tcpSockets maps socket inodes of pid's network namespace to
// "local -> remote state" with decimal ports.
func tcpSockets(pid int) map[string]string {
	states := map[string]string{"01": "ESTABLISHED", "06": "TIME_WAIT", "08": "CLOSE_WAIT", "0A": "LISTEN", "04": "FIN_WAIT1", "05": "FIN_WAIT2", "09": "LAST_ACK"}
	out := map[string]string{}
	for _, file := range []string{"tcp", "tcp6"} {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, file))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 10 {
				continue
			}
			port := func(addr string) string {
				_, hex, _ := strings.Cut(addr, ":")
				n, _ := strconv.ParseUint(hex, 16, 32)
				return strconv.FormatUint(n, 10)
			}
			state := states[f[3]]
			if state == "" {
				state = f[3]
			}
			out[f[9]] = fmt.Sprintf(":%s -> :%s %s", port(f[1]), port(f[2]), state)
		}
	}
	return out
}

// fdKinds counts the sidecar's descriptors: TCP connections whose remote
// port is in pools, by pool name, and all others.
func (s *sidecar) fdKinds(pools map[string]string) (pooled map[string]int, other int) {
	dir := fmt.Sprintf("/proc/%d/fd", s.pid())
	sockets := tcpSockets(s.pid())
	entries, _ := os.ReadDir(dir)
	pooled = map[string]int{}
	for _, e := range entries {
		target, _ := os.Readlink(filepath.Join(dir, e.Name()))
		inode, ok := strings.CutPrefix(target, "socket:[")
		if ok {
			sock := sockets[strings.TrimSuffix(inode, "]")]
			if i := strings.Index(sock, "-> :"); i >= 0 {
				remote, _, _ := strings.Cut(sock[i+len("-> :"):], " ")
				if name, ok := pools[remote]; ok && strings.HasSuffix(sock, "ESTABLISHED") {
					pooled[name]++
					continue
				}
			}
		}
		other++
	}
	return pooled, other
}

// Goroutines reads the sidecar's goroutines from Caddy's admin endpoint
// /debug/pprof/goroutine: how many run each distinct stack (named by its
// innermost function and addresses), and the total.
func (s *sidecar) Goroutines(t testing.TB) (map[string]int, int) {
	t.Helper()
	status, body, err := s.Admin(http.MethodGet, "/debug/pprof/goroutine?debug=1", nil)
	if err != nil || status != http.StatusOK {
		t.Fatalf("%s: goroutine profile: %d %v", s.name, status, err)
	}
	stacks, total := map[string]int{}, 0
	lines := strings.Split(string(body), "\n")
	for i, line := range lines {
		count, addrs, ok := strings.Cut(line, " @ ")
		n, err := strconv.Atoi(count)
		if !ok || err != nil {
			continue
		}
		name := addrs
		if i+1 < len(lines) {
			if f := strings.Fields(lines[i+1]); len(f) >= 3 && f[0] == "#" {
				name = f[2] + " [" + addrs + "]"
			}
		}
		stacks[name] += n
		total += n
	}
	if total == 0 {
		t.Fatalf("%s: no goroutine profile: %.200s", s.name, body)
	}
	return stacks, total
}

// grownStacks lists the stacks that run at least by more goroutines in
// after than in before: a goroutine leaked per reload shows as one stack
// grown by the number of reloads.
func grownStacks(before, after map[string]int, by int) []string {
	var out []string
	for stack, n := range after {
		if n-before[stack] >= by {
			out = append(out, fmt.Sprintf("%d→%d %s", before[stack], n, stack))
		}
	}
	return out
}

// settledCount polls count until it is at most limit (goroutines of closed
// connections end asynchronously) and returns the last value.
func settledCount(count func() int, limit int, bound time.Duration) int {
	deadline := time.Now().Add(bound)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		n := count()
		if n <= limit || time.Now().After(deadline) {
			return n
		}
		<-tick.C // polling an external process
	}
}

// eventPoster posts events as a core does, resending each until a 2xx.
type eventPoster struct {
	s       *sidecar
	client  *http.Client
	refused int            // non-2xx answers and transport errors, resent
	why     map[string]int // refusals by reason
}

func (p *eventPoster) post(t *testing.T, prefix string, n int) (eventAnswer, error) {
	body := paidEvent(prefix, n)
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/events/policy-paid", p.s.HTTPPort), strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", fmt.Sprintf("evt-%d", n))
		resp, err := p.client.Do(req)
		if err == nil {
			data, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode/100 == 2 {
				var a eventAnswer
				if err := json.Unmarshal(data, &a); err != nil || a.RequestUUID == "" {
					return a, fmt.Errorf("event %d: 2xx without a delivery: %s", n, data)
				}
				return a, nil
			}
			err = fmt.Errorf("HTTP %d: %s", resp.StatusCode, data)
			p.note(fmt.Sprintf("HTTP %d %.80s", resp.StatusCode, data))
		} else {
			p.note(errorKind(err))
		}
		p.refused++
		if time.Now().After(deadline) {
			return eventAnswer{}, fmt.Errorf("event %d not accepted within 30s: %v", n, err)
		}
		<-tick.C // the core's resend interval
	}
}

func (p *eventPoster) note(reason string) {
	if p.why == nil {
		p.why = map[string]int{}
	}
	p.why[reason]++
}

// errorKind is a transport error without its addresses.
func errorKind(err error) string {
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		return "transport: " + msg[i+2:]
	}
	return "transport: " + msg
}

// reloadsUnderLoad runs the scenario on the store the gongbao line names.
// dbPort is the database server's port ("" for SQLite): connections to
// it are pooled.
func reloadsUnderLoad(t *testing.T, storeLine, dbPort string) {
	platform := startPlatform(t)
	c := startCore(t)
	gongbao := storeLine + fmt.Sprintf("\n\t\tcallbacks {\n\t\t\tbase %s\n\t\t\tpoll_interval 100ms\n\t\t\tattempt_timeout 2s\n\t\t\trescue_after 15s\n\t\t}", platform.srv.URL)
	cfg := sidecarConfig{Gongbao: gongbao, Site: reloadSite(c.Addr(), 0)}
	s := startSidecar(t, "sidecar", cfg)
	caddyfile := func(gen int) string {
		return s.render(sidecarConfig{Gongbao: gongbao, Site: reloadSite(c.Addr(), gen)})
	}
	// A new connection per request: a keep-alive connection the old
	// server closes as a client reuses it fails in any HTTP server, and
	// says nothing about the sidecar.
	fresh := &http.Client{Timeout: replyTimeout, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}

	// Warm up (first request, first event, first reload) before the
	// baseline, so lazily started pieces are not counted as a leak.
	msg, _ := newMessage(t, "insureRequest.xml")
	env, _ := s.PostUntil(t, msg, settleBound, msgBusy)
	assertAccepted(t, env)
	events := &eventPoster{s: s, client: fresh}
	if _, err := events.post(t, "BD-RELOAD", 0); err != nil {
		t.Fatal(err)
	}
	s.Reload(t, caddyfile(0), true)
	s.client.CloseIdleConnections()
	fdsBefore := s.FDs(t)
	stacksBefore, gorBefore := s.Goroutines(t)
	pooledBeforeKinds, _ := s.fdKinds(map[string]string{portOf(platform.srv.Listener.Addr().String()): "platform", dbPort: "database"})
	pooledBefore := pooledBeforeKinds["platform"] + pooledBeforeKinds["database"]

	type result struct {
		id   string
		msg  []byte
		err  error
		flag string
		text string
	}
	results := make(chan result, reloadRequests)
	var answers sync.Map // event n → eventAnswer
	stopEvents := make(chan struct{})
	var wg sync.WaitGroup
	eventCount := 1
	wg.Go(func() {
		for n := 1; ; n++ {
			select {
			case <-stopEvents:
				return
			default:
			}
			a, err := events.post(t, "BD-RELOAD", n)
			if err != nil {
				t.Error(err)
				return
			}
			answers.Store(n, a)
			eventCount = n + 1
		}
	})

	start := time.Now()
	perReload := reloadRequests / reloads
	for i := 1; i <= reloads; i++ {
		// perReload requests leave as the reload starts; one of them is
		// held at the core until the reload is under way.
		hold := c.HoldNext()
		var batch sync.WaitGroup
		for range perReload {
			msg, id := newMessage(t, "insureRequest.xml")
			batch.Go(func() {
				resp, err := fresh.Post(s.URL(), "application/xml; charset=UTF-8", bytes.NewReader(msg))
				if err != nil {
					results <- result{id: id, msg: msg, err: err}
					return
				}
				raw, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				env, perr := parseSignedReply(raw)
				if perr != nil {
					results <- result{id: id, msg: msg, err: fmt.Errorf("HTTP %d: %w", resp.StatusCode, perr)}
					return
				}
				results <- result{id: id, msg: msg, flag: resultFlag(env), text: resultMessage(env)}
			})
		}
		released := make(chan struct{})
		go func() {
			defer close(released)
			select {
			case <-hold.acted:
			case <-time.After(replyTimeout):
			}
			time.Sleep(100 * time.Millisecond) // let the reload begin while the answer is held
			hold.Release()
		}()
		// Odd reloads change the config; even ones reload it unchanged.
		s.Reload(t, caddyfile(i-(i+1)%2), i%2 == 0)
		batch.Wait()
		<-released
	}
	reloadTime := time.Since(start)
	close(stopEvents)
	wg.Wait()
	close(results)

	failed, dropped := 0, 0
	for r := range results {
		switch {
		case r.err != nil:
			// A connection the old server accepted as it began shutting
			// down is closed unanswered by net/http once it has read the
			// request (server.go: "if c.server.shuttingDown() { return }"),
			// before any handler runs. Such a request never reached the
			// sidecar: no record, no core call. The platform resends it.
			if _, ok := s.Record(t, r.id); ok || len(c.Calls(r.id)) > 0 {
				failed++
				t.Errorf("request %s failed after reaching the sidecar: %v", r.id, r.err)
				continue
			}
			dropped++
			t.Logf("request %s: connection dropped before any handler ran (%v); resending", r.id, r.err)
			env, _ := s.Post(t, r.msg)
			if resultFlag(env) != "true" {
				failed++
				t.Errorf("request %s: the resend was answered resultFlag=%s %s", r.id, resultFlag(env), resultMessage(env))
			}
		case r.flag != "true":
			failed++
			t.Errorf("request %s: resultFlag=%s %s", r.id, r.flag, r.text)
		}
		if acted := actedCalls(c.Calls(r.id)); acted != 1 {
			t.Errorf("request %s: the core acted %d times (calls %+v)", r.id, acted, c.Calls(r.id))
		}
		if n := len(c.Calls(r.id)); n != 1 {
			t.Errorf("request %s: %d core calls, want 1", r.id, n)
		}
	}

	// Every accepted event is delivered once, under the requestUUID the
	// intake answered with.
	deadline := time.Now().Add(reloadDrainTime)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for len(platform.delivered()) < eventCount && time.Now().Before(deadline) {
		<-tick.C // polling the platform
	}
	got := platform.delivered()
	lost, dup := 0, 0
	for n := 1; n < eventCount; n++ {
		v, _ := answers.Load(n)
		a := v.(eventAnswer)
		uuids := got[fmt.Sprintf("BD-RELOAD-%04d", n)]
		switch {
		case len(uuids) == 0:
			lost++
			t.Errorf("event %d (delivery %d) was never delivered", n, a.ID)
		case len(uuids) > 1 || uuids[0] != a.RequestUUID:
			dup++
			t.Errorf("event %d: callbacks carried %v, want only %s", n, uuids, a.RequestUUID)
		}
	}
	platform.mu.Lock()
	posts, badSig := platform.posts, platform.badSig
	platform.mu.Unlock()
	if posts != eventCount {
		t.Errorf("the platform received %d callback posts for %d events: some callback was dispatched twice", posts, eventCount)
	}
	if badSig > 0 {
		t.Errorf("%d callbacks did not verify", badSig)
	}

	s.client.CloseIdleConnections()
	portNames := map[string]string{
		portOf(c.Addr()): "core", portOf(platform.srv.Listener.Addr().String()): "platform",
		strconv.Itoa(s.HTTPPort): "sidecar", strconv.Itoa(s.AdminPort): "admin",
	}
	// Connections to the platform and the database belong to pools
	// whose size follows the load, not the number of reloads: they are
	// bounded, the rest must come back to where it was.
	pools := map[string]string{portOf(platform.srv.Listener.Addr().String()): "platform"}
	if dbPort != "" {
		pools[dbPort] = "database"
	}
	otherBefore := fdsBefore - pooledBefore
	var pooled map[string]int
	fdsAfter := settledCount(func() int {
		var other int
		pooled, other = s.fdKinds(pools)
		return other
	}, otherBefore+reloadFDSlack, 10*time.Second)
	// River starts its maintenance goroutines only once the client is
	// elected leader, which may happen after the baseline: the check is
	// per stack, not on the total.
	var grown []string
	var gorAfter int
	deadline = time.Now().Add(10 * time.Second)
	tick.Reset(200 * time.Millisecond)
	for {
		var stacksAfter map[string]int
		stacksAfter, gorAfter = s.Goroutines(t)
		grown = grownStacks(stacksBefore, stacksAfter, reloadGorGrowth)
		if len(grown) == 0 || time.Now().After(deadline) {
			break
		}
		<-tick.C // polling an external process
	}
	if fdsAfter > otherBefore+reloadFDSlack {
		t.Errorf("file descriptors other than pooled connections: %d before the reloads, %d after: a leak; open now:\n%s", otherBefore, fdsAfter, s.fdTargets(portNames))
	}
	if pooled["platform"] > maxPlatformConns || pooled["database"] > maxDatabaseConns {
		t.Errorf("pooled connections %v, want at most %d to the platform and %d to the database; open now:\n%s", pooled, maxPlatformConns, maxDatabaseConns, s.fdTargets(portNames))
	}
	if len(grown) > 0 {
		t.Errorf("goroutine stacks that grew by %d or more over %d reloads (a leak):\n%s", reloadGorGrowth, reloads, strings.Join(grown, "\n"))
	}
	t.Logf("%d reloads in %s with %d requests (%d failed, %d dropped unanswered by net/http before reaching the sidecar and resent) and %d events (%d resends of refused events %v, %d lost, %d duplicated, %d callback posts); fds other than pooled connections %d→%d (pooled %v), goroutines %d→%d",
		reloads, reloadTime.Round(time.Millisecond), reloadRequests, failed, dropped, eventCount-1, events.refused, events.why, lost, dup, posts, otherBefore, fdsAfter, pooled, gorBefore, gorAfter)
}

// TestReloadsUnderLoadSQLite: 20 reloads with requests and events in
// flight, on the embedded store.
func TestReloadsUnderLoadSQLite(t *testing.T) {
	t.Parallel()
	reloadsUnderLoad(t, "store sqlite "+filepath.Join(t.TempDir(), "gongbao.db"), "")
}

// TestReloadsUnderLoadPostgres: the same on PostgreSQL.
func TestReloadsUnderLoadPostgres(t *testing.T) {
	t.Parallel()
	dsn := postgresDSN(t)
	reloadsUnderLoad(t, postgresStore(dsn, freshSchema(t, dsn)), portOf(postgresHost(t, dsn)))
}

// parseSignedReply parses a reply and checks its signature, as the
// platform does.
func parseSignedReply(raw []byte) (*protocol.Envelope, error) {
	env, err := protocol.Parse(raw, protocol.Limits{})
	if err != nil {
		return nil, fmt.Errorf("not a well-formed reply: %w: %.300s", err, raw)
	}
	if _, ok := protocol.VerifyAny(env.SignedValue(), env.Sign, []string{testKey}); !ok {
		return nil, errors.New("the reply's signature does not verify")
	}
	return env, nil
}

// portOf is the port of a host:port.
func portOf(hostport string) string {
	_, port, _ := strings.Cut(hostport, ":")
	return port
}
