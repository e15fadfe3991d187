package mapping

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/shopspring/decimal"
)

// This file converts one value in either direction. Both directions check
// the same rules; the XML side appends a JSON fragment to a buffer, the JSON
// side returns element text.

// isBlank reports an empty value: empty or only XML whitespace. Empty
// elements (<x/>, <x> </x>) and empty JSON strings count as absent.
func isBlank(s string) bool {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case ' ', '\t', '\n', '\r':
		default:
			return false
		}
	}
	return true
}

// trimXMLSpace trims XML white space (space, tab, CR, LF) around a value,
// which pretty-printed XML and indented CDATA add. Typed values are always
// trimmed; strings unless the row says trim: false. Only the value sent on
// is trimmed: the signature is computed by the protocol package over the
// text as parsed, untrimmed.
func trimXMLSpace(s string) string {
	return strings.Trim(s, " \t\n\r")
}

// trimmed is s as the row sends it on.
func (r *Row) trimmed(s string) string {
	if r.noTrim && r.Type == TypeString {
		return s
	}
	return trimXMLSpace(s)
}

// appendFromXML converts the platform's text s (not blank) and appends the
// JSON fragment to buf. The text is first trimmed (trimmed), so max_length
// and pattern: count what is sent. A row's pattern: is matched after the
// type's own checks, against the text as the core receives it for a
// string, and for any other type before canonical formatting (so a pattern can insist on 20.00 where the
// decimal type would also take 20.0 and write 20.00).
func (r *Row) appendFromXML(buf []byte, s string) ([]byte, *FieldError) {
	start := len(buf)
	s = r.trimmed(s)
	buf, fe := r.convertFromXML(buf, s)
	if fe != nil || r.pattern == nil {
		return buf, fe
	}
	if !r.pattern.MatchString(s) {
		return buf[:start], r.patternErr()
	}
	return buf, nil
}

// patternErr never quotes the value: the reply carrying it is signed.
func (r *Row) patternErr() *FieldError {
	return r.fieldErr(ReasonPattern, "does not match the row's pattern")
}

// convertFromXML is appendFromXML without the pattern.
func (r *Row) convertFromXML(buf []byte, s string) ([]byte, *FieldError) {
	switch r.Type {
	case TypeString:
		if fe := r.checkLength(s); fe != nil {
			return buf, fe
		}
		return appendJSONString(buf, s), nil
	case TypeDecimal:
		d, fe := r.checkDecimal(trimXMLSpace(s))
		if fe != nil {
			return buf, fe
		}
		return d.appendJSON(buf, r.scale, r.asString), nil
	case TypeInteger:
		v := trimXMLSpace(s)
		n, ok := parseInteger(v)
		if !ok {
			return buf, r.valueErr(ReasonInvalid, v, "not a valid integer")
		}
		if r.asString {
			buf = append(buf, '"')
			buf = strconv.AppendInt(buf, n, 10)
			return append(buf, '"'), nil
		}
		return strconv.AppendInt(buf, n, 10), nil
	case TypeBoolean:
		b, ok := parseBool(trimXMLSpace(s))
		if !ok {
			return buf, r.valueErr(ReasonInvalid, trimXMLSpace(s), "not a valid boolean (true or false)")
		}
		return strconv.AppendBool(buf, b), nil
	case TypeDatetime:
		v := trimXMLSpace(s)
		t, ok := r.parseXMLTime(v)
		if !ok {
			return buf, r.xmlDatetimeErr(v)
		}
		buf = append(buf, '"')
		buf = r.jsonFmt.appendTo(buf, t, r.zone)
		return append(buf, '"'), nil
	case TypeEnum:
		v := trimXMLSpace(s)
		out, ok := r.enum.toJSON[v]
		if !ok {
			e := r.valueErr(ReasonEnum, v, "value not allowed (allowed: "+r.enum.allowedXML+")")
			e.extra = r.enum.allowedXML
			return buf, e
		}
		return append(buf, out...), nil
	}
	return buf, r.fieldErr(ReasonInvalid, "unsupported type")
}

// textFromJSON converts one decoded JSON scalar (string, json.Number or
// bool; never blank) into element text, which must match the row's
// pattern: if it has one.
func (r *Row) textFromJSON(v any) (string, *FieldError) {
	text, fe := r.convertFromJSON(v)
	if fe == nil && r.pattern != nil && !r.pattern.MatchString(text) {
		return "", r.patternErr()
	}
	return text, fe
}

// convertFromJSON is textFromJSON without the pattern.
func (r *Row) convertFromJSON(v any) (string, *FieldError) {
	switch r.Type {
	case TypeString:
		s, ok := scalarText(v)
		if !ok {
			return "", r.typeErr("字符串", "a string")
		}
		s = r.trimmed(s)
		if fe := r.checkLength(s); fe != nil {
			return "", fe
		}
		return s, nil
	case TypeDecimal:
		s, ok := numberText(v)
		if !ok {
			return "", r.typeErr("数值", "a number")
		}
		if strings.ContainsAny(s, "eE") {
			if _, isNum := v.(json.Number); isNum {
				// JSON encoders may write 1e3 or 1.5e-05; expand exactly.
				d, err := decimal.NewFromString(s)
				if err != nil {
					return "", r.valueErr(ReasonInvalid, s, "not a valid decimal")
				}
				s = d.String()
			}
		}
		d, fe := r.checkDecimal(s)
		if fe != nil {
			return "", fe
		}
		return string(d.appendJSON(nil, r.scale, false)), nil
	case TypeInteger:
		s, ok := numberText(v)
		if !ok {
			return "", r.typeErr("整数", "an integer")
		}
		n, ok := parseInteger(s)
		if !ok {
			return "", r.valueErr(ReasonInvalid, s, "not a valid integer")
		}
		if canonical := strconv.FormatInt(n, 10); canonical != s {
			return canonical, nil
		}
		return s, nil
	case TypeBoolean:
		switch b := v.(type) {
		case bool:
			return strconv.FormatBool(b), nil
		case string:
			if p, ok := parseBool(b); ok {
				return strconv.FormatBool(p), nil
			}
			return "", r.valueErr(ReasonInvalid, b, "not a valid boolean (true or false)")
		}
		return "", r.typeErr("布尔值", "a boolean")
	case TypeDatetime:
		s, ok := v.(string)
		if !ok {
			return "", r.typeErr("字符串", "a string")
		}
		t, ok := r.jsonFmt.parse(s, r.zone)
		if !ok {
			return "", r.datetimeErr(s, r.jsonFmt)
		}
		return string(r.xmlFmt.appendTo(nil, t, r.zone)), nil
	case TypeEnum:
		code, ok := r.enum.fromJSON(v)
		if !ok {
			s, _ := scalarText(v)
			e := r.valueErr(ReasonEnum, s, "value not allowed (allowed: "+r.enum.allowedJSON+")")
			e.extra = r.enum.allowedJSON
			return "", e
		}
		return code, nil
	}
	return "", r.fieldErr(ReasonInvalid, "unsupported type")
}

func (r *Row) checkLength(s string) *FieldError {
	if r.maxLength == 0 || len(s) <= r.maxLength { // bytes ≥ runes: fast accept
		return nil
	}
	if n := utf8.RuneCountInString(s); n > r.maxLength {
		e := r.fieldErr(ReasonTooLong, "too long: max "+strconv.Itoa(r.maxLength)+" characters, got "+strconv.Itoa(n))
		e.limit, e.actual = r.maxLength, n
		return e
	}
	return nil
}

func (r *Row) typeErr(wantZH, wantEN string) *FieldError {
	e := r.fieldErr(ReasonType, "wrong JSON type: want "+wantEN)
	e.extra = wantZH
	return e
}

// parseXMLTime reads platform text in the canonical xml_format or any
// further one the row lists.
func (r *Row) parseXMLTime(v string) (time.Time, bool) {
	if t, ok := r.xmlFmt.parse(v, r.zone); ok {
		return t, true
	}
	for _, l := range r.xmlAlts {
		if t, ok := l.parse(v, r.zone); ok {
			return t, true
		}
	}
	return time.Time{}, false
}

// xmlDatetimeErr names every accepted xml_format.
func (r *Row) xmlDatetimeErr(v string) *FieldError {
	if len(r.xmlAlts) == 0 {
		return r.datetimeErr(v, r.xmlFmt)
	}
	patterns := []string{r.xmlFmt.pattern}
	for _, l := range r.xmlAlts {
		patterns = append(patterns, l.pattern)
	}
	e := r.valueErr(ReasonInvalid, v, "not a valid datetime (formats "+strings.Join(patterns, ", ")+")")
	e.extra = strings.Join(patterns, " 或 ")
	return e
}

func (r *Row) datetimeErr(v string, l *dtLayout) *FieldError {
	e := r.valueErr(ReasonInvalid, v, "not a valid datetime (format "+l.pattern+")")
	e.extra = l.pattern
	return e
}

// scalarText is the text of a JSON scalar for string rows: numbers keep
// their literal digits (the decoder uses json.Number).
func scalarText(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case json.Number:
		return string(x), true
	case bool:
		return strconv.FormatBool(x), true
	}
	return "", false
}

// numberText accepts a JSON number or a string holding one.
func numberText(v any) (string, bool) {
	switch x := v.(type) {
	case json.Number:
		return string(x), true
	case string:
		return trimXMLSpace(x), true
	}
	return "", false
}

// parseBool accepts true and false in any letter case. "1"/"0" are not
// booleans: map such codes with an enum (values: {"1": true, "0": false}).
func parseBool(s string) (bool, bool) {
	switch {
	case strings.EqualFold(s, "true"):
		return true, true
	case strings.EqualFold(s, "false"):
		return false, true
	}
	return false, false
}

// parseInteger accepts an optional minus sign and decimal digits that fit
// int64. No plus sign, fraction, exponent or spaces.
func parseInteger(s string) (int64, bool) {
	digits := strings.TrimPrefix(s, "-")
	if digits == "" {
		return 0, false
	}
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}

// decimalText is an exactly parsed decimal: sign, integer digits without
// leading zeros ("0" at least) and fraction digits as written.
type decimalText struct {
	neg       bool
	intPart   string
	fracPart  string
	intDigits int // significant integer digits (0 for "0")
}

// parseDecimal accepts -?digits(.digits)? only: no exponent, no plus sign,
// no bare ".5" or "5.", no thousands separators.
func parseDecimal(s string) (decimalText, bool) {
	var d decimalText
	if strings.HasPrefix(s, "-") {
		d.neg = true
		s = s[1:]
	}
	intPart, frac, hasDot := strings.Cut(s, ".")
	if !allDigits(intPart) || hasDot && !allDigits(frac) {
		return d, false
	}
	intPart = strings.TrimLeft(intPart, "0")
	d.intDigits = len(intPart)
	if intPart == "" {
		intPart = "0"
	}
	d.intPart, d.fracPart = intPart, frac
	if d.intDigits == 0 && strings.Trim(frac, "0") == "" {
		d.neg = false // -0.00 is 0.00
	}
	return d, true
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// checkDecimal parses s and enforces scale and precision. More fraction
// digits than scale are refused, never rounded: money is not rounded
// silently.
func (r *Row) checkDecimal(s string) (decimalText, *FieldError) {
	d, ok := parseDecimal(s)
	if !ok {
		return d, r.valueErr(ReasonInvalid, s, "not a valid decimal")
	}
	if r.scale >= 0 && len(d.fracPart) > r.scale {
		e := r.valueErr(ReasonScale, s, "too many fraction digits: max "+strconv.Itoa(r.scale))
		e.limit = r.scale
		return d, e
	}
	if r.precision > 0 {
		frac := len(d.fracPart)
		if r.scale >= 0 {
			frac = r.scale
		}
		if d.intDigits+frac > r.precision {
			e := r.valueErr(ReasonPrecision, s, "too many digits: precision "+strconv.Itoa(r.precision))
			e.limit = r.precision - frac
			return d, e
		}
	}
	return d, nil
}

// appendJSON writes the digits exactly, fraction padded with zeros to scale
// (scale < 0: as written), optionally as a JSON string.
func (d decimalText) appendJSON(buf []byte, scale int, quoted bool) []byte {
	if quoted {
		buf = append(buf, '"')
	}
	if d.neg {
		buf = append(buf, '-')
	}
	buf = append(buf, d.intPart...)
	frac := len(d.fracPart)
	if scale >= 0 {
		frac = scale
	}
	if frac > 0 {
		buf = append(buf, '.')
		buf = append(buf, d.fracPart...)
		for i := len(d.fracPart); i < frac; i++ {
			buf = append(buf, '0')
		}
	}
	if quoted {
		buf = append(buf, '"')
	}
	return buf
}

// appendJSONString writes s as a JSON string. Like encoding/json it escapes
// quotes, backslashes, control characters, U+2028/U+2029 and invalid UTF-8
// (as U+FFFD); unlike it, it leaves <, > and & alone so URLs stay readable.
//
// Values from the XML parser are valid UTF-8, so after one check the bytes
// are copied by table, without decoding runes (most values are Chinese);
// invalid input takes the rune-by-rune path.
func appendJSONString(buf []byte, s string) []byte {
	if !utf8.ValidString(s) {
		return appendJSONStringRunes(buf, s)
	}
	const hex = "0123456789abcdef"
	buf = append(buf, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if jsonPlain[c] {
			continue
		}
		switch c {
		case 0xE2: // U+2028 and U+2029 are E2 80 A8 and E2 80 A9
			if i+2 >= len(s) || s[i+1] != 0x80 || (s[i+2] != 0xA8 && s[i+2] != 0xA9) {
				continue
			}
			buf = append(buf, s[start:i]...)
			buf = append(buf, '\\', 'u', '2', '0', '2', hex[s[i+2]&0xF])
			i += 2
		case '"', '\\':
			buf = append(buf, s[start:i]...)
			buf = append(buf, '\\', c)
		case '\n':
			buf = append(buf, s[start:i]...)
			buf = append(buf, '\\', 'n')
		case '\r':
			buf = append(buf, s[start:i]...)
			buf = append(buf, '\\', 'r')
		case '\t':
			buf = append(buf, s[start:i]...)
			buf = append(buf, '\\', 't')
		default:
			buf = append(buf, s[start:i]...)
			buf = append(buf, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
		}
		start = i + 1
	}
	buf = append(buf, s[start:]...)
	return append(buf, '"')
}

// jsonPlain marks the bytes appendJSONString copies unchanged from valid
// UTF-8: all but control characters, '"', '\\' and 0xE2 (which starts
// U+2028 and U+2029).
var jsonPlain = func() (t [256]bool) {
	for c := 0x20; c < len(t); c++ {
		t[c] = true
	}
	t['"'], t['\\'], t[0xE2] = false, false, false
	return t
}()

// appendJSONStringRunes is appendJSONString for any input, invalid UTF-8
// included.
func appendJSONStringRunes(buf []byte, s string) []byte {
	const hex = "0123456789abcdef"
	buf = append(buf, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			buf = append(buf, s[start:i]...)
			switch c {
			case '"', '\\':
				buf = append(buf, '\\', c)
			case '\n':
				buf = append(buf, '\\', 'n')
			case '\r':
				buf = append(buf, '\\', 'r')
			case '\t':
				buf = append(buf, '\\', 't')
			default:
				buf = append(buf, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		ch, size := utf8.DecodeRuneInString(s[i:])
		if ch == utf8.RuneError && size == 1 {
			buf = append(buf, s[start:i]...)
			buf = append(buf, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if ch == '\u2028' || ch == '\u2029' {
			buf = append(buf, s[start:i]...)
			buf = append(buf, '\\', 'u', '2', '0', '2', hex[ch&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	buf = append(buf, s[start:]...)
	return append(buf, '"')
}
