package caddymodule

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/caddy-gongbao/gongbao/caddymodule/delivery"
	"github.com/caddy-gongbao/gongbao/caddymodule/gateway"
)

// The sidecar's metrics. They are package-level so counts survive config
// reloads; each config registers them on its metrics registry, so they
// appear on Caddy's /metrics. Labels come only from configuration (message
// and event names of the mappings) and from fixed outcome words, never
// from request data: an unknown root element is counted as "unknown".
var (
	metricRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "gongbao", Name: "requests_total",
		Help: "Platform requests by message (request root) and outcome.",
	}, []string{"message", "outcome"})

	metricSignatureFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "gongbao", Name: "signature_failures_total",
		Help: "Platform requests refused because the sign is missing or wrong.",
	}, []string{"message"})

	metricReplays = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "gongbao", Name: "idempotent_replays_total",
		Help: "Resent platform requests answered with the stored reply.",
	}, []string{"message"})

	metricConflicts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "gongbao", Name: "idempotency_conflicts_total",
		Help: "Platform requests refused because their requestUUID was used for another body.",
	}, []string{"message"})

	metricCoreDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "gongbao", Name: "core_duration_seconds",
		Help:    "Time the core took to answer, by message.",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	}, []string{"message"})

	metricEvents = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "gongbao", Name: "events_total",
		Help: "Core events posted to the intake, by event and outcome (accepted, duplicate, or the refusal reason).",
	}, []string{"event", "outcome"})

	metricCallbackReplySignature = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "gongbao", Name: "callback_reply_signature_total",
		Help: "Platform replies to callbacks by what their sign was worth: verified, unsigned, mismatch.",
	}, []string{"result"})

	metricCallbackAttempts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "gongbao", Name: "callback_attempts_total",
		Help: "Callback attempts by outcome: accepted, refused (resultFlag=false), failed.",
	}, []string{"outcome"})

	metricUnmapped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "gongbao", Name: "unmapped_elements_total",
		Help: "Platform requests carrying elements no mapping row reads (ignored or let through), by message; the names are in the journal.",
	}, []string{"message"})

	metricJournalDropped = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "gongbao", Name: "journal_dropped_total",
		Help: "Journal entries that could not be written (queue full or store failure).",
	})

	// The callback gauges are whole-store figures: every instance sharing
	// a store reports the same values. Their "store" label names the
	// store (never a password), so dashboards aggregate with
	// max by (store, …), never sum (README, "Scale-out").
	callbackStats = &callbackCollector{
		byState: prometheus.NewDesc("gongbao_callbacks", "Callbacks in the store by state (pending, delivered, dead); the same from every instance of a store.", []string{"store", "state"}, nil),
		oldest:  prometheus.NewDesc("gongbao_callback_oldest_pending_age_seconds", "Age of the oldest callback not yet delivered; the same from every instance of a store.", []string{"store"}, nil),
		dead:    prometheus.NewDesc("gongbao_callback_dead_letters", "Callbacks given up and waiting for an operator; the same from every instance of a store.", []string{"store"}, nil),
		depth:   prometheus.NewDesc("gongbao_callback_queue_depth", "Callbacks waiting to be delivered; the same from every instance of a store.", []string{"store"}, nil),
	}
)

// registerMetrics adds the metrics to a config's registry.
func registerMetrics(reg *prometheus.Registry) error {
	if reg == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{metricRequests, metricSignatureFailures, metricReplays,
		metricConflicts, metricCoreDuration, metricEvents, metricJournalDropped, callbackStats,
		metricCallbackReplySignature, metricCallbackAttempts, metricUnmapped} {
		if err := reg.Register(c); err != nil {
			var already prometheus.AlreadyRegisteredError
			if !errors.As(err, &already) {
				return err
			}
		}
	}
	return nil
}

// metricMessage is the message label: the root when a mapping knows it.
func (a *App) metricMessage(root string) string {
	if _, ok := a.mappings.Inbound[root]; ok {
		return root
	}
	return "unknown"
}

// countExchange records one finished platform exchange.
func (h *Handler) countExchange(x *gateway.Exchange) {
	msg := h.app.metricMessage(x.Root)
	metricRequests.WithLabelValues(msg, x.Outcome).Inc()
	switch x.Outcome {
	case "bad_signature":
		metricSignatureFailures.WithLabelValues(msg).Inc()
	case "replay":
		metricReplays.WithLabelValues(msg).Inc()
	case "conflict":
		metricConflicts.WithLabelValues(msg).Inc()
	}
	if len(x.Unmapped) > 0 {
		metricUnmapped.WithLabelValues(msg).Inc()
	}
	if x.CoreStatus != 0 || x.CoreTime > 0 {
		metricCoreDuration.WithLabelValues(msg).Observe(x.CoreTime.Seconds())
	}
}

// countCallbackAttempt counts one recorded callback attempt. Labels are
// the engine's fixed words, never reply text.
func countCallbackAttempt(a delivery.Attempt) {
	metricCallbackAttempts.WithLabelValues(string(a.Outcome)).Inc()
	if a.ReplySignature != "" {
		metricCallbackReplySignature.WithLabelValues(string(a.ReplySignature)).Inc()
	}
}

// callbackCollector reads the delivery counts from the store of the
// running config at scrape time.
type callbackCollector struct {
	current                      atomic.Pointer[App]
	byState, oldest, dead, depth *prometheus.Desc
}

func (c *callbackCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.byState
	ch <- c.oldest
	ch <- c.dead
	ch <- c.depth
}

func (c *callbackCollector) Collect(ch chan<- prometheus.Metric) {
	app := c.current.Load()
	if app == nil || app.store == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stats, err := app.store.deliveries.engine.Stats(ctx)
	if err != nil {
		app.logger.Warn("reading callback counts for metrics", zap.Error(err))
		return
	}
	label := app.storeLabel
	ch <- prometheus.MustNewConstMetric(c.byState, prometheus.GaugeValue, float64(stats.Pending), label, "pending")
	ch <- prometheus.MustNewConstMetric(c.byState, prometheus.GaugeValue, float64(stats.Delivered), label, "delivered")
	ch <- prometheus.MustNewConstMetric(c.byState, prometheus.GaugeValue, float64(stats.Dead), label, "dead")
	ch <- prometheus.MustNewConstMetric(c.oldest, prometheus.GaugeValue, stats.OldestPendingAge.Seconds(), label)
	ch <- prometheus.MustNewConstMetric(c.dead, prometheus.GaugeValue, float64(stats.Dead), label)
	ch <- prometheus.MustNewConstMetric(c.depth, prometheus.GaugeValue, float64(stats.Pending), label)
}
