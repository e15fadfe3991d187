package caddymodule

import "net/http"

// ServeAdminForTest answers an admin request under /gongbao/ from app,
// with the admin API's own routes and handlers: the in-process tests
// read the journal and the records of the app they provisioned, which
// is not Caddy's running app.
func ServeAdminForTest(app *App, w http.ResponseWriter, r *http.Request) error {
	return serveAdmin(app, w, r)
}
