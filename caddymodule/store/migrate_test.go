package store

import (
	"context"
	"sync"
	"testing"
)

// countingStep is not idempotent on purpose: run twice, its CREATE TABLE
// fails and its INSERT adds a second row.
var countingStep = Migration{
	ID:       "test-0001-counting",
	SQLite:   []string{`CREATE TABLE gongbao_test_steps (n INTEGER NOT NULL)`, `INSERT INTO gongbao_test_steps (n) VALUES (1)`},
	Postgres: []string{`CREATE TABLE gongbao_test_steps (n INTEGER NOT NULL)`, `INSERT INTO gongbao_test_steps (n) VALUES (1)`},
}

// addedColumnStep adds a column that tables of an earlier release may
// already have.
var addedColumnStep = Migration{
	ID:         "test-0002-column",
	AddColumns: []Column{{Table: "gongbao_test_steps", Name: "note", Definition: "TEXT NOT NULL DEFAULT ''"}},
}

func TestMigrateAppliesEachStepOnce(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			db := b.fresh(t)()
			ctx := context.Background()
			steps := []Migration{countingStep, addedColumnStep}
			for range 2 {
				must(t, db.Migrate(ctx, steps))
			}
			assertSteps(t, db, steps)
			assertCount(t, db, `SELECT COUNT(*) FROM gongbao_test_steps`, 1)
			assertCount(t, db, `SELECT COUNT(*) FROM gongbao_test_steps WHERE note = ''`, 1)
		})
	}
}

// A table an earlier release created outside the versioned steps, with
// the column already added, upgrades without an error.
func TestMigrateAddColumnsSkipsExistingColumn(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			db := b.fresh(t)()
			ctx := context.Background()
			execSQL(t, db, `CREATE TABLE gongbao_test_steps (n INTEGER NOT NULL, note TEXT NOT NULL DEFAULT 'old')`)
			execSQL(t, db, `INSERT INTO gongbao_test_steps (n) VALUES (7)`)
			must(t, db.Migrate(ctx, []Migration{addedColumnStep}))
			assertSteps(t, db, []Migration{addedColumnStep})
			assertCount(t, db, `SELECT COUNT(*) FROM gongbao_test_steps WHERE note = 'old'`, 1)
		})
	}
}

// Instances starting at once on one PostgreSQL database: each step runs
// once, and every instance returns with the schema complete.
func TestMigrateConcurrentFirstStartsPostgres(t *testing.T) {
	open := postgresFresh(t)
	dbs := []*DB{open(), open(), open(), open()}
	steps := []Migration{countingStep, addedColumnStep}
	var wg sync.WaitGroup
	for i, db := range dbs {
		wg.Go(func() {
			if err := db.MigrateAfter(context.Background(), func(context.Context) error { return nil }, steps); err != nil {
				t.Errorf("instance %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	assertSteps(t, dbs[0], steps)
	assertCount(t, dbs[0], `SELECT COUNT(*) FROM gongbao_test_steps`, 1)
}

func execSQL(t *testing.T, db *DB, query string) {
	t.Helper()
	q, err := db.Runner()
	must(t, err)
	_, err = q.Exec(context.Background(), query)
	must(t, err)
}

func assertCount(t *testing.T, db *DB, query string, want int) {
	t.Helper()
	q, err := db.Runner()
	must(t, err)
	var n int
	must(t, q.QueryRow(context.Background(), query).Scan(&n))
	if n != want {
		t.Fatalf("%s: %d, want %d", query, n, want)
	}
}

// assertSteps checks that each step is recorded once.
func assertSteps(t *testing.T, db *DB, steps []Migration) {
	t.Helper()
	for _, m := range steps {
		q, err := db.Runner()
		must(t, err)
		var n int
		must(t, q.QueryRow(context.Background(), `SELECT COUNT(*) FROM gongbao_migrations WHERE id = $1`, m.ID).Scan(&n))
		if n != 1 {
			t.Fatalf("step %s recorded %d times", m.ID, n)
		}
	}
}
