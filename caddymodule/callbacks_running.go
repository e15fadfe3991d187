package caddymodule

import (
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-gongbao/gongbao/caddymodule/delivery"
)

// deliverySettings is the part of the delivery engine's config that a
// CallbackConfig sets. The engine reads it once, when its store is opened;
// a reload that reuses the store keeps the engine, and with it these
// settings: a config that says otherwise is told so (warnIfEngineDiffers)
// instead of being silently ignored.
func deliverySettings(cfg *CallbackConfig, instance string) delivery.Config {
	return delivery.Config{
		AttemptTimeout: time.Duration(cfg.AttemptTimeout),
		Deadline:       time.Duration(cfg.Deadline),
		RescueAfter:    time.Duration(cfg.RescueAfter),
		StopGrace:      time.Duration(cfg.StopGrace),
		Instance:       instance,
		MaxWorkers:     cfg.Workers,
		PollInterval:   time.Duration(cfg.PollInterval),
	}
}

// settingDifference is one setting whose configured value the running
// engine does not use.
type settingDifference struct{ setting, running, configured string }

// settingDifferences lists, in a fixed order, the settings of configured
// that differ from running, both with the engine's defaults applied.
func settingDifferences(running, configured delivery.Config) []settingDifference {
	s, configured := running.WithDefaults(), configured.WithDefaults()
	var out []settingDifference
	add := func(setting, running, conf string) {
		if running != conf {
			out = append(out, settingDifference{setting, running, conf})
		}
	}
	add("attempt_timeout", s.AttemptTimeout.String(), configured.AttemptTimeout.String())
	add("deadline", s.Deadline.String(), configured.Deadline.String())
	add("rescue_after", s.RescueAfter.String(), configured.RescueAfter.String())
	add("stop_grace", s.StopGrace.String(), configured.StopGrace.String())
	add("poll_interval", s.PollInterval.String(), configured.PollInterval.String())
	add("workers", strconv.Itoa(s.MaxWorkers), strconv.Itoa(configured.MaxWorkers))
	add("instance_name", s.Instance, configured.Instance)
	return out
}

// warnIfEngineDiffers logs a warning for each setting of the loading
// config that the running delivery engine does not use.
func (h *storeHandle) warnIfEngineDiffers(log *zap.Logger, configured delivery.Config) {
	for _, d := range settingDifferences(h.engineSettings, configured) {
		log.Warn("callback setting differs from the running delivery engine's; it takes effect when the store is next opened (restart)",
			zap.String("setting", d.setting), zap.String("running", d.running), zap.String("configured", d.configured))
	}
}
