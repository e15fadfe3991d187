package delivery

import (
	"context"
	"fmt"
	"time"

	"github.com/caddy-gongbao/gongbao/caddymodule/store"
)

// CountCreatedSince counts the deliveries created at or after since, by
// their current state: of the callbacks the core asked for in a window,
// how many went out, wait, or died. Stats gives the totals and the
// oldest pending; this gives the recent picture an operator starts from.
func (e *Engine) CountCreatedSince(ctx context.Context, since time.Time) (map[State]int64, error) {
	rows, err := e.q.pool().Query(ctx, `SELECT state, COUNT(*) FROM gongbao_deliveries
		WHERE created_at >= $1 GROUP BY state`, store.DBNow(since))
	if err != nil {
		return nil, fmt.Errorf("delivery: count since: %w", err)
	}
	defer rows.Close()
	out := map[State]int64{StatePending: 0, StateDelivered: 0, StateDead: 0}
	for rows.Next() {
		var (
			state string
			n     int64
		)
		if err := rows.Scan(&state, &n); err != nil {
			return nil, fmt.Errorf("delivery: count since: %w", err)
		}
		out[State(state)] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("delivery: count since: %w", err)
	}
	return out, nil
}
