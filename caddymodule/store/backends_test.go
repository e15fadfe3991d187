package store

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/caddy-gongbao/gongbao/caddymodule/store/storetest"
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

// postgresFresh: a new schema, dropped when the test ends.
func postgresFresh(t testing.TB) func() *DB {
	t.Helper()
	dsn := storetest.DSN(t)
	schema := storetest.FreshSchema(t, dsn, "gbtest")
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
