package delivery

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/caddy-gongbao/gongbao/caddymodule/store"
)

// Recovery of the callback attempts a dead process left running.
//
// River marks a job running when a worker takes it; a process killed
// mid-attempt leaves it so, and River's rescuer takes it back only after
// RescueAfter (minutes), which is right when several instances share a
// PostgreSQL database but needless on the embedded store: the handle that
// took the SQLite file's lock (store.DB.OwnsFile) knows every running job
// belongs to a process that is gone. New makes them retryable at once, due
// MinGap after their interrupted attempt began (never sooner: the platform
// may have received that attempt), with an error recorded like River's
// rescuer does so the backoff counts it.

// reclaimMargin pads MinGap after a reclaimed job's start: the job began
// (attempted_at) a little before its attempt reached the platform — the
// attempt is recorded as started in a commit of its own before it is sent
// — and the platform must still see the two attempts ≥ MinGap apart.
const reclaimMargin = time.Second

// reclaimRunning makes every running job retryable and ends the dead
// process's River leadership; it returns how many jobs.
func (e *Engine) reclaimRunning(ctx context.Context, now time.Time) (int64, error) {
	run, err := e.db.Runner()
	if err != nil {
		return 0, err
	}
	rows, err := run.Query(ctx, `SELECT id, attempt, attempted_at FROM river_job WHERE state = 'running'`)
	if err != nil {
		return 0, err
	}
	type job struct {
		id, attempt int64
		at          time.Time
	}
	var jobs []job
	for rows.Next() {
		var j job
		var at store.Time
		if err := rows.Scan(&j.id, &j.attempt, &at); err != nil {
			rows.Close()
			return 0, err
		}
		j.at = at.T
		if !at.Valid {
			j.at = now
		}
		jobs = append(jobs, j)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	var n int64
	err = e.db.InTx(ctx, func(tx store.Runner) error {
		// The dead process may still be River's leader until its term
		// expires, and only the leader schedules retryable jobs: without
		// this the first retry waited ~20 s instead of 10.
		if _, err := tx.Exec(ctx, `DELETE FROM river_leader`); err != nil {
			return err
		}
		for _, j := range jobs {
			due := j.at.Add(riverWait(e.clock, MinGap+reclaimMargin))
			if due.Before(now) {
				due = now
			}
			rescue, _ := json.Marshal(map[string]any{
				"at": now.UTC(), "attempt": j.attempt,
				"error": "the process stopped during this attempt (reclaimed at restart)", "trace": "",
			})
			c, err := tx.Exec(ctx, `UPDATE river_job SET state = 'retryable', scheduled_at = $1,
				errors = jsonb(json_insert(json(coalesce(errors, jsonb('[]'))), '$[#]', json($2)))
				WHERE id = $3 AND state = 'running'`, riverTime(due), string(rescue), j.id)
			if err != nil {
				return err
			}
			n += c
		}
		return nil
	})
	return n, err
}

// riverTime formats t as River's SQLite driver stores times (compared as
// text: any other format compares wrongly).
func riverTime(t time.Time) string {
	return t.UTC().Round(time.Millisecond).Format("2006-01-02 15:04:05.000")
}

// recoverAtStart reclaims, once per store handle that owns its SQLite
// file, the jobs a dead process left running.
func (e *Engine) recoverAtStart(ctx context.Context) error {
	if e.db.Driver != store.DriverSQLite {
		return nil
	}
	_, err := e.db.Recover("deliveries", func() error {
		n, err := e.reclaimRunning(ctx, time.Now())
		e.reclaimed = n
		return err
	})
	if err != nil {
		return fmt.Errorf("delivery: reclaiming the attempts of the previous process: %w", store.Unavailable(err))
	}
	return nil
}

// Reclaimed is how many running callback attempts New found left by a
// dead process and scheduled again (SQLite only).
func (e *Engine) Reclaimed() int64 { return e.reclaimed }
