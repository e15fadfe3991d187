package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-gongbao/gongbao/caddymodule/delivery"
	"github.com/caddy-gongbao/gongbao/caddymodule/gateway"
	"github.com/caddy-gongbao/gongbao/caddymodule/store"
)

func init() {
	caddy.RegisterModule(NotifyHandler{})
}

// defaultMaxEventSize bounds an event the core posts.
const defaultMaxEventSize = 256 << 10

// NotifyHandler is the core-facing intake of callbacks. The core POSTs a
// JSON event to /events/<name> (name = an outbound mapping's event); the
// handler maps it to the platform's signed XML callback, stores it
// durably with a requestUUID assigned once, and only then answers 202.
// Delivery to the platform happens in the background, at least once.
//
// This endpoint is for the core only: serve it on an internal listener.
type NotifyHandler struct {
	// Events limits the events this route accepts. Default: every
	// outbound mapping.
	Events []string `json:"events,omitempty"`

	// MaxEventSize bounds an event body, in bytes. Default: 256 KiB.
	MaxEventSize int64 `json:"max_event_size,omitempty"`

	app     *App
	allowed map[string]bool
	logger  *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (NotifyHandler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.gongbao_notify",
		New: func() caddy.Module { return new(NotifyHandler) },
	}
}

// Provision finds the gongbao app and checks the event list against it.
func (h *NotifyHandler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	appIface, err := ctx.App("gongbao")
	if err != nil {
		return fmt.Errorf("gongbao_notify: loading the gongbao app: %w", err)
	}
	h.app = appIface.(*App)
	if h.MaxEventSize == 0 {
		h.MaxEventSize = defaultMaxEventSize
	}
	if len(h.Events) > 0 {
		h.allowed = make(map[string]bool, len(h.Events))
		for _, e := range h.Events {
			if _, ok := h.app.outbound(e); !ok {
				return fmt.Errorf("gongbao_notify: event %q has no outbound mapping", e)
			}
			h.allowed[e] = true
		}
	}
	return nil
}

// Validate checks that callbacks have somewhere to be stored.
func (h *NotifyHandler) Validate() error {
	if h.app.store == nil {
		return errors.New("gongbao_notify: the gongbao app has no store")
	}
	if h.app.insurance == "" {
		if h.app.InsuranceCode == "" {
			return errors.New("gongbao_notify: callbacks need the gongbao option insurance_code")
		}
		return fmt.Errorf("gongbao_notify: insurance_code %s resolved to an empty value", describePlaceholder(h.app.InsuranceCode))
	}
	return nil
}

// notifyAccepted is the answer to an accepted event.
type notifyAccepted struct {
	ID          int64  `json:"id"`
	RequestUUID string `json:"requestUUID"`
	State       string `json:"state"`
	Duplicate   bool   `json:"duplicate"`
}

// ServeHTTP implements caddyhttp.MiddlewareHandler. It does not call next:
// it is the terminal handler of an events route.
func (h *NotifyHandler) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	start := time.Now()
	event := lastSegment(r.URL.Path)
	d, created, err := h.accept(r, event)
	if err != nil {
		var ne *gateway.EventError
		if !errors.As(err, &ne) {
			ne = &gateway.EventError{Status: http.StatusInternalServerError, Reason: "internal_error", Message: "the event could not be accepted", Cause: err}
		}
		metricEvents.WithLabelValues(h.app.metricEvent(event), ne.Reason).Inc()
		h.logger.Warn("event refused", zap.String("event", event), zap.String("reason", ne.Reason),
			zap.String("field", ne.Field), zap.Error(err), zap.Duration("duration", time.Since(start)))
		return writeJSON(w, ne.Status, eventRefusal(ne))
	}
	status, outcome := http.StatusAccepted, "accepted"
	if !created {
		status, outcome = http.StatusOK, "duplicate"
	}
	metricEvents.WithLabelValues(event, outcome).Inc()
	h.logger.Info("event accepted", zap.String("event", event), zap.Int64("delivery_id", d.ID),
		zap.String("request_uuid", d.RequestUUID), zap.Bool("duplicate", !created), zap.Duration("duration", time.Since(start)))
	return writeJSON(w, status, notifyAccepted{ID: d.ID, RequestUUID: d.RequestUUID, State: string(d.State), Duplicate: !created})
}

// accept checks the route, reads the event, has the engine map and sign
// it, and durably enqueues the callback.
func (h *NotifyHandler) accept(r *http.Request, event string) (delivery.Delivery, bool, error) {
	if r.Method != http.MethodPost {
		return delivery.Delivery{}, false, &gateway.EventError{Status: http.StatusMethodNotAllowed, Reason: "method_not_allowed", Message: "events are POSTed"}
	}
	if _, ok := h.app.outbound(event); !ok || (h.allowed != nil && !h.allowed[event]) {
		return delivery.Delivery{}, false, &gateway.EventError{Status: http.StatusNotFound, Reason: "unknown_event",
			Message: fmt.Sprintf("no outbound mapping for event %q (known: %s)", event, strings.Join(h.app.eventNames(), ", "))}
	}
	body, err := gateway.ReadLimited(r.Body, r.ContentLength, h.MaxEventSize)
	if err != nil {
		return delivery.Delivery{}, false, &gateway.EventError{Status: http.StatusRequestEntityTooLarge, Reason: "too_large", Message: fmt.Sprintf("event larger than %s", humanSize(h.MaxEventSize)), Cause: err}
	}
	cb, err := h.app.gateway.Callback(event, r.Header.Get("Idempotency-Key"), body)
	if err != nil {
		return delivery.Delivery{}, false, err
	}
	// Bounded like every store call on a request path: a stalled store
	// must still let the core get its 503 and resend.
	ctx, cancel := context.WithTimeout(r.Context(), enqueueTimeout)
	defer cancel()
	d, created, err := h.app.store.deliveries.engine.Enqueue(ctx, delivery.NewDelivery{
		Event:          event,
		Callback:       cb.Mapping.Callback,
		ReplyRoot:      cb.Mapping.ReplyRoot,
		URL:            h.app.callbackTo[event],
		RequestUUID:    cb.RequestUUID,
		IdempotencyKey: cb.IdempotencyKey,
		OrderKey:       cb.OrderKey,
		Body:           cb.Body,
	})
	if errors.Is(err, store.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) {
		return d, false, &gateway.EventError{Status: http.StatusServiceUnavailable, Reason: "store_unavailable", Message: "the event was not stored; retry later", Cause: err}
	}
	if err == nil {
		h.app.notePolicyLink(cb.Elements, cb.OrderKey)
	}
	return d, created, err
}

// eventRefusal is the JSON answer to a refused event.
func eventRefusal(ne *gateway.EventError) map[string]string {
	return map[string]string{"error": ne.Reason, "message": ne.Message, "field": ne.Field}
}

// enqueueTimeout bounds the durable write of an event.
const enqueueTimeout = 5 * time.Second

// metricEvent is the event label: the name when a mapping knows it.
func (a *App) metricEvent(event string) string {
	if _, ok := a.mappings.Outbound[event]; ok {
		return event
	}
	return "unknown"
}

// eventNames lists the configured events, for error messages.
func (a *App) eventNames() []string {
	names := make([]string, 0, len(a.mappings.Outbound))
	for name := range a.mappings.Outbound {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

func lastSegment(p string) string {
	p = strings.TrimSuffix(p, "/")
	return p[strings.LastIndexByte(p, '/')+1:]
}

// Interface guards
var (
	_ caddy.Provisioner           = (*NotifyHandler)(nil)
	_ caddy.Validator             = (*NotifyHandler)(nil)
	_ caddyhttp.MiddlewareHandler = (*NotifyHandler)(nil)
)
