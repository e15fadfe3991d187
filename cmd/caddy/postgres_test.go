package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/caddy-gongbao/gongbao/caddymodule/protocol"
)

// defaultPostgresDSN is the development and CI server (TOOLCHAIN.md).
const defaultPostgresDSN = "postgres://root@127.0.0.1:5432/test?sslmode=disable"

// postgresDSN is the server the PostgreSQL tests use: GONGBAO_TEST_POSTGRES
// or the default. The tests skip when it cannot be reached, unless
// GONGBAO_REQUIRE_POSTGRES=1 (CI), where that is a failure.
func postgresDSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv("GONGBAO_TEST_POSTGRES")
	if dsn == "" {
		dsn = defaultPostgresDSN
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err == nil {
		err = conn.Ping(ctx)
		conn.Close(ctx)
	}
	if err != nil {
		msg := fmt.Sprintf("PostgreSQL is not reachable (set GONGBAO_TEST_POSTGRES to a DSN): %v", err)
		if os.Getenv("GONGBAO_REQUIRE_POSTGRES") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return dsn
}

// freshSchema names a schema no other test uses. The sidecars create it;
// it is dropped with everything in it at the end of the test, after the
// sidecars were killed (cleanups run last-registered first, and this one
// is registered before any sidecar starts).
func freshSchema(t testing.TB, dsn string) string {
	t.Helper()
	schema := "gongbao_proc_" + strings.ReplaceAll(protocol.NewUUID()[:13], "-", "_")
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

// postgresStore is the gongbao `store` line for dsn and schema.
func postgresStore(dsn, schema string) string {
	return fmt.Sprintf("store %s %s %s", "postgres", caddyfileQuote(dsn), schema)
}

// caddyfileQuote makes s one Caddyfile token, whatever spaces it holds.
func caddyfileQuote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// postgresHost is the host:port a URL-form DSN connects to.
func postgresHost(t testing.TB, dsn string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil || u.Host == "" || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		t.Skipf("this test needs a URL-form PostgreSQL DSN (postgres://…) to route through a proxy")
	}
	if u.Port() == "" {
		return u.Host + ":5432"
	}
	return u.Host
}

// withHost is dsn pointed at another host:port.
func withHost(dsn, hostport string) string {
	u, _ := url.Parse(dsn)
	u.Host = hostport
	return u.String()
}

// countRecords counts the idempotency rows of key in schema, read straight
// from PostgreSQL rather than through a sidecar.
func countRecords(t testing.TB, dsn, schema, key string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	q := "SELECT count(*) FROM " + pgx.Identifier{schema, "gongbao_idempotency"}.Sanitize() + " WHERE key = $1"
	if err := conn.QueryRow(ctx, q, key).Scan(&n); err != nil {
		t.Fatalf("counting records: %v", err)
	}
	return n
}
