package mapping

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"

	"github.com/antchfx/xmlquery"

	"github.com/caddy-gongbao/gongbao/caddymodule/protocol"
)

// This file is the lineage (dry-run) view of the executors. Tracing runs
// the very same code as XMLToJSON and JSONToXML: the executors call a
// tracer after each row when one is attached (a nil check per row on the
// hot path, nothing else), and the tracer reads back what the row did.
//
// A repeated row is evaluated after its items' rows (the items are mapped
// inside it), so the tracer first records the item rows with paths
// relative to their item, then, when the repeated row itself reports,
// claims them: it numbers the items, prefixes their paths and moves the
// repeated row's own entry in front of them.

// Origin says where a row's value came from.
type Origin string

// Origins.
const (
	OriginSource  Origin = "source"  // read from the input (possibly under an alias)
	OriginDefault Origin = "default" // the input had no value; default: stood in
	OriginConst   Origin = "const"   // the row's const:
	OriginVar     Origin = "var"     // the runtime variable named by var:
	OriginAbsent  Origin = "absent"  // no value (the member or element is left out or empty)
)

// Lineage is what one row did in a traced run.
type Lineage struct {
	Row *Row // the rule applied (Row.Rule() describes it)

	// Source is the path read in the input, as found: the alias spelling
	// when an alias matched, with [n] inside repeats (XML 1-based, JSON
	// 0-based, as in FieldError paths). "" for const: and var: rows.
	Source string
	// Alias is the alias spelling found in the input ("" when the canonical
	// spelling, or nothing, was found).
	Alias string
	// Input is the source value as found: element text, or the text of a
	// JSON scalar ("" when absent; "{…}" or "[…]" for a JSON object or
	// array). For var: rows it is the variable's value.
	Input  string
	Origin Origin

	// Target is the path written in the output, with [n] inside repeats
	// (JSON 0-based, XML 1-based).
	Target string
	// Value is what was written: a JSON fragment ("浙江…" quoted, 20.00, true)
	// for request rows, element text for reply and body rows. "" when
	// nothing was written, and for repeated rows (see Items).
	Value string
	// Written tells whether the target appears in the output; an element
	// written empty (absent value, no omit_empty) counts.
	Written bool
	// Items is the number of items a repeated row mapped. The items of a
	// repeated row without fields: get an entry each, with the repeated
	// row as Row and Items 0.
	Items int
	// Depth is 0 for a top-level row, 1 for a row of a repeated item, …
	Depth int

	// Err is this row's own failure; the run stops at the first one, so it
	// can only be set on the last top-level entry or inside it. It is the
	// error the executor returns.
	Err *FieldError
}

// Masked returns l with Input and Value masked by the row's pii: kind
// (PII.Mask); rows without pii: are returned unchanged. A JSON string
// fragment keeps its quotes.
func (l Lineage) Masked() Lineage {
	if l.Row == nil || l.Row.PII == "" {
		return l
	}
	l.Input = l.Row.PII.Mask(l.Input)
	if l.Row.dir == xmlToJSON && l.Value != "" {
		var s string
		if json.Unmarshal([]byte(l.Value), &s) == nil {
			l.Value = string(appendJSONString(nil, l.Row.PII.Mask(s)))
		} else {
			l.Value = l.Row.PII.Mask(l.Value)
		}
	} else {
		l.Value = l.Row.PII.Mask(l.Value)
	}
	return l
}

// TraceXMLToJSON is XMLToJSON with lineage: one entry per evaluated row in
// row order (the items of a repeated row follow it). On a failure the
// entries end with the failing row and err is the same *FieldError
// XMLToJSON returns; rows after it are not evaluated. A body whose rows
// all map but whose structure is refused (an unknown element, a value
// holding elements, text loose in a container) has every row's entry,
// none with Err, and that refusal as err.
func (r *Rules) TraceXMLToJSON(body *xmlquery.Node, vars Vars) (out []byte, lineage []Lineage, err error) {
	if r == nil || r.dir != xmlToJSON {
		return nil, nil, ErrWrongDirection
	}
	tr := &tracer{}
	sc := &scratch{tr: tr}
	if fe := r.object(body, vars, sc); fe != nil {
		return nil, tr.entries, fe
	}
	// The same structure check as XMLToJSON, so a dry run refuses what
	// production refuses. It fails no row: every entry is as mapped.
	if fe := r.shape.check(body, nil); fe != nil {
		return nil, tr.entries, fe
	}
	return sc.buf, tr.entries, nil
}

// Disposition is what a file does with an element no row reads.
type Disposition string

// Dispositions.
const (
	IgnoredDeclared Disposition = "ignore"                   // listed under ignore:
	PassedUnknown   Disposition = "unknown_elements: ignore" // unknown, let through
	RefusedUnknown  Disposition = "refused"                  // unknown, refused (the default)
)

// Unmapped is an input element no row reads.
type Unmapped struct {
	Path string // mapping path under the body, no [n]
	How  Disposition
}

// Unmapped lists, for the dry run, every element of body no row reads,
// in document order, each once: those the file lets through and the
// unknown ones it refuses (all of them, where XMLToJSON stops at the
// first). The walk stops at any other structure problem (text loose in a
// container, a value holding elements, a field given twice), which
// TraceXMLToJSON reports.
func (r *Rules) Unmapped(body *xmlquery.Node) []Unmapped {
	if r == nil || r.dir != xmlToJSON {
		return nil
	}
	u := unread{all: true}
	r.shape.check(body, &u)
	out := make([]Unmapped, len(u.names))
	for i, n := range u.names {
		out[i] = Unmapped{Path: n, How: u.how[i]}
	}
	return out
}

// TraceJSONToXML is JSONToXML with lineage, as TraceXMLToJSON. Input that
// is not one JSON object fails before any row (no lineage).
func (r *Rules) TraceJSONToXML(data []byte, vars Vars) (els []protocol.Element, lineage []Lineage, err error) {
	if r == nil || r.dir != jsonToXML {
		return nil, nil, ErrWrongDirection
	}
	obj, err := decodeObject(data)
	if err != nil {
		return nil, nil, err
	}
	tr := &tracer{}
	els, fe := r.elements(obj, vars, tr)
	if fe != nil {
		fe.origin = r.origin
		return nil, tr.entries, fe
	}
	return els, tr.entries, nil
}

// tracer collects lineage. Entries of item rows wait with Depth 0 and
// relative paths until their repeated row claims them.
type tracer struct {
	entries []Lineage
}

// xmlRow records a request row just evaluated against node; frag is what
// it appended to the output buffer.
func (t *tracer) xmlRow(row *Row, node *xmlquery.Node, vars Vars, frag []byte, present bool, fe *FieldError) {
	e := Lineage{Row: row, Target: row.JSON}
	switch {
	case row.hasConst:
		e.Origin = OriginConst
	case row.Var != "":
		e.Input = vars[row.Var]
		e.Origin = varOrigin(row, e.Input)
	case row.repeated():
		t.claimXML(row, node, &e, fe)
		return
	default:
		e.Source, e.Origin = row.XML, OriginSource
		if el, _ := row.findXML(node); el != nil {
			e.Input = textOf(el)
			e.Source, e.Alias = sourceSpelling(row, el.Data, "/")
		}
		if isBlank(e.Input) {
			e.Origin = blankOrigin(row)
		}
	}
	if fe != nil {
		e.Err = fe
	} else if present {
		e.Value, e.Written = string(frag), true
	}
	t.entries = append(t.entries, e)
}

// jsonRow records a reply or body row just evaluated against obj.
func (t *tracer) jsonRow(row *Row, obj map[string]any, vars Vars, v *xval, fe *FieldError) {
	e := Lineage{Row: row, Target: row.XML}
	switch {
	case row.hasConst:
		e.Origin = OriginConst
	case row.Var != "":
		e.Input = vars[row.Var]
		e.Origin = varOrigin(row, e.Input)
	case row.repeated():
		t.claimJSON(row, obj, v, &e, fe)
		return
	default:
		e.Source, e.Origin = row.JSON, OriginSource
		x, _ := row.findJSON(obj)
		e.Input = inputText(x)
		if x != nil {
			e.Source, e.Alias = sourceSpelling(row, jsonKey(row, obj), ".")
		}
		if isAbsentJSON(x) {
			e.Origin = blankOrigin(row)
		}
	}
	if fe != nil {
		e.Err = fe
	} else {
		e.Value = v.text
		e.Written = v.present || !row.omitEmpty
	}
	t.entries = append(t.entries, e)
}

func varOrigin(row *Row, value string) Origin {
	if isBlank(value) {
		return blankOrigin(row)
	}
	return OriginVar
}

func blankOrigin(row *Row) Origin {
	if row.hasDefault {
		return OriginDefault
	}
	return OriginAbsent
}

// sourceSpelling names the source path with the spelling found for its
// last segment, and that spelling when it is an alias.
func sourceSpelling(row *Row, found, sep string) (path, alias string) {
	last := len(row.src) - 1
	if found == "" || found == row.src[last] {
		return row.srcPath, ""
	}
	return joinPath(append(row.src[:last:last], found), sep), found
}

// jsonKey is the member name findJSON read the value from: the canonical
// name if that member is present and not null, else the first alias that is.
func jsonKey(row *Row, obj map[string]any) string {
	cur := obj
	last := len(row.src) - 1
	for _, seg := range row.src[:last] {
		m, ok := cur[seg].(map[string]any)
		if !ok {
			return ""
		}
		cur = m
	}
	for _, name := range append([]string{row.src[last]}, row.aliases...) {
		if cur[name] != nil {
			return name
		}
	}
	return ""
}

// inputText shows a decoded JSON value as text.
func inputText(x any) string {
	switch x.(type) {
	case map[string]any:
		return "{…}"
	case []any:
		return "[…]"
	}
	s, _ := scalarText(x)
	return s
}

// claimXML completes a repeated request row: it records the row, then its
// items — the entries its item rows left, or for scalar items one entry
// per item, converted by the same appendFromXML the executor used.
func (t *tracer) claimXML(row *Row, node *xmlquery.Node, e *Lineage, fe *FieldError) {
	parent, _ := row.parentXML(node)
	name := row.itemName(parent)
	var items []*xmlquery.Node
	for c := firstChild(parent); c != nil; c = c.NextSibling {
		if c.Type == xmlquery.ElementNode && c.Data == name && !isEmptyElement(c) {
			items = append(items, c)
		}
	}
	e.Source, e.Alias = sourceSpelling(row, name, "/")
	itemSrc := func(k int) string { return e.Source + "[" + strconv.Itoa(k+1) + "]" }
	itemTgt := func(k int) string { return row.JSON + "[" + strconv.Itoa(k) + "]" }
	if row.Fields != nil {
		t.claim(row, e, fe, len(items), itemSrc, itemTgt, "/", ".")
		return
	}
	var kids []Lineage
	if fe == nil || itemFailed(row, fe) { // else the row failed before its items
		for k, c := range items {
			kid := Lineage{Row: row, Source: itemSrc(k), Alias: e.Alias, Input: textOf(c),
				Origin: OriginSource, Target: itemTgt(k), Depth: 1}
			b, kfe := row.appendFromXML(nil, kid.Input)
			if kfe != nil {
				kid.Err = fe // the executor's error, with its path
				kids = append(kids, kid)
				break
			}
			kid.Value, kid.Written = string(b), true
			kids = append(kids, kid)
		}
	}
	t.finish(e, fe, kids, len(items))
}

// claimJSON is claimXML for reply and body rows.
func (t *tracer) claimJSON(row *Row, obj map[string]any, v *xval, e *Lineage, fe *FieldError) {
	x, _ := row.findJSON(obj)
	arr, isArr := x.([]any)
	var idx []int // array index of each item mapped (absent items are skipped)
	for i, it := range arr {
		if !isAbsentJSON(it) {
			idx = append(idx, i)
		}
	}
	e.Source, e.Alias = sourceSpelling(row, jsonKey(row, obj), ".")
	if x != nil && !isArr {
		e.Input = inputText(x)
	}
	itemSrc := func(k int) string { return e.Source + "[" + strconv.Itoa(idx[k]) + "]" }
	itemTgt := func(k int) string { return row.XML + "[" + strconv.Itoa(k+1) + "]" }
	if row.Fields != nil {
		t.claim(row, e, fe, len(idx), itemSrc, itemTgt, ".", "/")
		return
	}
	var kids []Lineage
	if fe == nil || itemFailed(row, fe) {
		for k, i := range idx {
			kid := Lineage{Row: row, Source: itemSrc(k), Alias: e.Alias, Input: inputText(arr[i]),
				Origin: OriginSource, Target: itemTgt(k), Depth: 1}
			if k >= len(v.items) { // the item the executor stopped at
				kid.Err = fe
				kids = append(kids, kid)
				break
			}
			kid.Value, kid.Written = v.items[k].Text, true
			kids = append(kids, kid)
		}
	}
	t.finish(e, fe, kids, len(idx))
}

// itemFailed tells an item's failure (its path names the item, e.g.
// items/item[2]) from the repeated row's own (count, type, duplicate).
func itemFailed(row *Row, fe *FieldError) bool {
	return strings.HasPrefix(fe.Path, row.srcPath+"[")
}

// claim takes the pending entries of row's item rows (those at the end
// with Depth 0 whose Row is one of row.Fields, with what they claimed
// already), numbers them by item — each item left one entry per item row,
// in order — prefixes their paths and records them after row's own entry.
func (t *tracer) claim(row *Row, e *Lineage, fe *FieldError, items int, itemSrc, itemTgt func(int) string, srcSep, tgtSep string) {
	start := len(t.entries)
	for i := len(t.entries) - 1; i >= 0; i-- {
		en := &t.entries[i]
		if en.Depth > 0 {
			continue
		}
		if !slices.Contains(row.Fields.rows, en.Row) {
			break
		}
		start = i
	}
	kids := slices.Clone(t.entries[start:])
	t.entries = t.entries[:start]
	perItem := len(row.Fields.rows)
	heads := 0
	for i := range kids {
		k := &kids[i]
		if k.Depth == 0 {
			heads++
		}
		if item := (heads - 1) / perItem; item < items {
			if k.Source != "" {
				k.Source = itemSrc(item) + srcSep + k.Source
			}
			k.Target = itemTgt(item) + tgtSep + k.Target
		}
		k.Depth++
	}
	t.finish(e, fe, kids, items)
}

// finish records a repeated row's entry followed by its items. found is
// the number of items in the input. The row's own Err is set only when no
// item carries the failure.
func (t *tracer) finish(e *Lineage, fe *FieldError, kids []Lineage, found int) {
	own := fe
	for _, k := range kids {
		if k.Err == fe {
			own = nil
		}
		if k.Depth == 1 && (e.Row.Fields == nil || k.Row == e.Row.Fields.rows[0]) {
			e.Items++
		}
	}
	e.Err = own
	e.Written = fe == nil && e.Items > 0
	e.Origin = OriginAbsent
	if found > 0 {
		e.Origin = OriginSource
	}
	t.entries = append(t.entries, *e)
	t.entries = append(t.entries, kids...)
}

// Rule describes the row's checks and conversions on one line, in the
// mapping file's words, e.g. "string, required, max_length 20, pii name" or
// "datetime, xml_format \"yyyy-MM-dd HH:mm:ss\", json_format RFC3339".
func (r *Row) Rule() string {
	var p []string
	add := func(s ...string) { p = append(p, strings.Join(s, " ")) }
	if r.repeated() {
		add("repeat", strconv.Itoa(r.Min)+".."+strconv.Itoa(r.Max))
		if r.Fields != nil {
			add("fields")
		}
	}
	if r.Type != "" {
		add(string(r.Type))
	}
	if r.Required {
		add("required")
	}
	switch {
	case r.reqPresence:
		add("required_if", r.reqIfPath+" present: "+strconv.FormatBool(r.reqPresent))
	case r.reqIfPath != "":
		add("required_if", r.reqIfPath+" = "+strings.Join(r.reqVals, " | "))
	}
	if r.noTrim {
		add("trim false")
	}
	if r.noEmpty {
		add("allow_empty false")
	}
	if r.maxLength > 0 {
		add("max_length", strconv.Itoa(r.maxLength))
	}
	if r.scale >= 0 {
		add("scale", strconv.Itoa(r.scale))
	}
	if r.precision > 0 {
		add("precision", strconv.Itoa(r.precision))
	}
	if r.asString {
		add("json_as string")
	}
	if r.enum != nil {
		add("values", r.enum.describe())
	}
	if r.pattern != nil {
		add("pattern", strconv.Quote(r.patternSource()))
	}
	if r.xmlFmt != nil {
		formats := strconv.Quote(r.xmlFmt.pattern)
		for _, l := range r.xmlAlts {
			formats += ", " + strconv.Quote(l.pattern)
		}
		if len(r.xmlAlts) > 0 {
			formats = "[" + formats + "]"
		}
		add("xml_format", formats)
	}
	if r.jsonFmt != nil {
		add("json_format", strconv.Quote(r.jsonFmt.pattern))
	}
	if r.Type == TypeDatetime && r.zone != defaultZone {
		add("timezone", r.zone.String())
	}
	if len(r.aliases) > 0 {
		add("aliases", "["+strings.Join(r.aliases, ", ")+"]")
	}
	if r.hasConst {
		add("const", r.shown(r.constOut))
	}
	if r.hasDefault {
		add("default", r.shown(r.defaultOut))
	}
	if r.Var != "" {
		add("var", r.Var)
	}
	if r.omitEmpty {
		add("omit_empty")
	}
	if r.PII != "" {
		add("pii", string(r.PII))
	}
	return strings.Join(p, ", ")
}

// shown writes a const or default in its converted form: request rows hold
// a JSON fragment already, reply and body rows element text.
func (r *Row) shown(out string) string {
	if r.dir == xmlToJSON {
		return out
	}
	return string(appendJSONString(nil, out))
}

// describe lists an enum as {code: json value, …} in code order.
func (m *enumMap) describe() string {
	codes := make([]string, 0, len(m.toJSON))
	for code := range m.toJSON {
		codes = append(codes, code)
	}
	slices.SortFunc(codes, compareCodes)
	var b strings.Builder
	b.WriteByte('{')
	for i, code := range codes {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(code + ": " + m.toJSON[code])
	}
	b.WriteByte('}')
	return b.String()
}
