package caddymodule

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/caddyserver/caddy/v2"
)

// migratedStore is an SQLite store file with every migration applied,
// made once per test binary and kept in memory: migrating a new file
// (River's tables among them) costs about half a second of CPU under
// -race, and most tests open a store of their own.
var migratedStore struct {
	once sync.Once
	data []byte
	err  error
}

// FreshStoreForTest returns the path of a new SQLite store file in t's
// temporary directory: a copy of the migrated one. The tests of package
// caddymodule_test use it too.
func FreshStoreForTest(t testing.TB) string {
	t.Helper()
	migratedStore.once.Do(func() {
		migratedStore.data, migratedStore.err = migrateStore()
	})
	if migratedStore.err != nil {
		t.Fatalf("preparing the test store: %v", migratedStore.err)
	}
	path := filepath.Join(t.TempDir(), "gongbao.db")
	if err := os.WriteFile(path, migratedStore.data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// migrateStore provisions an app on a new store file, cleans it up (which
// closes the store and folds its write-ahead log into the file) and
// returns the file's bytes.
func migrateStore() ([]byte, error) {
	dir, err := os.MkdirTemp("", "gongbao-migrated-store-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "gongbao.db")
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	app := &App{
		SignKey:  "migrating-the-test-store",
		Mappings: filepath.Join("..", "mappings"),
		Store:    &StoreConfig{Driver: "sqlite", Path: path},
	}
	if err := app.Provision(ctx); err != nil {
		return nil, err
	}
	if err := app.Cleanup(); err != nil {
		return nil, err
	}
	if _, err := os.Stat(path + "-wal"); err == nil {
		return nil, errors.New("the store left a write-ahead log behind after closing")
	}
	return os.ReadFile(path)
}
