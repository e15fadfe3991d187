package caddymodule

import (
	"strconv"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dustin/go-humanize"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("gongbao", parseGlobalOption)
	httpcaddyfile.RegisterHandlerDirective("gongbao", parseHandlerDirective)
	// The handler must see the platform request before reverse_proxy does.
	httpcaddyfile.RegisterDirectiveOrder("gongbao", httpcaddyfile.Before, "reverse_proxy")
}

// parseGlobalOption sets up the gongbao app from the global options block.
//
// Syntax:
//
//	gongbao {
//		sign_key        <key>
//		verify_key      <key> [<key>...]
//		mappings        <folder>
//		max_body_size   <size>
//		max_depth       <n>
//		max_elements    <n>
//		max_value_chars <n>
//	}
//
// Keys should be placeholders such as {env.GONGBAO_SIGN_KEY} or
// {file./run/secrets/key}; they are resolved when the config is loaded, so
// the adapted JSON never contains a key.
func parseGlobalOption(d *caddyfile.Dispenser, _ any) (any, error) {
	app := new(App)
	if err := app.UnmarshalCaddyfile(d); err != nil {
		return nil, err
	}
	return httpcaddyfile.App{Name: "gongbao", Value: caddyconfig.JSON(app, nil)}, nil
}

// UnmarshalCaddyfile sets up the app from Caddyfile tokens. See
// parseGlobalOption for the syntax.
func (a *App) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume option name
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		if err := a.unmarshalSubdirective(d); err != nil {
			return err
		}
	}
	return nil
}

func (a *App) unmarshalSubdirective(d *caddyfile.Dispenser) error {
	switch d.Val() {
	case "sign_key":
		return singleArg(d, &a.SignKey)
	case "verify_key":
		args := d.RemainingArgs()
		if len(args) == 0 {
			return d.ArgErr()
		}
		a.VerifyKeys = append(a.VerifyKeys, args...)
		return nil
	case "mappings":
		return singleArg(d, &a.Mappings)
	case "max_body_size":
		return sizeArg(d, &a.MaxBodySize)
	case "max_depth":
		return intArg(d, &a.MaxDepth)
	case "max_elements":
		return intArg(d, &a.MaxElements)
	case "max_value_chars":
		return intArg(d, &a.MaxValueChars)
	default:
		return d.Errf("unrecognized subdirective '%s'", d.Val())
	}
}

// parseHandlerDirective sets up the gongbao handler.
//
// Syntax:
//
//	gongbao [<message>...] {
//		messages            <message>...
//		max_core_reply_size <size>
//	}
//
// Messages are request root elements such as insureRequest; without any,
// every inbound mapping is served.
func parseHandlerDirective(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	handler := new(Handler)
	err := handler.UnmarshalCaddyfile(h.Dispenser)
	return handler, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. See
// parseHandlerDirective for the syntax.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume directive name
	h.Messages = append(h.Messages, d.RemainingArgs()...)
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "messages":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			h.Messages = append(h.Messages, args...)
		case "max_core_reply_size":
			if err := sizeArg(d, &h.MaxCoreReplySize); err != nil {
				return err
			}
		default:
			return d.Errf("unrecognized subdirective '%s'", d.Val())
		}
	}
	return nil
}

func singleArg(d *caddyfile.Dispenser, dst *string) error {
	if !d.NextArg() {
		return d.ArgErr()
	}
	*dst = d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	return nil
}

func sizeArg(d *caddyfile.Dispenser, dst *int64) error {
	var s string
	name := d.Val()
	if err := singleArg(d, &s); err != nil {
		return err
	}
	n, err := humanize.ParseBytes(s)
	if err != nil || n == 0 || n > 1<<40 {
		return d.Errf("%s: invalid size %q", name, s)
	}
	*dst = int64(n)
	return nil
}

func intArg(d *caddyfile.Dispenser, dst *int) error {
	var s string
	name := d.Val()
	if err := singleArg(d, &s); err != nil {
		return err
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		return d.Errf("%s: want a positive whole number, got %q", name, s)
	}
	*dst = n
	return nil
}

// Interface guards
var (
	_ caddyfile.Unmarshaler = (*App)(nil)
	_ caddyfile.Unmarshaler = (*Handler)(nil)
)
