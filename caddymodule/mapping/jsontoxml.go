package mapping

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/caddy-gongbao/gongbao/caddymodule/protocol"
)

// JSONToXML maps a core JSON object (a reply or an event) to body elements
// in row order, rows sharing a path prefix grouped under one parent. Numbers
// are decoded as json.Number, never float64. It returns ErrInvalidJSON
// (wrapped) when data is not one JSON object, and the first failing row in
// row order as *FieldError named by its JSON path.
func (r *Rules) JSONToXML(data []byte, vars Vars) ([]protocol.Element, error) {
	if r == nil || r.dir != jsonToXML {
		return nil, ErrWrongDirection
	}
	obj, err := decodeObject(data)
	if err != nil {
		return nil, err
	}
	els, fe := r.elements(obj, vars, nil)
	if fe != nil {
		fe.origin = r.origin
		return nil, fe
	}
	return els, nil
}

// decodeObject decodes exactly one JSON object.
func decodeObject(data []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: empty body", ErrInvalidJSON)
		}
		return nil, fmt.Errorf("%w: %v", ErrInvalidJSON, err)
	}
	if len(bytes.TrimSpace(data[dec.InputOffset():])) > 0 {
		return nil, fmt.Errorf("%w: data after the JSON value", ErrInvalidJSON)
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: not a JSON object", ErrInvalidJSON)
	}
	return obj, nil
}

// xval is one row's result: text for a scalar row, items for a repeat.
type xval struct {
	present bool
	text    string
	items   []protocol.Element
}

// elements evaluates every row against obj; tr is nil except in
// TraceJSONToXML.
func (r *Rules) elements(obj map[string]any, vars Vars, tr *tracer) ([]protocol.Element, *FieldError) {
	vals := make([]xval, len(r.rows))
	for i, row := range r.rows {
		fe := row.evalJSON(obj, vars, &vals[i], tr)
		if tr != nil {
			tr.jsonRow(row, obj, vars, &vals[i], fe)
		}
		if fe != nil {
			return nil, fe
		}
	}
	for i, row := range r.rows {
		if fe := row.checkRequiredIf(vals, i); fe != nil {
			return nil, fe
		}
	}
	return r.build(r.tree, vals), nil
}

// checkRequiredIf refuses a required_if: row left without a value while the
// row it names produced one of its values. The message names the field and
// the mapping's condition, never a value from the input.
func (row *Row) checkRequiredIf(vals []xval, i int) *FieldError {
	if row.reqIfPath == "" || row.reqIf < 0 || vals[i].present {
		return nil
	}
	other := vals[row.reqIf]
	var en, zh string
	switch {
	case row.reqPresence && row.reqPresent:
		if !other.present {
			return nil
		}
		en, zh = "when "+row.reqIfPath+" has a value", row.reqIfPath+" 有值时必填"
	case row.reqPresence:
		if other.present {
			return nil
		}
		en, zh = "when "+row.reqIfPath+" has none", row.reqIfPath+" 为空时必填"
	default:
		if !other.present || !slices.Contains(row.reqVals, other.text) {
			return nil
		}
		en = "when " + row.reqIfPath + " is " + strings.Join(row.reqVals, " or ")
		zh = row.reqIfPath + " 为 " + strings.Join(row.reqVals, " 或 ") + " 时必填"
	}
	e := row.fieldErr(ReasonMissing, "required value missing (required "+en+")")
	e.extra = zh
	return e
}

// build lays the row results out as elements. A container whose children
// are all omitted is omitted too.
func (r *Rules) build(nodes []*outNode, vals []xval) []protocol.Element {
	out := make([]protocol.Element, 0, len(nodes))
	for _, n := range nodes {
		if n.row < 0 {
			if kids := r.build(n.kids, vals); len(kids) > 0 {
				out = append(out, protocol.Element{Name: n.name, Children: kids})
			}
			continue
		}
		row, v := r.rows[n.row], &vals[n.row]
		switch {
		case row.repeated():
			out = append(out, v.items...)
		case v.present || !row.omitEmpty:
			out = append(out, protocol.Element{Name: n.name, Text: v.text})
		}
	}
	return out
}

func (row *Row) evalJSON(obj map[string]any, vars Vars, v *xval, tr *tracer) *FieldError {
	switch {
	case row.hasConst:
		v.present, v.text = true, row.constOut
		return nil
	case row.Var != "":
		return row.valueJSON(vars[row.Var], v)
	case row.repeated():
		return row.repeatJSON(obj, vars, v, tr)
	}
	x, fe := row.findJSON(obj)
	if fe != nil {
		return fe
	}
	return row.valueJSON(x, v)
}

// valueJSON converts x, or applies default/required when x is absent
// (missing, null or a blank string).
func (row *Row) valueJSON(x any, v *xval) *FieldError {
	if isAbsentJSON(x) {
		if row.hasDefault {
			v.present, v.text = true, row.defaultOut
			return nil
		}
		if row.Required {
			return row.fieldErr(ReasonMissing, "required value missing")
		}
		return nil
	}
	text, fe := row.textFromJSON(x)
	if fe != nil {
		return fe
	}
	v.present, v.text = true, text
	return nil
}

func isAbsentJSON(x any) bool {
	switch s := x.(type) {
	case nil:
		return true
	case string:
		return isBlank(s)
	}
	return false
}

// findJSON walks the source path; a missing or null member is absent, a
// non-object in the middle of the path is a type error.
func (row *Row) findJSON(obj map[string]any) (any, *FieldError) {
	cur := obj
	last := len(row.src) - 1
	for i, seg := range row.src[:last] {
		x := cur[seg]
		if x == nil {
			return nil, nil
		}
		m, ok := x.(map[string]any)
		if !ok {
			e := row.typeErr("对象", "an object")
			e.Path = joinPath(row.src[:i+1], ".")
			return nil, e
		}
		cur = m
	}
	if x := cur[row.src[last]]; x != nil {
		return x, nil
	}
	for _, alias := range row.aliases {
		if x := cur[alias]; x != nil {
			return x, nil
		}
	}
	return nil, nil
}

// repeatJSON maps a JSON array to repeated elements; null items (and blank
// strings for scalar items) are absent, neither mapped nor counted.
func (row *Row) repeatJSON(obj map[string]any, vars Vars, v *xval, tr *tracer) *FieldError {
	x, fe := row.findJSON(obj)
	if fe != nil {
		return fe
	}
	var arr []any
	if x != nil {
		var ok bool
		if arr, ok = x.([]any); !ok {
			return row.typeErr("数组", "an array")
		}
	}
	count := 0
	for _, it := range arr {
		if !isAbsentJSON(it) {
			count++
		}
	}
	if fe := row.checkCount(count); fe != nil {
		return fe
	}
	if count == 0 {
		return nil
	}
	name := row.tgt[len(row.tgt)-1]
	v.present = true
	v.items = make([]protocol.Element, 0, count)
	for i, it := range arr {
		if isAbsentJSON(it) {
			continue
		}
		prefix := row.srcPath + "[" + strconv.Itoa(i) + "]"
		if row.Fields == nil {
			text, fe := row.textFromJSON(it)
			if fe != nil {
				fe.Path = prefix
				return fe
			}
			v.items = append(v.items, protocol.Element{Name: name, Text: text})
			continue
		}
		m, ok := it.(map[string]any)
		if !ok {
			e := row.typeErr("对象", "an object")
			e.Path = prefix
			return e
		}
		kids, fe := row.Fields.elements(m, vars, tr)
		if fe != nil {
			return fe.withPrefix(prefix, ".")
		}
		v.items = append(v.items, protocol.Element{Name: name, Children: kids})
	}
	return nil
}

// joinPath joins path segments for error paths.
func joinPath(segs []string, sep string) string {
	if len(segs) == 1 {
		return segs[0]
	}
	n := len(sep) * (len(segs) - 1)
	for _, s := range segs {
		n += len(s)
	}
	b := make([]byte, 0, n)
	for i, s := range segs {
		if i > 0 {
			b = append(b, sep...)
		}
		b = append(b, s...)
	}
	return string(b)
}

// Keys reads the event's ordering key and own id (order_key:, event_id:)
// from the event JSON; a path the mapping does not name, or the event lacks,
// gives "".
func (o *Outbound) Keys(data []byte) (orderKey, eventID string, err error) {
	obj, err := decodeObject(data)
	if err != nil {
		return "", "", err
	}
	return lookupText(obj, o.orderSeg), lookupText(obj, o.idSeg), nil
}

func lookupText(obj map[string]any, segs []string) string {
	if len(segs) == 0 {
		return ""
	}
	cur := obj
	for _, seg := range segs[:len(segs)-1] {
		m, ok := cur[seg].(map[string]any)
		if !ok {
			return ""
		}
		cur = m
	}
	s, _ := scalarText(cur[segs[len(segs)-1]])
	return s
}
