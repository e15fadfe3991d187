package caddymodule_test

import (
	"flag"
	"fmt"
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
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "config"))
	os.Setenv("XDG_DATA_HOME", filepath.Join(dir, "data"))
	os.Setenv("GONGBAO_TEST_KEY", testKey)
	if err := pickTestPorts(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	caddy.DefaultStorage = &certmagic.FileStorage{Path: filepath.Join(dir, "storage")}
	caddy.ConfigAutosavePath = filepath.Join(dir, "autosave.json")
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// repoPath names a file relative to the repository root.
func repoPath(parts ...string) string {
	return filepath.Join(append([]string{".."}, parts...)...)
}
