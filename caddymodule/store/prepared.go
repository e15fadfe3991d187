package store

import (
	"context"
	"database/sql"
	"sync"
)

// Prepared statements for SQLite.
//
// modernc's database/sql driver caches no statements, so every Exec parsed
// its SQL again: a tenth of the sidecar's CPU time with the SQLite store
// (claims, settlements, journal rows), a sixth of a callback enqueue's.
// The statements run for every request are prepared once per handle and
// reused inside transactions. pgx caches statements per connection by
// itself, so on PostgreSQL this is a no-op.

// statementCache holds a handle's prepared statements, by query text.
type statementCache struct {
	mu sync.RWMutex
	m  map[string]*sql.Stmt
}

// Prepare prepares queries once on an SQLite handle. It must run outside
// any transaction on the handle: a transaction holds the handle's only
// connection, which preparing needs too. A query that fails to prepare is
// left out and parsed on each use, where its error is reported.
func (db *DB) Prepare(ctx context.Context, queries ...string) {
	if db == nil || db.SQL == nil {
		return
	}
	c := &db.stmts
	for _, q := range queries {
		c.mu.RLock()
		_, ok := c.m[q]
		c.mu.RUnlock()
		if ok {
			continue
		}
		s, err := db.SQL.PrepareContext(ctx, q)
		if err != nil {
			continue
		}
		c.mu.Lock()
		if c.m == nil {
			c.m = map[string]*sql.Stmt{}
		}
		if _, ok := c.m[q]; ok {
			s.Close() // prepared meanwhile by another caller
		} else {
			c.m[q] = s
		}
		c.mu.Unlock()
	}
}

func (c *statementCache) get(query string) (*sql.Stmt, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	s, ok := c.m[query]
	return s, ok
}

func (c *statementCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.m {
		s.Close()
	}
	c.m = nil
}

// TxRunner is the Runner of an SQLite transaction on db: statements
// prepared with Prepare run prepared, any other as tx would run it.
func (db *DB) TxRunner(tx *sql.Tx) Runner {
	return SQLRunner(preparedTx{tx: tx, stmts: &db.stmts})
}

// preparedTx is an SQLQueryer over a transaction that uses the handle's
// prepared statements where it has them.
type preparedTx struct {
	tx    *sql.Tx
	stmts *statementCache
}

func (p preparedTx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if s, ok := p.stmts.get(query); ok {
		return p.tx.StmtContext(ctx, s).ExecContext(ctx, args...)
	}
	return p.tx.ExecContext(ctx, query, args...)
}

func (p preparedTx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if s, ok := p.stmts.get(query); ok {
		return p.tx.StmtContext(ctx, s).QueryContext(ctx, args...)
	}
	return p.tx.QueryContext(ctx, query, args...)
}

func (p preparedTx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if s, ok := p.stmts.get(query); ok {
		return p.tx.StmtContext(ctx, s).QueryRowContext(ctx, args...)
	}
	return p.tx.QueryRowContext(ctx, query, args...)
}
