package caddymodule

import (
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// TestReloadWarnsOfIgnoredCallbackSettings: a config that reuses a store
// whose delivery engine runs with other settings gets one warning per
// differing setting, with both values; defaults count as their values.
func TestReloadWarnsOfIgnoredCallbackSettings(t *testing.T) {
	running := &storeHandle{engineSettings: deliverySettings(&CallbackConfig{Workers: 4}, "host-a")}
	core, logs := observer.New(zapcore.WarnLevel)
	log := zap.New(core)

	running.warnIfEngineDiffers(log, deliverySettings(&CallbackConfig{
		Workers: 4, AttemptTimeout: caddy.Duration(30 * time.Second), // the default, said explicitly
	}, "host-a"))
	if n := logs.Len(); n != 0 {
		t.Fatalf("same settings: %d warnings: %v", n, logs.All())
	}

	running.warnIfEngineDiffers(log, deliverySettings(&CallbackConfig{
		Workers: 8, AttemptTimeout: caddy.Duration(10 * time.Second),
	}, "host-a"))
	want := []map[string]any{
		{"setting": "attempt_timeout", "running": "30s", "configured": "10s"},
		{"setting": "rescue_after", "running": "1m40s", "configured": "1m20s"},
		{"setting": "stop_grace", "running": "30s", "configured": "10s"},
		{"setting": "workers", "running": "4", "configured": "8"},
	}
	got := logs.TakeAll()
	if len(got) != len(want) {
		t.Fatalf("%d warnings, want %d: %v", len(got), len(want), got)
	}
	for i, e := range got {
		if fields := e.ContextMap(); fields["setting"] != want[i]["setting"] ||
			fields["running"] != want[i]["running"] || fields["configured"] != want[i]["configured"] {
			t.Errorf("warning %d: %v, want %v", i, fields, want[i])
		}
		if e.Message != "callback setting differs from the running delivery engine's; it takes effect when the store is next opened (restart)" {
			t.Errorf("warning %d: %q", i, e.Message)
		}
	}
}
