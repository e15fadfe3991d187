package store

import (
	"context"
	"errors"
	"fmt"
)

// Migration is one schema step, applied once per database and recorded in
// gongbao_migrations under its ID. Every table of the project is created
// and changed by such steps (package delivery registers its own through
// DB.Migrate); River's tables keep River's migrator, run under the same
// lock (DB.MigrateAfter). Steps are never edited once shipped; a change
// is a new step. Each statement is given per backend because the dialects
// differ in types (BLOB/BYTEA, text/timestamptz), not in meaning.
type Migration struct {
	ID       string
	SQLite   []string
	Postgres []string
	// AddColumns run after the statements, each only when its column is
	// missing: a table that an earlier release created outside this
	// mechanism may or may not have it, and SQLite has no ADD COLUMN IF
	// NOT EXISTS.
	AddColumns []Column
}

// Column is a column added to an existing table.
type Column struct {
	Table, Name string
	// Definition follows the name in ALTER TABLE … ADD COLUMN, e.g.
	// "TEXT NOT NULL DEFAULT ''".
	Definition string
}

// idempotencyMigrations create the idempotency records.
//
// Times are UTC instants: timestamptz on PostgreSQL, fixed-width
// "2006-01-02T15:04:05.000000Z" text on SQLite (sortable, readable in the
// sqlite3 shell). Every time is supplied by the caller, never by the
// database clock, so an injected clock behaves the same on both backends.
var idempotencyMigrations = []Migration{{
	ID: "idempotency-0001-records",
	SQLite: []string{
		`CREATE TABLE IF NOT EXISTS gongbao_idempotency (
			scope       TEXT    NOT NULL,
			key         TEXT    NOT NULL,
			fingerprint TEXT    NOT NULL,
			state       TEXT    NOT NULL CHECK (state IN ('in_progress', 'completed', 'released', 'unknown')),
			reply       BLOB,
			owner       TEXT    NOT NULL DEFAULT '',
			lease_until TEXT,
			attempts    INTEGER NOT NULL DEFAULT 1,
			created_at  TEXT    NOT NULL,
			updated_at  TEXT    NOT NULL,
			note        TEXT    NOT NULL DEFAULT '',
			PRIMARY KEY (scope, key)
		)`,
		`CREATE INDEX IF NOT EXISTS gongbao_idempotency_state_updated
			ON gongbao_idempotency (state, updated_at)`,
	},
	Postgres: []string{
		`CREATE TABLE IF NOT EXISTS gongbao_idempotency (
			scope       TEXT        NOT NULL,
			key         TEXT        NOT NULL,
			fingerprint TEXT        NOT NULL,
			state       TEXT        NOT NULL CHECK (state IN ('in_progress', 'completed', 'released', 'unknown')),
			reply       BYTEA,
			owner       TEXT        NOT NULL DEFAULT '',
			lease_until TIMESTAMPTZ,
			attempts    INTEGER     NOT NULL DEFAULT 1,
			created_at  TIMESTAMPTZ NOT NULL,
			updated_at  TIMESTAMPTZ NOT NULL,
			note        TEXT        NOT NULL DEFAULT '',
			PRIMARY KEY (scope, key)
		)`,
		`CREATE INDEX IF NOT EXISTS gongbao_idempotency_state_updated
			ON gongbao_idempotency (state, updated_at)`,
	},
}, {
	// Content replay look-ups (Idempotency.BeginUnique) by fingerprint.
	ID:       "idempotency-0002-fingerprint",
	SQLite:   []string{createFingerprintIndex},
	Postgres: []string{createFingerprintIndex},
}}

const createFingerprintIndex = `CREATE INDEX IF NOT EXISTS gongbao_idempotency_fingerprint
	ON gongbao_idempotency (scope, fingerprint, created_at)`

const (
	createMigrationsSQLite = `CREATE TABLE IF NOT EXISTS gongbao_migrations (
		id         TEXT NOT NULL PRIMARY KEY,
		applied_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
	)`
	createMigrationsPostgres = `CREATE TABLE IF NOT EXISTS gongbao_migrations (
		id         TEXT        NOT NULL PRIMARY KEY,
		applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
	)`
	// migrationLockKey is the PostgreSQL advisory lock held while
	// migrating, by every migrator of the project (River's included).
	// Concurrent CREATE TABLE IF NOT EXISTS is not safe in PostgreSQL
	// (duplicate pg_type rows), River's migrator takes no lock of its own,
	// and several instances may start at once.
	migrationLockKey = 0x67_6f_6e_67_62_61_6f // "gongbao"
)

// Migrate applies the steps not yet recorded, in order, in one
// transaction. When all are recorded it only reads, so a store that is
// read-only, or busy with another instance, opens without taking a write
// lock.
func (db *DB) Migrate(ctx context.Context, steps []Migration) error {
	if done, err := db.appliedAll(ctx, steps); err == nil && done {
		return nil
	}
	return db.MigrateAfter(ctx, nil, steps)
}

// MigrateAfter runs first (another migrator: River's), then applies the
// steps, all under the store's migration lock, so instances starting at
// once neither race each other's DDL nor see half a schema. first runs
// outside any transaction of ours (River's migrator on PostgreSQL needs a
// transaction per version) and may be nil.
func (db *DB) MigrateAfter(ctx context.Context, first func(context.Context) error, steps []Migration) error {
	lock, err := db.lockMigrations(ctx)
	if err != nil {
		return unavailable(fmt.Errorf("taking the migration lock: %w", err))
	}
	defer lock.unlock()
	if first != nil {
		if err := first(ctx); err != nil {
			return err
		}
	}
	return lock.inTx(ctx, func(q Runner) error {
		create := createMigrationsSQLite
		if db.Pool != nil {
			create = createMigrationsPostgres
		}
		if _, err := q.Exec(ctx, create); err != nil {
			return err
		}
		for _, m := range steps {
			if err := db.applyStep(ctx, q, m); err != nil {
				return fmt.Errorf("migration %s: %w", m.ID, err)
			}
		}
		return nil
	})
}

// migrationLock is the held migration lock and where to apply steps under
// it.
type migrationLock struct {
	inTx   func(ctx context.Context, fn func(q Runner) error) error
	unlock func()
}

// lockMigrations takes the migration lock. On PostgreSQL it is a session
// advisory lock on a connection set aside until unlock (it must outlive
// the transactions of River's migrator); our steps run on that connection,
// so a pool of one connection suffices. SQLite needs no lock: a file has
// one owning process (filelock.go), and every transaction on it begins
// IMMEDIATE, excluding other writers.
func (db *DB) lockMigrations(ctx context.Context) (migrationLock, error) {
	if db.Pool == nil {
		return migrationLock{inTx: db.InTx, unlock: func() {}}, nil
	}
	conn, err := db.Pool.Acquire(ctx)
	if err != nil {
		return migrationLock{}, err
	}
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, int64(migrationLockKey)); err != nil {
		conn.Release()
		return migrationLock{}, err
	}
	inTx := func(ctx context.Context, fn func(q Runner) error) error {
		tx, err := conn.Begin(ctx)
		if err != nil {
			return unavailable(err)
		}
		defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // no-op after Commit
		if err := fn(PGRunner(tx)); err != nil {
			return err
		}
		return unavailable(tx.Commit(ctx))
	}
	unlock := func() {
		if _, err := conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, int64(migrationLockKey)); err != nil {
			// Closing the session is what releases its lock then.
			_ = conn.Conn().Close(context.WithoutCancel(ctx))
		}
		conn.Release()
	}
	return migrationLock{inTx: inTx, unlock: unlock}, nil
}

// appliedAll reports whether every step is already recorded. An error
// (typically: no migrations table yet) means "migrate to find out".
func (db *DB) appliedAll(ctx context.Context, steps []Migration) (bool, error) {
	q, err := db.Runner()
	if err != nil {
		return false, err
	}
	for _, m := range steps {
		var id string
		err := q.QueryRow(ctx, `SELECT id FROM gongbao_migrations WHERE id = $1`, m.ID).Scan(&id)
		if errors.Is(err, ErrNoRows) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
	}
	return true, nil
}

func (db *DB) applyStep(ctx context.Context, q Runner, m Migration) error {
	var id string
	err := q.QueryRow(ctx, `SELECT id FROM gongbao_migrations WHERE id = $1`, m.ID).Scan(&id)
	if err == nil {
		return nil // applied, by us earlier or by another instance
	}
	if !errors.Is(err, ErrNoRows) {
		return err
	}
	stmts := m.SQLite
	if db.Pool != nil {
		stmts = m.Postgres
	}
	for _, s := range stmts {
		if _, err := q.Exec(ctx, s); err != nil {
			return err
		}
	}
	for _, c := range m.AddColumns {
		if err := db.addColumn(ctx, q, c); err != nil {
			return err
		}
	}
	_, err = q.Exec(ctx, `INSERT INTO gongbao_migrations (id) VALUES ($1)`, m.ID)
	return err
}

// addColumn adds c unless its table already has it.
func (db *DB) addColumn(ctx context.Context, q Runner, c Column) error {
	query := `SELECT COUNT(*) FROM information_schema.columns
		WHERE table_schema = current_schema() AND table_name = $1 AND column_name = $2`
	if db.Pool == nil {
		query = `SELECT COUNT(*) FROM pragma_table_info($1) WHERE name = $2`
	}
	var n int
	if err := q.QueryRow(ctx, query, c.Table, c.Name).Scan(&n); err != nil {
		return fmt.Errorf("looking for column %s.%s: %w", c.Table, c.Name, err)
	}
	if n > 0 {
		return nil
	}
	if _, err := q.Exec(ctx, `ALTER TABLE `+c.Table+` ADD COLUMN `+c.Name+` `+c.Definition); err != nil {
		return fmt.Errorf("adding column %s.%s: %w", c.Table, c.Name, err)
	}
	return nil
}
