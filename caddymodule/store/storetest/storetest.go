// Package storetest gives tests a PostgreSQL server to run against, the
// way net/http/httptest gives them an HTTP server: the DSN of the
// development or CI server, and fresh schemas dropped when a test ends.
//
// The server is GONGBAO_TEST_POSTGRES, else the local one at
// postgres://root@127.0.0.1:5432/test. When it cannot be reached, tests
// that need it are skipped with a message saying so — unless
// GONGBAO_REQUIRE_POSTGRES=1 (CI sets it), where that is a failure, so a
// missing server can never make a suite pass silently.
//
// Only tests import it. It must not import package store (store's own
// tests use it) nor anything of Caddy.
package storetest

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// DefaultDSN is the development and CI server.
const DefaultDSN = "postgres://root@127.0.0.1:5432/test?sslmode=disable"

var reachable struct {
	once sync.Once
	err  error
}

// DSN returns the test server's DSN, or skips (or, in CI, fails) the test
// when it cannot be reached. The server is probed once per process.
func DSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv("GONGBAO_TEST_POSTGRES")
	if dsn == "" {
		dsn = DefaultDSN
	}
	reachable.once.Do(func() { reachable.err = ping(dsn) })
	if err := reachable.err; err != nil {
		msg := fmt.Sprintf("PostgreSQL not reachable at %s (%v); set GONGBAO_TEST_POSTGRES", Redact(dsn), err)
		if os.Getenv("GONGBAO_REQUIRE_POSTGRES") == "1" {
			t.Fatal(msg + " (GONGBAO_REQUIRE_POSTGRES=1)")
		}
		t.Skip(msg)
	}
	return dsn
}

func ping(dsn string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	return conn.Ping(ctx)
}

// Redact hides a DSN's password; a key=value DSN is not echoed at all.
func Redact(dsn string) string {
	if u, err := url.Parse(dsn); err == nil && u.Host != "" {
		return u.Redacted()
	}
	return "the GONGBAO_TEST_POSTGRES DSN"
}

// FreshSchema names a schema no other test uses (prefix_<random>), to be
// created by whoever opens the store on it. It is dropped with everything
// in it when the test ends. Call it before opening any handle on it:
// cleanups run last-registered first, so the drop runs after the handles
// (and sidecar processes) registered later are gone.
func FreshSchema(t testing.TB, dsn, prefix string) string {
	t.Helper()
	schema := prefix + "_" + strings.ToLower(rand.Text()[:16])
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Errorf("dropping schema %s: %v", schema, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
			t.Errorf("dropping schema %s: %v", schema, err)
		}
	})
	return schema
}
