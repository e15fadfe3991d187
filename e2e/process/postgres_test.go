package process

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/caddy-gongbao/gongbao/caddymodule/store/storetest"
)

// postgresDSN is the test server (storetest.DSN): skipped when it cannot
// be reached, a failure in CI.
func postgresDSN(t testing.TB) string { return storetest.DSN(t) }

// freshSchema names a schema no other test uses, dropped at the end of the
// test after the sidecars were killed (it is registered before any
// sidecar starts).
func freshSchema(t testing.TB, dsn string) string {
	return storetest.FreshSchema(t, dsn, "gongbao_proc")
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
	return countRows(t, dsn, schema, "gongbao_idempotency", "key = $1", key)
}

// countRows counts the rows of table in schema that match where, read
// straight from PostgreSQL rather than through a sidecar.
func countRows(t testing.TB, dsn, schema, table, where string, args ...any) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	q := "SELECT count(*) FROM " + pgx.Identifier{schema, table}.Sanitize() + " WHERE " + where
	if err := conn.QueryRow(ctx, q, args...).Scan(&n); err != nil {
		t.Fatalf("counting %s: %v", table, err)
	}
	return n
}
