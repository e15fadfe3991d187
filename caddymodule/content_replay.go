package caddymodule

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-gongbao/gongbao/caddymodule/mapping"
)

// ContentReplayConfig sets how a verified platform message that already
// reached the core under one requestUUID is treated under another. The
// platform signs the body only: the requestUUID is free for anyone holding
// a copy of a message (a log, a leaked file, a test environment) to
// change, so without this guard a captured message resent under a new
// requestUUID makes the core act again. Such a resend is refused with a
// signed, fixed message and counted as outcome "content_replay"; the core
// is not called. It needs the idempotency store.
type ContentReplayConfig struct {
	// Disabled turns the guard off for every message.
	Disabled bool `json:"disabled,omitempty"`

	// Window is how long content, once handled, is refused under another
	// requestUUID. Default: the idempotency retention (records older than
	// that are purged anyway).
	Window caddy.Duration `json:"window,omitempty"`

	// Allow lists the messages (request roots) whose platform
	// legitimately sends identical bodies under new requestUUIDs; they are
	// exempt. Default: none.
	Allow []string `json:"allow,omitempty"`
}

func (c *ContentReplayConfig) withDefaults(idem *IdempotencyConfig) {
	if c.Window == 0 {
		c.Window = idem.Retention
	}
}

func (c *ContentReplayConfig) validate(inbound func(string) (*mapping.Inbound, bool)) error {
	const section = "gongbao content_replay"
	errs := []error{positiveDuration(section, "window", c.Window)}
	for _, root := range c.Allow {
		if _, ok := inbound(root); !ok {
			errs = append(errs, fmt.Errorf("%s: allow must name messages with an inbound mapping (got %q)", section, root))
		}
	}
	return errors.Join(errs...)
}

// since is the start of the content window for a message: signed content
// handled after it is refused under a new requestUUID. Zero when the guard
// is off for the message.
func (c *ContentReplayConfig) since(root string, now time.Time) time.Time {
	if c.Disabled || slices.Contains(c.Allow, root) {
		return time.Time{}
	}
	return now.Add(-time.Duration(c.Window))
}
