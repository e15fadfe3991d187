package mapping

import (
	"encoding/json"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/caddy-gongbao/gongbao/internal/pii"
)

var (
	rowKeys = []string{
		"xml", "json", "type", "required", "max_length", "pii", "aliases",
		"scale", "precision", "json_as", "values", "xml_format", "json_format",
		"timezone", "const", "var", "default", "omit_empty", "repeat", "fields", "pattern",
		"trim", "required_if", "allow_empty",
	}
	requiredIfKeys = []string{"xml", "equals", "present"}
	repeatKeys     = []string{"min", "max"}
	typeNames      = "string, decimal, integer, boolean, datetime or enum"
)

// isVarName: runtime variable names are lower-case snake case.
func isVarName(s string) bool {
	for i, c := range s {
		if !(c >= 'a' && c <= 'z' || c == '_' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return s != ""
}

// rules compiles a list of rows. origin names the JSON side in Chinese
// messages ("" when JSON is the output).
func (p *parser) rules(f kv, dir direction, origin string) *Rules {
	if f.v.Kind != yaml.SequenceNode {
		p.errf(f.v, "%s: must be a list of rows", f.k.Value)
		return nil
	}
	r := &Rules{dir: dir, origin: origin}
	for _, n := range f.v.Content {
		if row := p.row(n, dir); row != nil {
			r.rows = append(r.rows, row)
		}
	}
	r.tree = p.layout(r.rows, dir)
	p.linkRequiredIf(r)
	return r
}

// linkRequiredIf finds, for each required_if: row, the row of the same list
// whose element it names.
func (p *parser) linkRequiredIf(r *Rules) {
	for _, row := range r.rows {
		if row.reqIfPath == "" {
			continue
		}
		row.reqIf = -1
		var names []string
		for j, o := range r.rows {
			if o.XML == row.reqIfPath && o != row && !o.repeated() {
				row.reqIf = j
				break
			}
			if o.XML != "" && o != row && !o.repeated() {
				names = append(names, o.XML)
			}
		}
		if row.reqIf < 0 {
			p.errAt(row.Line, "required_if: no other row of this list fills xml %q%s", row.reqIfPath, suggest(row.reqIfPath, names))
		}
	}
}

// sources names the source keys of a row for each direction: the path key
// first.
func sources(dir direction) []string {
	if dir == xmlToJSON {
		return []string{"xml", "const", "var"}
	}
	return []string{"json", "const", "var"}
}

// row compiles one row. Checks run in a fixed order so a row with several
// problems reports them deterministically.
func (p *parser) row(n *yaml.Node, dir direction) *Row {
	n = resolve(n)
	if n.Kind != yaml.MappingNode {
		p.errf(n, "each row is a mapping (xml:, json:, type: …)")
		return nil
	}
	before := len(p.errs)
	f := p.fields(n, "row", rowKeys)
	row := &Row{Line: n.Line, dir: dir, scale: -1, zone: p.zone}

	p.rowPaths(n, f, row)
	p.rowType(n, f, row)
	p.rowOptions(f, row)
	p.rowRepeat(f, row)
	if len(p.errs) > before {
		return nil
	}
	p.rowConstDefault(f, row)
	if len(p.errs) > before {
		return nil
	}
	return row
}

// rowPaths reads the target path and exactly one source.
func (p *parser) rowPaths(n *yaml.Node, f map[string]kv, row *Row) {
	if jf, ok := f["json"]; ok {
		row.JSON, _ = p.jsonPath(jf)
	}
	if xf, ok := f["xml"]; ok {
		row.XML, _ = p.xmlPath(xf)
	}
	target := "json"
	if row.dir == jsonToXML {
		target = "xml"
	}
	if _, ok := f[target]; !ok {
		if target == "json" {
			p.errf(n, "row needs json: (the JSON path it fills)")
		} else {
			p.errf(n, "row needs xml: (the element it fills)")
		}
	}
	var given []string
	for _, k := range sources(row.dir) {
		if _, ok := f[k]; ok {
			given = append(given, k)
		}
	}
	switch len(given) {
	case 0:
		src := sources(row.dir)
		p.errf(n, "row needs a source: %s:, %s: or %s:", src[0], src[1], src[2])
	case 1:
	default:
		p.errf(f[given[1]].k, "%s: and %s: cannot be combined (a row has one source)", given[0], given[1])
	}
	if vf, ok := f["var"]; ok {
		if name, ok := p.str(vf); ok {
			if !isVarName(name) {
				p.errf(vf.v, "var %q must be a lower-case name such as now or insurance_code", name)
			}
			row.Var = name
		}
	}
	if row.dir == xmlToJSON {
		row.srcPath, row.tgt = row.XML, split(row.JSON, ".")
		row.src = split(row.XML, "/")
	} else {
		row.srcPath, row.tgt = row.JSON, split(row.XML, "/")
		row.src = split(row.JSON, ".")
	}
	if row.srcPath == "" { // const and var rows are reported by their target
		row.srcPath = row.JSON
		if row.dir == jsonToXML {
			row.srcPath = row.XML
		}
	}
	if af, ok := f["aliases"]; ok {
		p.rowAliases(af, row)
	}
}

func split(s, sep string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, sep)
}

func (p *parser) rowAliases(f kv, row *Row) {
	if f.v.Kind != yaml.SequenceNode || len(f.v.Content) == 0 {
		p.errf(f.v, "aliases must be a list of names, e.g. [polycyno]")
		return
	}
	if len(row.src) == 0 {
		p.errf(f.k, "aliases need a source path (%s:)", sources(row.dir)[0])
		return
	}
	canonical := row.src[len(row.src)-1]
	for _, a := range f.v.Content {
		a = resolve(a)
		if a.Kind != yaml.ScalarNode || a.Value == "" {
			p.errf(a, "aliases must be a list of names")
			continue
		}
		switch {
		case row.dir == xmlToJSON && !isXMLName(a.Value):
			p.errf(a, "alias %q is not a valid element name", a.Value)
		case row.dir == jsonToXML && strings.Contains(a.Value, "."):
			p.errf(a, "alias %q replaces the last path segment only; it cannot contain '.'", a.Value)
		case a.Value == canonical || slices.Contains(row.aliases, a.Value):
			p.errf(a, "alias %q repeats a spelling already accepted", a.Value)
		default:
			row.aliases = append(row.aliases, a.Value)
		}
	}
}

// rowType reads type: and the keys that only make sense for some types.
func (p *parser) rowType(n *yaml.Node, f map[string]kv, row *Row) {
	tf, hasType := f["type"]
	_, hasFields := f["fields"]
	switch {
	case hasFields && hasType:
		p.errf(tf.k, "type: does not apply to a row with fields: (each item is an object)")
	case hasFields:
	case !hasType:
		p.errf(n, "row needs type: (%s)", typeNames)
	default:
		name, ok := p.str(tf)
		if !ok {
			break
		}
		switch t := Type(name); t {
		case TypeString, TypeDecimal, TypeInteger, TypeBoolean, TypeDatetime, TypeEnum:
			row.Type = t
		default:
			p.errf(tf.v, "unknown type %q (want %s)", name, typeNames)
		}
	}
	if row.Type == "" {
		return
	}
	only := func(key string, types ...Type) (kv, bool) {
		kf, ok := f[key]
		if !ok {
			return kf, false
		}
		for _, t := range types {
			if row.Type == t {
				return kf, true
			}
		}
		names := make([]string, len(types))
		for i, t := range types {
			names[i] = string(t)
		}
		p.errf(kf.k, "%s: applies only to type %s, not %s", key, strings.Join(names, " or "), row.Type)
		return kf, false
	}
	if kf, ok := only("max_length", TypeString); ok {
		row.maxLength, _ = p.integer(kf, 1)
	}
	if kf, ok := only("scale", TypeDecimal); ok {
		row.scale, _ = p.integer(kf, 0)
	}
	if kf, ok := only("precision", TypeDecimal); ok {
		if row.precision, ok = p.integer(kf, 1); ok && row.scale > row.precision {
			p.errf(kf.v, "precision %d is smaller than scale %d", row.precision, row.scale)
		}
	}
	if kf, ok := only("json_as", TypeDecimal, TypeInteger); ok {
		switch s, _ := p.str(kf); s {
		case "number":
		case "string":
			row.asString = true
		default:
			p.errf(kf.v, "json_as must be number or string, not %q", s)
		}
	}
	if kf, ok := only("pattern", TypeString, TypeDecimal, TypeInteger, TypeDatetime); ok {
		row.pattern = p.pattern(kf)
	}
	if kf, ok := only("values", TypeEnum); ok {
		row.enum = p.enum(kf, row.dir)
	} else if row.Type == TypeEnum && kf.k == nil {
		p.errf(n, "type enum needs values: {xml value: json value, …}")
	}
	if kf, ok := only("trim", TypeString); ok {
		row.noTrim = !p.boolean(kf)
	}
	p.rowDatetime(n, f, row, only)
}

// pattern compiles pattern: (RE2 syntax) anchored at both ends: the whole
// value must match, whether or not the file writes ^ and $.
func (p *parser) pattern(f kv) *regexp.Regexp {
	s, ok := p.str(f)
	if !ok {
		return nil
	}
	if _, err := regexp.Compile(s); err != nil { // reported on the pattern as written
		p.errf(f.v, "pattern %q is not a valid regular expression: %s", s, strings.TrimPrefix(err.Error(), "error parsing regexp: "))
		return nil
	}
	re, err := regexp.Compile(`^(?:` + s + `)$`)
	if err != nil { // "a)(b" compiles alone, not wrapped
		p.errf(f.v, "pattern %q is not a valid regular expression: unbalanced parentheses", s)
		return nil
	}
	return re
}

func (p *parser) rowDatetime(n *yaml.Node, f map[string]kv, row *Row, only func(string, ...Type) (kv, bool)) {
	compile := func(key string, kf kv) *dtLayout {
		s, ok := p.str(kf)
		if !ok {
			return nil
		}
		l, err := compileDatetime(s)
		if err != nil {
			p.errf(kf.v, "%s %q: %v", key, s, err)
		}
		return l
	}
	format := func(key string) *dtLayout {
		kf, ok := only(key, TypeDatetime)
		if !ok {
			return nil
		}
		return compile(key, kf)
	}
	// xml_format: one pattern, or a list whose first entry is canonical
	// (written on output) and all of which are accepted on input.
	if kf, ok := only("xml_format", TypeDatetime); ok {
		if kf.v.Kind != yaml.SequenceNode {
			row.xmlFmt = compile("xml_format", kf)
		} else if len(kf.v.Content) == 0 {
			p.errf(kf.v, "xml_format must be a pattern or a non-empty list of patterns (the first is canonical)")
		} else {
			seen := map[string]int{}
			for i, item := range kf.v.Content {
				item = resolve(item)
				if line, dup := seen[item.Value]; dup {
					p.errf(item, "xml_format %q repeats line %d", item.Value, line)
					continue
				}
				seen[item.Value] = item.Line
				l := compile("xml_format", kv{kf.k, item})
				if i == 0 {
					row.xmlFmt = l
				} else if l != nil {
					row.xmlAlts = append(row.xmlAlts, l)
				}
			}
		}
	}
	row.jsonFmt = format("json_format")
	if kf, ok := only("timezone", TypeDatetime); ok {
		if name, ok := p.str(kf); ok {
			zone, err := loadZone(name)
			if err != nil {
				p.errf(kf.v, "%v", err)
			}
			row.zone = zone
		}
	}
	if row.Type != TypeDatetime {
		return
	}
	if _, ok := f["xml_format"]; !ok {
		p.errf(n, "type datetime needs xml_format: (e.g. \"yyyy-MM-dd HH:mm:ss\" or RFC3339)")
	}
	if _, ok := f["json_format"]; !ok {
		row.jsonFmt = &dtLayout{pattern: rfc3339Keyword, rfc3339: true}
	}
}

// rowOptions reads required, pii, omit_empty.
func (p *parser) rowOptions(f map[string]kv, row *Row) {
	if kf, ok := f["required"]; ok {
		row.Required = p.boolean(kf)
	}
	if kf, ok := f["omit_empty"]; ok {
		row.omitEmpty = p.boolean(kf)
		if row.dir == xmlToJSON {
			p.errf(kf.k, "omit_empty: applies only to rows that produce XML (reply: and body:); absent values are always left out of JSON")
		}
	}
	if kf, ok := f["required_if"]; ok {
		p.rowRequiredIf(kf, row)
	}
	if kf, ok := f["allow_empty"]; ok {
		row.noEmpty = !p.boolean(kf)
		if row.dir != xmlToJSON {
			p.errf(kf.k, "allow_empty: applies only to request rows (an element present but empty)")
		}
	}
	if kf, ok := f["pii"]; ok {
		if s, ok := p.str(kf); ok {
			row.PII = PII(s)
			if !row.PII.Valid() {
				p.errf(kf.v, "unknown pii %q (want %s)", s, pii.KindNames)
			}
		}
	}
	if _, ok := f["default"]; ok && row.Required {
		p.errf(f["default"].k, "default: and required: true cannot be combined (a default is never missing)")
	}
	if _, ok := f["const"]; ok && row.Required {
		p.errf(f["required"].k, "required: has no effect on a const: row")
	}
	if _, ok := f["const"]; ok {
		if _, ok := f["default"]; ok {
			p.errf(f["default"].k, "default: has no effect on a const: row")
		}
	}
}

// rowRequiredIf reads required_if: {xml: other element, equals: value or
// [values]}: the row is required when the other row of the same list
// produced one of the values (the element text, e.g. "true" for a boolean,
// the code for an enum); or {xml: other element, present: true|false}:
// required when the other row produced a value (true) or none (false). Rows producing XML only: a reply or callback that
// breaks it is refused before it is signed.
func (p *parser) rowRequiredIf(f kv, row *Row) {
	if row.dir == xmlToJSON {
		p.errf(f.k, "required_if: applies only to rows that produce XML (reply: and body:)")
		return
	}
	if row.Required {
		p.errf(f.k, "required_if: and required: true cannot be combined (the row is always required)")
		return
	}
	c := p.fields(f.v, "required_if", requiredIfKeys)
	if c == nil {
		return
	}
	xf, ok := c["xml"]
	if !ok {
		p.errf(f.v, "required_if needs xml: (the element whose value makes this row required)")
		return
	}
	path, segs := p.xmlPath(xf)
	if segs == nil {
		return
	}
	ef, ok := c["equals"]
	pf, hasPresent := c["present"]
	switch {
	case ok && hasPresent:
		p.errf(pf.k, "required_if takes equals: or present:, not both")
		return
	case hasPresent:
		row.reqIfPath, row.reqPresence, row.reqPresent = path, true, p.boolean(pf)
		return
	case !ok:
		p.errf(f.v, "required_if needs equals: (a value or a list of values of %s) or present: true|false", path)
		return
	}
	var vals []string
	if ef.v.Kind == yaml.SequenceNode {
		for _, item := range ef.v.Content {
			if s, ok := p.value(kv{ef.k, resolve(item)}); ok {
				vals = append(vals, s)
			}
		}
		if len(ef.v.Content) == 0 {
			p.errf(ef.v, "equals: must not be an empty list")
		}
	} else if s, ok := p.value(ef); ok {
		vals = append(vals, s)
	}
	row.reqIfPath, row.reqVals = path, vals
}

// rowRepeat reads repeat: and fields:.
func (p *parser) rowRepeat(f map[string]kv, row *Row) {
	rf, hasRepeat := f["repeat"]
	ff, hasFields := f["fields"]
	if hasFields && !hasRepeat {
		p.errf(ff.k, "fields: needs repeat: {min: …, max: …}")
		return
	}
	if !hasRepeat {
		return
	}
	for _, k := range []string{"const", "var", "default"} {
		if kf, ok := f[k]; ok {
			p.errf(kf.k, "%s: cannot be used on a repeated row", k)
		}
	}
	if row.Required {
		p.errf(f["required"].k, "required: does not apply to a repeated row; use repeat: {min: 1, …}")
	}
	if kf, ok := f["required_if"]; ok {
		p.errf(kf.k, "required_if: does not apply to a repeated row")
	}
	r := p.fields(rf.v, "repeat", repeatKeys)
	if r == nil {
		return
	}
	if kf, ok := r["min"]; ok {
		row.Min, _ = p.integer(kf, 0)
	}
	kf, ok := r["max"]
	if !ok {
		p.errf(rf.v, "repeat needs max: (the most items accepted)")
		return
	}
	if row.Max, ok = p.integer(kf, 1); ok && row.Min > row.Max {
		p.errf(rf.v, "repeat min %d is greater than max %d", row.Min, row.Max)
	}
	if len(row.src) == 0 {
		return // reported as a missing source
	}
	if hasFields {
		row.Fields = p.rules(ff, row.dir, "")
	}
}

// rowConstDefault converts const and default once, through the same checks
// as a source value, so a bad one fails at load and execution only copies.
func (p *parser) rowConstDefault(f map[string]kv, row *Row) {
	convert := func(key string) (string, bool) {
		kf, ok := f[key]
		if !ok {
			return "", false
		}
		text, ok := p.value(kf)
		if !ok {
			return "", false
		}
		var out string
		var fe *FieldError
		if row.dir == xmlToJSON {
			var b []byte
			b, fe = row.appendFromXML(nil, text)
			out = string(b)
		} else {
			out, fe = row.textFromJSON(text)
		}
		if fe != nil {
			p.errf(kf.v, "%s %q is not valid for this row: %s", key, text, fe.Detail)
			return "", false
		}
		return out, true
	}
	row.constOut, row.hasConst = convert("const")
	row.defaultOut, row.hasDefault = convert("default")
}

// enumMap is an enum's value map, compiled both ways.
type enumMap struct {
	toJSON      map[string]string // xml code → JSON fragment
	fromString  map[string]string // JSON string → xml code
	fromNumber  map[string]string // JSON number literal → xml code
	fromBool    map[bool]string
	allowedXML  string // "1, 2, 3"
	allowedJSON string // "electronic, paper, special"
}

// fromJSON finds the code of a JSON value. A value of another kind with the
// same text also matches (a core may send 1 for "1"), so vars and consts,
// which are text, work for every enum.
func (m *enumMap) fromJSON(v any) (string, bool) {
	var text string
	switch x := v.(type) {
	case string:
		text = x
	case json.Number:
		text = string(x)
	case bool:
		if code, ok := m.fromBool[x]; ok {
			return code, true
		}
		text = strconv.FormatBool(x)
	default:
		return "", false
	}
	if code, ok := m.fromString[text]; ok {
		return code, true
	}
	if code, ok := m.fromNumber[text]; ok {
		return code, true
	}
	if text == "true" || text == "false" {
		code, ok := m.fromBool[text == "true"]
		return code, ok
	}
	return "", false
}

// enum compiles values: {xml code: json value}. JSON values keep their YAML
// kind: strings stay strings, true/false become booleans, numbers numbers.
func (p *parser) enum(f kv, dir direction) *enumMap {
	n := f.v
	if n.Kind != yaml.MappingNode || len(n.Content) == 0 {
		p.errf(n, "values must be a mapping of xml value to json value, e.g. {\"1\": electronic}")
		return nil
	}
	m := &enumMap{toJSON: map[string]string{}, fromString: map[string]string{},
		fromNumber: map[string]string{}, fromBool: map[bool]string{}}
	var xmlList, jsonList []string
	seen := map[string]string{} // JSON fragment → first code, for one-to-one checks
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), resolve(n.Content[i+1])
		if k.Kind != yaml.ScalarNode || k.Tag == "!!null" || k.Value == "" {
			p.errf(k, "enum xml value must be a non-empty single value")
			continue
		}
		code := k.Value
		if _, dup := m.toJSON[code]; dup {
			p.errf(k, "duplicate enum value %q", code)
			continue
		}
		frag, ok := p.enumJSON(v)
		if !ok {
			continue
		}
		if prev, dup := seen[frag]; dup {
			if dir == jsonToXML {
				p.errf(v, "enum maps both %q and %q to %s; rows that produce XML need a one-to-one map", prev, code, frag)
			}
		} else {
			seen[frag] = code
			switch v.Tag {
			case "!!bool":
				m.fromBool[frag == "true"] = code
			case "!!int", "!!float":
				m.fromNumber[v.Value] = code
			default:
				m.fromString[v.Value] = code
			}
		}
		m.toJSON[code] = frag
		xmlList = append(xmlList, code)
		jsonList = append(jsonList, v.Value)
	}
	// Messages list the codes in code order (0, 1 / 1, 2, 3), not file order.
	idx := make([]int, len(xmlList))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int { return compareCodes(xmlList[a], xmlList[b]) })
	var xs, js []string
	for _, i := range idx {
		xs, js = append(xs, xmlList[i]), append(js, jsonList[i])
	}
	m.allowedXML = strings.Join(xs, ", ")
	m.allowedJSON = strings.Join(js, ", ")
	return m
}

// compareCodes orders numeric codes by value, others as text.
func compareCodes(a, b string) int {
	x, errA := strconv.Atoi(a)
	y, errB := strconv.Atoi(b)
	if errA == nil && errB == nil {
		return x - y
	}
	return strings.Compare(a, b)
}

// enumJSON turns an enum's JSON value into its JSON fragment.
func (p *parser) enumJSON(v *yaml.Node) (string, bool) {
	if v.Kind != yaml.ScalarNode {
		p.errf(v, "enum json value must be a single value")
		return "", false
	}
	switch v.Tag {
	case "!!str":
		return string(appendJSONString(nil, v.Value)), true
	case "!!bool":
		var b bool
		if err := v.Decode(&b); err != nil {
			p.errf(v, "enum json value %q is not true or false", v.Value)
			return "", false
		}
		return strconv.FormatBool(b), true
	case "!!int", "!!float":
		if _, ok := parseDecimal(v.Value); ok {
			return v.Value, true
		}
		p.errf(v, "enum json value %q is not a plain JSON number (quote it to keep it a string)", v.Value)
		return "", false
	}
	p.errf(v, "enum json value %q must be a string, number, true or false", v.Value)
	return "", false
}

// layout builds the output tree from the rows' target paths: first
// appearance decides order, rows sharing a prefix share one parent. Two rows
// with the same target, or a value where other rows need an object, fail.
func (p *parser) layout(rows []*Row, dir direction) []*outNode {
	what, sep := "json", "."
	if dir == jsonToXML {
		what, sep = "xml", "/"
	}
	var roots []*outNode
	for i, row := range rows {
		level := &roots
		for j, seg := range row.tgt {
			last := j == len(row.tgt)-1
			var node *outNode
			for _, k := range *level {
				if k.name == seg {
					node = k
					break
				}
			}
			switch {
			case node == nil:
				node = &outNode{name: seg, row: -1, line: row.Line}
				if dir == xmlToJSON {
					node.key = append(appendJSONString(nil, seg), ':')
				}
				if last {
					node.row = i
				}
				*level = append(*level, node)
			case last && node.row >= 0:
				p.errAt(row.Line, "duplicate %s path %q (also at line %d)", what, joinPath(row.tgt, sep), node.line)
				return roots
			case last:
				p.errAt(row.Line, "%s path %q is also a parent of other rows (line %d)", what, joinPath(row.tgt, sep), node.line)
				return roots
			case node.row >= 0:
				p.errAt(row.Line, "%s path %q goes inside %q, which holds the value of line %d", what, joinPath(row.tgt, sep), joinPath(row.tgt[:j+1], sep), node.line)
				return roots
			}
			level = &node.kids
		}
	}
	return roots
}

// PII is the kind of personal data a row carries; values of such rows are
// never quoted in messages and are masked by the project's one policy
// (internal/pii: PII.Mask).
type PII = pii.Kind

// PII kinds a row may name.
const (
	PIIName    = pii.Name
	PIIMobile  = pii.Mobile
	PIIID      = pii.ID
	PIIBank    = pii.Bank
	PIIEmail   = pii.Email
	PIIAddress = pii.Address
)

// patternSource is the pattern as the file wrote it.
func (r *Row) patternSource() string {
	s := r.pattern.String()
	return s[len(`^(?:`) : len(s)-len(`)$`)]
}
