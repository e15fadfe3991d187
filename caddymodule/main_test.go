package caddymodule_test

import (
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/certmagic"
)

var update = flag.Bool("update", false, "rewrite golden files")

// testKey is the platform's published test key (DESIGN §1.2).
const testKey = "MeTKJnC3fIAxeer8erADRTlJ"

// TestMain keeps Caddy's state (autosave, storage, local CA) out of HOME.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "gongbao-caddy-test-")
	if err != nil {
		panic(err)
	}
	os.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "config"))
	os.Setenv("XDG_DATA_HOME", filepath.Join(dir, "data"))
	os.Setenv("GONGBAO_TEST_KEY", testKey)
	if err := pickTestPorts(); err != nil {
		panic(err)
	}
	caddy.DefaultStorage = &certmagic.FileStorage{Path: filepath.Join(dir, "storage")}
	caddy.ConfigAutosavePath = filepath.Join(dir, "autosave.json")
	defer os.RemoveAll(dir)
	m.Run() // its status is the test binary's (TestMain may return since Go 1.15)
}

// repoPath names a file relative to the repository root.
func repoPath(parts ...string) string {
	return filepath.Join(append([]string{".."}, parts...)...)
}
