package process

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/caddy-gongbao/gongbao/internal/mockcore"
)

// Disk full and a read-only store on the embedded backend (issue 7, item
// 5). File permissions do not stop root, so for the disk full the SQLite
// file lives on a small tmpfs of its own that the test fills to capacity
// and frees again, and for the read-only store its files are made
// immutable.

// smallFS mounts a tmpfs of size at a fresh folder and unmounts it at the
// end of the test, after the sidecars (register it before starting them).
// The test is skipped where mounting is not allowed.
func smallFS(t *testing.T, size string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "small")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0700", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a small tmpfs (needs root or CAP_SYS_ADMIN): %v %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", dir, err, out)
		}
	})
	return dir
}

// fillFS writes a file in dir until the file system refuses more, and
// returns it; removing it frees the space.
func fillFS(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, size := range []int{1 << 20, 64 << 10, 4 << 10, 512, 1} {
		chunk := make([]byte, size)
		for {
			if _, err := f.Write(chunk); err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatalf("filling %s: %v", dir, err)
				}
				break
			}
		}
	}
	return path
}

// TestStoreDiskFull: with the SQLite store's file system full, a new
// platform request is refused with a signed 系统繁忙 (retry later) and the
// core is not called; an event gets a non-2xx, so the core keeps it. Once
// space returns, the platform's resend is accepted with exactly one core
// call, the event is accepted and its callback delivered.
func TestStoreDiskFull(t *testing.T) {
	t.Parallel()
	dir := smallFS(t, "16m")
	storeFaultScenario(t, dir, "BD-FULL", false, func() (restore func()) {
		filler := fillFS(t, dir)
		return func() {
			if err := os.Remove(filler); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// TestStoreReadOnly: the store's files turn read-only while the sidecar
// runs (here: the immutable attribute, which binds root too and, on ext4,
// refuses writes through descriptors already open). The same duties as
// with the disk full: fail closed with a retryable answer, recover when
// writes are possible again.
//
// The folder, the database and its write-ahead log are made immutable,
// not the shared-memory index (gongbao.db-shm): SQLite maps that file
// into memory and writes it through the mapping, and a write fault there
// is SIGBUS, which ends the process, as it would any SQLite program in WAL
// mode. A file system the kernel remounts read-only on an I/O error would
// do the same; SECURITY.md says so. (A plain read-only remount is refused
// while the sidecar holds the files open for writing.)
func TestStoreReadOnly(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "store")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	probe := filepath.Join(dir, "probe")
	if err := os.WriteFile(probe, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("chattr", "+i", probe).CombinedOutput(); err != nil {
		t.Skipf("cannot set the immutable attribute here (needs root and a file system that has it, e.g. ext4): %v %s", err, out)
	}
	immutable(t, "-i", probe)
	if err := os.Remove(probe); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(dir, "gongbao.db")
	files := []string{dir, db, db + "-wal"}
	// Whatever happens, the files must be writable again for the
	// sidecar's shutdown and the test's clean-up (registered after the
	// sidecar's, so it runs before them).
	var restored bool
	storeFaultScenario(t, dir, "BD-RO", true, func() (restore func()) {
		t.Cleanup(func() {
			if !restored {
				immutable(t, "-i", files...)
			}
		})
		immutable(t, "+i", files...)
		return func() {
			immutable(t, "-i", files...)
			restored = true
		}
	})
}

// immutable sets (+i) or clears (-i) the immutable attribute of paths.
func immutable(t *testing.T, op string, paths ...string) {
	t.Helper()
	if out, err := exec.Command("chattr", append([]string{op}, paths...)...).CombinedOutput(); err != nil {
		t.Fatalf("chattr %s %v: %v %s", op, paths, err, out)
	}
}

// storeFaultScenario runs a sidecar on an SQLite store in dir, checks the
// healthy path, injects a fault that makes the store unwritable, checks
// that platform requests are refused with a signed 系统繁忙 without calling
// the core, that events get a non-2xx and that the admin API answers (the
// records, or a 503 if readsMayFail), then restores the store and
// checks that the platform's resend is served with exactly one core call
// and every event is accepted and its callback delivered once.
func storeFaultScenario(t *testing.T, dir, prefix string, readsMayFail bool, inject func() (restore func())) {
	platform := startPlatform(t)
	c := startCore(t)
	s := startSidecar(t, "sidecar", sidecarConfig{
		Gongbao: fmt.Sprintf("store sqlite %s\n\t\tcallbacks {\n\t\t\tbase %s\n\t\t\tpoll_interval 100ms\n\t\t\tattempt_timeout 2s\n\t\t\trescue_after 15s\n\t\t}",
			filepath.Join(dir, "gongbao.db"), platform.srv.URL),
		Site: reloadSite(c.Addr(), 0),
	})
	// The healthy path first.
	before, _ := newMessage(t, "insureRequest.xml")
	env, _ := s.Post(t, before)
	assertAccepted(t, env)
	postEventUntilAccepted(t, s, prefix, 0, 20*time.Second)

	restore := inject()
	msg, id := newMessage(t, "insureRequest.xml")
	for attempt := 1; attempt <= 3; attempt++ {
		start := time.Now()
		env, _ := s.Post(t, msg)
		assertRefused(t, env, msgBusy)
		if took := time.Since(start); took > 15*time.Second {
			t.Errorf("attempt %d: the refusal took %s", attempt, took)
		}
	}
	if calls := c.Calls(id); len(calls) != 0 {
		t.Errorf("the core was called with the store unwritable: %+v", calls)
	}
	for n := 1; n <= 2; n++ {
		status, body := postEventStatus(t, s, prefix, n)
		if status/100 == 2 {
			t.Errorf("event %d accepted with the store unwritable: %d %s", n, status, body)
		}
		t.Logf("event %d with the store unwritable: %d %s", n, status, strings.Join(strings.Fields(body), " "))
	}
	// The operator gets a clear answer: the records when the store can
	// still be read (disk full), else a 503 naming the store. In WAL mode
	// even a reader writes to the shared-memory file, which a read-only
	// store refuses.
	status, body, err := s.Admin(http.MethodGet, "/gongbao/requests?limit=1", nil)
	switch {
	case err != nil:
		t.Errorf("admin API with the store unwritable: %v", err)
	case status == http.StatusOK:
	case readsMayFail && status == http.StatusServiceUnavailable && strings.Contains(string(body), "store unavailable"):
		t.Logf("admin API with the store unwritable: %d %s", status, body)
	default:
		t.Errorf("admin API with the store unwritable: %d %s", status, body)
	}

	restore()
	env, _ = s.PostUntil(t, msg, settleBound, msgBusy)
	assertAccepted(t, env)
	s.WaitState(t, id, "completed", 5*time.Second)
	if acted := actedCalls(c.Calls(id)); acted != 1 {
		t.Errorf("the core acted %d times after the store recovered (calls %+v)", acted, c.Calls(id))
	}
	if n := c.Effects(mockcore.OpProposals); n != 2 {
		t.Errorf("the core made %d proposals, want 2", n)
	}
	answers := map[int]eventAnswer{}
	for n := 1; n <= 2; n++ {
		answers[n] = postEventUntilAccepted(t, s, prefix, n, 20*time.Second)
	}
	waitDelivered(t, platform, 3, 30*time.Second)
	got := platform.delivered()
	for n, a := range answers {
		uuids := got[fmt.Sprintf("%s-%04d", prefix, n)]
		if len(uuids) != 1 || uuids[0] != a.RequestUUID {
			t.Errorf("event %d: the platform saw %v, want only %s", n, uuids, a.RequestUUID)
		}
	}
	faultsInjected.Add(1)
}

// postEventStatus posts event n of prefix once and returns the answer.
func postEventStatus(t *testing.T, s *sidecar, prefix string, n int) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/events/policy-paid", s.HTTPPort), strings.NewReader(paidEvent(prefix, n)))
	req.Header.Set("Idempotency-Key", fmt.Sprintf("evt-%d", n))
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 20 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("event %d: %v", n, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(data)
}
