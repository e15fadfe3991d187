package caddymodule

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
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
	"github.com/caddy-gongbao/gongbao/caddymodule/mapping"
	"github.com/caddy-gongbao/gongbao/caddymodule/protocol"
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

// notifyError is an event refused, answered to the core as JSON.
type notifyError struct {
	status  int
	reason  string // stable English word
	message string // for the operator reading the core's logs
	field   string
	cause   error
}

func (e *notifyError) Error() string { return e.reason + ": " + e.message }
func (e *notifyError) Unwrap() error { return e.cause }

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
		var ne *notifyError
		if !errors.As(err, &ne) {
			ne = &notifyError{status: http.StatusInternalServerError, reason: "internal_error", message: "the event could not be accepted", cause: err}
		}
		metricEvents.WithLabelValues(h.app.metricEvent(event), ne.reason).Inc()
		h.logger.Warn("event refused", zap.String("event", event), zap.String("reason", ne.reason),
			zap.String("field", ne.field), zap.Error(err), zap.Duration("duration", time.Since(start)))
		return writeJSON(w, ne.status, map[string]string{"error": ne.reason, "message": ne.message, "field": ne.field})
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

// accept validates, maps, signs and durably enqueues one event.
func (h *NotifyHandler) accept(r *http.Request, event string) (delivery.Delivery, bool, error) {
	if r.Method != http.MethodPost {
		return delivery.Delivery{}, false, &notifyError{status: http.StatusMethodNotAllowed, reason: "method_not_allowed", message: "events are POSTed"}
	}
	m, ok := h.app.outbound(event)
	if !ok || (h.allowed != nil && !h.allowed[event]) {
		return delivery.Delivery{}, false, &notifyError{status: http.StatusNotFound, reason: "unknown_event",
			message: fmt.Sprintf("no outbound mapping for event %q (known: %s)", event, strings.Join(h.app.eventNames(), ", "))}
	}
	body, err := readLimited(r.Body, r.ContentLength, h.MaxEventSize)
	if err != nil {
		return delivery.Delivery{}, false, &notifyError{status: http.StatusRequestEntityTooLarge, reason: "too_large", message: fmt.Sprintf("event larger than %s", humanSize(h.MaxEventSize)), cause: err}
	}
	elements, err := m.Body.JSONToXML(body, h.app.callbackVars())
	if err != nil {
		return delivery.Delivery{}, false, eventMappingError(err)
	}
	orderKey, eventID, err := m.Keys(body)
	if err != nil {
		return delivery.Delivery{}, false, eventMappingError(err)
	}
	uuid := protocol.NewUUID()
	// Bounded like every store call on a request path: a stalled store
	// must still let the core get its 503 and resend.
	ctx, cancel := context.WithTimeout(r.Context(), enqueueTimeout)
	defer cancel()
	d, created, err := h.app.store.deliveries.engine.Enqueue(ctx, delivery.NewDelivery{
		Event:          event,
		Callback:       m.Callback,
		ReplyRoot:      m.ReplyRoot,
		URL:            h.app.callbackTo[event],
		RequestUUID:    uuid,
		IdempotencyKey: eventKey(event, r.Header.Get("Idempotency-Key"), eventID, body),
		OrderKey:       orderKey,
		Body:           protocol.BuildRequest(m.Callback, uuid, elements, h.app.signKey),
	})
	if errors.Is(err, store.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) {
		return d, false, &notifyError{status: http.StatusServiceUnavailable, reason: "store_unavailable", message: "the event was not stored; retry later", cause: err}
	}
	if err == nil {
		h.app.notePolicyLink(elements, orderKey)
	}
	return d, created, err
}

// enqueueTimeout bounds the durable write of an event.
const enqueueTimeout = 5 * time.Second

// eventMappingError turns a mapping failure into a 400 naming the field.
func eventMappingError(err error) error {
	var fe *mapping.FieldError
	if errors.As(err, &fe) {
		return &notifyError{status: http.StatusBadRequest, reason: "invalid_event", message: fe.Message(), field: fe.Path, cause: err}
	}
	return &notifyError{status: http.StatusBadRequest, reason: "invalid_event", message: "the event is not valid JSON", cause: err}
}

// eventKey identifies an event across the core's resends: its
// Idempotency-Key header, else its mapped event id, else its exact bytes.
// It is scoped by event name.
func eventKey(event, header, eventID string, body []byte) string {
	switch {
	case header != "":
		return event + ":key:" + header
	case eventID != "":
		return event + ":id:" + eventID
	default:
		sum := sha256.Sum256(body)
		return event + ":sha256:" + hex.EncodeToString(sum[:])
	}
}

// callbackVars are the runtime variables outbound rows may refer to.
func (a *App) callbackVars() mapping.Vars {
	return mapping.Vars{
		"insurance_code": a.insurance,
		"now":            time.Now().In(shanghai).Format("2006-01-02 15:04:05"),
	}
}

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
