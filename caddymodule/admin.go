package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-gongbao/gongbao/caddymodule/store"
)

func init() {
	caddy.RegisterModule(adminAPI{})
}

// adminAPI serves the operators' endpoints under /gongbao/ on Caddy's admin
// listener (which should stay on loopback). It reaches the running gongbao
// app at request time, so it always sees the current config.
type adminAPI struct{}

// CaddyModule returns the Caddy module information.
func (adminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.gongbao",
		New: func() caddy.Module { return new(adminAPI) },
	}
}

// Routes returns the admin routes: one Caddy route for /gongbao/, whose
// endpoints adminMux tells apart.
func (a *adminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{{Pattern: "/gongbao/", Handler: caddy.AdminHandlerFunc(a.serve)}}
}

// adminError builds the admin API's errors; Caddy's admin server writes
// them as JSON with their status.
func adminError(status int, format string, args ...any) error {
	return caddy.APIError{HTTPStatus: status, Err: fmt.Errorf(format, args...)}
}

// adminEndpoint is one endpoint: it answers through w or returns an error
// for Caddy's admin server to write.
type adminEndpoint func(app *App, w http.ResponseWriter, r *http.Request) error

// adminMux routes the endpoints by method and path. Anything else under
// /gongbao/ is the catch-all's 404, whatever the method, as it always was.
var adminMux = newAdminMux()

func newAdminMux() *http.ServeMux {
	mux := http.NewServeMux()
	for pattern, endpoint := range map[string]adminEndpoint{
		"GET /gongbao/requests":                 (*App).listRequests,
		"GET /gongbao/requests/{uuid}":          (*App).showRequest,
		"POST /gongbao/requests/{uuid}/resolve": (*App).resolveRequest,
		"GET /gongbao/journal":                  (*App).findJournal,
		"GET /gongbao/deliveries":               (*App).listDeliveries,
		"GET /gongbao/deliveries/stats":         (*App).deliveryStats,
		"GET /gongbao/deliveries/{id}":          (*App).showDelivery,
		"POST /gongbao/deliveries/{id}/retry":   (*App).retryDelivery,
		"/gongbao/":                             noAdminEndpoint,
	} {
		mux.Handle(pattern, endpoint)
	}
	return mux
}

func noAdminEndpoint(_ *App, _ http.ResponseWriter, r *http.Request) error {
	return adminError(http.StatusNotFound, "no such gongbao admin endpoint: %s %s", r.Method, r.URL.Path)
}

// adminCall carries the running app in, and the endpoint's error out of,
// adminMux.ServeHTTP, which has no error result.
type adminCall struct {
	app *App
	err error
}

type adminCallKey struct{}

// ServeHTTP runs the endpoint with the app serve put in the context.
func (e adminEndpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	call := r.Context().Value(adminCallKey{}).(*adminCall)
	call.err = e(call.app, w, r)
}

func (a *adminAPI) serve(w http.ResponseWriter, r *http.Request) error {
	app, err := runningApp()
	if err != nil {
		return err
	}
	return serveAdmin(app, w, r)
}

// serveAdmin answers an admin request under /gongbao/ from app.
func serveAdmin(app *App, w http.ResponseWriter, r *http.Request) error {
	call := &adminCall{app: app}
	r = r.WithContext(context.WithValue(r.Context(), adminCallKey{}, call))
	// A trailing slash names the same endpoint, as it always did.
	if trimmed := strings.TrimRight(r.URL.Path, "/"); trimmed != r.URL.Path && trimmed != "/gongbao" {
		u := *r.URL
		u.Path, u.RawPath = trimmed, ""
		r.URL = &u
	}
	adminMux.ServeHTTP(w, r)
	return call.err
}

// runningApp is the gongbao app of the active config.
func runningApp() (*App, error) {
	appIface, err := caddy.ActiveContext().AppIfConfigured("gongbao")
	if err != nil {
		return nil, adminError(http.StatusServiceUnavailable, "the gongbao app is not configured")
	}
	return appIface.(*App), nil
}

func (a *App) idempotencyStore() (*store.Idempotency, error) {
	if a.idem == nil {
		return nil, adminError(http.StatusConflict, "idempotency is off: there are no request records")
	}
	return a.idem, nil
}

// requestRecordJSON is a record as operators see it: the stored reply as
// text (it is XML), not base64.
type requestRecordJSON struct {
	Scope       string    `json:"scope"`
	RequestUUID string    `json:"request_uuid"`
	Fingerprint string    `json:"fingerprint"`
	State       string    `json:"state"`
	Attempts    int       `json:"attempts"`
	LeaseUntil  time.Time `json:"lease_until,omitzero"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
	Note        string    `json:"note,omitempty"`
	Reply       string    `json:"reply,omitempty"`
}

func recordJSON(rec store.Record) requestRecordJSON {
	return requestRecordJSON{
		Scope: rec.Scope, RequestUUID: rec.Key, Fingerprint: rec.Fingerprint, State: string(rec.State),
		Attempts: rec.Attempts, LeaseUntil: rec.LeaseUntil, CreatedAt: rec.CreatedAt, UpdatedAt: rec.UpdatedAt,
		Note: rec.Note, Reply: string(rec.Reply),
	}
}

// listRequests: GET /gongbao/requests?state=unknown&limit=100
func (a *App) listRequests(w http.ResponseWriter, r *http.Request) error {
	idem, err := a.idempotencyStore()
	if err != nil {
		return err
	}
	q, err := parseAdminQuery(r, "state", "limit")
	if err != nil {
		return err
	}
	state, err := q.choice("state", requestStates)
	if err != nil {
		return err
	}
	limit, err := q.limit()
	if err != nil {
		return err
	}
	recs, err := idem.List(r.Context(), store.State(state), limit)
	if err != nil {
		return adminError(http.StatusServiceUnavailable, "listing requests: %v", err)
	}
	out := make([]requestRecordJSON, 0, len(recs))
	for _, rec := range recs {
		out = append(out, recordJSON(rec))
	}
	return writeJSON(w, http.StatusOK, out)
}

// showRequest: GET /gongbao/requests/<requestUUID>[?scope=…]
func (a *App) showRequest(w http.ResponseWriter, r *http.Request) error {
	key := r.PathValue("uuid")
	idem, err := a.idempotencyStore()
	if err != nil {
		return err
	}
	scope, err := a.scopeParam(r)
	if err != nil {
		return err
	}
	rec, err := idem.Get(r.Context(), scope, key)
	if errors.Is(err, store.ErrNotFound) {
		return adminError(http.StatusNotFound, "no request record %q", key)
	}
	if err != nil {
		return adminError(http.StatusServiceUnavailable, "reading request: %v", err)
	}
	return writeJSON(w, http.StatusOK, recordJSON(rec))
}

// resolveRequest: POST /gongbao/requests/<requestUUID>/resolve with
// {"state":"released"} or {"state":"completed","reply":"<signed XML>"}.
// Only records whose outcome is unknown can be resolved.
func (a *App) resolveRequest(w http.ResponseWriter, r *http.Request) error {
	key := r.PathValue("uuid")
	idem, err := a.idempotencyStore()
	if err != nil {
		return err
	}
	var body struct {
		State string `json:"state"`
		Reply string `json:"reply"`
		Note  string `json:"note"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&body); err != nil {
		return adminError(http.StatusBadRequest, "decoding the resolution: %v", err)
	}
	scope, err := a.scopeParam(r)
	if err != nil {
		return err
	}
	res := store.Resolution{State: store.State(body.State), Reply: []byte(body.Reply), Note: body.Note}
	rec, err := idem.Resolve(r.Context(), scope, key, res, time.Now())
	switch {
	case errors.Is(err, store.ErrNotFound):
		return adminError(http.StatusNotFound, "no request record %q", key)
	case errors.Is(err, store.ErrNotUnknown):
		return adminError(http.StatusConflict, "request %q: %v", key, err)
	case errors.Is(err, store.ErrUnavailable):
		return adminError(http.StatusServiceUnavailable, "resolving request: %v", err)
	case err != nil:
		return adminError(http.StatusBadRequest, "resolving request %q: %v", key, err)
	}
	return writeJSON(w, http.StatusOK, recordJSON(rec))
}

// scopeParam is the ?scope= of a request-record endpoint, or this
// config's scope.
func (a *App) scopeParam(r *http.Request) (string, error) {
	q, err := parseAdminQuery(r, "scope")
	if err != nil {
		return "", err
	}
	if s := q.text("scope"); s != "" {
		return s, nil
	}
	return a.Idempotency.Scope, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// Interface guards
var _ caddy.AdminRouter = (*adminAPI)(nil)
