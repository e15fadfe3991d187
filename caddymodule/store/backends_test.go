package store

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// A backend makes fresh, empty storage for one test and returns a function
// that opens a new handle on it. Several handles on one storage stand for
// several sidecar instances (Caddy processes) sharing a database.
type backend struct {
	name  string
	fresh func(t testing.TB) (open func() *DB)
}

var backends = []backend{
	{DriverSQLite, sqliteFresh},
	{DriverPostgres, postgresFresh},
}

// sqliteFresh: a new database file in the test's temporary folder.
func sqliteFresh(t testing.TB) func() *DB {
	path := filepath.Join(t.TempDir(), "gongbao.db")
	return func() *DB {
		t.Helper()
		db, err := Open(context.Background(), Config{Driver: DriverSQLite, Path: path})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
}

const defaultTestPostgres = "postgres://root@127.0.0.1:5432/test?sslmode=disable"

func testPostgresDSN() string {
	if dsn := os.Getenv("GONGBAO_TEST_POSTGRES"); dsn != "" {
		return dsn
	}
	return defaultTestPostgres
}

var postgresReachable struct {
	once sync.Once
	err  error
}

// requirePostgres returns the test DSN, or skips the test when PostgreSQL
// cannot be reached — unless GONGBAO_REQUIRE_POSTGRES=1 (CI), where an
// unreachable server fails the test instead of passing it silently.
func requirePostgres(t testing.TB) string {
	t.Helper()
	dsn := testPostgresDSN()
	postgresReachable.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, dsn)
		if err == nil {
			err = conn.Ping(ctx)
			conn.Close(ctx)
		}
		postgresReachable.err = err
	})
	if err := postgresReachable.err; err != nil {
		msg := fmt.Sprintf("PostgreSQL not reachable at %s (%v); set GONGBAO_TEST_POSTGRES", redactDSN(dsn), err)
		if os.Getenv("GONGBAO_REQUIRE_POSTGRES") == "1" {
			t.Fatal(msg + " (GONGBAO_REQUIRE_POSTGRES=1)")
		}
		t.Skip(msg)
	}
	return dsn
}

// redactDSN hides a password; a key=value DSN is not echoed at all.
func redactDSN(dsn string) string {
	if u, err := url.Parse(dsn); err == nil && u.Host != "" {
		return u.Redacted()
	}
	return "the GONGBAO_TEST_POSTGRES DSN"
}

// postgresFresh: a new schema, dropped when the test ends.
func postgresFresh(t testing.TB) func() *DB {
	t.Helper()
	dsn := requirePostgres(t)
	schema := "gbtest_" + strings.ToLower(rand.Text()[:16])
	// Registered first, so it runs after every handle has been closed.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Errorf("dropping schema %s: %v", schema, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, `DROP SCHEMA IF EXISTS `+quoteIdent(schema)+` CASCADE`); err != nil {
			t.Errorf("dropping schema %s: %v", schema, err)
		}
	})
	return func() *DB {
		t.Helper()
		db, err := Open(context.Background(), Config{Driver: DriverPostgres, DSN: dsn, Schema: schema})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
}
