package caddymodule

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-gongbao/gongbao/caddymodule/mapping"
	"github.com/caddy-gongbao/gongbao/caddymodule/protocol"
)

// msgBusy is the answer whenever the platform should simply try again.
const msgBusy = "系统繁忙，请稍后重试"

// requestError is a platform request refused before the core is called.
type requestError struct {
	msg    string // Chinese, for resultMessage
	reason string // stable English word, for logs and metrics
	cause  error
}

func (e requestError) Error() string {
	if e.cause != nil {
		return e.reason + ": " + e.cause.Error()
	}
	return e.reason
}
func (e requestError) Unwrap() error { return e.cause }

// errSignature is a missing or wrong platform signature.
type errSignature struct{ missing bool }

func (e errSignature) Error() string {
	if e.missing {
		return "signature missing"
	}
	return "signature mismatch"
}

// coreErrorKind tells how the core failed.
type coreErrorKind int

const (
	coreUnavailable coreErrorKind = iota // unreachable, timeout, 5xx, 429
	coreRejected                         // a 4xx that is not a business answer
	coreInvalid                          // an answer that cannot be translated
)

// coreError is a failure of the core call.
type coreError struct {
	kind    coreErrorKind
	status  int
	detail  string
	notSent bool // the core certainly did not act on the request
	cause   error
}

func (e coreError) Error() string {
	s := [...]string{"core unavailable", "core rejected the request", "core answer invalid"}[e.kind]
	if e.status != 0 {
		s += fmt.Sprintf(" (HTTP %d)", e.status)
	}
	if e.cause != nil {
		s += ": " + e.cause.Error()
	}
	return s
}
func (e coreError) Unwrap() error { return e.cause }

// failure is what a failed exchange answers and logs.
type failure struct {
	message string // resultMessage, Chinese
	outcome string // bounded label for logs and metrics
	field   string // offending field, if any
}

// classify is the one place that maps every failure to its reply. Messages
// never carry a key; field errors name the field, not its value.
func classify(err error) failure {
	var (
		pe *protocol.Error
		fe *mapping.FieldError
		re requestError
		se errSignature
		ce coreError
	)
	switch {
	case errors.As(err, &se):
		if se.missing {
			return failure{message: "验签失败: 报文头缺少sign", outcome: "bad_signature"}
		}
		return failure{message: "验签失败", outcome: "bad_signature"}
	case errors.As(err, &pe):
		return failure{message: pe.Message(), outcome: "malformed"}
	case errors.As(err, &re):
		return failure{message: re.msg, outcome: re.reason}
	case errors.As(err, &ce):
		return classifyCore(ce)
	case errors.As(err, &fe):
		return failure{message: fe.Message(), outcome: "invalid_field", field: fe.Path}
	default:
		return failure{message: msgBusy, outcome: "internal_error"}
	}
}

func classifyCore(ce coreError) failure {
	switch ce.kind {
	case coreRejected:
		msg := fmt.Sprintf("核心系统拒绝请求(HTTP %d)", ce.status)
		if ce.detail != "" {
			msg += ": " + ce.detail
		}
		return failure{message: msg, outcome: "core_rejected"}
	case coreInvalid:
		var fe *mapping.FieldError
		if errors.As(ce.cause, &fe) {
			return failure{message: "核心系统应答无效: " + fe.Message(), outcome: "core_invalid", field: fe.Path}
		}
		return failure{message: "核心系统应答无效", outcome: "core_invalid"}
	default:
		return failure{message: msgBusy, outcome: "core_unavailable"}
	}
}

// coreMessage extracts the core's own "message" from a JSON error body, so
// a refusal the core explains reaches the platform in the core's words.
func coreMessage(body []byte) string {
	var v struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(body, &v) != nil {
		return ""
	}
	const max = 200
	if r := []rune(strings.TrimSpace(v.Message)); len(r) > max {
		return string(r[:max])
	}
	return strings.TrimSpace(v.Message)
}

// failureReply builds the signed resultFlag=false reply for a failed
// exchange, and logs it.
func (h *Handler) failureReply(x *exchange, err error) []byte {
	f := classify(err)
	x.outcome = f.outcome
	x.errText = err.Error()
	h.logFailure(x, f, err)
	return h.sign(x, []protocol.Element{
		{Name: "resultFlag", Text: "false"},
		{Name: "resultMessage", Text: f.message},
	})
}

// sign builds the reply with a fresh requestUUID, signed with our key.
func (h *Handler) sign(x *exchange, body []protocol.Element) []byte {
	return protocol.BuildResponse(replyRootFor(x), protocol.NewUUID(), body, h.app.signKey)
}

// writeXML sends a reply. Every protocol reply is HTTP 200: the outcome is
// in resultFlag, as the platform expects.
func writeXML(w http.ResponseWriter, reply []byte) error {
	hdr := w.Header()
	hdr.Set("Content-Type", "application/xml; charset=UTF-8")
	hdr.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_, err := w.Write(reply)
	return err
}

// replyRootFor names the reply's root element: the mapping's when the
// message is known, else the request root with Request → Response, else a
// generic root for input too broken to name itself.
func replyRootFor(x *exchange) string {
	if x.replyRoot != "" {
		return x.replyRoot
	}
	if strings.HasSuffix(x.root, "Request") && isXMLName(x.root) {
		return strings.TrimSuffix(x.root, "Request") + "Response"
	}
	return "errorResponse"
}

// isXMLName accepts the ASCII names the protocol uses, so a hostile root
// name is never echoed into our reply.
func isXMLName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i, c := range s {
		letter := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if !letter && (i == 0 || c < '0' || c > '9') {
			return false
		}
	}
	return true
}

func (h *Handler) logExchange(x *exchange) {
	if ce := h.logger.Check(zap.InfoLevel, "exchange"); ce != nil {
		ce.Write(h.exchangeFields(x, x.outcome)...)
	}
}

func (h *Handler) logFailure(x *exchange, f failure, err error) {
	ce := h.logger.Check(zap.WarnLevel, "exchange refused")
	if ce == nil {
		return
	}
	fields := h.exchangeFields(x, f.outcome)
	if f.field != "" {
		fields = append(fields, zap.String("field", f.field))
	}
	// The error text names reasons and statuses only; field values (which
	// may be personal data) are never part of it.
	var fe *mapping.FieldError
	if !errors.As(err, &fe) {
		fields = append(fields, zap.String("error", err.Error()))
	}
	ce.Write(fields...)
}

func (h *Handler) exchangeFields(x *exchange, outcome string) []zap.Field {
	fields := []zap.Field{
		zap.String("request_uuid", x.requestUUID),
		zap.String("message", x.root),
		zap.String("outcome", outcome),
		zap.Duration("duration", time.Since(x.start)),
	}
	if x.coreStatus != 0 {
		fields = append(fields, zap.Int("core_status", x.coreStatus), zap.Duration("core_duration", x.coreTime))
	}
	return fields
}
