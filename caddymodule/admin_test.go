package caddymodule

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
)

// TestAdminRoutes: each method and path reaches its endpoint (an app
// without store or idempotency answers each with its own 409), a trailing
// slash names the same endpoint, and anything else is a 404.
func TestAdminRoutes(t *testing.T) {
	app := new(App)
	for _, tc := range []struct {
		method, path string
		status       int
		says         string
	}{
		{http.MethodGet, "/gongbao/requests", http.StatusConflict, "idempotency is off"},
		{http.MethodGet, "/gongbao/requests/", http.StatusConflict, "idempotency is off"},
		{http.MethodGet, "/gongbao/requests/u-1", http.StatusConflict, "idempotency is off"},
		{http.MethodPost, "/gongbao/requests/u-1/resolve", http.StatusConflict, "idempotency is off"},
		{http.MethodGet, "/gongbao/journal", http.StatusConflict, "journal is off"},
		{http.MethodGet, "/gongbao/deliveries", http.StatusConflict, "no store"},
		{http.MethodGet, "/gongbao/deliveries/stats", http.StatusConflict, "no store"},
		{http.MethodGet, "/gongbao/deliveries/7", http.StatusConflict, "no store"},
		{http.MethodPost, "/gongbao/deliveries/7/retry", http.StatusConflict, "no store"},
		{http.MethodDelete, "/gongbao/deliveries/7", http.StatusNotFound, "no such gongbao admin endpoint: DELETE /gongbao/deliveries/7"},
		{http.MethodPost, "/gongbao/requests", http.StatusNotFound, "no such gongbao admin endpoint"},
		{http.MethodGet, "/gongbao/deliveries/7/retry", http.StatusNotFound, "no such gongbao admin endpoint"},
		{http.MethodGet, "/gongbao/", http.StatusNotFound, "no such gongbao admin endpoint"},
		{http.MethodGet, "/gongbao/other", http.StatusNotFound, "no such gongbao admin endpoint"},
	} {
		err := serveAdmin(app, httptest.NewRecorder(), httptest.NewRequest(tc.method, tc.path, nil))
		var apiErr caddy.APIError
		if !errors.As(err, &apiErr) || apiErr.HTTPStatus != tc.status || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s %s: %v, want %d %q", tc.method, tc.path, err, tc.status, tc.says)
		}
	}
}
