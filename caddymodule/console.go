package caddymodule

import (
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"strings"
	"sync"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(Console{})
}

// consoleFiles holds the console's templates and its stylesheet and
// script: the console needs no CDN, no build step and no file on disk.
//
//go:embed console/templates/*.html console/static/*
var consoleFiles embed.FS

// Console is the operators' web console: one page answers "what happened
// to this policy?" — every platform exchange and every callback of a
// policy in time order, with bodies — and the callback and in-doubt
// request lists with the same Retry and Resolve actions as the admin API.
//
// It has no authentication of its own: put it behind Caddy's basic_auth or
// forward_auth, on a loopback or internal listener, never on the site the
// platform reaches. Actions (POST) are refused when cross-site and logged
// with the operator's identity ({http.auth.user.id}) when the auth layer
// provides one.
type Console struct {
	// ShowPersonalData shows bodies unmasked. By default names, mobiles,
	// ID numbers, bank accounts, e-mails and addresses (the mapping rows
	// tagged pii) are masked, as in the journal's mask_personal_data.
	ShowPersonalData bool `json:"show_personal_data,omitempty"`

	app    *App
	logger *zap.Logger
	pages  map[string]*template.Template
	static http.Handler
	csrf   *http.CrossOriginProtection
}

// CaddyModule returns the Caddy module information.
func (Console) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.gongbao_console",
		New: func() caddy.Module { return new(Console) },
	}
}

// Provision finds the gongbao app and loads the pages.
func (c *Console) Provision(ctx caddy.Context) error {
	c.logger = ctx.Logger()
	appIface, err := ctx.App("gongbao")
	if err != nil {
		return fmt.Errorf("gongbao_console: loading the gongbao app: %w", err)
	}
	return c.setup(appIface.(*App))
}

// setup binds the console to the app and loads its pages.
func (c *Console) setup(app *App) error {
	c.app = app
	pages, err := consolePages()
	if err != nil {
		return fmt.Errorf("gongbao_console: %w", err)
	}
	c.pages = pages
	static, _ := fs.Sub(consoleFiles, "console/static")
	c.static = http.StripPrefix("/static/", http.FileServerFS(static))
	c.csrf = http.NewCrossOriginProtection()
	return nil
}

// Validate checks that there is a store to look into.
func (c *Console) Validate() error {
	if c.app.store == nil {
		return errors.New("gongbao_console: the gongbao app has no store (journal, idempotency and callbacks are all off)")
	}
	return nil
}

// consolePages parses each page with the layout, once per process: the
// templates are compiled into the binary and never change.
var consolePages = sync.OnceValues(func() (map[string]*template.Template, error) {
	names := []string{"overview", "timeline", "search", "callbacks", "callback", "requests", "error"}
	pages := make(map[string]*template.Template, len(names))
	for _, name := range names {
		t, err := template.New(name).Funcs(consoleFuncs).ParseFS(consoleFiles,
			"console/templates/layout.html", "console/templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("console page %s: %w", name, err)
		}
		pages[name] = t
	}
	return pages, nil
})

// consoleRoute is one console request: its path below the console's mount
// point, split, and the mount point, for links.
type consoleRoute struct {
	parts []string
	base  string
}

// ServeHTTP implements caddyhttp.MiddlewareHandler. The console answers
// every request under its route itself; it never calls next.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	setConsoleHeaders(w.Header())
	route := consoleRoute{parts: splitPath(r.URL.Path), base: mountPoint(r)}
	if r.Method == http.MethodPost {
		if err := c.csrf.Check(r); err != nil {
			c.logger.Warn("console: cross-site action refused", zap.String("path", r.URL.Path),
				zap.String("operator", operator(r)), zap.String("remote", r.RemoteAddr))
			return c.fail(w, route, http.StatusForbidden, "Cross-site request refused",
				"This action must be sent from the console's own page.")
		}
		return c.serveAction(w, r, route)
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD, POST")
		return c.fail(w, route, http.StatusMethodNotAllowed, "Method not allowed", "")
	}
	return c.servePage(w, r, route)
}

// servePage dispatches the GET pages.
func (c *Console) servePage(w http.ResponseWriter, r *http.Request, route consoleRoute) error {
	p := route.parts
	switch {
	case len(p) == 0:
		return c.overview(w, r, route)
	case p[0] == "static" && len(p) == 2:
		c.static.ServeHTTP(w, r)
		return nil
	case p[0] == "search" && len(p) == 1:
		return c.search(w, r, route)
	case p[0] == "policy" && len(p) == 2:
		return c.timeline(w, r, route, p[1])
	case p[0] == "callbacks" && len(p) == 1:
		return c.callbacks(w, r, route)
	case p[0] == "callbacks" && len(p) == 2:
		return c.callback(w, r, route, p[1])
	case p[0] == "requests" && len(p) == 1:
		return c.requestsInDoubt(w, r, route)
	}
	return c.fail(w, route, http.StatusNotFound, "Not found", "There is no console page at this address.")
}

// serveAction dispatches the POST actions.
func (c *Console) serveAction(w http.ResponseWriter, r *http.Request, route consoleRoute) error {
	p := route.parts
	switch {
	case len(p) == 3 && p[0] == "callbacks" && p[2] == "retry":
		return c.retry(w, r, route, p[1])
	case len(p) == 3 && p[0] == "requests" && p[2] == "resolve":
		return c.resolve(w, r, route, p[1])
	}
	return c.fail(w, route, http.StatusNotFound, "Not found", "There is no console action at this address.")
}

// setConsoleHeaders keeps the console's pages private and inert: nothing
// from elsewhere runs, loads, frames or caches them.
func setConsoleHeaders(h http.Header) {
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; "+
		"form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
}

// splitPath splits a console path into its non-empty segments.
func splitPath(p string) []string {
	var parts []string
	for _, s := range strings.Split(p, "/") {
		if s != "" {
			parts = append(parts, s)
		}
	}
	return parts
}

// mountPoint is the path the console is served under, for its links. With
// handle_path the prefix is stripped from the request; it is what the
// original request's path had in front of the console's own path.
func mountPoint(r *http.Request) string {
	orig, ok := r.Context().Value(caddyhttp.OriginalRequestCtxKey).(http.Request)
	if !ok || orig.URL == nil {
		return ""
	}
	base, found := strings.CutSuffix(orig.URL.Path, r.URL.Path)
	if !found {
		return ""
	}
	return strings.TrimRight(base, "/")
}

// operator is who acts, as the auth layer in front of the console knows
// them, or "" when it says nothing.
func operator(r *http.Request) string {
	repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if !ok {
		return ""
	}
	user, _ := repl.GetString("http.auth.user.id")
	return user
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Console)(nil)
	_ caddy.Validator             = (*Console)(nil)
	_ caddyhttp.MiddlewareHandler = (*Console)(nil)
)
