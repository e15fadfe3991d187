package caddymodule

import (
	"slices"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dustin/go-humanize"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("gongbao", parseGlobalOption)
	httpcaddyfile.RegisterHandlerDirective("gongbao", parseHandlerDirective)
	httpcaddyfile.RegisterHandlerDirective("gongbao_notify", parseNotifyDirective)
	// The handler must see the platform request before reverse_proxy does.
	httpcaddyfile.RegisterDirectiveOrder("gongbao", httpcaddyfile.Before, "reverse_proxy")
	// The events intake answers by itself, like respond.
	httpcaddyfile.RegisterDirectiveOrder("gongbao_notify", httpcaddyfile.Before, "respond")
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
//		max_attributes  <n>
//		max_request_uuid_length <n>
//		store sqlite [<file>]
//		store postgres <dsn> [<schema>]
//		insurance_code  <code>
//		instance_name   <name>
//		callbacks {
//			base            <url>
//			url             <callback root|event> <url>
//			attempt_timeout <duration>
//			deadline        <duration>
//			workers         <n>
//			poll_interval   <duration>
//			rescue_after    <duration>
//			stop_grace      <duration>
//			reply_signature optional|required
//			refusal         retry|dead_letter
//		}
//		journal off
//		journal {
//			retention          <duration>
//			body_retention     <duration>
//			mask_personal_data
//		}
//		idempotency off
//		idempotency {
//			scope           <name>
//			wait_in_flight  <duration>
//			lease           <duration>
//			unknown_outcome retry|hold
//			retention       <duration>
//		}
//		content_replay off
//		content_replay {
//			window <duration>
//			allow  <message>...
//		}
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
	case "max_attributes":
		return intArg(d, &a.MaxAttributes)
	case "max_request_uuid_length":
		return intArg(d, &a.MaxRequestUUIDLength)
	case "store":
		return a.unmarshalStore(d)
	case "idempotency":
		return a.unmarshalIdempotency(d)
	case "content_replay":
		return a.unmarshalContentReplay(d)
	case "insurance_code":
		return singleArg(d, &a.InsuranceCode)
	case "instance_name":
		return singleArg(d, &a.InstanceName)
	case "callbacks":
		return a.unmarshalCallbacks(d)
	case "journal":
		return a.unmarshalJournal(d)
	default:
		return d.Errf("unrecognized subdirective '%s'", d.Val())
	}
}

func (a *App) unmarshalStore(d *caddyfile.Dispenser) error {
	args := d.RemainingArgs()
	if len(args) == 0 {
		return d.ArgErr()
	}
	a.Store = &StoreConfig{Driver: args[0]}
	switch {
	case args[0] == "sqlite" && len(args) <= 2:
		if len(args) == 2 {
			a.Store.Path = args[1]
		}
	case args[0] == "postgres" && (len(args) == 2 || len(args) == 3):
		a.Store.DSN = args[1]
		if len(args) == 3 {
			a.Store.Schema = args[2]
		}
	case args[0] != "sqlite" && args[0] != "postgres":
		return d.Errf("store: unknown driver '%s' (want sqlite or postgres)", args[0])
	default:
		return d.ArgErr()
	}
	return nil
}

func (a *App) unmarshalIdempotency(d *caddyfile.Dispenser) error {
	cfg := new(IdempotencyConfig)
	a.Idempotency = cfg
	if d.NextArg() {
		if d.Val() != "off" || d.NextArg() {
			return d.Errf("idempotency: want 'off' or a block, got '%s'", d.Val())
		}
		cfg.Disabled = true
		return nil
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "scope":
			err = singleArg(d, &cfg.Scope)
		case "wait_in_flight":
			err = durationArg(d, &cfg.WaitInFlight)
		case "lease":
			err = durationArg(d, &cfg.Lease)
		case "unknown_outcome":
			err = singleArg(d, &cfg.UnknownOutcome)
			if err == nil && cfg.UnknownOutcome != unknownRetry && cfg.UnknownOutcome != unknownHold {
				err = d.Errf("unknown_outcome: want retry or hold, got '%s'", cfg.UnknownOutcome)
			}
		case "retention":
			err = durationArg(d, &cfg.Retention)
		default:
			err = d.Errf("unrecognized subdirective '%s'", d.Val())
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (a *App) unmarshalContentReplay(d *caddyfile.Dispenser) error {
	cfg := new(ContentReplayConfig)
	a.ContentReplay = cfg
	if d.NextArg() {
		if d.Val() != "off" || d.NextArg() {
			return d.Errf("content_replay: want 'off' or a block, got '%s'", d.Val())
		}
		cfg.Disabled = true
		return nil
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "window":
			if err := durationArg(d, &cfg.Window); err != nil {
				return err
			}
		case "allow":
			roots := d.RemainingArgs()
			if len(roots) == 0 {
				return d.ArgErr()
			}
			cfg.Allow = append(cfg.Allow, roots...)
		default:
			return d.Errf("unrecognized subdirective '%s'", d.Val())
		}
	}
	return nil
}

func (a *App) unmarshalJournal(d *caddyfile.Dispenser) error {
	cfg := new(JournalConfig)
	a.Journal = cfg
	if d.NextArg() {
		if d.Val() != "off" || d.NextArg() {
			return d.Errf("journal: want 'off' or a block, got '%s'", d.Val())
		}
		cfg.Disabled = true
		return nil
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "retention":
			err = durationArg(d, &cfg.Retention)
		case "body_retention":
			err = durationArg(d, &cfg.BodyRetention)
		case "mask_personal_data":
			if d.NextArg() {
				return d.ArgErr()
			}
			cfg.MaskPersonalData = true
		default:
			err = d.Errf("unrecognized subdirective '%s'", d.Val())
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (a *App) unmarshalCallbacks(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	cfg := new(CallbackConfig)
	a.Callbacks = cfg
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "base":
			err = singleArg(d, &cfg.Base)
		case "url":
			args := d.RemainingArgs()
			if len(args) != 2 {
				return d.ArgErr()
			}
			if cfg.URLs == nil {
				cfg.URLs = make(map[string]string)
			}
			cfg.URLs[args[0]] = args[1]
		case "attempt_timeout":
			err = durationArg(d, &cfg.AttemptTimeout)
		case "deadline":
			err = durationArg(d, &cfg.Deadline)
		case "poll_interval":
			err = durationArg(d, &cfg.PollInterval)
		case "rescue_after":
			err = durationArg(d, &cfg.RescueAfter)
		case "stop_grace":
			err = durationArg(d, &cfg.StopGrace)
		case "workers":
			err = intArg(d, &cfg.Workers)
		case "reply_signature":
			err = choiceArg(d, &cfg.ReplySignature, "optional", "required")
		case "refusal":
			err = choiceArg(d, &cfg.Refusal, "retry", "dead_letter")
		default:
			err = d.Errf("unrecognized subdirective '%s'", d.Val())
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// parseNotifyDirective sets up the core-facing events intake.
//
// Syntax:
//
//	gongbao_notify [<event>...] {
//		events         <event>...
//		max_event_size <size>
//	}
//
// Events are outbound mapping names such as policy-paid; the event is the
// last segment of the request path (/events/policy-paid).
func parseNotifyDirective(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	handler := new(NotifyHandler)
	err := handler.UnmarshalCaddyfile(h.Dispenser)
	return handler, err
}

// UnmarshalCaddyfile sets up the notify handler from Caddyfile tokens.
func (h *NotifyHandler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume directive name
	h.Events = append(h.Events, d.RemainingArgs()...)
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "events":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			h.Events = append(h.Events, args...)
		case "max_event_size":
			if err := sizeArg(d, &h.MaxEventSize); err != nil {
				return err
			}
		default:
			return d.Errf("unrecognized subdirective '%s'", d.Val())
		}
	}
	return nil
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

// choiceArg reads one argument that must be one of choices.
func choiceArg(d *caddyfile.Dispenser, dst *string, choices ...string) error {
	name := d.Val()
	if err := singleArg(d, dst); err != nil {
		return err
	}
	if !slices.Contains(choices, *dst) {
		return d.Errf("%s: want %s, got '%s'", name, strings.Join(choices, " or "), *dst)
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

func durationArg(d *caddyfile.Dispenser, dst *caddy.Duration) error {
	var s string
	name := d.Val()
	if err := singleArg(d, &s); err != nil {
		return err
	}
	dur, err := caddy.ParseDuration(s)
	if err != nil || dur <= 0 {
		return d.Errf("%s: invalid duration %q", name, s)
	}
	*dst = caddy.Duration(dur)
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
	_ caddyfile.Unmarshaler = (*NotifyHandler)(nil)
)
