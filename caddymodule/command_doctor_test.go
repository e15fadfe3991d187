package caddymodule

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// doctorSetup is a go-live config whose every dependency is real: a core
// and a platform stand-in listening on loopback, the repository's
// mappings, an SQLite file in a temporary folder.
type doctorSetup struct {
	key, mappings, store, core, callbackBase, insuranceCode, extraSite string
	health                                                             int // status of the core's /health
}

func newDoctorSetup(t *testing.T) *doctorSetup {
	t.Helper()
	s := &doctorSetup{health: http.StatusOK}
	core := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" {
			w.WriteHeader(s.health)
		}
	}))
	platform := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("the doctor sent a request to the platform: %s %s", r.Method, r.URL)
	}))
	t.Cleanup(core.Close)
	t.Cleanup(platform.Close)
	s.key = "{env.GONGBAO_SIGN_KEY}"
	s.mappings = filepath.Join("..", "mappings")
	s.store = FreshStoreForTest(t)
	s.core = core.Listener.Addr().String()
	s.callbackBase = platform.URL
	s.insuranceCode = "12345"
	return s
}

func (s *doctorSetup) caddyfile() string {
	return fmt.Sprintf(`{
	gongbao {
		sign_key {env.GONGBAO_SIGN_KEY}
		verify_key %s
		mappings %s
		store sqlite %s
		insurance_code %s
		callbacks {
			base %s
		}
	}
}

http://127.0.0.1:18080 {
	handle /gongbao* {
		gongbao
		reverse_proxy %s
	}
	%s
}

http://127.0.0.1:18081 {
	bind 127.0.0.1
	handle /events/* {
		gongbao_notify
	}
}
`, s.key, s.mappings, s.store, s.insuranceCode, s.callbackBase, s.core, s.extraSite)
}

// runDoctorOn writes the setup's Caddyfile and runs the doctor on it.
func runDoctorOn(t *testing.T, s *doctorSetup, args ...string) (string, int) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(file, []byte(s.caddyfile()), 0o600); err != nil {
		t.Fatal(err)
	}
	out, stderr, code := runCLI(t, doctorCommand(), nil, append([]string{"--config", file, "--adapter", "caddyfile", "--timeout", "2s"}, args...)...)
	return out + stderr, code
}

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestDoctorGoodConfig: every check passes, exit 0, and the output shows
// fingerprints, never the key.
func TestDoctorGoodConfig(t *testing.T) {
	s := newDoctorSetup(t)
	s.key = "{env.GONGBAO_SIGN_KEY}"
	out, code := runDoctorOn(t, s, "--health-path", "/health")
	if code != 0 || strings.Contains(out, "✗") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	for _, want := range []string{"✔ keys: sign_key " + keyFingerprint(cliTestKey), "✔ mappings:", "✔ store: sqlite " + s.store,
		"✔ core " + s.core + ": reachable; GET http://" + s.core + "/health: HTTP 200",
		"✔ callback queryPolicyRequest (policy-paid)", "✔ insurance code: 12345", "✔ exposure"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// TestDoctorBrokenItems: each broken item is named, with a fix, and the
// exit status is non-zero.
func TestDoctorBrokenItems(t *testing.T) {
	cases := []struct {
		name    string
		breakIt func(t *testing.T, s *doctorSetup)
		says    []string
	}{
		{"missing key", func(t *testing.T, s *doctorSetup) {
			os.Unsetenv("GONGBAO_DOCTOR_UNSET")
			s.key = "{env.GONGBAO_DOCTOR_UNSET}"
		}, []string{"✗ keys: gongbao: verify_key: placeholder {env.GONGBAO_DOCTOR_UNSET} resolved to an empty value", "fix:"}},
		{"unreadable mappings", func(t *testing.T, s *doctorSetup) {
			s.mappings = filepath.Join(t.TempDir(), "no-such-folder")
		}, []string{"✗ mappings:", "no-such-folder"}},
		{"unwritable store", func(t *testing.T, s *doctorSetup) {
			file := filepath.Join(t.TempDir(), "a-file")
			os.WriteFile(file, []byte("x"), 0o600)
			s.store = filepath.Join(file, "gongbao.db") // a folder that is a file: not even root can write there
		}, []string{"✗ store: sqlite ", "fix: make the folder writable"}},
		{"core down", func(t *testing.T, s *doctorSetup) {
			s.core = closedAddr(t)
		}, []string{"✗ core 127.0.0.1:", "connection refused", "fix: start the core"}},
		{"core unhealthy", func(t *testing.T, s *doctorSetup) {
			s.health = http.StatusServiceUnavailable
		}, []string{"✗ core 127.0.0.1:", "HTTP 503"}},
		{"callback host unreachable", func(t *testing.T, s *doctorSetup) {
			s.callbackBase = "http://" + closedAddr(t)
		}, []string{"✗ callback queryPolicyRequest (policy-paid)", "connection refused", "fix: correct callbacks"}},
		{"callback TLS fails", func(t *testing.T, s *doctorSetup) {
			srv := httptest.NewTLSServer(http.NotFoundHandler()) // its certificate is not trusted
			t.Cleanup(srv.Close)
			s.callbackBase = srv.URL
		}, []string{"✗ callback queryInvoiceRequest (invoice-issued)", "certificate"}},
		{"placeholder insurance code", func(t *testing.T, s *doctorSetup) {
			s.insuranceCode = "TEST"
		}, []string{`✗ insurance code: insurance_code "TEST" is not 5 digits`}},
		{"events intake on the platform listener", func(t *testing.T, s *doctorSetup) {
			s.extraSite = "handle /events/* {\n\t\tgongbao_notify\n\t}"
		}, []string{"✗ exposure: server ", "18080) serves both the platform endpoint (gongbao) and the events intake", "fix: move gongbao_notify"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newDoctorSetup(t)
			c.breakIt(t, s)
			out, code := runDoctorOn(t, s, "--health-path", "/health")
			if code == 0 {
				t.Fatalf("exit 0 with a broken %s:\n%s", c.name, out)
			}
			for _, want := range c.says {
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
			// Only the broken item fails (a callback host fails once per
			// callback URL on it).
			item := strings.TrimPrefix(c.says[0], "✗ ")
			item = item[:strings.IndexAny(item, " :")]
			for _, line := range strings.Split(out, "\n") {
				if strings.HasPrefix(line, "✗") && !strings.HasPrefix(line, "✗ "+item) {
					t.Errorf("another check failed too: %s", line)
				}
			}
		})
	}
}
