package caddymodule

import (
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-gongbao/gongbao/caddymodule/delivery"
)

// engineSettings are the callback settings the delivery engine reads once,
// when its store is opened, defaults applied. A reload that reuses the
// store keeps the engine, and with it these settings: a config that says
// otherwise is told so (warnIfEngineDiffers) instead of being silently
// ignored.
type engineSettings struct {
	attemptTimeout time.Duration
	deadline       time.Duration
	rescueAfter    time.Duration
	stopGrace      time.Duration
	pollInterval   time.Duration
	workers        int
	instance       string
}

// engineSettingsOf is what an engine opened with cfg and instance runs
// with.
func engineSettingsOf(cfg *CallbackConfig, instance string) engineSettings {
	s := engineSettings{
		attemptTimeout: orDefault(time.Duration(cfg.AttemptTimeout), delivery.DefaultAttemptTimeout),
		deadline:       orDefault(time.Duration(cfg.Deadline), delivery.DefaultDeadline),
		pollInterval:   orDefault(time.Duration(cfg.PollInterval), delivery.DefaultPollInterval),
		workers:        orDefault(cfg.Workers, delivery.DefaultMaxWorkers),
		instance:       instance,
	}
	s.stopGrace = orDefault(time.Duration(cfg.StopGrace), s.attemptTimeout)
	s.rescueAfter = orDefault(time.Duration(cfg.RescueAfter), delivery.DefaultRescueAfter(s.attemptTimeout))
	return s
}

func orDefault[T time.Duration | int](v, def T) T {
	if v > 0 {
		return v
	}
	return def
}

// settingDifference is one setting whose configured value the running
// engine does not use.
type settingDifference struct{ setting, running, configured string }

// differences lists, in a fixed order, the settings of configured that
// differ from running (s).
func (s engineSettings) differences(configured engineSettings) []settingDifference {
	var out []settingDifference
	add := func(setting, running, conf string) {
		if running != conf {
			out = append(out, settingDifference{setting, running, conf})
		}
	}
	add("attempt_timeout", s.attemptTimeout.String(), configured.attemptTimeout.String())
	add("deadline", s.deadline.String(), configured.deadline.String())
	add("rescue_after", s.rescueAfter.String(), configured.rescueAfter.String())
	add("stop_grace", s.stopGrace.String(), configured.stopGrace.String())
	add("poll_interval", s.pollInterval.String(), configured.pollInterval.String())
	add("workers", strconv.Itoa(s.workers), strconv.Itoa(configured.workers))
	add("instance_name", s.instance, configured.instance)
	return out
}

// warnIfEngineDiffers logs a warning for each setting of the loading
// config that the running delivery engine does not use.
func (h *storeHandle) warnIfEngineDiffers(log *zap.Logger, configured engineSettings) {
	for _, d := range h.engineSettings.differences(configured) {
		log.Warn("callback setting differs from the running delivery engine's; it takes effect when the store is next opened (restart)",
			zap.String("setting", d.setting), zap.String("running", d.running), zap.String("configured", d.configured))
	}
}
