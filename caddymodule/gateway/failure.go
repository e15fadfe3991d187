package gateway

import (
	"errors"
	"fmt"

	"github.com/caddy-gongbao/gongbao/caddymodule/mapping"
	"github.com/caddy-gongbao/gongbao/caddymodule/protocol"
)

// MsgBusy is the answer whenever the platform should simply try again.
const MsgBusy = "系统繁忙，请稍后重试"

// Refusals of requests whose signature has not been checked yet. They are
// fixed texts: nothing the sender chose (root name, path, value) is ever
// repeated, and their replies are unsigned anyway (Refuse).
const (
	msgUnknownMessage = "不支持的报文类型"
	msgRootMismatch   = "报文根节点与请求地址不符"
	msgMissingUUID    = "报文头缺少requestUUID"
	msgBadUUID        = "报文头requestUUID格式无效(应为不含空格的可打印ASCII字符)"
	msgLongUUID       = "报文头requestUUID过长"
)

// Messages of the idempotency rows of DESIGN §4.
const (
	msgConflict      = "requestUUID 已用于内容不同的报文，请使用新的 requestUUID"
	msgInProgress    = "处理中，请稍后重试"
	msgContentReplay = "报文内容与此前已受理的请求完全相同，不再重复处理；如为重发，请使用原 requestUUID"
)

// RequestError is a platform request refused before the core is called.
type RequestError struct {
	Message string // Chinese, for resultMessage; a fixed text
	Reason  string // stable English word, for logs and metrics
	Cause   error
}

func (e RequestError) Error() string {
	if e.Cause != nil {
		return e.Reason + ": " + e.Cause.Error()
	}
	return e.Reason
}
func (e RequestError) Unwrap() error { return e.Cause }

// The refusals the caller's idempotency store decides (DESIGN §4).
var (
	// ErrMissingRequestUUID: the head has no requestUUID.
	ErrMissingRequestUUID error = RequestError{Message: msgMissingUUID, Reason: "missing_uuid"}
	// ErrConflict: the requestUUID was used for a different body.
	ErrConflict error = RequestError{Message: msgConflict, Reason: "conflict"}
	// ErrInProgress: the requestUUID is still being handled (or its
	// outcome is unknown and held).
	ErrInProgress error = RequestError{Message: msgInProgress, Reason: "in_progress"}
	// ErrContentReplay: the signed content was already handled under
	// another requestUUID.
	ErrContentReplay error = RequestError{Message: msgContentReplay, Reason: "content_replay"}
)

// Busy is a refusal the platform should simply retry, for a reason of the
// caller's (store_unavailable, client_gone).
func Busy(reason string, cause error) error {
	return RequestError{Message: MsgBusy, Reason: reason, Cause: cause}
}

// SignatureError is a missing or wrong platform signature.
type SignatureError struct{ Missing bool }

func (e SignatureError) Error() string {
	if e.Missing {
		return "signature missing"
	}
	return "signature mismatch"
}

// CoreErrorKind tells how the core failed.
type CoreErrorKind int

const (
	CoreUnavailable CoreErrorKind = iota // unreachable, timeout, 503, 429
	CoreRejected                         // a 4xx that is not a business answer
	CoreInvalid                          // an answer that cannot be translated
	CoreFailed                           // the core answered 5xx (other than 503)
)

// CoreError is a failure of the core call. The caller builds it for what
// happens on the wire (unreachable, broken off, too large); Reply builds
// it for answers.
type CoreError struct {
	Kind    CoreErrorKind
	Status  int
	NotSent bool // the core certainly did not act on the request
	Cause   error
}

func (e CoreError) Error() string {
	s := [...]string{"core unavailable", "core rejected the request", "core answer invalid", "core failed"}[e.Kind]
	if e.Status != 0 {
		s += fmt.Sprintf(" (HTTP %d)", e.Status)
	}
	if e.Cause != nil {
		s += ": " + e.Cause.Error()
	}
	return s
}
func (e CoreError) Unwrap() error { return e.Cause }

// CertainlyNotActed tells whether a failed core call left no effect, so
// that its idempotency record can be released for a resend.
func CertainlyNotActed(err error) bool {
	var ce CoreError
	if !errors.As(err, &ce) {
		return false
	}
	return ce.NotSent || ce.Kind == CoreRejected
}

// Failure is what a failed exchange answers and logs.
type Failure struct {
	Message string // resultMessage, Chinese
	Outcome string // bounded label for logs and metrics
	Field   string // offending field, if any
}

// Classify is the one place that maps every failure to its reply. Messages
// never carry a key; field errors name the field, not its value.
func Classify(err error) Failure {
	var (
		pe *protocol.Error
		fe *mapping.FieldError
		re RequestError
		se SignatureError
		ce CoreError
	)
	switch {
	case errors.As(err, &se):
		if se.Missing {
			return Failure{Message: "验签失败: 报文头缺少sign", Outcome: "bad_signature"}
		}
		return Failure{Message: "验签失败", Outcome: "bad_signature"}
	case errors.As(err, &pe):
		return Failure{Message: pe.Message(), Outcome: "malformed"}
	case errors.As(err, &re):
		return Failure{Message: re.Message, Outcome: re.Reason}
	case errors.As(err, &ce):
		return classifyCore(ce)
	case errors.As(err, &fe):
		return Failure{Message: fe.Message(), Outcome: "invalid_field", Field: fe.Path}
	default:
		return Failure{Message: MsgBusy, Outcome: "internal_error"}
	}
}

// classifyCore words a failed core call. Only a business answer carries
// the core's own text to the platform (through the reply mapping); a
// failure's text — a stack trace, a password in a 400 — stays in the
// journal, and an untranslatable answer names the field, never its value.
// The outcome tells operators whether the core may have acted:
// core_unavailable (certainly not), core_timeout (sent, no answer),
// core_error (it answered 5xx).
func classifyCore(ce CoreError) Failure {
	switch {
	case ce.Kind == CoreRejected:
		return Failure{Message: fmt.Sprintf("核心系统拒绝请求(HTTP %d)", ce.Status), Outcome: "core_rejected"}
	case ce.Kind == CoreInvalid:
		var fe *mapping.FieldError
		if errors.As(ce.Cause, &fe) {
			return Failure{Message: "核心系统应答无效: " + fe.Message(), Outcome: "core_invalid", Field: fe.Path}
		}
		return Failure{Message: "核心系统应答无效", Outcome: "core_invalid"}
	case ce.Kind == CoreFailed:
		return Failure{Message: MsgBusy, Outcome: "core_error"}
	case ce.NotSent:
		return Failure{Message: MsgBusy, Outcome: "core_unavailable"}
	default:
		return Failure{Message: MsgBusy, Outcome: "core_timeout"}
	}
}

// RefusalBody is the body of every refusal: resultFlag=false and the
// failure's message.
func RefusalBody(f Failure) []protocol.Element {
	return []protocol.Element{
		{Name: "resultFlag", Text: "false"},
		{Name: "resultMessage", Text: f.Message},
	}
}

// Refuse builds the resultFlag=false reply for a failed exchange and
// records the failure on x (Outcome, ErrText). It is signed only when the
// request verified: the protocol uses one key both ways and signs bare
// concatenated text, so a signed refusal of unverified input would be a
// signature its sender could reuse on a forged request (SECURITY.md).
// Verified requests get signed refusals whose texts are fixed or name
// fields, never quote values.
func (g *Gateway) Refuse(x *Exchange, err error) ([]byte, Failure) {
	f := Classify(err)
	x.Outcome = f.Outcome
	x.ErrText = err.Error()
	if el := UnknownElement(err); el != "" {
		// The sender's element name is for operators (log, journal), never
		// for the signed reply.
		x.ErrText += ": element " + el
	}
	body := RefusalBody(f)
	if !x.Verified {
		return protocol.BuildUnsignedResponse(x.replyRoot(), protocol.NewUUID(), body), f
	}
	return g.sign(x, body), f
}

// UnknownElement is the name of an element the mapping does not declare,
// clipped, when err refuses one: for operators, never for a reply.
func UnknownElement(err error) string {
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
