package caddymodule

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/caddy-gongbao/gongbao/caddymodule/delivery"
	"github.com/caddy-gongbao/gongbao/caddymodule/store"
)

// deliveryJSON is a delivery as operators see it: the signed XML and the
// platform's replies as text, not base64.
type deliveryJSON struct {
	delivery.Delivery
	Body     string        `json:"body,omitempty"`
	Attempts []attemptJSON `json:"attempts,omitempty"`
}

type attemptJSON struct {
	delivery.Attempt
	Reply string `json:"reply,omitempty"`
}

func toDeliveryJSON(d delivery.Delivery) deliveryJSON {
	out := deliveryJSON{Delivery: d, Body: string(d.Body)}
	for _, a := range d.Attempts {
		out.Attempts = append(out.Attempts, attemptJSON{Attempt: a, Reply: string(a.Reply)})
	}
	return out
}

func (a *App) deliveryEngine() (*delivery.Engine, error) {
	if a.store == nil {
		return nil, adminError(http.StatusConflict, "the gongbao app has no store: there are no deliveries")
	}
	return a.store.deliveries.engine, nil
}

// listDeliveries: GET /gongbao/deliveries?state=dead&limit=50&after=<id>
func (a *App) listDeliveries(w http.ResponseWriter, r *http.Request) error {
	engine, err := a.deliveryEngine()
	if err != nil {
		return err
	}
	opt, err := listOptions(r)
	if err != nil {
		return err
	}
	list, next, err := engine.List(r.Context(), opt)
	if err != nil {
		return deliveryAdminError(err)
	}
	out := struct {
		Deliveries []deliveryJSON `json:"deliveries"`
		Next       int64          `json:"next,omitempty"`
	}{Deliveries: make([]deliveryJSON, 0, len(list)), Next: next}
	for _, d := range list {
		out.Deliveries = append(out.Deliveries, toDeliveryJSON(d))
	}
	return writeJSON(w, http.StatusOK, out)
}

// listOptions reads ?state=&limit=&after= of the delivery list.
func listOptions(r *http.Request) (delivery.ListOptions, error) {
	var opt delivery.ListOptions
	q, err := parseAdminQuery(r, "state", "limit", "after")
	if err != nil {
		return opt, err
	}
	state, err := q.choice("state", deliveryStates)
	if err != nil {
		return opt, err
	}
	opt.State = delivery.State(state)
	if opt.Limit, err = q.limit(); err != nil {
		return opt, err
	}
	opt.After, err = q.cursor("after")
	return opt, err
}

// showDelivery: GET /gongbao/deliveries/<id>, with every attempt.
func (a *App) showDelivery(w http.ResponseWriter, r *http.Request) error {
	if _, err := parseAdminQuery(r); err != nil {
		return err
	}
	engine, id, err := a.deliveryByID(r.PathValue("id"))
	if err != nil {
		return err
	}
	d, err := engine.Get(r.Context(), id)
	if err != nil {
		return deliveryAdminError(err)
	}
	return writeJSON(w, http.StatusOK, toDeliveryJSON(d))
}

// retryDelivery: POST /gongbao/deliveries/<id>/retry, for a dead letter.
// The same signed body (same requestUUID) is delivered again.
func (a *App) retryDelivery(w http.ResponseWriter, r *http.Request) error {
	if _, err := parseAdminQuery(r); err != nil {
		return err
	}
	engine, id, err := a.deliveryByID(r.PathValue("id"))
	if err != nil {
		return err
	}
	d, err := engine.Retry(r.Context(), id)
	if err != nil {
		return deliveryAdminError(err)
	}
	return writeJSON(w, http.StatusOK, toDeliveryJSON(d))
}

// deliveryStats: GET /gongbao/deliveries/stats
func (a *App) deliveryStats(w http.ResponseWriter, r *http.Request) error {
	if _, err := parseAdminQuery(r); err != nil {
		return err
	}
	engine, err := a.deliveryEngine()
	if err != nil {
		return err
	}
	stats, err := engine.Stats(r.Context())
	if err != nil {
		return deliveryAdminError(err)
	}
	return writeJSON(w, http.StatusOK, toStatsJSON(stats))
}

// deliveryStatsJSON is the answer of /gongbao/deliveries/stats. Durations
// are seconds, as in the logs and the metrics.
type deliveryStatsJSON struct {
	Pending            int64      `json:"pending"`
	Delivered          int64      `json:"delivered"`
	Dead               int64      `json:"dead"`
	OldestPendingSince *time.Time `json:"oldest_pending_since,omitempty"`
	// OldestPendingAge is in seconds.
	OldestPendingAge float64 `json:"oldest_pending_age"`
}

func toStatsJSON(s delivery.Stats) deliveryStatsJSON {
	return deliveryStatsJSON{Pending: s.Pending, Delivered: s.Delivered, Dead: s.Dead,
		OldestPendingSince: s.OldestPendingSince, OldestPendingAge: s.OldestPendingAge.Seconds()}
}

func (a *App) deliveryByID(idText string) (*delivery.Engine, int64, error) {
	engine, err := a.deliveryEngine()
	if err != nil {
		return nil, 0, err
	}
	id, err := strconv.ParseInt(idText, 10, 64)
	if err != nil || id <= 0 {
		return nil, 0, adminError(http.StatusBadRequest, "delivery id %q is not a number", idText)
	}
	return engine, id, nil
}

func deliveryAdminError(err error) error {
	switch {
	case errors.Is(err, delivery.ErrNotFound):
		return adminError(http.StatusNotFound, "%v", err)
	case errors.Is(err, delivery.ErrNotDead):
		return adminError(http.StatusConflict, "%v", err)
	case errors.Is(err, delivery.ErrInvalid):
		return adminError(http.StatusBadRequest, "%v", err)
	case errors.Is(err, store.ErrUnavailable):
		return adminError(http.StatusServiceUnavailable, "%v", err)
	default:
		return adminError(http.StatusInternalServerError, "%v", err)
	}
}
