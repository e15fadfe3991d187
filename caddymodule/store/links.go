package store

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// PolicyLink records that a proposal became a policy. The platform's insure
// exchange only knows the proposal number (the policy does not exist yet);
// every later exchange and callback knows only the policy number. The
// payment callback carries both, and is where the link is learnt, so that a
// look-up by either number finds the whole history.
type PolicyLink struct {
	ProposalNo string
	PolicyNo   string
	At         time.Time
}

// policyLinksMigration adds the links. One proposal becomes at most one
// policy; a policy may (after a re-issue) have more than one proposal, so
// the proposal is the key and the policy is indexed.
var policyLinksMigration = Migration{
	ID: "journal-0002-policy-links",
	SQLite: []string{
		`CREATE TABLE IF NOT EXISTS gongbao_policy_links (
			proposal_no TEXT NOT NULL PRIMARY KEY,
			policy_no   TEXT NOT NULL,
			linked_at   TEXT NOT NULL
		)`,
		`CREATE INDEX IF NOT EXISTS gongbao_policy_links_policy ON gongbao_policy_links (policy_no)`,
	},
	Postgres: []string{
		`CREATE TABLE IF NOT EXISTS gongbao_policy_links (
			proposal_no TEXT        NOT NULL PRIMARY KEY,
			policy_no   TEXT        NOT NULL,
			linked_at   TIMESTAMPTZ NOT NULL
		)`,
		`CREATE INDEX IF NOT EXISTS gongbao_policy_links_policy ON gongbao_policy_links (policy_no)`,
	},
}

const sqlLinkUpsert = `INSERT INTO gongbao_policy_links (proposal_no, policy_no, linked_at) VALUES ($1, $2, $3)
	ON CONFLICT (proposal_no) DO UPDATE SET policy_no = excluded.policy_no, linked_at = excluded.linked_at`

// Link records links in one transaction. A link already recorded is
// updated (the core is the authority on which policy a proposal became);
// links missing a number are skipped.
func (j *Journal) Link(ctx context.Context, links []PolicyLink) error {
	return j.db.InTx(ctx, func(q Runner) error {
		for _, l := range links {
			if l.ProposalNo == "" || l.PolicyNo == "" {
				continue
			}
			if _, err := q.Exec(ctx, sqlLinkUpsert, l.ProposalNo, l.PolicyNo, dbNow(l.At)); err != nil {
				return err
			}
		}
		return nil
	})
}

// LinkedPolicy is the policy number proposalNo became, or "" when no link
// is known.
func (j *Journal) LinkedPolicy(ctx context.Context, proposalNo string) (string, error) {
	q, err := j.db.Runner()
	if err != nil {
		return "", err
	}
	var policy string
	err = q.QueryRow(ctx, `SELECT policy_no FROM gongbao_policy_links WHERE proposal_no = $1`, proposalNo).Scan(&policy)
	if errors.Is(err, ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("journal: policy of proposal: %w", err)
	}
	return policy, nil
}

// linkedCondition is the WHERE condition of a Find column, widened through
// the links: a policy number also matches the exchanges of its proposals
// (the insure exchange), a proposal number also matches the exchanges of
// the policy it became. arg is the placeholder of the searched value.
func linkedCondition(col, arg string) string {
	switch col {
	case "policy_no":
		return fmt.Sprintf(`(policy_no = %[1]s OR proposal_no IN
			(SELECT proposal_no FROM gongbao_policy_links WHERE policy_no = %[1]s))`, arg)
	case "proposal_no":
		return fmt.Sprintf(`(proposal_no = %[1]s OR policy_no IN
			(SELECT policy_no FROM gongbao_policy_links WHERE proposal_no = %[1]s))`, arg)
	default:
		return col + " = " + arg
	}
}

// purgeLinks deletes links learnt before before, with the journal entries
// of the same age.
func purgeLinks(ctx context.Context, q Runner, before time.Time) (int64, error) {
	return q.Exec(ctx, `DELETE FROM gongbao_policy_links WHERE linked_at < $1`, dbNow(before))
}
