// Package process holds the process-level tests of the sidecar: they run
// the built Caddy (standard modules plus caddy-gongbao, as cmd/caddy and
// xcaddy build it) as child processes and kill it with SIGKILL, reload it,
// scale it out to two instances on one PostgreSQL, fill its disk, cut its
// network with toxiproxy and drive its console in chromium.
//
// They live in the e2e module so that their dependencies (toxiproxy,
// chromedp, …) stay out of the plugin's go.mod, which everyone who builds
// the plugin with xcaddy resolves. The package has no code outside its
// tests; nothing may import it, and it must not be imported by the plugin
// module.
package process
