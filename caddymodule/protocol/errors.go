package protocol

import (
	"errors"
	"fmt"
)

// Kind classifies why an incoming message was refused. Every kind maps to
// one signed resultFlag=false reply; the String form is a bounded label
// suitable for metrics.
type Kind int

// Kinds of refusal reported by Parse.
const (
	// KindMalformed: empty, not XML, or not well-formed XML.
	KindMalformed Kind = iota + 1
	// KindForbidden: a DOCTYPE, ENTITY or other <!…> declaration.
	KindForbidden
	// KindTooLarge: a size, depth, element-count or value-length limit.
	KindTooLarge
	// KindEncoding: declared encoding other than UTF-8, or invalid UTF-8 bytes.
	KindEncoding
	// KindStructure: well-formed XML that is not a protocol envelope
	// (missing or duplicated head, body, requestUUID or sign).
	KindStructure
)

// Sentinels, one per Kind, so callers can write errors.Is(err, ErrTooLarge).
var (
	ErrMalformed = errors.New("protocol: malformed XML")
	ErrForbidden = errors.New("protocol: forbidden XML declaration")
	ErrTooLarge  = errors.New("protocol: message exceeds limits")
	ErrEncoding  = errors.New("protocol: message is not UTF-8")
	ErrStructure = errors.New("protocol: not a protocol envelope")
)

// String returns a short snake_case label (metrics, logs).
func (k Kind) String() string {
	switch k {
	case KindMalformed:
		return "malformed"
	case KindForbidden:
		return "forbidden"
	case KindTooLarge:
		return "too_large"
	case KindEncoding:
		return "encoding"
	case KindStructure:
		return "structure"
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

func (k Kind) sentinel() error {
	switch k {
	case KindMalformed:
		return ErrMalformed
	case KindForbidden:
		return ErrForbidden
	case KindTooLarge:
		return ErrTooLarge
	case KindEncoding:
		return ErrEncoding
	case KindStructure:
		return ErrStructure
	}
	return nil
}

// Error is the error type returned by Parse. Error() is English for logs;
// Message() is Chinese for the reply's resultMessage. Neither ever contains
// a field value from the message, so both are safe to log and to send back.
type Error struct {
	Kind   Kind
	Detail string // English detail, e.g. "element depth exceeds 32"; never message content
	Line   int    // 1-based line of a well-formedness error; 0 when not known
	msg    string // Chinese message
}

func newError(k Kind, msg, detail string) *Error {
	return &Error{Kind: k, Detail: detail, msg: msg}
}

// Error implements error.
func (e *Error) Error() string {
	s := "protocol: " + e.Kind.String() + ": " + e.Detail
	if e.Line > 0 {
		s += fmt.Sprintf(" (line %d)", e.Line)
	}
	return s
}

// Message returns the Chinese explanation meant for resultMessage.
func (e *Error) Message() string {
	if e.Kind == KindMalformed && e.Line > 0 {
		return fmt.Sprintf("%s(第%d行)", e.msg, e.Line)
	}
	return e.msg
}

// Is makes errors.Is(err, ErrKind) work for the sentinel of e.Kind.
func (e *Error) Is(target error) bool {
	return target != nil && target == e.Kind.sentinel()
}

// Chinese messages, kept together so the reply texts are reviewable in one place.
const (
	msgEmpty       = "报文为空"
	msgMalformed   = "报文不是合法的XML"
	msgForbidden   = "报文不允许包含DOCTYPE或ENTITY声明"
	msgEncoding    = "报文编码必须为UTF-8"
	msgTooBig      = "报文超过大小限制"
	msgTooDeep     = "报文嵌套层级超过限制"
	msgTooMany     = "报文节点数量超过限制"
	msgValueTooBig = "报文字段值超过长度限制"
	msgTooManyAttr = "报文节点属性数量超过限制"
	msgDupAttr     = "报文不是合法的XML: 节点含有重复的属性"
	msgBadCharRef  = "报文不是合法的XML: 含有不允许的字符引用"
	msgForeignName = "报文节点名只能使用ASCII字母、数字、下划线、连字符和点，不支持命名空间"
)
