package caddymodule

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("gongbao_console", parseConsoleDirective)
	// The console answers by itself, like respond; basic_auth and
	// forward_auth come earlier in Caddy's order, so they guard it.
	httpcaddyfile.RegisterDirectiveOrder("gongbao_console", httpcaddyfile.Before, "respond")
}

func parseConsoleDirective(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	c := new(Console)
	err := c.UnmarshalCaddyfile(h.Dispenser)
	return c, err
}

// UnmarshalCaddyfile sets up the console from Caddyfile tokens.
//
// Syntax:
//
//	gongbao_console {
//		show_personal_data
//	}
//
// Serve it under a path with handle_path (its links follow the prefix):
//
//	handle_path /console/* {
//		gongbao_console
//	}
func (c *Console) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "show_personal_data":
			if d.NextArg() {
				return d.ArgErr()
			}
			c.ShowPersonalData = true
		default:
			return d.Errf("unrecognized subdirective '%s'", d.Val())
		}
	}
	return nil
}

// Interface guard
var _ caddyfile.Unmarshaler = (*Console)(nil)
