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
// ErrNoRows is what QueryRow's Scan returns when no row matched: an
// answer, not a failure of the store.
var ErrNoRows = errors.New("no rows")

// Runner runs statements on a pool, a connection or a transaction of
// either backend, so every query of the engines is written once. Queries
// use $n placeholders, which pgx and modernc SQLite both bind by position;
// time.Time arguments are stored as UTC microseconds on both. Every driver
// error comes back wrapped in ErrUnavailable.
type Runner interface {
	Exec(ctx context.Context, query string, args ...any) (int64, error)
	QueryRow(ctx context.Context, query string, args ...any) Scanner
	Query(ctx context.Context, query string, args ...any) (Rows, error)
}

// Scanner reads one row.
type Scanner interface{ Scan(dest ...any) error }

// Rows iterates over a result.
type Rows interface {
	Scanner
	Next() bool
	Err() error
	Close()
}

// Unavailable wraps a driver error in ErrUnavailable (once).
func Unavailable(err error) error {
	if err == nil || errors.Is(err, ErrUnavailable) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

func unavailable(err error) error { return Unavailable(err) }

// Runner returns the runner for the whole handle (autocommit statements).
func (db *DB) Runner() (Runner, error) {
	switch {
	case db == nil:
		return nil, unavailable(errors.New("no store handle"))
	case db.Pool != nil:
		return PGRunner(db.Pool), nil
	case db.SQL != nil:
		return SQLRunner(db.SQL), nil
	}
	return nil, unavailable(errors.New("store handle has no connection"))
}

// InTx runs fn in a transaction and commits it if fn returns nil. On
// SQLite the transaction starts with BEGIN IMMEDIATE (see sqliteDSN), so
// it holds the write lock from the start; on PostgreSQL it is READ
// COMMITTED and fn takes the row locks it needs (SELECT … FOR UPDATE).
// Errors from fn are returned as they are.
func (db *DB) InTx(ctx context.Context, fn func(q Runner) error) error {
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
		if err := fn(PGRunner(tx)); err != nil {
			return err
		}
		return unavailable(tx.Commit(ctx))
	case db.SQL != nil:
		tx, err := db.SQL.BeginTx(ctx, nil)
		if err != nil {
			return unavailable(err)
		}
		defer tx.Rollback() //nolint:errcheck // no-op after Commit
		if err := fn(db.TxRunner(tx)); err != nil {
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

// PGQueryer is what PGRunner needs: a *pgxpool.Pool, a *pgx.Conn or a pgx.Tx.
type PGQueryer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// PGRunner adapts a PostgreSQL pool, connection or transaction.
func PGRunner(r PGQueryer) Runner { return pgQuerier{r} }

// pgQuerier adapts a *pgxpool.Pool or a pgx.Tx.
type pgQuerier struct{ r PGQueryer }

func (p pgQuerier) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	tag, err := p.r.Exec(ctx, query, args...)
	if err != nil {
		return 0, unavailable(err)
	}
	return tag.RowsAffected(), nil
}

func (p pgQuerier) QueryRow(ctx context.Context, query string, args ...any) Scanner {
	return pgRow{p.r.QueryRow(ctx, query, args...)}
}

func (p pgQuerier) Query(ctx context.Context, query string, args ...any) (Rows, error) {
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
		return ErrNoRows
	}
	return unavailable(err)
}

type pgRows struct{ r pgx.Rows }

func (r pgRows) Next() bool             { return r.r.Next() }
func (r pgRows) Scan(dest ...any) error { return unavailable(r.r.Scan(dest...)) }
func (r pgRows) Err() error             { return unavailable(r.r.Err()) }
func (r pgRows) Close()                 { r.r.Close() }

// ---- SQLite (database/sql + modernc) ----

// SQLQueryer is what SQLRunner needs: a *sql.DB, *sql.Conn or *sql.Tx.
type SQLQueryer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// SQLRunner adapts an SQLite handle, connection or transaction.
func SQLRunner(r SQLQueryer) Runner { return sqlQuerier{r} }

// sqlQuerier adapts a *sql.DB or *sql.Tx.
type sqlQuerier struct{ r SQLQueryer }

func (s sqlQuerier) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	res, err := s.r.ExecContext(ctx, query, sqliteArgs(args)...)
	if err != nil {
		return 0, unavailable(err)
	}
	n, err := res.RowsAffected()
	return n, unavailable(err)
}

func (s sqlQuerier) QueryRow(ctx context.Context, query string, args ...any) Scanner {
	return sqlRow{s.r.QueryRowContext(ctx, query, sqliteArgs(args)...)}
}

func (s sqlQuerier) Query(ctx context.Context, query string, args ...any) (Rows, error) {
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
		return ErrNoRows
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

// Time scans a timestamp column of either backend: time.Time from
// PostgreSQL, sqliteTime text from SQLite; NULL leaves Valid false.
type Time struct {
	T     time.Time
	Valid bool
}

// Scan implements sql.Scanner (and pgx's scanning of it).
func (d *Time) Scan(v any) error {
	d.Valid = v != nil
	switch x := v.(type) {
	case nil:
		d.T = time.Time{}
	case time.Time:
		d.T = x.UTC()
	case string:
		return d.parse(x)
	case []byte:
		return d.parse(string(x))
	default:
		return fmt.Errorf("timestamp column holds %T", v)
	}
	return nil
}

func (d *Time) parse(s string) error {
	t, err := time.Parse(sqliteTime, s)
	if err != nil {
		return fmt.Errorf("timestamp column: %w", err)
	}
	d.T = t.UTC()
	return nil
}

// Ptr is the time as an optional field: nil for NULL.
func (d Time) Ptr() *time.Time {
	if !d.Valid {
		return nil
	}
	t := d.T
	return &t
}

// DBNow rounds a time the way both backends store it, so a value written
// and read back compares equal to what the caller holds.
func DBNow(t time.Time) time.Time { return dbNow(t) }

// dbNow rounds a caller's time the way both backends store it, so a value
// written and read back compares equal to what the caller holds.
func dbNow(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// NullBytes stores an empty byte slice as NULL on both backends.
func NullBytes(b []byte) any { return nullBytes(b) }

// nullBytes stores an empty byte slice as NULL on both backends (modernc
// would store a zero-length blob, pgx a NULL).
func nullBytes(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}
