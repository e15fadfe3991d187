package store

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"time"
)

// Idempotency records make a resent platform request never reach the core
// twice. One record per (scope, key) — scope is the platform, key its
// requestUUID — holds a fingerprint of the signed requestBody, a state, and
// once the core has answered, the exact reply bytes sent back.
//
// States (modelled on Stripe idempotency keys and the IETF Idempotency-Key
// draft):
//
//	in_progress  one caller (the owner, holding a token) is calling the core,
//	             under a lease; nobody else may.
//	completed    the core gave a definite answer; Reply is replayed verbatim.
//	released     the core definitely did not act; the next request runs anew.
//	unknown      the outcome is ambiguous (timeout after sending, reset
//	             while reading, or the owner died and its lease expired);
//	             a resend retries (the core dedupes on Idempotency-Key) or is
//	             held for an operator, as the caller chooses.
//
// A typical handler:
//
//	out, rec, token, err := s.Begin(ctx, platform, uuid, fp, now, lease, retry)
//	switch out {
//	case Acquired: call the core, then Complete / Release / MarkUnknown
//	case Replay:   send rec.Reply
//	case InFlight: rec, err = s.Wait(ctx, platform, uuid, now.Add(5*time.Second))
//	               then Begin again: Replay, or still InFlight → "处理中"
//	case Conflict: conflict reply
//	case Held:     "处理中"
//	}
//
// Every failure of the store itself wraps ErrUnavailable and leaves no
// partial record; the caller then fails closed without calling the core.
type Idempotency struct {
	// Now is the clock Wait reads to know when to stop and whether a lease
	// has expired. Default time.Now. Every other method takes its time from
	// the caller. Set it before the first call.
	Now func() time.Time

	// MaxPoll caps the interval between two reads in Wait, which starts at
	// 2 ms and doubles. Default 50 ms.
	MaxPoll time.Duration

	// DatabaseClock makes leases run on the database's clock on
	// PostgreSQL (see leaseNow). SQLite always uses the caller's time.
	DatabaseClock bool

	db        *DB
	reclaimed int64
}

// State is the state of an idempotency record.
type State string

// Record states.
const (
	StateInProgress State = "in_progress"
	StateCompleted  State = "completed"
	StateReleased   State = "released"
	StateUnknown    State = "unknown"
)

func (s State) valid() bool {
	switch s {
	case StateInProgress, StateCompleted, StateReleased, StateUnknown:
		return true
	}
	return false
}

// Outcome is what Begin decided.
type Outcome int

// Begin outcomes.
const (
	// Acquired: the caller now owns the record (new, or taken over from
	// released, or from unknown when retrying) and must call the core, then
	// record the result with Complete, Release or MarkUnknown.
	Acquired Outcome = iota + 1
	// Replay: the record is completed with the same fingerprint; Record.Reply
	// holds the reply to send again, byte for byte.
	Replay
	// Conflict: the key is taken by a different body (completed, in
	// progress or unknown). The record was not changed.
	Conflict
	// InFlight: another owner is calling the core and its lease runs.
	InFlight
	// Held: the outcome of an earlier call is unknown and the caller did not
	// ask to retry; an operator resolves it.
	Held
	// ContentReplay: another key already holds the same signed content
	// (completed, in progress or unknown) within the content window. The
	// platform's requestUUID is not signed, so a captured message resent
	// under a new one must not make the core act again. Record is the
	// earlier key's record; nothing was written.
	ContentReplay
)

func (o Outcome) String() string {
	switch o {
	case Acquired:
		return "acquired"
	case Replay:
		return "replay"
	case Conflict:
		return "conflict"
	case InFlight:
		return "in_flight"
	case Held:
		return "held"
	case ContentReplay:
		return "content_replay"
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

// Record is one idempotency record. The owner token is never part of it:
// only Begin hands it out, to the caller that acquired the record.
type Record struct {
	Scope       string `json:"scope"`
	Key         string `json:"key"`
	Fingerprint string `json:"fingerprint"`
	State       State  `json:"state"`
	// Reply is the stored reply; set only when State is completed.
	Reply []byte `json:"reply,omitempty"`
	// LeaseUntil is when an in_progress owner is presumed dead; zero in the
	// other states.
	LeaseUntil time.Time `json:"lease_until,omitzero"`
	// Attempts counts acquisitions: how many times the core may have been
	// called for this key.
	Attempts  int       `json:"attempts"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	// Note says why the record is unknown, or how an operator resolved it.
	Note string `json:"note,omitempty"`
}

// Resolution is an operator's decision on an unknown record.
type Resolution struct {
	// State is StateCompleted (the core did act; Reply is what to replay)
	// or StateReleased (it did not; the next resend runs anew).
	State State
	// Reply is the complete signed reply to replay; required with
	// StateCompleted, ignored otherwise.
	Reply []byte
	// Note records who decided and why.
	Note string
}

var (
	// ErrNotFound: no record has this scope and key.
	ErrNotFound = errors.New("idempotency record not found")
	// ErrNotOwner: the token does not hold the record any more (another
	// caller re-acquired it, an operator resolved it, or it is finished).
	// The record was not changed.
	ErrNotOwner = errors.New("idempotency record is not held by this token")
	// ErrNotUnknown: an operator tried to resolve a record whose outcome is
	// not unknown. The record was not changed.
	ErrNotUnknown = errors.New("idempotency record is not in state unknown")
)

// noteLeaseExpired is the note on a record whose owner stopped (crash,
// kill -9, lost store) while calling the core.
const noteLeaseExpired = "lease expired: the owner stopped before recording the outcome of the core call"

// NewIdempotency returns the idempotency records of db, creating or
// upgrading their table first. It is safe to call from several instances
// at once on one database.
func NewIdempotency(ctx context.Context, db *DB) (*Idempotency, error) {
	if err := db.Migrate(ctx, idempotencyMigrations); err != nil {
		return nil, fmt.Errorf("idempotency: migrating the store: %w", err)
	}
	s := &Idempotency{db: db}
	if _, err := db.Recover("idempotency", func() error {
		n, err := s.reclaim(ctx, time.Now())
		s.reclaimed = n
		return err
	}); err != nil {
		return nil, fmt.Errorf("idempotency: reclaiming the records of the previous process: %w", err)
	}
	return s, nil
}

// noteOwnerRestarted is the note on a record that was in progress when the
// process owning the SQLite file stopped (crash, kill -9, power loss).
const noteOwnerRestarted = "the sidecar stopped before recording the outcome of the core call (reclaimed at restart)"

const sqlReclaim = `UPDATE gongbao_idempotency
	SET state = 'unknown', lease_until = NULL, note = $2, updated_at = $1
	WHERE state = 'in_progress'`

// reclaim turns every in_progress record into unknown. Only for a handle
// that owns its file (DB.OwnsFile): every owner is then a dead process, and
// waiting for its lease would answer 处理中 to each resend for minutes. A
// resend then follows the unknown_outcome policy at once.
func (s *Idempotency) reclaim(ctx context.Context, now time.Time) (int64, error) {
	q, err := s.db.Writer()
	if err != nil {
		return 0, err
	}
	return q.Exec(ctx, sqlReclaim, dbNow(now), noteOwnerRestarted)
}

// Reclaimed is how many in-progress records NewIdempotency turned into
// unknown because the process that held them is gone (SQLite only).
func (s *Idempotency) Reclaimed() int64 { return s.reclaimed }

const recordColumns = `scope, key, fingerprint, state, reply, lease_until, attempts, created_at, updated_at, note`

const (
	sqlInsert = `INSERT INTO gongbao_idempotency
		(scope, key, fingerprint, state, owner, lease_until, attempts, created_at, updated_at, note)
		VALUES ($1, $2, $3, 'in_progress', $4, $5, 1, $6, $6, '')
		ON CONFLICT (scope, key) DO NOTHING`
	sqlGet     = `SELECT ` + recordColumns + ` FROM gongbao_idempotency WHERE scope = $1 AND key = $2`
	sqlAcquire = `UPDATE gongbao_idempotency
		SET fingerprint = $3, state = 'in_progress', owner = $4, lease_until = $5,
		    attempts = attempts + 1, updated_at = $6
		WHERE scope = $1 AND key = $2`
	// sqlExpire keeps the owner: the caller that lost its lease may still
	// come back with a definite answer, which is then recorded.
	sqlExpire = `UPDATE gongbao_idempotency
		SET state = 'unknown', lease_until = NULL, note = $3, updated_at = $4
		WHERE scope = $1 AND key = $2`
	// The owner statements accept unknown as well as in_progress: an
	// owner whose lease expired but who was not replaced still knows best.
	sqlComplete = `UPDATE gongbao_idempotency
		SET state = 'completed', reply = $4, lease_until = NULL, updated_at = $5
		WHERE scope = $1 AND key = $2 AND owner = $3 AND state IN ('in_progress', 'unknown')`
	sqlRelease = `UPDATE gongbao_idempotency
		SET state = 'released', lease_until = NULL, updated_at = $4
		WHERE scope = $1 AND key = $2 AND owner = $3 AND state IN ('in_progress', 'unknown')`
	sqlMarkUnknown = `UPDATE gongbao_idempotency
		SET state = 'unknown', lease_until = NULL, note = $4, updated_at = $5
		WHERE scope = $1 AND key = $2 AND owner = $3 AND state IN ('in_progress', 'unknown')`
	sqlResolve = `UPDATE gongbao_idempotency
		SET state = $3, reply = $4, owner = '', lease_until = NULL, note = $5, updated_at = $6
		WHERE scope = $1 AND key = $2`
	sqlList = `SELECT ` + recordColumns + ` FROM gongbao_idempotency
		WHERE state = $1 ORDER BY updated_at, scope, key LIMIT $2`
	sqlListAll = `SELECT ` + recordColumns + ` FROM gongbao_idempotency
		ORDER BY updated_at, scope, key LIMIT $1`
	// sqlPurge deletes one batch. The state and age are tested again on
	// the outer DELETE so that PostgreSQL re-checks them on the row it
	// locks: a record re-acquired meanwhile is not deleted.
	sqlPurge = `DELETE FROM gongbao_idempotency
		WHERE state IN ('completed', 'released') AND updated_at < $1
		AND (scope, key) IN (
			SELECT scope, key FROM gongbao_idempotency
			WHERE state IN ('completed', 'released') AND updated_at < $1
			LIMIT $2)`
	// sqlInsertUnique is sqlInsert that also refuses, in the same statement,
	// content another key holds: $7 is the start of the content window.
	// Released records do not count: their core never acted.
	sqlInsertUnique = `INSERT INTO gongbao_idempotency
		(scope, key, fingerprint, state, owner, lease_until, attempts, created_at, updated_at, note)
		SELECT $1, $2, $3, 'in_progress', $4, $5, 1, $6, $6, ''
		WHERE NOT EXISTS (SELECT 1 FROM gongbao_idempotency
			WHERE scope = $1 AND fingerprint = $3 AND key <> $2
			AND state <> 'released' AND created_at >= $7)
		ON CONFLICT (scope, key) DO NOTHING`
	// sqlContentHolder finds the earliest other key holding the content.
	sqlContentHolder = `SELECT ` + recordColumns + ` FROM gongbao_idempotency
		WHERE scope = $1 AND fingerprint = $2 AND key <> $3
		AND state <> 'released' AND created_at >= $4
		ORDER BY created_at LIMIT 1`
	// sqlLockContent serialises, on PostgreSQL, the callers that claim one
	// content: READ COMMITTED would let two new keys with the same content
	// both see no holder. SQLite needs no lock: it runs one writer at a time.
	sqlLockContent = `SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`
	sqlExpireAll   = `UPDATE gongbao_idempotency
		SET state = 'unknown', lease_until = NULL, note = $2, updated_at = $1
		WHERE state = 'in_progress' AND lease_until <= $1`
)

// purgeBatch bounds one DELETE, so purging a large backlog never holds the
// single SQLite connection (or many PostgreSQL row locks) for long.
const purgeBatch = 500

// Begin starts handling a request with this scope and key and decides,
// atomically across goroutines and instances sharing the store, what the
// caller does:
//
//   - no record: one is created in_progress with a lease until now+lease →
//     Acquired, with the owner token.
//   - in_progress whose lease expired (now ≥ lease end): it becomes unknown
//     first (and stays so unless re-acquired), then as below.
//   - in_progress: same fingerprint → InFlight, else Conflict.
//   - completed: same fingerprint → Replay (Record.Reply), else Conflict.
//   - released: → Acquired, whatever the fingerprint (the core never acted).
//   - unknown: other fingerprint → Conflict; retryUnknown → Acquired
//     (the caller resends with the same Idempotency-Key); else Held.
//
// The token is empty unless the outcome is Acquired. Record is the record
// as it stands after the decision.
//
// lease must outlast the longest core call (the reverse proxy's timeouts)
// with a margin: an owner still waiting for the core when its lease ends
// is presumed dead, and a retrying resend would call the core beside it.
func (s *Idempotency) Begin(ctx context.Context, scope, key, fingerprint string, now time.Time, lease time.Duration, retryUnknown bool) (Outcome, Record, string, error) {
	return s.BeginUnique(ctx, scope, key, fingerprint, now, lease, retryUnknown, time.Time{})
}

// BeginUnique is Begin that also treats the fingerprint as a claim on the
// content: when another key of the scope, created at or after
// contentSince, holds the same fingerprint and is not released, the
// outcome is ContentReplay (with that key's record) and nothing is
// written — whether this key is new or would be taken over. A zero
// contentSince is Begin.
func (s *Idempotency) BeginUnique(ctx context.Context, scope, key, fingerprint string, now time.Time, lease time.Duration, retryUnknown bool, contentSince time.Time) (Outcome, Record, string, error) {
	if err := checkKey(scope, key); err != nil {
		return 0, Record{}, "", err
	}
	if fingerprint == "" || lease <= 0 {
		return 0, Record{}, "", errors.New("idempotency begin: empty fingerprint or non-positive lease")
	}
	now = dbNow(now)
	c := content{since: contentSince}
	if !contentSince.IsZero() {
		c.since = dbNow(contentSince)
	}
	token := rand.Text()
	q, err := s.db.Writer()
	if err != nil {
		return 0, Record{}, "", fmt.Errorf("idempotency begin: %w", err)
	}
	if now, err = s.leaseNow(ctx, q, now); err != nil {
		return 0, Record{}, "", fmt.Errorf("idempotency begin: %w", err)
	}
	// A record deleted by Purge between the steps below sends us round
	// again; it cannot happen twice in a row in practice.
	for range 3 {
		out, rec, err := s.begin(ctx, q, scope, key, fingerprint, token, now, lease, retryUnknown, c)
		if errors.Is(err, ErrNoRows) {
			continue
		}
		if err != nil {
			return 0, Record{}, "", fmt.Errorf("idempotency begin: %w", err)
		}
		if out != Acquired {
			token = ""
		}
		return out, rec, token, nil
	}
	return 0, Record{}, "", fmt.Errorf("idempotency begin: %w", unavailable(errors.New("record keeps vanishing")))
}

// content is the content claim of one Begin: since is the start of the
// window (zero: no claim).
type content struct{ since time.Time }

func (c content) checked() bool { return !c.since.IsZero() }

// begin is one attempt. Creating the record is one atomic statement (the
// primary key decides between racing callers). Answers that change nothing
// (Replay, Conflict, InFlight, Held) come from a plain read. Only a change
// of an existing record (lease expiry, take-over) locks it, and decides
// again on what it finds under the lock.
func (s *Idempotency) begin(ctx context.Context, q Runner, scope, key, fp, token string, now time.Time, lease time.Duration, retry bool, c content) (Outcome, Record, error) {
	leaseUntil := now.Add(lease)
	n, err := s.insert(ctx, q, c, scope, key, fp, token, leaseUntil, now)
	if err != nil {
		return 0, Record{}, err
	}
	if n == 1 {
		return Acquired, Record{
			Scope: scope, Key: key, Fingerprint: fp, State: StateInProgress,
			LeaseUntil: leaseUntil, Attempts: 1, CreatedAt: now, UpdatedAt: now,
		}, nil
	}
	cur, err := scanRecord(q.QueryRow(ctx, sqlGet, scope, key))
	if errors.Is(err, ErrNoRows) && c.checked() {
		// Not inserted and no record of this key: the content is held.
		if holder, found, herr := contentHolder(ctx, q, c, scope, key, fp); herr != nil || found {
			return ContentReplay, holder, herr
		}
	}
	if err != nil {
		return 0, Record{}, err
	}
	if out, expire, acquire := decide(cur, fp, now, retry); !expire && !acquire {
		return out, cur, nil
	}
	var out Outcome
	var rec Record
	err = s.db.InTx(ctx, func(tx Runner) error {
		if err := s.lockContent(ctx, tx, c, scope, fp); err != nil {
			return err
		}
		cur, err := scanRecord(tx.QueryRow(ctx, sqlGet+s.db.forUpdate(), scope, key))
		if err != nil {
			return err
		}
		var expire, acquire bool
		out, expire, acquire = decide(cur, fp, now, retry)
		if expire {
			if _, err := tx.Exec(ctx, sqlExpire, scope, key, noteLeaseExpired, now); err != nil {
				return err
			}
			cur = expired(cur, now)
		}
		if acquire && c.checked() {
			holder, found, err := contentHolder(ctx, tx, c, scope, key, fp)
			if err != nil {
				return err
			}
			if found {
				out, rec = ContentReplay, holder
				return nil
			}
		}
		if acquire {
			if _, err := tx.Exec(ctx, sqlAcquire, scope, key, fp, token, leaseUntil, now); err != nil {
				return err
			}
			cur.Fingerprint, cur.State, cur.LeaseUntil, cur.UpdatedAt = fp, StateInProgress, leaseUntil, now
			cur.Attempts++
		}
		rec = cur
		return nil
	})
	return out, rec, err
}

// insert creates the record if the key is new (and, with a content claim,
// if no other key holds the content); it returns how many rows it wrote.
func (s *Idempotency) insert(ctx context.Context, q Runner, c content, scope, key, fp, token string, leaseUntil, now time.Time) (int64, error) {
	if !c.checked() {
		return q.Exec(ctx, sqlInsert, scope, key, fp, token, leaseUntil, now)
	}
	if s.db.Pool == nil {
		return q.Exec(ctx, sqlInsertUnique, scope, key, fp, token, leaseUntil, now, c.since)
	}
	var n int64
	err := s.db.InTx(ctx, func(tx Runner) error {
		if err := s.lockContent(ctx, tx, c, scope, fp); err != nil {
			return err
		}
		var err error
		n, err = tx.Exec(ctx, sqlInsertUnique, scope, key, fp, token, leaseUntil, now, c.since)
		return err
	})
	return n, err
}

// lockContent takes, on PostgreSQL, the transaction's lock on a content.
func (s *Idempotency) lockContent(ctx context.Context, tx Runner, c content, scope, fp string) error {
	if !c.checked() || s.db.Pool == nil {
		return nil
	}
	_, err := tx.Exec(ctx, sqlLockContent, scope+"/"+fp)
	return err
}

// contentHolder finds the other key holding the content, if any.
func contentHolder(ctx context.Context, q Runner, c content, scope, key, fp string) (Record, bool, error) {
	rec, err := scanRecord(q.QueryRow(ctx, sqlContentHolder, scope, fp, key, c.since))
	if errors.Is(err, ErrNoRows) {
		return Record{}, false, nil
	}
	return rec, err == nil, err
}

// decide is the state machine of Begin on an existing record: the outcome,
// whether the record's lease has expired (it must become unknown), and
// whether the caller takes the record over.
func decide(cur Record, fp string, now time.Time, retryUnknown bool) (out Outcome, expire, acquire bool) {
	state := cur.State
	if leaseExpired(cur, now) {
		state, expire = StateUnknown, true
	}
	same := cur.Fingerprint == fp
	switch {
	case state == StateReleased:
		return Acquired, expire, true
	case !same:
		return Conflict, expire, false
	case state == StateCompleted:
		return Replay, expire, false
	case state == StateInProgress:
		return InFlight, expire, false
	case retryUnknown:
		return Acquired, expire, true
	default:
		return Held, expire, false
	}
}

func leaseExpired(r Record, now time.Time) bool {
	return r.State == StateInProgress && !now.Before(r.LeaseUntil)
}

func expired(r Record, now time.Time) Record {
	r.State, r.LeaseUntil, r.Note, r.UpdatedAt = StateUnknown, time.Time{}, noteLeaseExpired, now
	return r
}

// Complete records the core's definite answer (any 2xx, business refusals
// included) and the exact reply sent to the platform, which later resends
// get byte for byte. ErrNotOwner if token no longer holds the record.
func (s *Idempotency) Complete(ctx context.Context, scope, key, token string, reply []byte, now time.Time) error {
	return s.Settle(ctx, scope, key, token, Settlement{State: StateCompleted, Reply: reply}, now)
}

// Release records that the core definitely did not act (refused before
// the call, connection refused, 503, 429): the next resend runs anew.
// ErrNotOwner if token no longer holds the record.
func (s *Idempotency) Release(ctx context.Context, scope, key, token string, now time.Time) error {
	return s.Settle(ctx, scope, key, token, Settlement{State: StateReleased}, now)
}

// MarkUnknown records that the core may or may not have acted (timeout
// after sending, connection reset while reading the reply); note says what
// happened, for operators. ErrNotOwner if token no longer holds the record.
func (s *Idempotency) MarkUnknown(ctx context.Context, scope, key, token, note string, now time.Time) error {
	return s.Settle(ctx, scope, key, token, Settlement{State: StateUnknown, Note: note}, now)
}

// Settlement is how the owner of a record finishes it.
type Settlement struct {
	// State is StateCompleted (with Reply), StateReleased or StateUnknown
	// (with Note).
	State State
	Reply []byte
	Note  string
	// Journal, when set, is the exchange's journal entry: it is appended
	// in the same durable transaction (on SQLite, the same group commit)
	// as the record's change, so a reply the platform received is never
	// missing from the journal after a crash. It is appended even when the
	// token no longer holds the record (ErrNotOwner): the exchange
	// happened. The journal's table must exist (NewJournal).
	Journal *JournalEntry
}

// Settle finishes the record held by token as st says: a single
// conditional UPDATE, so a stale owner changes nothing (ErrNotOwner).
func (s *Idempotency) Settle(ctx context.Context, scope, key, token string, st Settlement, now time.Time) error {
	now = dbNow(now)
	switch st.State {
	case StateCompleted:
		if len(st.Reply) == 0 {
			return errors.New("idempotency complete: empty reply")
		}
		return s.finish(ctx, "complete", st.Journal, sqlComplete, scope, key, token, st.Reply, now)
	case StateReleased:
		return s.finish(ctx, "release", st.Journal, sqlRelease, scope, key, token, now)
	case StateUnknown:
		return s.finish(ctx, "mark unknown", st.Journal, sqlMarkUnknown, scope, key, token, st.Note, now)
	}
	return fmt.Errorf("idempotency settle: cannot settle to state %q", st.State)
}

// finish runs one owner statement, and the journal entry's insert with it
// when there is one.
func (s *Idempotency) finish(ctx context.Context, op string, entry *JournalEntry, query, scope, key, token string, args ...any) error {
	if err := checkKey(scope, key); err != nil {
		return err
	}
	if token == "" {
		return fmt.Errorf("idempotency %s: %w", op, ErrNotOwner)
	}
	args = append([]any{scope, key, token}, args...)
	var n int64
	var err error
	if entry != nil {
		n, err = s.db.execDurable(ctx, query, args, entry.insert())
	} else {
		var q Runner
		if q, err = s.db.Writer(); err == nil {
			n, err = q.Exec(ctx, query, args...)
		}
	}
	if err != nil {
		return fmt.Errorf("idempotency %s: %w", op, err)
	}
	if n == 0 {
		return fmt.Errorf("idempotency %s: %w", op, ErrNotOwner)
	}
	return nil
}

// Get returns the record, or ErrNotFound.
func (s *Idempotency) Get(ctx context.Context, scope, key string) (Record, error) {
	q, err := s.db.Runner()
	if err != nil {
		return Record{}, fmt.Errorf("idempotency get: %w", err)
	}
	rec, err := scanRecord(q.QueryRow(ctx, sqlGet, scope, key))
	if errors.Is(err, ErrNoRows) {
		return Record{}, ErrNotFound
	}
	if err != nil {
		return Record{}, fmt.Errorf("idempotency get: %w", err)
	}
	return rec, nil
}

// Wait reads the record until it leaves in_progress, its lease expires,
// the Now clock reaches until, or ctx ends, and returns it as last read.
// A record still in_progress means the wait timed out. The caller then
// calls Begin again, which decides on the fresh state (and turns an
// expired lease into unknown). ErrNotFound if the record does not exist.
func (s *Idempotency) Wait(ctx context.Context, scope, key string, until time.Time) (Record, error) {
	clock := s.Now
	if clock == nil {
		clock = time.Now
	}
	maxPoll := s.MaxPoll
	if maxPoll <= 0 {
		maxPoll = 50 * time.Millisecond
	}
	pause := 2 * time.Millisecond
	skew, err := s.leaseSkew(ctx, clock())
	if err != nil {
		return Record{}, fmt.Errorf("idempotency wait: %w", err)
	}
	for {
		rec, err := s.Get(ctx, scope, key)
		if err != nil {
			return Record{}, err
		}
		now := clock()
		if rec.State != StateInProgress || leaseExpired(rec, now.Add(skew)) || !now.Before(until) {
			return rec, nil
		}
		// Sleep at most until the deadline on the real clock; with an
		// injected clock the pause only paces the reads.
		d := min(pause, until.Sub(now))
		timer := time.NewTimer(d)
		select {
		case <-ctx.Done():
			timer.Stop()
			return rec, fmt.Errorf("idempotency wait: %w", ctx.Err())
		case <-timer.C:
		}
		pause = min(2*pause, maxPoll)
	}
}

// List returns up to limit records in state (every state if state is
// empty), least recently updated first. limit ≤ 0 means 100; at most 1000.
// Operators list StateUnknown; run ExpireLeases first so records of dead
// owners show up there too.
func (s *Idempotency) List(ctx context.Context, state State, limit int) ([]Record, error) {
	if state != "" && !state.valid() {
		return nil, fmt.Errorf("idempotency list: unknown state %q", state)
	}
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, 1000)
	q, err := s.db.Runner()
	if err != nil {
		return nil, fmt.Errorf("idempotency list: %w", err)
	}
	var rows Rows
	if state == "" {
		rows, err = q.Query(ctx, sqlListAll, limit)
	} else {
		rows, err = q.Query(ctx, sqlList, string(state), limit)
	}
	if err != nil {
		return nil, fmt.Errorf("idempotency list: %w", err)
	}
	defer rows.Close()
	var out []Record
	for rows.Next() {
		rec, err := scanRecord(rows)
		if err != nil {
			return nil, fmt.Errorf("idempotency list: %w", err)
		}
		out = append(out, rec)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("idempotency list: %w", err)
	}
	return out, nil
}

// Resolve is an operator's decision on an unknown record (an in_progress
// record whose lease has expired counts as unknown): completed with the
// reply to replay, or released. The previous owner loses the record.
// ErrNotFound, or ErrNotUnknown for any other state, change nothing.
func (s *Idempotency) Resolve(ctx context.Context, scope, key string, res Resolution, now time.Time) (Record, error) {
	var reply []byte
	switch res.State {
	case StateCompleted:
		if len(res.Reply) == 0 {
			return Record{}, errors.New("idempotency resolve: completing a record needs the reply to replay")
		}
		reply = res.Reply
	case StateReleased:
	default:
		return Record{}, fmt.Errorf("idempotency resolve: cannot resolve to state %q (want completed or released)", res.State)
	}
	now = dbNow(now)
	if q, err := s.db.Runner(); err != nil {
		return Record{}, fmt.Errorf("idempotency resolve: %w", err)
	} else if now, err = s.leaseNow(ctx, q, now); err != nil {
		return Record{}, fmt.Errorf("idempotency resolve: %w", err)
	}
	var rec Record
	err := s.db.InTx(ctx, func(tx Runner) error {
		cur, err := scanRecord(tx.QueryRow(ctx, sqlGet+s.db.forUpdate(), scope, key))
		if errors.Is(err, ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		if cur.State != StateUnknown && !leaseExpired(cur, now) {
			return fmt.Errorf("%w (it is %s)", ErrNotUnknown, cur.State)
		}
		if _, err := tx.Exec(ctx, sqlResolve, scope, key, string(res.State), nullBytes(reply), res.Note, now); err != nil {
			return err
		}
		cur.State, cur.Reply, cur.LeaseUntil, cur.Note, cur.UpdatedAt = res.State, reply, time.Time{}, res.Note, now
		rec = cur
		return nil
	})
	if err != nil {
		return Record{}, fmt.Errorf("idempotency resolve: %w", err)
	}
	return rec, nil
}

// ExpireLeases turns every in_progress record whose lease ended at or
// before now into unknown, and returns how many. Begin does this for the
// one record it touches; this sweep makes dead owners' records visible to
// List(StateUnknown) even when the platform never resends. Run it with
// Purge.
func (s *Idempotency) ExpireLeases(ctx context.Context, now time.Time) (int64, error) {
	q, err := s.db.Runner()
	if err != nil {
		return 0, fmt.Errorf("idempotency expire leases: %w", err)
	}
	if now, err = s.leaseNow(ctx, q, now); err != nil {
		return 0, fmt.Errorf("idempotency expire leases: %w", err)
	}
	n, err := q.Exec(ctx, sqlExpireAll, dbNow(now), noteLeaseExpired)
	if err != nil {
		return 0, fmt.Errorf("idempotency expire leases: %w", err)
	}
	return n, nil
}

// Purge deletes completed and released records last updated before
// `before`, and returns how many. in_progress and unknown records are never
// deleted, however old: they are work in progress or an operator's case.
func (s *Idempotency) Purge(ctx context.Context, before time.Time) (int64, error) {
	q, err := s.db.Runner()
	if err != nil {
		return 0, fmt.Errorf("idempotency purge: %w", err)
	}
	before = dbNow(before)
	var total int64
	for {
		n, err := q.Exec(ctx, sqlPurge, before, purgeBatch)
		total += n
		if err != nil {
			return total, fmt.Errorf("idempotency purge: %w", err)
		}
		if n < purgeBatch {
			return total, nil
		}
	}
}

func checkKey(scope, key string) error {
	if scope == "" || key == "" {
		return errors.New("idempotency: empty scope or key")
	}
	return nil
}

func scanRecord(sc Scanner) (Record, error) {
	var r Record
	var state string
	var lease, created, updated Time
	if err := sc.Scan(&r.Scope, &r.Key, &r.Fingerprint, &state, &r.Reply, &lease, &r.Attempts, &created, &updated, &r.Note); err != nil {
		return Record{}, err
	}
	r.State = State(state)
	r.LeaseUntil, r.CreatedAt, r.UpdatedAt = lease.T, created.T, updated.T
	return r, nil
}
