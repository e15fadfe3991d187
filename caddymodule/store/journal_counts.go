package store

import (
	"context"
	"fmt"
	"time"
)

// OutcomeCount is how many platform exchanges ended with one outcome.
type OutcomeCount struct {
	Outcome string `json:"outcome"`
	Count   int64  `json:"count"`
}

// CountOutcomes counts the exchanges that arrived at or after since, by
// outcome, most frequent first: the operator's "how did the last day go".
func (j *Journal) CountOutcomes(ctx context.Context, since time.Time) ([]OutcomeCount, error) {
	q, err := j.db.Runner()
	if err != nil {
		return nil, err
	}
	rows, err := q.Query(ctx, `SELECT outcome, COUNT(*) FROM gongbao_journal WHERE at >= $1
		GROUP BY outcome ORDER BY COUNT(*) DESC, outcome`, dbNow(since))
	if err != nil {
		return nil, fmt.Errorf("journal: counting outcomes: %w", err)
	}
	defer rows.Close()
	var out []OutcomeCount
	for rows.Next() {
		var c OutcomeCount
		if err := rows.Scan(&c.Outcome, &c.Count); err != nil {
			return nil, fmt.Errorf("journal: counting outcomes: %w", err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}
