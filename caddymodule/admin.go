package caddymodule

import (
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

// Routes returns the admin routes.
func (a *adminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{{Pattern: "/gongbao/", Handler: caddy.AdminHandlerFunc(a.serve)}}
}

// adminBadRequest builds the admin API's 4xx errors.
func adminError(status int, format string, args ...any) error {
	return caddy.APIError{HTTPStatus: status, Err: fmt.Errorf(format, args...)}
}

func (a *adminAPI) serve(w http.ResponseWriter, r *http.Request) error {
	app, err := runningApp()
	if err != nil {
		return err
	}
	parts := strings.Split(strings.Trim(strings.TrimPrefix(r.URL.Path, "/gongbao/"), "/"), "/")
	switch {
	case parts[0] == "requests" && len(parts) == 1 && r.Method == http.MethodGet:
		return app.listRequests(w, r)
	case parts[0] == "requests" && len(parts) == 2 && r.Method == http.MethodGet:
		return app.showRequest(w, r, parts[1])
	case parts[0] == "requests" && len(parts) == 3 && parts[2] == "resolve" && r.Method == http.MethodPost:
		return app.resolveRequest(w, r, parts[1])
	case parts[0] == "journal" && len(parts) == 1 && r.Method == http.MethodGet:
		return app.findJournal(w, r)
	case parts[0] == "deliveries" && len(parts) == 1 && r.Method == http.MethodGet:
		return app.listDeliveries(w, r)
	case parts[0] == "deliveries" && len(parts) == 2 && parts[1] == "stats" && r.Method == http.MethodGet:
		return app.deliveryStats(w, r)
	case parts[0] == "deliveries" && len(parts) == 2 && r.Method == http.MethodGet:
		return app.showDelivery(w, r, parts[1])
	case parts[0] == "deliveries" && len(parts) == 3 && parts[2] == "retry" && r.Method == http.MethodPost:
		return app.retryDelivery(w, r, parts[1])
	default:
		return adminError(http.StatusNotFound, "no such gongbao admin endpoint: %s %s", r.Method, r.URL.Path)
	}
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
func (a *App) showRequest(w http.ResponseWriter, r *http.Request, key string) error {
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
func (a *App) resolveRequest(w http.ResponseWriter, r *http.Request, key string) error {
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
