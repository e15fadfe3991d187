package gateway

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"

	"github.com/caddy-gongbao/gongbao/caddymodule/mapping"
	"github.com/caddy-gongbao/gongbao/caddymodule/protocol"
)

// EventError is a core event refused, answered to the core as JSON with
// an HTTP status. The core is trusted: its messages may name values.
type EventError struct {
	Status  int
	Reason  string // stable English word
	Message string // for the operator reading the core's logs
	Field   string
	Cause   error
}

func (e *EventError) Error() string { return e.Reason + ": " + e.Message }
func (e *EventError) Unwrap() error { return e.Cause }

// InvalidEvent turns a mapping failure of an event into a 400 naming the
// field.
func InvalidEvent(err error) *EventError {
	var fe *mapping.FieldError
	if errors.As(err, &fe) {
		return &EventError{Status: http.StatusBadRequest, Reason: "invalid_event", Message: fe.Message(), Field: fe.Path, Cause: err}
	}
	return &EventError{Status: http.StatusBadRequest, Reason: "invalid_event", Message: "the event is not valid JSON", Cause: err}
}

// Callback is a core event turned into the platform's signed callback,
// ready for the caller to enqueue.
type Callback struct {
	Event          string
	Mapping        *mapping.Outbound
	RequestUUID    string // assigned once: every delivery attempt resends it
	IdempotencyKey string // identifies the event across the core's resends
	OrderKey       string // callbacks of one key are delivered in order
	Elements       []protocol.Element
	Body           []byte // the signed XML
}

// Callback maps and signs one event the core posted. idempotencyKey is
// the core's Idempotency-Key header ("" if none). The event must have an
// outbound mapping (the caller checks its route first).
func (g *Gateway) Callback(event, idempotencyKey string, body []byte) (*Callback, error) {
	m, ok := g.Outbound(event)
	if !ok {
		return nil, &EventError{Status: http.StatusNotFound, Reason: "unknown_event", Message: "no outbound mapping for this event"}
	}
	elements, err := m.Body.JSONToXML(body, g.CallbackVars())
	if err != nil {
		return nil, InvalidEvent(err)
	}
	orderKey, eventID, err := m.Keys(body)
	if err != nil {
		return nil, InvalidEvent(err)
	}
	uuid := protocol.NewUUID()
	return &Callback{
		Event:          event,
		Mapping:        m,
		RequestUUID:    uuid,
		IdempotencyKey: eventKey(event, idempotencyKey, eventID, body),
		OrderKey:       orderKey,
		Elements:       elements,
		Body:           protocol.BuildRequest(m.Callback, uuid, elements, g.cfg.SignKey),
	}, nil
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
