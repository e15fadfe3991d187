package store

import (
	"context"
	"time"
)

// One clock for leases. Instances sharing a PostgreSQL store run on
// different machines whose clocks differ; a lease written by one and
// judged by another would be shortened or stretched by the skew. With
// Idempotency.DatabaseClock set, every lease is written and judged on the
// database's clock (now(), read once per operation), so a skewed machine
// can neither take over a live request early nor leave a dead one held
// late. SQLite is one machine: its leases use the caller's time, which
// keeps an injected clock working.

// sqlDatabaseNow reads the database's clock.
const sqlDatabaseNow = `SELECT now()`

// leaseNow is the time a lease operation measures against: the database's
// clock under DatabaseClock on PostgreSQL, else the caller's now.
func (s *Idempotency) leaseNow(ctx context.Context, q Runner, now time.Time) (time.Time, error) {
	if !s.usesDatabaseClock() {
		return dbNow(now), nil
	}
	var t Time
	if err := q.QueryRow(ctx, sqlDatabaseNow).Scan(&t); err != nil {
		return time.Time{}, err
	}
	return dbNow(t.T), nil
}

// leaseSkew is how far the database's clock is ahead of local (zero when
// leases use the local clock), for Wait, which reads a lease many times.
func (s *Idempotency) leaseSkew(ctx context.Context, local time.Time) (time.Duration, error) {
	if !s.usesDatabaseClock() {
		return 0, nil
	}
	q, err := s.db.Runner()
	if err != nil {
		return 0, err
	}
	db, err := s.leaseNow(ctx, q, local)
	if err != nil {
		return 0, err
	}
	return db.Sub(local), nil
}

func (s *Idempotency) usesDatabaseClock() bool {
	return s.DatabaseClock && s.db.Driver == DriverPostgres
}
