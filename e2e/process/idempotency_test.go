package process

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptrace"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "modernc.org/sqlite" // the test holds the sidecar's SQLite file locked

	"github.com/caddy-gongbao/gongbao/internal/mockcore"
)

// Process-level acceptance tests of issue 4 (inbound idempotency): the
// built sidecar as a separate process, killed with SIGKILL at the worst
// moments, restarted on the same store, several of them on one PostgreSQL.

// settleBound bounds the platform's resending until a reply is final.
const settleBound = 20 * time.Second

// sqliteStore is the gongbao config of an SQLite store at path with a
// short lease, so a killed holder's record is taken over within seconds.
func sqliteStore(path string) string {
	return fmt.Sprintf("store sqlite %s\n\t\tidempotency {\n\t\t\tlease 2s\n\t\t}", path)
}

// TestKillBetweenCoreCallAndStore: the sidecar dies (kill -9) after the
// core committed the proposal and before the sidecar stored the core's
// answer. After a restart on the same SQLite file the platform's resend is
// answered with the proposal the core made the first time: the second
// core call carries the same Idempotency-Key and the core replays it.
func TestKillBetweenCoreCallAndStore(t *testing.T) {
	t.Parallel()
	c := startCore(t)
	db := filepath.Join(t.TempDir(), "gongbao.db")
	s := startSidecar(t, "sidecar", sidecarConfig{Core: c.Addr(), Gongbao: sqliteStore(db)})
	msg, id := newMessage(t, "insureRequest.xml")

	hold := c.HoldNext()
	lost := make(chan error, 1)
	go func() {
		_, err := s.Send(msg)
		lost <- err
	}()
	hold.WaitActed(t, replyTimeout)
	s.Kill()
	select {
	case err := <-lost:
		if err == nil {
			t.Fatal("the platform got a reply from a sidecar killed before the core answered")
		}
	case <-time.After(replyTimeout):
		t.Fatal("the platform's request did not end when the sidecar was killed")
	}
	var first struct{ ProposalNo string }
	if err := json.Unmarshal(hold.Answer(), &first); err != nil || first.ProposalNo == "" {
		t.Fatalf("the core's first answer has no proposal: %s", hold.Answer())
	}

	s.Start()
	hold.Release()
	env, raw := s.PostUntilSettled(t, msg, settleBound)
	assertAccepted(t, env)
	if got, _ := env.Text("proposalNo"); got != first.ProposalNo {
		t.Errorf("reply proposalNo = %q, want %q (the proposal the core made before the kill)", got, first.ProposalNo)
	}
	if n := c.Effects(mockcore.OpProposals); n != 1 {
		t.Errorf("the core made %d proposals, want 1", n)
	}
	calls := c.Calls(id)
	if len(calls) != 2 || calls[0].Replayed || !calls[1].Replayed {
		t.Errorf("core calls with Idempotency-Key %s: %+v, want the first acting and the second replayed", id, calls)
	}
	if len(c.Calls("")) != len(calls) {
		t.Errorf("the core got calls without the message's Idempotency-Key: %+v", c.Calls(""))
	}
	rec, ok := s.Record(t, id)
	if !ok || rec.State != "completed" || rec.Attempts != 2 || rec.Reply != string(raw) {
		t.Errorf("record after the resend: %+v (exists %v), want completed after 2 attempts with the reply sent", rec, ok)
	}

	// A further resend is a replay from the store: no third core call.
	_, again := s.Post(t, msg)
	if !bytes.Equal(again, raw) {
		t.Errorf("second resend differs from the first:\n%s\n%s", again, raw)
	}
	if n := len(c.Calls(id)); n != 2 {
		t.Errorf("core calls = %d after a resend of a completed request, want 2", n)
	}
}

// TestKillAfterReplyStored: the sidecar stored the reply and dies before
// the platform read it. The platform's resend after the restart gets the
// stored reply byte for byte; the core is called once in all.
func TestKillAfterReplyStored(t *testing.T) {
	t.Parallel()
	c := startCore(t)
	db := filepath.Join(t.TempDir(), "gongbao.db")
	s := startSidecar(t, "sidecar", sidecarConfig{Core: c.Addr(), Gongbao: sqliteStore(db)})
	msg, id := newMessage(t, "insureRequest.xml")

	conn := s.SendUnread(t, msg)
	stored := s.WaitState(t, id, "completed", settleBound)
	s.Kill()
	conn.Close() // the platform never read the answer

	s.Start()
	env, raw := s.Post(t, msg)
	assertAccepted(t, env)
	if !bytes.Equal(raw, []byte(stored.Reply)) {
		t.Errorf("resend reply is not the stored reply:\n got %s\nwant %s", raw, stored.Reply)
	}
	if n := len(c.Calls("")); n != 1 {
		t.Errorf("core calls = %d, want 1", n)
	}
	if n := c.Effects(mockcore.OpProposals); n != 1 {
		t.Errorf("the core made %d proposals, want 1", n)
	}
}

// TestSharedPostgresInstances: three sidecars on one PostgreSQL schema
// behave as one. For each of several messages, 30 identical copies are
// sent at once, round-robin over the instances, while the core holds its
// answer to the first: the core is called once per message and every copy
// gets the same signed accepting reply, byte for byte.
func TestSharedPostgresInstances(t *testing.T) {
	t.Parallel()
	dsn := postgresDSN(t)
	schema := freshSchema(t, dsn)
	c := startCore(t)
	cfg := sidecarConfig{Core: c.Addr(), Gongbao: postgresStore(dsn, schema)}
	sidecars := startSidecars(t, cfg, cfg, cfg)

	const messages, copies = 5, 30
	for m := range messages {
		msg, id := newMessage(t, "insureRequest.xml")
		replies := sendConcurrently(t, c, sidecars, msg, copies)
		for i, raw := range replies {
			env := verifyReply(t, raw)
			assertAccepted(t, env)
			if !bytes.Equal(raw, replies[0]) {
				t.Fatalf("message %d: copy %d (via %s) differs from copy 0:\n%s\n%s", m, i, sidecars[i%len(sidecars)].name, raw, replies[0])
			}
		}
		if calls := c.Calls(id); len(calls) != 1 {
			t.Fatalf("message %d: %d core calls, want 1: %+v", m, len(calls), calls)
		}
		// Every instance sees the one record.
		for _, s := range sidecars {
			rec, ok := s.Record(t, id)
			if !ok || rec.State != "completed" || rec.Attempts != 1 || rec.Reply != string(replies[0]) {
				t.Errorf("message %d: %s shows %+v (exists %v), want completed once with the reply sent", m, s.name, rec, ok)
			}
		}
	}
	if n := c.Effects(mockcore.OpProposals); n != messages {
		t.Errorf("the core made %d proposals, want %d", n, messages)
	}
}

// sendConcurrently sends copies of msg at once, copy i to instance
// i mod len(sidecars), and returns the replies. The core holds its answer
// to the first call until every copy has been written to its sidecar, so
// the copies meet the first one in flight rather than after it.
func sendConcurrently(t *testing.T, c *testCore, sidecars []*sidecar, msg []byte, copies int) [][]byte {
	t.Helper()
	hold := c.HoldNext()
	var written atomic.Int32
	allWritten := make(chan struct{})
	replies := make([][]byte, copies)
	errs := make([]error, copies)
	var wg sync.WaitGroup
	for i := range copies {
		s := sidecars[i%len(sidecars)]
		wg.Go(func() {
			var once sync.Once
			trace := &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) {
				once.Do(func() {
					if written.Add(1) == int32(copies) {
						close(allWritten)
					}
				})
			}}
			req, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace),
				http.MethodPost, s.URL(), bytes.NewReader(msg))
			if err != nil {
				errs[i] = err
				return
			}
			req.Header.Set("Content-Type", "application/xml; charset=UTF-8")
			resp, err := s.client.Do(req)
			if err != nil {
				errs[i] = err
				return
			}
			defer resp.Body.Close()
			var buf bytes.Buffer
			_, errs[i] = buf.ReadFrom(resp.Body)
			if errs[i] == nil && resp.StatusCode != http.StatusOK {
				errs[i] = fmt.Errorf("HTTP %d: %s", resp.StatusCode, buf.Bytes())
			}
			replies[i] = buf.Bytes()
		})
	}
	select {
	case <-allWritten:
	case <-time.After(replyTimeout):
		t.Error("not every copy was written to a sidecar in time")
	}
	select {
	case <-hold.acted:
	case <-time.After(replyTimeout):
		t.Error("no copy reached the core in time")
	}
	hold.Release()
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("copy %d via %s: %v", i, sidecars[i%len(sidecars)].name, err)
		}
	}
	return replies
}

// TestStoreDownFailsClosed: the store becomes unreachable while the sidecar
// runs. A request is refused with a signed, retryable 系统繁忙 reply and
// the core is not called; once the store is back no record of that request
// was left behind, and the platform's resend is processed normally.
//
// How the store goes down: the sidecar reaches PostgreSQL through a TCP
// proxy in the test. Taking the proxy down closes every pooled connection
// and refuses new ones — what the sidecar sees when the database host
// crashes, restarts or is cut off. Nothing else (file permissions, a
// stopped server) works as root without disturbing other users of the
// shared server.
func TestStoreDownFailsClosed(t *testing.T) {
	t.Parallel()
	dsn := postgresDSN(t)
	proxy := startProxy(t, postgresHost(t, dsn))
	schema := freshSchema(t, dsn)
	c := startCore(t)
	s := startSidecar(t, "sidecar", sidecarConfig{Core: c.Addr(), Gongbao: postgresStore(withHost(dsn, proxy.Addr()), schema)})

	// A first request goes through, so the outage breaks live pooled
	// connections, not only new ones.
	warm, _ := newMessage(t, "insureRequest.xml")
	env, _ := s.Post(t, warm)
	assertAccepted(t, env)

	proxy.Down()
	msg, id := newMessage(t, "insureRequest.xml")
	// Several resends: the first ones meet the pool's broken connections,
	// the later ones refused connects.
	for range 6 {
		env, _ := s.Post(t, msg)
		assertRefused(t, env, msgBusy)
		if env.Root != "insureResponse" {
			t.Errorf("reply root %s, want insureResponse", env.Root)
		}
	}
	if calls := c.Calls(id); len(calls) != 0 {
		t.Fatalf("the core was called while the store was down: %+v", calls)
	}

	proxy.Up()
	if n := countRecords(t, dsn, schema, id); n != 0 {
		t.Errorf("%d records of the refused request in PostgreSQL, want none", n)
	}
	// The platform resends on 系统繁忙: connections the pool still holds
	// from before the outage may each fail one more request.
	env, _ = s.PostUntil(t, msg, settleBound, msgBusy)
	assertAccepted(t, env)
	if calls := c.Calls(id); len(calls) != 1 {
		t.Errorf("core calls after the store came back = %d, want 1", len(calls))
	}
	if n := c.Effects(mockcore.OpProposals); n != 2 {
		t.Errorf("the core made %d proposals, want 2", n)
	}
}

// TestStoreLockedFailsClosed: the SQLite store cannot be written because
// another process holds its write lock longer than the busy timeout (an
// operator's sqlite3 shell left in a transaction, a backup tool). As root
// this is the realistic way an SQLite store becomes unwritable: file
// permissions do not stop root. The request is refused with 系统繁忙, the
// core is not called, and no record is left behind.
//
// The sidecar's one SQLite connection is shared with housekeeping and
// callback delivery, each of which may wait out the busy timeout (5 s)
// while holding it; the claim's own deadline (3 s per store call) keeps
// the reply prompt. Before that deadline existed, 20–38 s were seen.
func TestStoreLockedFailsClosed(t *testing.T) {
	t.Parallel()
	c := startCore(t)
	path := filepath.Join(t.TempDir(), "gongbao.db")
	s := startSidecar(t, "sidecar", sidecarConfig{Core: c.Addr(), Gongbao: sqliteStore(path)})

	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ctx := context.Background()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatalf("taking the write lock: %v", err)
	}

	msg, id := newMessage(t, "insureRequest.xml")
	// Each store call on the request path is bounded (3 s), so the reply
	// comes promptly even though other users of the single SQLite
	// connection wait out the 5 s busy timeout.
	bound := 15 * time.Second
	s.SetReplyTimeout(bound)
	began := time.Now()
	env, _ := s.Post(t, msg)
	t.Logf("the 系统繁忙 reply took %s", time.Since(began).Round(time.Millisecond))
	assertRefused(t, env, msgBusy)
	if calls := c.Calls(id); len(calls) != 0 {
		t.Fatalf("the core was called while the store was locked: %+v", calls)
	}

	if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := conn.QueryRowContext(ctx, "SELECT count(*) FROM gongbao_idempotency WHERE key = ?", id).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("%d records of the refused request, want none", n)
	}
	env, _ = s.Post(t, msg)
	assertAccepted(t, env)
	if calls := c.Calls(id); len(calls) != 1 {
		t.Errorf("core calls after the lock was released = %d, want 1", len(calls))
	}
}

// TestStoreStalledFailsClosed: the store stops answering without closing
// connections (a hung database host, packets dropped by a firewall). The
// platform must still get a signed, retryable 系统繁忙 reply within a
// bounded time, and the core must not be called.
//
// This found a bug: the claim ran under the platform request's context,
// which has no deadline, so the sidecar answered nothing until the
// platform hung up. Each store call on the request path is now bounded.
func TestStoreStalledFailsClosed(t *testing.T) {
	t.Parallel()
	dsn := postgresDSN(t)
	proxy := startProxy(t, postgresHost(t, dsn))
	schema := freshSchema(t, dsn)
	c := startCore(t)
	s := startSidecar(t, "sidecar", sidecarConfig{Core: c.Addr(),
		Gongbao: postgresStore(withHost(dsn, proxy.Addr()), schema) + "\n\t\tidempotency {\n\t\t\tlease 2s\n\t\t}"})
	warm, _ := newMessage(t, "insureRequest.xml")
	env, _ := s.Post(t, warm)
	assertAccepted(t, env)

	proxy.Stall()
	msg, id := newMessage(t, "insureRequest.xml")
	const bound = 20 * time.Second // well inside a platform's patience
	s.SetReplyTimeout(bound)
	env, _ = s.Post(t, msg)
	assertRefused(t, env, msgBusy)
	if calls := c.Calls(id); len(calls) != 0 {
		t.Fatalf("the core was called while the store was stalled: %+v", calls)
	}

	// Once the store answers again the platform's resends go through. A
	// statement held up by the stall may still reach the server and leave
	// an in_progress record; its lease (2s here) then delays the resend,
	// but the core still acts once.
	proxy.Resume()
	s.SetReplyTimeout(replyTimeout)
	env, _ = s.PostUntil(t, msg, settleBound, msgBusy, msgInProgress)
	assertAccepted(t, env)
	if n := c.Effects(mockcore.OpProposals); n != 2 {
		t.Errorf("the core made %d proposals, want 2", n)
	}
}
