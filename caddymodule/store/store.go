// Package store opens the sidecar's durable store: an embedded SQLite file
// by default, or a shared PostgreSQL database for several replicas. Other
// engine packages (idempotency records, callback delivery) keep their tables
// in it and share the one handle, so a Caddy reload never opens a second
// writer on the same SQLite file.
//
// Every table of the project is created and changed by versioned steps
// (Migration, DB.Migrate; migrate.go), recorded in gongbao_migrations and
// applied under one lock; River keeps its own migrator, run under the same
// lock (DB.MigrateAfter).
//
// It must import nothing of Caddy and no other package of this project:
// every engine package builds on it, never the reverse.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// Driver names accepted in Config.Driver.
const (
	DriverSQLite   = "sqlite"
	DriverPostgres = "postgres"
)

// ErrUnavailable wraps every failure to reach the store, so callers can
// fail closed with a retryable answer instead of guessing.
var ErrUnavailable = errors.New("store unavailable")

// Config chooses and locates the store.
type Config struct {
	// Driver is "sqlite" (default) or "postgres".
	Driver string
	// Path is the SQLite database file (created with its folder if missing).
	Path string
	// DSN is the PostgreSQL connection string.
	DSN string
	// Schema, for PostgreSQL, is the schema holding our tables
	// (default "public"). Tests use one schema each.
	Schema string
}

// DB is an open store. Exactly one of SQL (SQLite) and Pool (PostgreSQL) is set.
type DB struct {
	Driver string
	Schema string
	// SQL is the SQLite handle. It has a single open connection: SQLite
	// allows one writer, and River's SQLite driver requires it.
	SQL *sql.DB
	// Pool is the PostgreSQL pool.
	Pool *pgxpool.Pool

	group committerOnce  // SQLite's group commit (Writer), started on first use
	stmts statementCache // SQLite's prepared statements (Prepare)

	unlock    func()          // releases the SQLite file's lock (filelock.go)
	ownsFile  bool            // this handle took the file's lock at Open
	recoverMu sync.Mutex      // guards recovered
	recovered map[string]bool // recoveries run on this handle (Recover)
}

// OwnsFile reports whether this is an SQLite handle that took its file's
// lock when it opened: no other process had the file, so every record or
// job it finds in progress was left by a process that is gone.
func (db *DB) OwnsFile() bool { return db != nil && db.ownsFile }

// Recover runs fn once per name on a handle that owns its file (see
// OwnsFile), at the engine's start, and reports whether it ran. fn must
// finish before the engine takes work: it reclaims what a dead process
// left in progress.
func (db *DB) Recover(name string, fn func() error) (bool, error) {
	if !db.OwnsFile() {
		return false, nil
	}
	db.recoverMu.Lock()
	defer db.recoverMu.Unlock()
	if db.recovered[name] {
		return false, nil
	}
	if err := fn(); err != nil {
		return false, err
	}
	if db.recovered == nil {
		db.recovered = map[string]bool{}
	}
	db.recovered[name] = true
	return true, nil
}

// Open opens the configured store and checks that it answers.
func Open(ctx context.Context, cfg Config) (*DB, error) {
	switch cfg.Driver {
	case "", DriverSQLite:
		return openSQLite(ctx, cfg.Path)
	case DriverPostgres:
		return openPostgres(ctx, cfg.DSN, cfg.Schema)
	default:
		return nil, fmt.Errorf("unknown store driver %q (want %q or %q)", cfg.Driver, DriverSQLite, DriverPostgres)
	}
}

// sqlitePragmas are applied on every connection. synchronous=FULL because
// what we store is acknowledged to a peer (a 202 to the core, a reply to the
// platform) and must survive power loss, not only a crash.
var sqlitePragmas = []string{
	"journal_mode(WAL)",
	"synchronous(FULL)",
	"busy_timeout(5000)",
	"foreign_keys(ON)",
}

// sqliteDSN is the modernc connection string for path. BEGIN IMMEDIATE
// (_txlock) takes the write lock when a transaction starts, so a
// read-then-write transaction never fails half way with SQLITE_BUSY when a
// second process (a CLI, an old Caddy during a restart) has the file open.
// extra adds query parameters, e.g. mode=ro in tests.
func sqliteDSN(path string, extra url.Values) string {
	q := url.Values{}
	for _, p := range sqlitePragmas {
		q.Add("_pragma", p)
	}
	q.Set("_txlock", "immediate")
	for k, vs := range extra {
		for _, v := range vs {
			q.Add(k, v)
		}
	}
	return "file:" + path + "?" + q.Encode()
}

func openSQLite(ctx context.Context, path string) (*DB, error) {
	if path == "" {
		return nil, errors.New("sqlite store: no file path configured")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("sqlite store: creating folder: %w", err)
	}
	unlock, first, err := acquireFileLock(path)
	if err != nil {
		return nil, err
	}
	db, err := sql.Open("sqlite", sqliteDSN(path, nil))
	if err != nil {
		unlock()
		return nil, fmt.Errorf("sqlite store %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	db.SetConnMaxIdleTime(0)
	db.SetConnMaxLifetime(0)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		unlock()
		return nil, fmt.Errorf("sqlite store %s: %w: %w", path, ErrUnavailable, err)
	}
	return &DB{Driver: DriverSQLite, SQL: db, unlock: unlock, ownsFile: first}, nil
}

func openPostgres(ctx context.Context, dsn, schema string) (*DB, error) {
	if dsn == "" {
		return nil, errors.New("postgres store: no dsn configured")
	}
	if schema == "" {
		schema = "public"
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// The DSN may carry a password: never echo it.
		return nil, errors.New("postgres store: the dsn cannot be parsed")
	}
	// Quoted, so a schema name with capitals or dashes means what it says.
	cfg.ConnConfig.RuntimeParams["search_path"] = quoteIdent(schema)
	// A database host that does not answer must not hold a connection
	// attempt forever (the DSN's connect_timeout wins when given).
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = 5 * time.Second
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres store: %w: %w", ErrUnavailable, err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres store: %w: %w", ErrUnavailable, err)
	}
	if schema != "public" {
		if err := createSchema(ctx, pool, schema); err != nil {
			pool.Close()
			return nil, err
		}
	}
	return &DB{Driver: DriverPostgres, Schema: schema, Pool: pool}, nil
}

// createSchema creates schema unless it exists. CREATE SCHEMA IF NOT EXISTS
// is not safe against itself: when several instances start at once, all but
// one may fail with a unique violation on pg_namespace. Such a failure is
// fine as long as the schema exists afterwards.
func createSchema(ctx context.Context, pool *pgxpool.Pool, schema string) error {
	_, err := pool.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+quoteIdent(schema))
	if err == nil {
		return nil
	}
	var exists bool
	if qerr := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)`, schema).Scan(&exists); qerr == nil && exists {
		return nil
	}
	return fmt.Errorf("postgres store: creating schema %s: %w", quoteIdent(schema), err)
}

// Close releases the handle.
func (db *DB) Close() error {
	if db.Pool != nil {
		db.Pool.Close()
		return nil
	}
	if db.SQL != nil {
		db.stopCommitter()
		db.stmts.close()
		err := db.SQL.Close()
		if db.unlock != nil {
			db.unlock()
		}
		return err
	}
	return nil
}

func quoteIdent(s string) string {
	out := []byte{'"'}
	for i := 0; i < len(s); i++ {
		if s[i] == '"' {
			out = append(out, '"')
		}
		out = append(out, s[i])
	}
	return string(append(out, '"'))
}
