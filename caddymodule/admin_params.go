package caddymodule

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/caddy-gongbao/gongbao/caddymodule/delivery"
	"github.com/caddy-gongbao/gongbao/caddymodule/store"
)

// Admin query parameters. A bad parameter is the caller's mistake: every
// endpoint answers it with 400 and says what is allowed, never with a 5xx
// and never by silently ignoring it (a misspelt ?status=dead must not list
// every delivery).

// maxAdminLimit is the largest page an admin endpoint returns.
const maxAdminLimit = 1000

// The states an operator may filter on.
var (
	requestStates  = []string{string(store.StateInProgress), string(store.StateCompleted), string(store.StateReleased), string(store.StateUnknown)}
	deliveryStates = []string{string(delivery.StatePending), string(delivery.StateDelivered), string(delivery.StateDead)}
)

// adminQuery is a checked admin query string.
type adminQuery struct{ values url.Values }

// parseAdminQuery parses r's query and refuses malformed encoding,
// parameters the endpoint does not take, and repeated parameters.
func parseAdminQuery(r *http.Request, allowed ...string) (adminQuery, error) {
	values, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return adminQuery{}, adminError(http.StatusBadRequest, "malformed query string: %v", err)
	}
	for name, vals := range values {
		if !slices.Contains(allowed, name) {
			return adminQuery{}, adminError(http.StatusBadRequest, "unknown query parameter %q; %s", name, takes(allowed))
		}
		if len(vals) > 1 {
			return adminQuery{}, adminError(http.StatusBadRequest, "query parameter %q given %d times; give it once", name, len(vals))
		}
	}
	return adminQuery{values}, nil
}

func takes(allowed []string) string {
	if len(allowed) == 0 {
		return "this endpoint takes no parameters"
	}
	return "this endpoint takes " + strings.Join(allowed, ", ")
}

// text is a parameter's value ("" when absent).
func (q adminQuery) text(name string) string { return q.values.Get(name) }

// choice is a parameter that must be one of allowed, or absent ("").
func (q adminQuery) choice(name string, allowed []string) (string, error) {
	v := q.values.Get(name)
	if v != "" && !slices.Contains(allowed, v) {
		return "", adminError(http.StatusBadRequest, "%s=%q: want one of %s", name, v, strings.Join(allowed, ", "))
	}
	return v, nil
}

// limit is the page size: a whole number from 1 to 1000; 0 when absent
// (the endpoint's default).
func (q adminQuery) limit() (int, error) {
	v := q.values.Get("limit")
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > maxAdminLimit {
		return 0, adminError(http.StatusBadRequest, "limit=%q: want a whole number from 1 to %d", v, maxAdminLimit)
	}
	return n, nil
}

// cursor is a non-negative id (0 when absent).
func (q adminQuery) cursor(name string) (int64, error) {
	v := q.values.Get(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, adminError(http.StatusBadRequest, "%s=%q: want a delivery id (a whole number, 0 or more)", name, v)
	}
	return n, nil
}
