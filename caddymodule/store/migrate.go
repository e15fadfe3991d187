package store

import (
	"context"
	"errors"
	"fmt"
)

// migration is one schema step, applied once per database and recorded in
// gongbao_migrations under its id. Steps are never edited once shipped; a
// change is a new step. Each statement is given per backend because the
// dialects differ in types (BLOB/BYTEA, text/timestamptz), not in meaning.
type migration struct {
	id       string
	sqlite   []string
	postgres []string
}

// idempotencyMigrations create the idempotency records.
//
// Times are UTC instants: timestamptz on PostgreSQL, fixed-width
// "2006-01-02T15:04:05.000000Z" text on SQLite (sortable, readable in the
// sqlite3 shell). Every time is supplied by the caller, never by the
// database clock, so an injected clock behaves the same on both backends.
var idempotencyMigrations = []migration{{
	id: "idempotency-0001-records",
	sqlite: []string{
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
	postgres: []string{
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
	id:       "idempotency-0002-fingerprint",
	sqlite:   []string{createFingerprintIndex},
	postgres: []string{createFingerprintIndex},
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
	// migrationLockKey is the PostgreSQL advisory lock taken while
	// migrating. Concurrent CREATE TABLE IF NOT EXISTS is not safe in
	// PostgreSQL (duplicate pg_type rows), and several instances may start
	// at once.
	migrationLockKey = 0x67_6f_6e_67_62_61_6f // "gongbao"
)

// migrate applies the steps not yet recorded. When all are recorded it only
// reads, so a store that is read-only, or busy with another instance, opens
// without taking a write lock.
func (db *DB) migrate(ctx context.Context, steps []migration) error {
	if done, err := db.appliedAll(ctx, steps); err == nil && done {
		return nil
	}
	return db.InTx(ctx, func(q Runner) error {
		create := createMigrationsSQLite
		if db.Pool != nil {
			create = createMigrationsPostgres
			if _, err := q.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(migrationLockKey)); err != nil {
				return err
			}
		}
		if _, err := q.Exec(ctx, create); err != nil {
			return err
		}
		for _, m := range steps {
			if err := db.applyStep(ctx, q, m); err != nil {
				return fmt.Errorf("migration %s: %w", m.id, err)
			}
		}
		return nil
	})
}

// appliedAll reports whether every step is already recorded. An error
// (typically: no migrations table yet) means "migrate to find out".
func (db *DB) appliedAll(ctx context.Context, steps []migration) (bool, error) {
	q, err := db.Runner()
	if err != nil {
		return false, err
	}
	for _, m := range steps {
		var id string
		err := q.QueryRow(ctx, `SELECT id FROM gongbao_migrations WHERE id = $1`, m.id).Scan(&id)
		if errors.Is(err, ErrNoRows) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
	}
	return true, nil
}

func (db *DB) applyStep(ctx context.Context, q Runner, m migration) error {
	var id string
	err := q.QueryRow(ctx, `SELECT id FROM gongbao_migrations WHERE id = $1`, m.id).Scan(&id)
	if err == nil {
		return nil // applied, by us earlier or by another instance
	}
	if !errors.Is(err, ErrNoRows) {
		return err
	}
	stmts := m.sqlite
	if db.Pool != nil {
		stmts = m.postgres
	}
	for _, s := range stmts {
		if _, err := q.Exec(ctx, s); err != nil {
			return err
		}
	}
	_, err = q.Exec(ctx, `INSERT INTO gongbao_migrations (id) VALUES ($1)`, m.id)
	return err
}
