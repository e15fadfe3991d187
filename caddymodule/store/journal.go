package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// JournalEntry is one platform exchange as it happened: what the platform
// sent, what the core was asked and answered, and what we replied. It is
// the evidence an operator shows the platform about what was sent when.
// Callback attempts are journalled by the delivery engine with each
// delivery.
type JournalEntry struct {
	ID          int64         `json:"id"`
	At          time.Time     `json:"at"` // when the request arrived
	Message     string        `json:"message"`
	RequestUUID string        `json:"request_uuid"`
	PolicyNo    string        `json:"policy_no,omitempty"`
	ProposalNo  string        `json:"proposal_no,omitempty"`
	Outcome     string        `json:"outcome"`
	Duration    time.Duration `json:"duration"`
	CoreStatus  int           `json:"core_status,omitempty"`
	RequestXML  []byte        `json:"-"`
	CoreRequest []byte        `json:"-"`
	CoreReply   []byte        `json:"-"`
	ReplyXML    []byte        `json:"-"`
	Error       string        `json:"error,omitempty"`
	// ReplayOf is the requestUUID of the exchange this one repeats: its own
	// for a resend answered from the record, another for a content replay.
	// Such an entry keeps only a bounded prefix of the request; the whole
	// exchange is the original's entry.
	ReplayOf string `json:"replay_of,omitempty"`
	// Instance is the sidecar instance that handled the exchange (several
	// may share one store).
	Instance string `json:"instance,omitempty"`
	// Unmapped are the paths of the request's elements no mapping row
	// read (ignore: entries, unknown elements let through): how a new
	// platform field first shows. Stored bounded: at most
	// MaxUnmappedNames, each clipped to MaxUnmappedName bytes.
	Unmapped []string `json:"unmapped,omitempty"`
}

// The bounds of JournalEntry.Unmapped as stored.
const (
	MaxUnmappedNames = 32
	MaxUnmappedName  = 128
)

// joinUnmapped is the stored form of names: comma-joined (no XML name
// holds a comma), bounded.
func joinUnmapped(names []string) string {
	var b strings.Builder
	for i, n := range names[:min(len(names), MaxUnmappedNames)] {
		if len(n) > MaxUnmappedName {
			n = strings.ToValidUTF8(n[:MaxUnmappedName], "")
		}
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strings.ReplaceAll(n, ",", ""))
	}
	return b.String()
}

func splitUnmapped(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// JournalQuery selects entries: every non-empty field must match.
type JournalQuery struct {
	RequestUUID string
	PolicyNo    string
	ProposalNo  string
	Limit       int // default 100, at most 1000
}

// Journal is the exchange journal.
type Journal struct{ db *DB }

// journalIndexes are the same on both backends: look-ups by requestUUID,
// policy, proposal, and retention by time.
var journalIndexes = []string{
	`CREATE INDEX IF NOT EXISTS gongbao_journal_uuid ON gongbao_journal (request_uuid)`,
	`CREATE INDEX IF NOT EXISTS gongbao_journal_policy ON gongbao_journal (policy_no) WHERE policy_no <> ''`,
	`CREATE INDEX IF NOT EXISTS gongbao_journal_proposal ON gongbao_journal (proposal_no) WHERE proposal_no <> ''`,
	`CREATE INDEX IF NOT EXISTS gongbao_journal_at ON gongbao_journal (at)`,
}

var journalMigrations = []Migration{{
	ID: "journal-0001-entries",
	SQLite: append([]string{
		`CREATE TABLE IF NOT EXISTS gongbao_journal (
			id           INTEGER PRIMARY KEY AUTOINCREMENT,
			at           TEXT    NOT NULL,
			message      TEXT    NOT NULL,
			request_uuid TEXT    NOT NULL,
			policy_no    TEXT    NOT NULL DEFAULT '',
			proposal_no  TEXT    NOT NULL DEFAULT '',
			outcome      TEXT    NOT NULL,
			duration_us  INTEGER NOT NULL,
			core_status  INTEGER NOT NULL DEFAULT 0,
			request_xml  BLOB,
			core_request BLOB,
			core_reply   BLOB,
			reply_xml    BLOB,
			error        TEXT    NOT NULL DEFAULT ''
		)`,
	}, journalIndexes...),
	Postgres: append([]string{
		`CREATE TABLE IF NOT EXISTS gongbao_journal (
			id           BIGSERIAL   PRIMARY KEY,
			at           TIMESTAMPTZ NOT NULL,
			message      TEXT        NOT NULL,
			request_uuid TEXT        NOT NULL,
			policy_no    TEXT        NOT NULL DEFAULT '',
			proposal_no  TEXT        NOT NULL DEFAULT '',
			outcome      TEXT        NOT NULL,
			duration_us  BIGINT      NOT NULL,
			core_status  INTEGER     NOT NULL DEFAULT 0,
			request_xml  BYTEA,
			core_request BYTEA,
			core_reply   BYTEA,
			reply_xml    BYTEA,
			error        TEXT        NOT NULL DEFAULT ''
		)`,
	}, journalIndexes...),
}, policyLinksMigration, {
	ID:       "journal-0003-replay-of",
	SQLite:   []string{`ALTER TABLE gongbao_journal ADD COLUMN replay_of TEXT NOT NULL DEFAULT ''`},
	Postgres: []string{`ALTER TABLE gongbao_journal ADD COLUMN IF NOT EXISTS replay_of TEXT NOT NULL DEFAULT ''`},
}, journalInstanceMigration, journalUnmappedMigration}

// journalInstanceMigration records which instance handled an exchange.
var journalInstanceMigration = Migration{
	ID:       "journal-0006-instance",
	SQLite:   []string{`ALTER TABLE gongbao_journal ADD COLUMN instance TEXT NOT NULL DEFAULT ''`},
	Postgres: []string{`ALTER TABLE gongbao_journal ADD COLUMN IF NOT EXISTS instance TEXT NOT NULL DEFAULT ''`},
}

// journalUnmappedMigration records the elements no row read.
var journalUnmappedMigration = Migration{
	ID:       "journal-0007-unmapped",
	SQLite:   []string{`ALTER TABLE gongbao_journal ADD COLUMN unmapped TEXT NOT NULL DEFAULT ''`},
	Postgres: []string{`ALTER TABLE gongbao_journal ADD COLUMN IF NOT EXISTS unmapped TEXT NOT NULL DEFAULT ''`},
}

// NewJournal creates the journal table if missing.
func NewJournal(ctx context.Context, db *DB) (*Journal, error) {
	if err := db.Migrate(ctx, journalMigrations); err != nil {
		return nil, fmt.Errorf("journal: migrating the store: %w", err)
	}
	db.Prepare(ctx, sqlJournalInsert) // one row per exchange: parse it once
	return &Journal{db: db}, nil
}

const journalColumns = `at, message, request_uuid, policy_no, proposal_no, outcome, duration_us, core_status,
	request_xml, core_request, core_reply, reply_xml, error, replay_of, instance, unmapped`

const sqlJournalInsert = `INSERT INTO gongbao_journal (` + journalColumns + `)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)`

// Append writes entries in one transaction: all or none.
func (j *Journal) Append(ctx context.Context, entries []JournalEntry) error {
	if len(entries) == 0 {
		return nil
	}
	return j.db.InTx(ctx, func(q Runner) error {
		for _, e := range entries {
			st := e.insert()
			if _, err := q.Exec(ctx, st.query, st.args...); err != nil {
				return err
			}
		}
		return nil
	})
}

// insert is the statement that appends e.
func (e *JournalEntry) insert() statement {
	return statement{query: sqlJournalInsert, args: []any{dbNow(e.At), e.Message, e.RequestUUID, e.PolicyNo, e.ProposalNo, e.Outcome,
		e.Duration.Microseconds(), e.CoreStatus, nullBytes(e.RequestXML), nullBytes(e.CoreRequest),
		nullBytes(e.CoreReply), nullBytes(e.ReplyXML), e.Error, e.ReplayOf, e.Instance, joinUnmapped(e.Unmapped)}}
}

// Find returns the entries matching query, oldest first. A policy or
// proposal number also finds the exchanges of its linked number (see
// PolicyLink).
func (j *Journal) Find(ctx context.Context, query JournalQuery) ([]JournalEntry, error) {
	var where []string
	var args []any
	for _, c := range []struct{ col, val string }{
		{"request_uuid", query.RequestUUID}, {"policy_no", query.PolicyNo}, {"proposal_no", query.ProposalNo},
	} {
		if c.val != "" {
			args = append(args, c.val)
			where = append(where, linkedCondition(c.col, fmt.Sprintf("$%d", len(args))))
		}
	}
	if len(where) == 0 {
		return nil, errors.New("journal: give a requestUUID, policy number or proposal number")
	}
	limit := query.Limit
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, 1000)
	q, err := j.db.Runner()
	if err != nil {
		return nil, err
	}
	rows, err := q.Query(ctx, `SELECT id, `+journalColumns+` FROM gongbao_journal WHERE `+
		strings.Join(where, " AND ")+fmt.Sprintf(` ORDER BY id LIMIT %d`, limit), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []JournalEntry
	for rows.Next() {
		var e JournalEntry
		var at Time
		var durUS int64
		var unmapped string
		if err := rows.Scan(&e.ID, &at, &e.Message, &e.RequestUUID, &e.PolicyNo, &e.ProposalNo, &e.Outcome,
			&durUS, &e.CoreStatus, &e.RequestXML, &e.CoreRequest, &e.CoreReply, &e.ReplyXML, &e.Error, &e.ReplayOf, &e.Instance, &unmapped); err != nil {
			return nil, err
		}
		e.Unmapped = splitUnmapped(unmapped)
		e.At, e.Duration = at.T, time.Duration(durUS)*time.Microsecond
		out = append(out, e)
	}
	return out, rows.Err()
}

// PurgeBodies drops the bodies of entries older than before, keeping the
// entries themselves (who, what, when, outcome).
func (j *Journal) PurgeBodies(ctx context.Context, before time.Time) (int64, error) {
	q, err := j.db.Runner()
	if err != nil {
		return 0, err
	}
	return q.Exec(ctx, `UPDATE gongbao_journal
		SET request_xml = NULL, core_request = NULL, core_reply = NULL, reply_xml = NULL
		WHERE at < $1 AND (request_xml IS NOT NULL OR core_request IS NOT NULL OR core_reply IS NOT NULL OR reply_xml IS NOT NULL)`,
		dbNow(before))
}

// Purge deletes entries older than before, and the links learnt then.
func (j *Journal) Purge(ctx context.Context, before time.Time) (int64, error) {
	q, err := j.db.Runner()
	if err != nil {
		return 0, err
	}
	if _, err := purgeLinks(ctx, q, before); err != nil {
		return 0, err
	}
	return q.Exec(ctx, `DELETE FROM gongbao_journal WHERE at < $1`, dbNow(before))
}
