package mapping_test

import (
	"errors"
	"testing"

	"github.com/caddy-gongbao/gongbao/caddymodule/mapping"
)

// TestParseRowErrors: each problem in a request row is reported as
// exactly "file:line: message". Request rows start on line 7 (fileHead).
func TestParseRowErrors(t *testing.T) {
	cases := []struct{ name, rows, want string }{
		{"unknown key with suggestion",
			"  - {xml: a, json: a, type: string, requried: true}\n",
			`t.yaml:7: unknown key "requried" in row (did you mean "required"?)`},
		{"unknown key",
			"  - xml: a\n    json: a\n    type: string\n    colour: red\n",
			`t.yaml:10: unknown key "colour" in row`},
		{"unknown type",
			"  - {xml: a, json: a, type: string}\n  - xml: b\n    json: b\n    type: decmial\n",
			`t.yaml:10: unknown type "decmial" (want string, decimal, integer, boolean, datetime or enum)`},
		{"missing type",
			"  - {xml: a, json: a}\n",
			`t.yaml:7: row needs type: (string, decimal, integer, boolean, datetime or enum)`},
		{"missing json",
			"  - {xml: a, type: string}\n",
			`t.yaml:7: row needs json: (the JSON path it fills)`},
		{"missing source",
			"  - {json: a, type: string}\n",
			`t.yaml:7: row needs a source: xml:, const: or var:`},
		{"const and xml",
			"  - xml: a\n    json: a\n    const: x\n    type: string\n",
			`t.yaml:9: xml: and const: cannot be combined (a row has one source)`},
		{"var and const",
			"  - {json: a, const: x, var: now, type: string}\n",
			`t.yaml:7: const: and var: cannot be combined (a row has one source)`},
		{"row is not a mapping",
			"  - applicantInfo/name\n",
			`t.yaml:7: each row is a mapping (xml:, json:, type: …)`},
		{"duplicate key in a row",
			"  - xml: a\n    json: a\n    type: string\n    json: b\n",
			`t.yaml:10: duplicate key "json" (first at line 8)`},
		{"bad xml path",
			"  - {xml: a//b, json: a, type: string}\n",
			`t.yaml:7: xml path "a//b" has an empty segment`},
		{"bad element name",
			"  - {xml: \"a/b c\", json: a, type: string}\n",
			`t.yaml:7: xml path "a/b c": "b c" is not a valid element name`},
		{"bad json path",
			"  - {xml: a, json: a..b, type: string}\n",
			`t.yaml:7: json path "a..b" has an empty segment`},
		{"scale on a string",
			"  - xml: a\n    json: a\n    type: string\n    scale: 2\n",
			`t.yaml:10: scale: applies only to type decimal, not string`},
		{"max_length on a decimal",
			"  - {xml: a, json: a, type: decimal, max_length: 5}\n",
			`t.yaml:7: max_length: applies only to type string, not decimal`},
		{"max_length zero",
			"  - {xml: a, json: a, type: string, max_length: 0}\n",
			`t.yaml:7: max_length must be a whole number of at least 1, not "0"`},
		{"scale not a number",
			"  - {xml: a, json: a, type: decimal, scale: two}\n",
			`t.yaml:7: scale must be a whole number of at least 0, not "two"`},
		{"precision smaller than scale",
			"  - {xml: a, json: a, type: decimal, scale: 4, precision: 3}\n",
			`t.yaml:7: precision 3 is smaller than scale 4`},
		{"json_as unknown",
			"  - {xml: a, json: a, type: decimal, json_as: float}\n",
			`t.yaml:7: json_as must be number or string, not "float"`},
		{"json_as on a string",
			"  - {xml: a, json: a, type: string, json_as: number}\n",
			`t.yaml:7: json_as: applies only to type decimal or integer, not string`},
		{"required not a boolean",
			"  - {xml: a, json: a, type: string, required: yes}\n",
			`t.yaml:7: required must be true or false, not "yes"`},
		{"bad datetime pattern",
			"  - {xml: a, json: a, type: datetime, xml_format: \"yyyy-MM-dd hh:mm\"}\n",
			`t.yaml:7: xml_format "yyyy-MM-dd hh:mm": bad datetime pattern: unsupported letters "hh" (use yyyy MM dd HH mm ss SSS, 'quoted' text, or RFC3339)`},
		{"datetime pattern without a date",
			"  - {xml: a, json: a, type: datetime, xml_format: \"HH:mm\"}\n",
			`t.yaml:7: xml_format "HH:mm": bad datetime pattern: needs yyyy, MM and dd`},
		{"datetime pattern unterminated quote",
			"  - {xml: a, json: a, type: datetime, xml_format: \"yyyy-MM-dd'T\"}\n",
			`t.yaml:7: xml_format "yyyy-MM-dd'T": bad datetime pattern: unterminated quote`},
		{"datetime without xml_format",
			"  - {xml: a, json: a, type: datetime}\n",
			`t.yaml:7: type datetime needs xml_format: (e.g. "yyyy-MM-dd HH:mm:ss" or RFC3339)`},
		{"xml_format on a string",
			"  - {xml: a, json: a, type: string, xml_format: yyyy}\n",
			`t.yaml:7: xml_format: applies only to type datetime, not string`},
		{"unknown timezone",
			"  - {xml: a, json: a, type: datetime, xml_format: RFC3339, timezone: Mars/Olympus}\n",
			`t.yaml:7: unknown timezone "Mars/Olympus" (use an IANA name such as Asia/Shanghai or an offset such as +08:00)`},
		{"enum without values",
			"  - {xml: a, json: a, type: enum}\n",
			`t.yaml:7: type enum needs values: {xml value: json value, …}`},
		{"enum values not a mapping",
			"  - {xml: a, json: a, type: enum, values: [1, 2]}\n",
			`t.yaml:7: values must be a mapping of xml value to json value, e.g. {"1": electronic}`},
		{"enum duplicate code",
			"  - xml: a\n    json: a\n    type: enum\n    values:\n      \"1\": x\n      1: y\n",
			`t.yaml:12: duplicate enum value "1"`},
		{"enum null value",
			"  - {xml: a, json: a, type: enum, values: {\"1\": ~}}\n",
			`t.yaml:7: enum json value "~" must be a string, number, true or false`},
		{"enum hex number",
			"  - {xml: a, json: a, type: enum, values: {\"1\": 0x1F}}\n",
			`t.yaml:7: enum json value "0x1F" is not a plain JSON number (quote it to keep it a string)`},
		{"values on a string",
			"  - {xml: a, json: a, type: string, values: {\"1\": x}}\n",
			`t.yaml:7: values: applies only to type enum, not string`},
		{"repeat min greater than max",
			"  - {xml: a/b, json: a, type: string, repeat: {min: 3, max: 2}}\n",
			`t.yaml:7: repeat min 3 is greater than max 2`},
		{"repeat without max",
			"  - {xml: a/b, json: a, type: string, repeat: {min: 1}}\n",
			`t.yaml:7: repeat needs max: (the most items accepted)`},
		{"repeat unknown key",
			"  - {xml: a/b, json: a, type: string, repeat: {max: 2, each: 1}}\n",
			`t.yaml:7: unknown key "each" in repeat`},
		{"repeat with required",
			"  - {xml: a/b, json: a, type: string, required: true, repeat: {max: 2}}\n",
			`t.yaml:7: required: does not apply to a repeated row; use repeat: {min: 1, …}`},
		{"repeat with default",
			"  - {xml: a/b, json: a, type: string, default: x, repeat: {max: 2}}\n",
			`t.yaml:7: default: cannot be used on a repeated row`},
		{"fields without repeat",
			"  - xml: items/item\n    json: items\n    fields:\n      - {xml: c, json: c, type: string}\n",
			`t.yaml:9: fields: needs repeat: {min: …, max: …}`},
		{"fields with type",
			"  - xml: items/item\n    json: items\n    type: string\n    repeat: {max: 2}\n    fields:\n      - {xml: c, json: c, type: string}\n",
			`t.yaml:9: type: does not apply to a row with fields: (each item is an object)`},
		{"error inside fields",
			"  - xml: items/item\n    json: items\n    repeat: {max: 2}\n    fields:\n      - {xml: c, json: c, type: strin}\n",
			`t.yaml:11: unknown type "strin" (want string, decimal, integer, boolean, datetime or enum)`},
		{"default with required",
			"  - {xml: a, json: a, type: string, required: true, default: x}\n",
			`t.yaml:7: default: and required: true cannot be combined (a default is never missing)`},
		{"required on const",
			"  - {json: a, const: x, type: string, required: true}\n",
			`t.yaml:7: required: has no effect on a const: row`},
		{"default invalid for its type",
			"  - {xml: a, json: a, type: decimal, scale: 2, default: abc}\n",
			`t.yaml:7: default "abc" is not valid for this row: not a valid decimal`},
		{"const invalid for its enum",
			"  - {json: a, const: \"9\", type: enum, values: {\"1\": x}}\n",
			`t.yaml:7: const "9" is not valid for this row: value not allowed (allowed: 1)`},
		{"const null",
			"  - {json: a, const: null, type: string}\n",
			`t.yaml:7: const must be a single value (quote it: "" for empty)`},
		{"omit_empty on a request row",
			"  - {xml: a, json: a, type: string, omit_empty: true}\n",
			`t.yaml:7: omit_empty: applies only to rows that produce XML (reply: and body:); absent values are always left out of JSON`},
		{"unknown pii",
			"  - {xml: a, json: a, type: string, pii: phone}\n",
			`t.yaml:7: unknown pii "phone" (want name, mobile, id, bank, email or address)`},
		{"aliases on a const row",
			"  - {json: a, const: x, aliases: [b], type: string}\n",
			`t.yaml:7: aliases need a source path (xml:)`},
		{"alias repeats the canonical name",
			"  - {xml: a/b, aliases: [b], json: a, type: string}\n",
			`t.yaml:7: alias "b" repeats a spelling already accepted`},
		{"bad var name",
			"  - {json: a, var: Now, type: string}\n",
			`t.yaml:7: var "Now" must be a lower-case name such as now or insurance_code`},
		{"duplicate json target",
			"  - {xml: a, json: applicant.name, type: string}\n  - {xml: b, json: x, type: string}\n  - {xml: c, json: applicant.name, type: string}\n",
			`t.yaml:9: duplicate json path "applicant.name" (also at line 7)`},
		{"json value where an object is needed",
			"  - {xml: a, json: applicant, type: string}\n  - {xml: b, json: applicant.name, type: string}\n",
			`t.yaml:8: json path "applicant.name" goes inside "applicant", which holds the value of line 7`},
		{"json object where a value is needed",
			"  - {xml: b, json: applicant.name, type: string}\n  - {xml: a, json: applicant, type: string}\n",
			`t.yaml:8: json path "applicant" is also a parent of other rows (line 7)`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := mapping.ParseFile("t.yaml", []byte(fileHead+tc.rows))
			if err == nil {
				t.Fatalf("loaded: %+v", m)
			}
			if err.Error() != tc.want {
				t.Errorf("error\n got %s\nwant %s", err, tc.want)
			}
			var le *mapping.LoadError
			if !errors.As(err, &le) || !errors.Is(err, mapping.ErrInvalidMapping) {
				t.Errorf("error %T does not wrap *LoadError and ErrInvalidMapping", err)
			}
		})
	}
}

// TestParseReplyRowErrors covers checks that only apply to rows producing
// XML. Reply rows start on line 7.
func TestParseReplyRowErrors(t *testing.T) {
	head := "message: testRequest\nreply_root: testResponse\ncore: {method: POST, path: /v1/test}\nrequest:\n  - {xml: a, json: a, type: string}\nreply:\n"
	cases := []struct{ name, rows, want string }{
		{"missing xml",
			"  - {json: accepted, type: boolean}\n",
			`t.yaml:7: row needs xml: (the element it fills)`},
		{"missing source",
			"  - {xml: resultFlag, type: boolean}\n",
			`t.yaml:7: row needs a source: json:, const: or var:`},
		{"enum must be one-to-one",
			"  - {xml: t, json: t, type: enum, values: {\"1\": paper, \"2\": paper}}\n",
			`t.yaml:7: enum maps both "1" and "2" to "paper"; rows that produce XML need a one-to-one map`},
		{"duplicate xml target",
			"  - {xml: correctInfo/dateInfo/a, json: a, type: string}\n  - {xml: correctInfo/dateInfo/a, json: b, type: string}\n",
			`t.yaml:8: duplicate xml path "correctInfo/dateInfo/a" (also at line 7)`},
		{"json alias with a dot",
			"  - {xml: a, json: a.b, aliases: [x.b], type: string}\n",
			`t.yaml:7: alias "x.b" replaces the last path segment only; it cannot contain '.'`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := mapping.ParseFile("t.yaml", []byte(head+tc.rows))
			if err == nil || err.Error() != tc.want {
				t.Errorf("error\n got %v\nwant %s", err, tc.want)
			}
		})
	}
	// The same duplicated enum is fine where JSON is produced.
	if _, err := mapping.ParseFile("t.yaml", []byte(fileHead+"  - {xml: t, json: t, type: enum, values: {\"1\": paper, \"2\": paper}}\n")); err != nil {
		t.Errorf("many-to-one enum on a request row: %v", err)
	}
}

// TestParseFileErrors covers the file-level keys.
func TestParseFileErrors(t *testing.T) {
	const rows = "request:\n  - {xml: a, json: a, type: string}\nreply:\n  - {xml: b, json: b, type: string}\n"
	cases := []struct{ name, src, want string }{
		{"empty file", "", `t.yaml: empty mapping file`},
		{"comments only", "# nothing\n", `t.yaml: empty mapping file`},
		{"yaml syntax", "message: a\n  reply: b\n", `t.yaml:2: mapping values are not allowed in this context`},
		{"two documents", "message: a\n---\nmessage: b\n", `t.yaml:2: only one YAML document per file`},
		{"not a mapping", "- a\n- b\n", `t.yaml:1: a mapping file is a YAML mapping starting with message: (inbound) or event: (outbound)`},
		{"neither message nor event", "reply: x\n" + rows, `t.yaml:1: missing message: (inbound request root) or event: (outbound event name)`},
		{"both message and event", "message: a\nevent: b\n", `t.yaml:1: a mapping file has message: (inbound) or event: (outbound), not both`},
		{"missing reply root", "message: aRequest\ncore: {method: POST, path: /x}\n" + rows,
			`t.yaml:1: missing reply_root: (reply root element, e.g. insureResponse)`},
		{"missing reply rows", "message: aRequest\nreply_root: aResponse\ncore: {method: POST, path: /x}\nrequest: []\n",
			`t.yaml:1: missing reply: rows (core JSON → reply XML)`},
		{"missing request", "message: aRequest\nreply_root: aResponse\ncore: {method: POST, path: /x}\nreply: []\n",
			`t.yaml:1: missing request: rows (platform XML → core JSON)`},
		{"missing core", "message: aRequest\nreply_root: aResponse\n" + rows,
			`t.yaml:1: missing core: (method and path of the core call)`},
		{"missing core method", "message: aRequest\nreply_root: aResponse\ncore: {path: /x}\n" + rows,
			`t.yaml:3: missing core.method (GET, POST, PUT, PATCH or DELETE)`},
		{"bad core method", "message: aRequest\nreply_root: aResponse\ncore:\n  method: post\n  path: /x\n" + rows,
			`t.yaml:4: core.method "post" must be one of GET, POST, PUT, PATCH, DELETE`},
		{"bad core path", "message: aRequest\nreply_root: aResponse\ncore: {method: POST, path: v1/x}\n" + rows,
			`t.yaml:3: core.path "v1/x" must start with / and contain no spaces`},
		{"unknown core key", "message: aRequest\nreply_root: aResponse\ncore: {method: POST, path: /x, timeout: 5s}\n" + rows,
			`t.yaml:3: unknown key "timeout" in core`},
		{"bad root name", "message: \"a b\"\nreply_root: aResponse\ncore: {method: POST, path: /x}\n" + rows,
			`t.yaml:1: message "a b" is not a valid element name`},
		{"unknown top key", "message: aRequest\nreply_root: aResponse\ncore: {method: POST, path: /x}\nrequets: []\n" + rows,
			`t.yaml:4: unknown key "requets" in inbound mapping (did you mean "request"?)`},
		{"outbound key in an inbound file", "message: aRequest\nreply_root: aResponse\ncore: {method: POST, path: /x}\nbody: []\n" + rows,
			`t.yaml:4: unknown key "body" in inbound mapping`},
		{"duplicate top key", "message: aRequest\nreply_root: aResponse\ncore: {method: POST, path: /x}\n" + rows + "message: bRequest\n",
			`t.yaml:8: duplicate key "message" (first at line 1)`},
		{"duplicate reply rows", "message: aRequest\nreply_root: aResponse\ncore: {method: POST, path: /x}\n" + rows + "reply: []\n",
			`t.yaml:8: duplicate reply rows (first at line 6)`},
		{"rows not a list", "message: aRequest\nreply_root: aResponse\ncore: {method: POST, path: /x}\nrequest: {xml: a}\nreply: []\n",
			`t.yaml:4: request: must be a list of rows`},
		{"bad file timezone", "message: aRequest\nreply_root: aResponse\ntimezone: Nowhere/Land\ncore: {method: POST, path: /x}\n" + rows,
			`t.yaml:3: unknown timezone "Nowhere/Land" (use an IANA name such as Asia/Shanghai or an offset such as +08:00)`},
		{"outbound bad event name", "event: Policy_Paid\ncallback: qRequest\nreply_root: qResponse\nbody: []\n",
			`t.yaml:1: event "Policy_Paid" must be lower-case words joined by -, e.g. policy-paid`},
		{"outbound reply rows", "event: paid\ncallback: qRequest\nreply_root: qResponse\nbody: []\nreply:\n  - {xml: a, json: a, type: string}\n",
			`t.yaml:5: an outbound mapping has no reply rows; rows go under body:, the platform reply root under reply_root:`},
		{"outbound missing body and callback", "event: paid\nreply_root: qResponse\n",
			"t.yaml:1: missing callback: (callback request root element, e.g. queryPolicyRequest)\nt.yaml:1: missing body: rows (event JSON → callback XML)"},
		{"outbound bad order_key", "event: paid\ncallback: qRequest\nreply_root: qResponse\norder_key: policy..no\nbody: []\n",
			`t.yaml:4: order_key path "policy..no" has an empty segment`},
		{"inbound key in an outbound file", "event: paid\ncallback: qRequest\nreply_root: qResponse\nbody: []\ncore: {method: POST, path: /x}\n",
			`t.yaml:5: unknown key "core" in outbound mapping`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := mapping.ParseFile("t.yaml", []byte(tc.src))
			if err == nil || err.Error() != tc.want {
				t.Errorf("error\n got %v\nwant %s", err, tc.want)
			}
		})
	}
}

// TestParseReportsAllProblemsInLineOrder: one load shows every mistake.
func TestParseReportsAllProblemsInLineOrder(t *testing.T) {
	src := fileHead +
		"  - {xml: a, json: a, type: decmial}\n" + // 7
		"  - {xml: b, json: b, type: string, scale: 2}\n" + // 8
		"  - {xml: c, json: c, type: enum}\n" // 9
	_, err := mapping.ParseFile("insure.yaml", []byte(src))
	want := `insure.yaml:7: unknown type "decmial" (want string, decimal, integer, boolean, datetime or enum)
insure.yaml:8: scale: applies only to type decimal, not string
insure.yaml:9: type enum needs values: {xml value: json value, …}`
	if err == nil || err.Error() != want {
		t.Errorf("error\n got %v\nwant %s", err, want)
	}
}

// TestParseCompiles checks what a good file compiles to.
func TestParseCompiles(t *testing.T) {
	src := `# a comment
message: insureRequest
reply_root: insureResponse
core:
  method: POST
  path: /v1/proposals
request:
  - xml: applicantInfo/name
    json: applicant.name
    type: string
    required: true
    max_length: 20
    pii: name
  - &row {xml: policyno, aliases: [polycyno], json: policyNo, type: string}
reply:
  - {xml: resultFlag, json: accepted, type: boolean, required: true}
`
	m, err := mapping.ParseFile("insure.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	in := m.Inbound
	if in.File != "insure.yaml" || in.Message != "insureRequest" || in.ReplyRoot != "insureResponse" ||
		in.Method != "POST" || in.Path != "/v1/proposals" {
		t.Errorf("inbound %+v", in)
	}
	rows := in.Request.Rows()
	if len(rows) != 2 || len(in.Reply.Rows()) != 1 {
		t.Fatalf("%d request rows, %d reply rows", len(rows), len(in.Reply.Rows()))
	}
	r := rows[0]
	if r.Line != 8 || r.XML != "applicantInfo/name" || r.JSON != "applicant.name" || r.Type != mapping.TypeString ||
		!r.Required || r.PII != mapping.PIIName || r.Max != 0 || r.Fields != nil {
		t.Errorf("row %+v", r)
	}
	if rows[1].Line != 14 {
		t.Errorf("second row line %d", rows[1].Line)
	}
}

func TestPIIMask(t *testing.T) {
	cases := []struct {
		kind mapping.PII
		in   string
		want string
	}{
		{mapping.PIIName, "陈大文", "陈**"},
		{mapping.PIIName, "陈", "*"},
		{mapping.PIIMobile, "13888888888", "138****8888"},
		{mapping.PIIID, "91330106MA2GL8XK3X", "913***********XK3X"},
		{mapping.PIIBank, "1202020209000012345", "***************2345"},
		{mapping.PIIEmail, "finance@hongda.example.com", "f***@hongda.example.com"},
		{mapping.PIIAddress, "浙江省杭州市滨江区江南大道 588 号", "浙江省杭州市***"},
		{mapping.PIIMobile, "123", "***"},
		{"", "visible", "visible"},
	}
	for _, tc := range cases {
		if got := tc.kind.Mask(tc.in); got != tc.want {
			t.Errorf("%s.Mask(%q) = %q, want %q", tc.kind, tc.in, got, tc.want)
		}
	}
}

// TestParseStructureErrors: ignore:, unknown_elements: and pattern:
// problems are reported as "file:line: what is wrong". Rows start on
// line 7; a top-level key after them is on the line after the rows.
func TestParseStructureErrors(t *testing.T) {
	cases := []struct{ name, rows, want string }{
		{"ignore entry is a mapped field",
			"  - {xml: a/b, json: b, type: string}\nignore: [x, a/b]\n",
			`t.yaml:8: ignore entry "a/b" is also a mapped field (line 7)`},
		{"ignore entry holds mapped fields",
			"  - {xml: a/b, json: b, type: string}\nignore:\n  - a\n",
			`t.yaml:9: ignore entry "a" holds mapped fields (line 7); list the extra elements inside it instead`},
		{"ignore entry inside a mapped value",
			"  - {xml: a/b, json: b, type: string}\nignore:\n  - a/b/c\n",
			`t.yaml:9: ignore entry "a/b/c" goes inside "a/b", a mapped value (line 7)`},
		{"ignore entry is an alias",
			"  - {xml: a, aliases: [b], json: a, type: string}\nignore: [b]\n",
			`t.yaml:8: ignore entry "b" is also a mapped field (line 7)`},
		{"ignore entry repeated",
			"  - {xml: a, json: a, type: string}\nignore:\n  - x/y\n  - x/y\n",
			`t.yaml:10: ignore entry "x/y" repeats line 9`},
		{"ignore entries contradict each other",
			"  - {xml: a, json: a, type: string}\nignore: [x, x/y]\n",
			`t.yaml:8: xml path "x/y" goes inside "x", which is a value at line 8`},
		{"ignore not a list",
			"  - {xml: a, json: a, type: string}\nignore: ProjectType\n",
			`t.yaml:8: ignore: must be a list of element paths under the body, e.g. [ProjectType, dateInfo/startDate]`},
		{"ignore bad path",
			"  - {xml: a, json: a, type: string}\nignore: [dateInfo//startDate]\n",
			`t.yaml:8: xml path "dateInfo//startDate" has an empty segment`},
		{"ignore entry without xml",
			"  - {xml: a, json: a, type: string}\nignore:\n  - {pattern: \"x\"}\n",
			`t.yaml:9: ignore entry needs xml: (the element path under the body)`},
		{"ignore entry with a bad pattern",
			"  - {xml: a, json: a, type: string}\nignore:\n  - {xml: b, pattern: \"(\"}\n",
			`t.yaml:9: pattern "(" is not a valid regular expression: missing closing ): ` + "`(`"},
		{"ignore entry with an unknown key",
			"  - {xml: a, json: a, type: string}\nignore:\n  - {xml: b, type: string}\n",
			`t.yaml:9: unknown key "type" in ignore entry`},
		{"unknown_elements value",
			"  - {xml: a, json: a, type: string}\nunknown_elements: drop\n",
			`t.yaml:8: unknown_elements must be refuse or ignore, not "drop"`},
		{"a value that other rows go inside",
			"  - {xml: a, json: a, type: string}\n  - {xml: a/b, json: b, type: string}\n",
			`t.yaml:8: xml path "a/b" goes inside "a", which is a value at line 7`},
		{"a container that a later row reads as a value",
			"  - {xml: a/b, json: b, type: string}\n  - {xml: a, json: a, type: string}\n",
			`t.yaml:8: xml path "a" is a value, but line 7 puts elements inside it`},
		{"one spelling for two fields",
			"  - {xml: x, aliases: [y], json: x, type: string}\n  - {xml: y, json: y, type: string}\n",
			`t.yaml:8: element "y" is both "y" and "x" (line 7); one spelling can name one field only`},
		{"bad pattern",
			"  - {xml: a, json: a, type: string, pattern: \"[0-9\"}\n",
			`t.yaml:7: pattern "[0-9" is not a valid regular expression: missing closing ]: ` + "`[0-9`"},
		{"pattern that only compiles unanchored",
			"  - {xml: a, json: a, type: string, pattern: \"a)(b\"}\n",
			`t.yaml:7: pattern "a)(b" is not a valid regular expression: unexpected ): ` + "`a)(b`"},
		{"pattern on a boolean",
			"  - {xml: a, json: a, type: boolean, pattern: \"true\"}\n",
			`t.yaml:7: pattern: applies only to type string or decimal or integer or datetime, not boolean`},
		{"default that does not match the pattern",
			"  - {xml: a, json: a, type: string, pattern: \"[0-9]+\", default: \"x\"}\n",
			`t.yaml:7: default "x" is not valid for this row: does not match the row's pattern`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := mapping.ParseFile("t.yaml", []byte(fileHead+tc.rows))
			if err == nil {
				t.Fatalf("loaded: %+v", m)
			}
			if err.Error() != tc.want {
				t.Errorf("error\n got %s\nwant %s", err, tc.want)
			}
			if !errors.Is(err, mapping.ErrInvalidMapping) {
				t.Errorf("error %T does not wrap ErrInvalidMapping", err)
			}
		})
	}
}
