package caddymodule

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-gongbao/gongbao/caddymodule/delivery"
)

// callbackView is a delivery as the console shows it.
type callbackView struct {
	delivery.Delivery
	Bodies        []bodyView
	Attempts      []attemptView
	TotalDuration time.Duration // the attempts' time on the wire
	Dead          bool
}

// attemptView is one POST of a callback with its reply indented.
type attemptView struct {
	delivery.Attempt
	Reply string
}

func newCallbackView(d delivery.Delivery) callbackView {
	v := callbackView{Delivery: d, Bodies: bodies("Signed callback", d.Body), Dead: d.State == delivery.StateDead}
	for _, a := range d.Attempts {
		v.TotalDuration += a.Duration
		v.Attempts = append(v.Attempts, attemptView{Attempt: a, Reply: prettyBody(a.Reply)})
	}
	return v
}

// callbacksView is the content of the callbacks page.
type callbacksView struct {
	State     string // the state filter, "" for all
	Policy    string // the policy filter
	States    []string
	Callbacks []delivery.Delivery
	Next      string // the query of the next page, "" on the last
}

// callbacksPageSize is how many callbacks a page lists.
const callbacksPageSize = 50

// callbacks: GET /callbacks?state=dead&policy=P&after=N — the callbacks
// by state, optionally of one policy, in id order.
func (c *Console) callbacks(w http.ResponseWriter, r *http.Request, route consoleRoute) error {
	q := r.URL.Query()
	v := callbacksView{State: q.Get("state"), Policy: strings.TrimSpace(q.Get("policy")),
		States: []string{string(delivery.StatePending), string(delivery.StateDelivered), string(delivery.StateDead)}}
	state := delivery.State(v.State)
	if v.State != "" && state != delivery.StatePending && state != delivery.StateDelivered && state != delivery.StateDead {
		return c.fail(w, route, http.StatusBadRequest, "Unknown state", "A callback is pending, delivered or dead.")
	}
	engine := c.app.store.deliveries.engine
	if v.Policy != "" {
		found, err := engine.Find(r.Context(), delivery.FindOptions{OrderKey: v.Policy, Limit: 1000})
		if err != nil {
			return c.storeFailed(w, route, err)
		}
		for _, d := range found {
			if state == "" || d.State == state {
				v.Callbacks = append(v.Callbacks, d)
			}
		}
	} else {
		after, _ := strconv.ParseInt(q.Get("after"), 10, 64)
		list, next, err := engine.List(r.Context(), delivery.ListOptions{State: state, After: after, Limit: callbacksPageSize})
		if err != nil {
			return c.storeFailed(w, route, err)
		}
		v.Callbacks = list
		if next > 0 {
			v.Next = url.Values{"state": {v.State}, "after": {strconv.FormatInt(next, 10)}}.Encode()
		}
	}
	return c.render(w, http.StatusOK, "callbacks", pageData{Base: route.base, Title: "Callbacks", Nav: "callbacks",
		Operator: operator(r), Content: v})
}

// callback: GET /callbacks/<id> — one callback with every attempt.
func (c *Console) callback(w http.ResponseWriter, r *http.Request, route consoleRoute, idText string) error {
	id, err := strconv.ParseInt(idText, 10, 64)
	if err != nil || id <= 0 {
		return c.noCallback(w, route)
	}
	d, err := c.app.store.deliveries.engine.Get(r.Context(), id)
	if errors.Is(err, delivery.ErrNotFound) {
		return c.noCallback(w, route)
	}
	if err != nil {
		return c.storeFailed(w, route, err)
	}
	var flash string
	if r.URL.Query().Get("retried") != "" {
		flash = "Retry queued: the same signed body and requestUUID go out again."
	}
	return c.render(w, http.StatusOK, "callback", pageData{Base: route.base, Title: "Callback " + idText, Nav: "callbacks",
		Operator: operator(r), Flash: flash, Content: newCallbackView(d)})
}

func (c *Console) noCallback(w http.ResponseWriter, route consoleRoute) error {
	return c.fail(w, route, http.StatusNotFound, "No such callback", "No callback has this id.")
}

// retry: POST /callbacks/<id>/retry — a dead letter is delivered again,
// exactly as the admin API's retry does (same engine operation).
func (c *Console) retry(w http.ResponseWriter, r *http.Request, route consoleRoute, idText string) error {
	id, err := strconv.ParseInt(idText, 10, 64)
	if err != nil || id <= 0 {
		return c.noCallback(w, route)
	}
	d, err := c.app.store.deliveries.engine.Retry(r.Context(), id)
	switch {
	case errors.Is(err, delivery.ErrNotFound):
		return c.noCallback(w, route)
	case errors.Is(err, delivery.ErrNotDead):
		return c.fail(w, route, http.StatusConflict, "Not a dead letter",
			"Only a dead callback can be retried; this one is pending or delivered.")
	case err != nil:
		return c.storeFailed(w, route, err)
	}
	c.logger.Info("console: dead letter retried", zap.Int64("delivery_id", d.ID), zap.String("callback", d.Callback),
		zap.String("request_uuid", d.RequestUUID), zap.String("operator", operator(r)), zap.String("remote", r.RemoteAddr))
	return redirect(w, r, route, "/callbacks/"+idText+"?retried=1")
}
