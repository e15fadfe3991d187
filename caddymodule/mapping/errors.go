package mapping

import (
	"fmt"
	"strconv"
	"strings"
)

// LoadError is a problem in a mapping file, located by file and line.
// Error() reads "insure.yaml:12: unknown type \"decmial\"…".
type LoadError struct {
	File string
	Line int // 0 when the problem is the file as a whole
	Msg  string
}

func (e *LoadError) Error() string {
	if e.Line > 0 {
		return e.File + ":" + strconv.Itoa(e.Line) + ": " + e.Msg
	}
	return e.File + ": " + e.Msg
}

func (e *LoadError) Unwrap() error { return ErrInvalidMapping }

// Reason classifies a FieldError. The values are stable and bounded, fit for
// metric labels.
type Reason string

// Field error reasons.
const (
	ReasonMissing   Reason = "missing"    // required value absent or empty
	ReasonTooLong   Reason = "too_long"   // more runes than max_length
	ReasonInvalid   Reason = "invalid"    // not a valid decimal/integer/boolean/datetime
	ReasonScale     Reason = "scale"      // more fraction digits than scale
	ReasonPrecision Reason = "precision"  // more digits than precision allows
	ReasonEnum      Reason = "enum"       // value not in the enum's map
	ReasonTooMany   Reason = "too_many"   // repeated more than repeat.max
	ReasonTooFew    Reason = "too_few"    // repeated less than repeat.min
	ReasonDuplicate Reason = "duplicate"  // a non-repeated element occurs twice
	ReasonType      Reason = "type"       // JSON value of the wrong kind (object for a string…)
	ReasonPattern   Reason = "pattern"    // value does not match the row's pattern:
	ReasonUnknown   Reason = "unknown"    // an element the mapping does not know
	ReasonNested    Reason = "nested"     // a value element holds elements
	ReasonLooseText Reason = "loose_text" // text directly inside a container element
)

// FieldError is a value that fails its row. Path is the XML path (slash
// separated, 1-based [n] inside repeats) for request rows and the JSON path
// (dot separated, 0-based [n]) for reply and body rows.
//
// Error() is English and never contains the value, so it is safe to log.
// Message() is Chinese, for resultMessage; it names the field and never
// quotes the value: the reply is signed with the key the platform signs
// with, over bare concatenated text, so a reply repeating a value would
// sign text its sender chose (SECURITY.md). Value returns the value for
// local tools (the dry run), never for a reply or a log.
type FieldError struct {
	Path   string
	Reason Reason
	Detail string // English detail, without the value
	// Element is, for ReasonUnknown, the unknown element's name as sent
	// (Path names its known parent). It is sender-chosen text: log it and
	// journal it, but never put it in a signed reply, which would sign text
	// of the sender's choosing. Message() and Error() leave it out.
	Element string

	origin string // "" for platform XML, else e.g. "核心系统应答"
	typ    Type
	value  string
	quote  bool // Message may quote value
	limit  int
	actual int
	extra  string // allowed enum values, datetime pattern, expected JSON kind
}

func (e *FieldError) Error() string {
	return "mapping: field " + e.Path + ": " + e.Detail
}

// Message returns the Chinese message for the platform, e.g.
// "缺少必填字段 applicantInfo/name" or
// "字段 policyInfo/sumPremium 不是有效的金额: \"abc\"".
func (e *FieldError) Message() string {
	if e.Reason == ReasonMissing {
		msg := e.origin + "缺少字段 " + e.Path
		if e.origin == "" {
			msg = "缺少必填字段 " + e.Path
		}
		if e.extra != "" { // required_if: the mapping's condition, never input text
			msg += " (" + e.extra + ")"
		}
		return msg
	}
	switch e.Reason {
	case ReasonUnknown:
		return "未知字段: " + e.Path + " 下含有本接口未定义的元素"
	case ReasonLooseText:
		return "报文结构错误: " + e.Path + " 下含有不属于任何字段的文本"
	}
	var b strings.Builder
	b.WriteString(e.origin)
	b.WriteString("字段 ")
	b.WriteString(e.Path)
	b.WriteByte(' ')
	switch e.Reason {
	case ReasonTooLong:
		fmt.Fprintf(&b, "超长(最多 %d 个字符, 实际 %d)", e.limit, e.actual)
		return b.String()
	case ReasonTooMany:
		fmt.Fprintf(&b, "数量过多(最多 %d 个, 实际 %d)", e.limit, e.actual)
		return b.String()
	case ReasonTooFew:
		fmt.Fprintf(&b, "数量不足(至少 %d 个, 实际 %d)", e.limit, e.actual)
		return b.String()
	case ReasonDuplicate:
		b.WriteString("重复出现")
		return b.String()
	case ReasonType:
		b.WriteString("类型错误(应为 " + e.extra + ")")
		return b.String()
	case ReasonNested:
		b.WriteString("不是单一值(含有子元素)")
		return b.String()
	case ReasonPattern:
		b.WriteString("格式不正确")
		return b.String()
	case ReasonScale:
		fmt.Fprintf(&b, "小数位数过多(最多 %d 位)", e.limit)
	case ReasonPrecision:
		fmt.Fprintf(&b, "超出范围(最多 %d 位整数)", e.limit)
	case ReasonEnum:
		b.WriteString("取值无效")
	default: // ReasonInvalid
		b.WriteString(invalidWording(e.typ, e.extra))
	}
	if e.Reason == ReasonEnum {
		b.WriteString(" (允许: " + e.extra + ")")
	}
	return b.String()
}

func invalidWording(t Type, pattern string) string {
	switch t {
	case TypeDecimal:
		return "不是有效的金额"
	case TypeInteger:
		return "不是有效的整数"
	case TypeBoolean:
		return "不是有效的布尔值(应为 true 或 false)"
	case TypeDatetime:
		return "不是有效的日期时间(格式 " + pattern + ")"
	}
	return "取值无效"
}

// Value is the offending value and whether it may be shown: false for a
// row tagged as personal data, or when the error has no single value.
// Only local tools show it; replies and logs never do.
func (e *FieldError) Value() (string, bool) { return e.value, e.quote }

// fieldErr starts a FieldError for row r with its source path.
func (r *Row) fieldErr(reason Reason, detail string) *FieldError {
	return &FieldError{Path: r.srcPath, Reason: reason, Detail: detail, typ: r.Type}
}

// valueErr is a FieldError that may quote the offending value.
func (r *Row) valueErr(reason Reason, value, detail string) *FieldError {
	e := r.fieldErr(reason, detail)
	e.value = value
	e.quote = r.PII == ""
	return e
}

// withPrefix places e inside a repeated item: prefix is the item's path.
func (e *FieldError) withPrefix(prefix, sep string) *FieldError {
	if e.Path == "" {
		e.Path = prefix
	} else {
		e.Path = prefix + sep + e.Path
	}
	return e
}
