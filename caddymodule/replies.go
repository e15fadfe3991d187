package caddymodule

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-gongbao/gongbao/caddymodule/mapping"
	"github.com/caddy-gongbao/gongbao/caddymodule/protocol"
)

// msgBusy is the answer whenever the platform should simply try again.
const msgBusy = "系统繁忙，请稍后重试"

// Refusals of requests whose signature has not been checked yet. They are
// fixed texts: nothing the sender chose (root name, path, value) is ever
// repeated, and their replies are unsigned anyway (failureReply).
const (
	msgUnknownMessage = "不支持的报文类型"
	msgRootMismatch   = "报文根节点与请求地址不符"
	msgMissingUUID    = "报文头缺少requestUUID"
	msgBadUUID        = "报文头requestUUID格式无效(应为不含空格的可打印ASCII字符)"
	msgLongUUID       = "报文头requestUUID过长"
)

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
	coreUnavailable coreErrorKind = iota // unreachable, timeout, 503, 429
	coreRejected                         // a 4xx that is not a business answer
	coreInvalid                          // an answer that cannot be translated
	coreFailed                           // the core answered 5xx (other than 503)
)

// coreError is a failure of the core call.
type coreError struct {
	kind    coreErrorKind
	status  int
	notSent bool // the core certainly did not act on the request
	cause   error
}

func (e coreError) Error() string {
	s := [...]string{"core unavailable", "core rejected the request", "core answer invalid", "core failed"}[e.kind]
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

// classifyCore words a failed core call. Only a business answer carries
// the core's own text to the platform (through the reply mapping); a
// failure's text — a stack trace, a password in a 400 — stays in the
// journal, and an untranslatable answer names the field, never its value.
// The outcome tells operators whether the core may have acted:
// core_unavailable (certainly not), core_timeout (sent, no answer),
// core_error (it answered 5xx).
func classifyCore(ce coreError) failure {
	switch {
	case ce.kind == coreRejected:
		return failure{message: fmt.Sprintf("核心系统拒绝请求(HTTP %d)", ce.status), outcome: "core_rejected"}
	case ce.kind == coreInvalid:
		var fe *mapping.FieldError
		if errors.As(ce.cause, &fe) {
			return failure{message: "核心系统应答无效: " + fe.Message(), outcome: "core_invalid", field: fe.Path}
		}
		return failure{message: "核心系统应答无效", outcome: "core_invalid"}
	case ce.kind == coreFailed:
		return failure{message: msgBusy, outcome: "core_error"}
	case ce.notSent:
		return failure{message: msgBusy, outcome: "core_unavailable"}
	default:
		return failure{message: msgBusy, outcome: "core_timeout"}
	}
}

// failureReply builds the resultFlag=false reply for a failed exchange,
// and logs it. It is signed only when the request verified: the protocol
// uses one key both ways and signs bare concatenated text, so a signed
// refusal of unverified input would be a signature its sender could reuse
// on a forged request (SECURITY.md). Verified requests get signed
// refusals whose texts are fixed or name fields, never quote values.
func (h *Handler) failureReply(x *exchange, err error) []byte {
	f := classify(err)
	x.outcome = f.outcome
	x.errText = err.Error()
	if el := unknownElement(err); el != "" {
		// The sender's element name is for operators (log, journal), never
		// for the signed reply.
		x.errText += ": element " + el
	}
	h.logFailure(x, f, err)
	body := []protocol.Element{
		{Name: "resultFlag", Text: "false"},
		{Name: "resultMessage", Text: f.message},
	}
	if !x.verified {
		return protocol.BuildUnsignedResponse(replyRootFor(x), protocol.NewUUID(), body)
	}
	return h.sign(x, body)
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
// message is known (by its root, or by the route's path), else a generic
// root: a name the sender chose is never echoed.
func replyRootFor(x *exchange) string {
	if x.replyRoot != "" {
		return x.replyRoot
	}
	return "errorResponse"
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
	if el := unknownElement(err); el != "" {
		fields = append(fields, zap.String("element", el))
	}
	ce.Write(fields...)
}

// unknownElement is the name of an element the mapping does not declare,
// clipped, when err refuses one.
func unknownElement(err error) string {
	var fe *mapping.FieldError
	if !errors.As(err, &fe) || fe.Element == "" {
		return ""
	}
	const max = 64
	if r := []rune(fe.Element); len(r) > max {
		return string(r[:max]) + "…"
	}
	return fe.Element
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
	if len(x.unmapped) > 0 {
		fields = append(fields, zap.Strings("unmapped", x.unmapped))
	}
	return fields
}
