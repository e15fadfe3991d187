package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// This file hides the two drivers behind one small query interface, so the
// idempotency code is written once. Queries use $n placeholders, which
// PostgreSQL and modernc SQLite both bind by position.
//
// Every error coming out of a driver is wrapped in ErrUnavailable here, in
// one place: a store that cannot answer (closed, down, disk full, read-only)
// must make the caller fail closed, and the callers never have to guess
// which driver error means what. The only exception is "no rows", which is
// an answer, not a failure.

// errNoRows is the driver-neutral "query returned no row".
var errNoRows = errors.New("no rows")

// querier runs statements on a connection, pool or transaction.
type querier interface {
	exec(ctx context.Context, query string, args ...any) (int64, error)
	queryRow(ctx context.Context, query string, args ...any) scanner
	query(ctx context.Context, query string, args ...any) (rowIter, error)
}

type scanner interface{ Scan(dest ...any) error }

type rowIter interface {
	scanner
	Next() bool
	Err() error
	Close()
}

func unavailable(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// q returns the querier for the whole handle (autocommit statements).
func (db *DB) q() (querier, error) {
	switch {
	case db == nil:
		return nil, unavailable(errors.New("no store handle"))
	case db.Pool != nil:
		return pgQuerier{db.Pool}, nil
	case db.SQL != nil:
		return sqlQuerier{db.SQL}, nil
	}
	return nil, unavailable(errors.New("store handle has no connection"))
}

// inTx runs fn in a transaction and commits it if fn returns nil. On
// SQLite the transaction starts with BEGIN IMMEDIATE (see sqliteDSN), so
// it holds the write lock from the start; on PostgreSQL it is READ
// COMMITTED and fn takes the row locks it needs (SELECT … FOR UPDATE).
// Errors from fn are returned as they are.
func (db *DB) inTx(ctx context.Context, fn func(q querier) error) error {
	switch {
	case db == nil:
		return unavailable(errors.New("no store handle"))
	case db.Pool != nil:
		tx, err := db.Pool.Begin(ctx)
		if err != nil {
			return unavailable(err)
		}
		// Rollback after Commit is a no-op. A fresh context: a cancelled
		// caller must not leave the connection mid-transaction.
		defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // nothing to do about it
		if err := fn(pgQuerier{tx}); err != nil {
			return err
		}
		return unavailable(tx.Commit(ctx))
	case db.SQL != nil:
		tx, err := db.SQL.BeginTx(ctx, nil)
		if err != nil {
			return unavailable(err)
		}
		defer tx.Rollback() //nolint:errcheck // no-op after Commit
		if err := fn(sqlQuerier{tx}); err != nil {
			return err
		}
		return unavailable(tx.Commit())
	}
	return unavailable(errors.New("store handle has no connection"))
}

// forUpdate is the row-lock clause for a locking read. SQLite has none and
// needs none: BEGIN IMMEDIATE already excludes every other writer.
func (db *DB) forUpdate() string {
	if db.Pool != nil {
		return " FOR UPDATE"
	}
	return ""
}

// ---- PostgreSQL (pgx) ----

// pgQuerier adapts a *pgxpool.Pool or a pgx.Tx.
type pgQuerier struct {
	r interface {
		Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
		Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
		QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	}
}

func (p pgQuerier) exec(ctx context.Context, query string, args ...any) (int64, error) {
	tag, err := p.r.Exec(ctx, query, args...)
	if err != nil {
		return 0, unavailable(err)
	}
	return tag.RowsAffected(), nil
}

func (p pgQuerier) queryRow(ctx context.Context, query string, args ...any) scanner {
	return pgRow{p.r.QueryRow(ctx, query, args...)}
}

func (p pgQuerier) query(ctx context.Context, query string, args ...any) (rowIter, error) {
	rows, err := p.r.Query(ctx, query, args...)
	if err != nil {
		return nil, unavailable(err)
	}
	return pgRows{rows}, nil
}

type pgRow struct{ r pgx.Row }

func (r pgRow) Scan(dest ...any) error {
	err := r.r.Scan(dest...)
	if errors.Is(err, pgx.ErrNoRows) {
		return errNoRows
	}
	return unavailable(err)
}

type pgRows struct{ r pgx.Rows }

func (r pgRows) Next() bool             { return r.r.Next() }
func (r pgRows) Scan(dest ...any) error { return unavailable(r.r.Scan(dest...)) }
func (r pgRows) Err() error             { return unavailable(r.r.Err()) }
func (r pgRows) Close()                 { r.r.Close() }

// ---- SQLite (database/sql + modernc) ----

// sqlQuerier adapts a *sql.DB or *sql.Tx.
type sqlQuerier struct {
	r interface {
		ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
		QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
		QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	}
}

func (s sqlQuerier) exec(ctx context.Context, query string, args ...any) (int64, error) {
	res, err := s.r.ExecContext(ctx, query, sqliteArgs(args)...)
	if err != nil {
		return 0, unavailable(err)
	}
	n, err := res.RowsAffected()
	return n, unavailable(err)
}

func (s sqlQuerier) queryRow(ctx context.Context, query string, args ...any) scanner {
	return sqlRow{s.r.QueryRowContext(ctx, query, sqliteArgs(args)...)}
}

func (s sqlQuerier) query(ctx context.Context, query string, args ...any) (rowIter, error) {
	rows, err := s.r.QueryContext(ctx, query, sqliteArgs(args)...)
	if err != nil {
		return nil, unavailable(err)
	}
	return sqlRows{rows}, nil
}

type sqlRow struct{ r *sql.Row }

func (r sqlRow) Scan(dest ...any) error {
	err := r.r.Scan(dest...)
	if errors.Is(err, sql.ErrNoRows) {
		return errNoRows
	}
	return unavailable(err)
}

type sqlRows struct{ r *sql.Rows }

func (r sqlRows) Next() bool             { return r.r.Next() }
func (r sqlRows) Scan(dest ...any) error { return unavailable(r.r.Scan(dest...)) }
func (r sqlRows) Err() error             { return unavailable(r.r.Err()) }
func (r sqlRows) Close()                 { r.r.Close() }

// ---- timestamps ----

// sqliteTime is how a time is stored in SQLite: UTC, fixed width, so text
// order is time order and `updated_at < $1` compares instants. Microseconds,
// like PostgreSQL's timestamptz, so both backends round a time the same way.
const sqliteTime = "2006-01-02T15:04:05.000000Z"

// sqliteArgs turns time.Time arguments into sqliteTime text. PostgreSQL
// takes time.Time as it is (timestamptz).
func sqliteArgs(args []any) []any {
	var out []any // copied on the first time.Time only
	for i, a := range args {
		t, ok := a.(time.Time)
		if !ok {
			continue
		}
		if out == nil {
			out = make([]any, len(args))
			copy(out, args)
		}
		out[i] = t.UTC().Format(sqliteTime)
	}
	if out == nil {
		return args
	}
	return out
}

// dbTime scans a timestamp column of either backend: time.Time from
// PostgreSQL, sqliteTime text from SQLite, NULL as the zero time.
type dbTime struct{ t time.Time }

func (d *dbTime) Scan(v any) error {
	switch x := v.(type) {
	case nil:
		d.t = time.Time{}
	case time.Time:
		d.t = x.UTC()
	case string:
		return d.parse(x)
	case []byte:
		return d.parse(string(x))
	default:
		return fmt.Errorf("timestamp column holds %T", v)
	}
	return nil
}

func (d *dbTime) parse(s string) error {
	t, err := time.Parse(sqliteTime, s)
	if err != nil {
		return fmt.Errorf("timestamp column: %w", err)
	}
	d.t = t.UTC()
	return nil
}

// dbNow rounds a caller's time the way both backends store it, so a value
// written and read back compares equal to what the caller holds.
func dbNow(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// nullBytes stores an empty byte slice as NULL on both backends (modernc
// would store a zero-length blob, pgx a NULL).
func nullBytes(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}
