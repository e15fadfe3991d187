package caddymodule

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-gongbao/gongbao/caddymodule/store"
)

// requestsView is the content of the requests-in-doubt page.
type requestsView struct {
	Off      bool // idempotency is off: there are no records
	Hold     bool // unknown_outcome hold: resends wait for an operator
	Requests []store.Record
}

// requestsInDoubtMax bounds the list; more than this many requests in doubt
// is an incident to handle with the admin API, not page by page.
const requestsInDoubtMax = 500

// requestsInDoubt: GET /requests — platform requests whose outcome at the
// core is unknown (a timeout after sending, a sidecar that died mid-call),
// with the operator's resolutions.
func (c *Console) requestsInDoubt(w http.ResponseWriter, r *http.Request, route consoleRoute) error {
	v := requestsView{Off: c.app.idem == nil, Hold: c.app.Idempotency.UnknownOutcome == unknownHold}
	if !v.Off {
		// Leases that ran out are in doubt too; make them show up now
		// rather than at the next housekeeping pass.
		if _, err := c.app.idem.ExpireLeases(r.Context(), time.Now()); err != nil {
			return c.storeFailed(w, route, err)
		}
		recs, err := c.app.idem.List(r.Context(), store.StateUnknown, requestsInDoubtMax)
		if err != nil {
			return c.storeFailed(w, route, err)
		}
		v.Requests = recs
	}
	var flash string
	if key, as := r.URL.Query().Get("resolved"), store.State(r.URL.Query().Get("as")); key != "" &&
		(as == store.StateReleased || as == store.StateCompleted) {
		flash = "Resolved " + key + " as " + string(as) + "."
	}
	return c.render(w, http.StatusOK, "requests", pageData{Base: route.base, Title: "Requests in doubt", Nav: "requests",
		Operator: operator(r), Flash: flash, Content: v})
}

// resolveFormMax bounds a resolution form (a completed resolution carries
// the signed reply to replay).
const resolveFormMax = 1 << 20

// resolve: POST /requests/<requestUUID>/resolve with state=released, or
// state=completed and reply=<signed XML> — the same operation as the admin
// API's resolve. The note records who resolved it.
func (c *Console) resolve(w http.ResponseWriter, r *http.Request, route consoleRoute, key string) error {
	if c.app.idem == nil {
		return c.fail(w, route, http.StatusConflict, "Idempotency is off", "There are no request records to resolve.")
	}
	r.Body = http.MaxBytesReader(w, r.Body, resolveFormMax)
	if err := r.ParseForm(); err != nil {
		return c.fail(w, route, http.StatusBadRequest, "Unreadable form", "")
	}
	op := operator(r)
	res := store.Resolution{
		State: store.State(r.PostForm.Get("state")),
		Reply: []byte(strings.TrimSpace(r.PostForm.Get("reply"))),
		Note:  resolutionNote(r.PostForm.Get("note"), op),
	}
	scope := r.PostForm.Get("scope")
	if scope == "" {
		scope = c.app.Idempotency.Scope
	}
	rec, err := c.app.idem.Resolve(r.Context(), scope, key, res, time.Now())
	switch {
	case errors.Is(err, store.ErrNotFound):
		return c.fail(w, route, http.StatusNotFound, "No such request", "No request record has this requestUUID.")
	case errors.Is(err, store.ErrNotUnknown):
		return c.fail(w, route, http.StatusConflict, "Not in doubt", "Only a request whose outcome is unknown can be resolved.")
	case errors.Is(err, store.ErrUnavailable):
		return c.storeFailed(w, route, err)
	case err != nil:
		return c.fail(w, route, http.StatusBadRequest, "Resolution refused",
			"Choose released, or completed with the signed reply to replay.")
	}
	c.logger.Info("console: request resolved", zap.String("request_uuid", key), zap.String("scope", scope),
		zap.String("state", string(rec.State)), zap.String("operator", op), zap.String("remote", r.RemoteAddr))
	return redirect(w, r, route, "/requests?"+url.Values{"resolved": {key}, "as": {string(rec.State)}}.Encode())
}

// resolutionNote is the note kept with a resolution: the operator's words
// and, when the auth layer names them, who they are.
func resolutionNote(note, operator string) string {
	note = strings.TrimSpace(note)
	if operator == "" {
		return note
	}
	if note == "" {
		return "resolved in the console by " + operator
	}
	return note + " (resolved in the console by " + operator + ")"
}
