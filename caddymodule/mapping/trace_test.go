package mapping_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddy-gongbao/gongbao/caddymodule/mapping"
	"github.com/caddy-gongbao/gongbao/caddymodule/protocol"
)

// lineRow is one lineage entry in a comparable form.
type lineRow struct {
	source, alias, input string
	origin               mapping.Origin
	target, value        string
	written              bool
	items, depth         int
	err                  string // Err.Path, "" when none
}

func flatten(ls []mapping.Lineage) []lineRow {
	out := make([]lineRow, len(ls))
	for i, l := range ls {
		out[i] = lineRow{l.Source, l.Alias, l.Input, l.Origin, l.Target, l.Value, l.Written, l.Items, l.Depth, ""}
		if l.Err != nil {
			out[i].err = l.Err.Path
		}
	}
	return out
}

func diffLineage(t *testing.T, got []mapping.Lineage, want []lineRow) {
	t.Helper()
	g := flatten(got)
	for i := 0; i < max(len(g), len(want)); i++ {
		switch {
		case i >= len(g):
			t.Errorf("entry %d missing, want %+v", i, want[i])
		case i >= len(want):
			t.Errorf("entry %d extra: %+v", i, g[i])
		case g[i] != want[i]:
			t.Errorf("entry %d\n got  %+v\n want %+v", i, g[i], want[i])
		}
	}
}

const traceRequestRows = `  - {xml: policyno, aliases: [polycyno], json: policyNo, type: string, required: true}
  - {xml: applicant/name, json: applicant.name, type: string, max_length: 20, pii: name}
  - {xml: applicant/mobile, json: applicant.mobile, type: string, default: "", pii: mobile}
  - {xml: InvoiceType, json: invoice.type, type: enum, values: {"1": electronic, "2": paper}}
  - {xml: dateInfo/stratDate, aliases: [startDate], json: period.start, type: datetime, xml_format: "yyyy-MM-dd HH:mm:ss"}
  - {xml: fee, json: fee, type: decimal, scale: 2, precision: 10}
  - {json: channel, const: gongbao, type: string}
  - {json: receivedAt, var: now, type: string}
  - {json: code, var: insurance_code, type: string}
  - xml: items/item
    json: items
    repeat: {max: 5}
    fields:
      - {xml: code, json: code, type: string}
      - xml: parts/part
        json: parts
        repeat: {max: 3}
        type: integer
      - xml: subs/sub
        json: subs
        repeat: {max: 3}
        fields:
          - {xml: n, json: n, type: integer}
  - {xml: tags/tag, json: tags, repeat: {max: 3}, type: string}
`

const traceRequestXML = `<polycyno>BD1</polycyno><applicant><name>陈大文</name><mobile/></applicant>
<InvoiceType>2</InvoiceType><dateInfo><startDate>2019-05-01 00:00:00</startDate></dateInfo><fee>20.5</fee>
<items><item><code>A</code><parts><part>1</part><part/><part>3</part></parts><subs><sub><n>7</n></sub></subs></item>
<item/><item><code>B</code></item></items>`

// TestTraceXMLToJSONLineage covers every kind of row: alias, default,
// enum, datetime, const, var (set and unset), nested repeats with empty
// items skipped, and an absent repeat.
func TestTraceXMLToJSONLineage(t *testing.T) {
	r := requestRules(t, traceRequestRows)
	doc := body(t, traceRequestXML)
	vars := mapping.Vars{"now": "2019-04-01 10:00:00"}
	out, lin, err := r.TraceXMLToJSON(doc, vars)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := r.XMLToJSON(doc, vars)
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != string(plain) {
		t.Errorf("traced output differs:\n got  %s\n want %s", out, plain)
	}
	src := mapping.OriginSource
	diffLineage(t, lin, []lineRow{
		{"polycyno", "polycyno", "BD1", src, "policyNo", `"BD1"`, true, 0, 0, ""},
		{"applicant/name", "", "陈大文", src, "applicant.name", `"陈大文"`, true, 0, 0, ""},
		{"applicant/mobile", "", "", mapping.OriginDefault, "applicant.mobile", `""`, true, 0, 0, ""},
		{"InvoiceType", "", "2", src, "invoice.type", `"paper"`, true, 0, 0, ""},
		{"dateInfo/startDate", "startDate", "2019-05-01 00:00:00", src, "period.start", `"2019-05-01T00:00:00+08:00"`, true, 0, 0, ""},
		{"fee", "", "20.5", src, "fee", `20.50`, true, 0, 0, ""},
		{"", "", "", mapping.OriginConst, "channel", `"gongbao"`, true, 0, 0, ""},
		{"", "", "2019-04-01 10:00:00", mapping.OriginVar, "receivedAt", `"2019-04-01 10:00:00"`, true, 0, 0, ""},
		{"", "", "", mapping.OriginAbsent, "code", "", false, 0, 0, ""},
		{"items/item", "", "", src, "items", "", true, 2, 0, ""},
		{"items/item[1]/code", "", "A", src, "items[0].code", `"A"`, true, 0, 1, ""},
		{"items/item[1]/parts/part", "", "", src, "items[0].parts", "", true, 2, 1, ""},
		{"items/item[1]/parts/part[1]", "", "1", src, "items[0].parts[0]", "1", true, 0, 2, ""},
		{"items/item[1]/parts/part[2]", "", "3", src, "items[0].parts[1]", "3", true, 0, 2, ""},
		{"items/item[1]/subs/sub", "", "", src, "items[0].subs", "", true, 1, 1, ""},
		{"items/item[1]/subs/sub[1]/n", "", "7", src, "items[0].subs[0].n", "7", true, 0, 2, ""},
		{"items/item[2]/code", "", "B", src, "items[1].code", `"B"`, true, 0, 1, ""},
		{"items/item[2]/parts/part", "", "", mapping.OriginAbsent, "items[1].parts", "", false, 0, 1, ""},
		{"items/item[2]/subs/sub", "", "", mapping.OriginAbsent, "items[1].subs", "", false, 0, 1, ""},
		{"tags/tag", "", "", mapping.OriginAbsent, "tags", "", false, 0, 0, ""},
	})
}

// TestTraceXMLToJSONErrors: the run stops at the first failure; the entry
// that failed carries the executor's own error, with its full path.
func TestTraceXMLToJSONErrors(t *testing.T) {
	r := requestRules(t, traceRequestRows)
	cases := []struct {
		name, xml string
		entries   int    // lineage entries recorded
		failed    string // Source of the entry carrying Err
		path, msg string
	}{
		{"missing required", "<applicant><name>x</name></applicant>", 1, "policyno",
			"policyno", "缺少必填字段 policyno"},
		{"too long, value not quoted (pii)", "<policyno>1</policyno><applicant><name>" + strings.Repeat("长", 21) + "</name></applicant>", 2, "applicant/name",
			"applicant/name", "字段 applicant/name 超长(最多 20 个字符, 实际 21)"},
		{"enum", "<policyno>1</policyno><InvoiceType>9</InvoiceType>", 4, "InvoiceType",
			"InvoiceType", `字段 InvoiceType 取值无效 (允许: 1, 2)`},
		{"item row", "<policyno>1</policyno><items><item><code>A</code></item><item><subs><sub><n>x</n></sub></subs></item></items>", 17, "items/item[2]/subs/sub[1]/n",
			"items/item[2]/subs/sub[1]/n", `字段 items/item[2]/subs/sub[1]/n 不是有效的整数`},
		{"scalar item", "<policyno>1</policyno><items><item><parts><part>1</part><part>y</part></parts></item></items>", 14, "items/item[1]/parts/part[2]",
			"items/item[1]/parts/part[2]", `字段 items/item[1]/parts/part[2] 不是有效的整数`},
		{"count", "<policyno>1</policyno><tags><tag>a</tag><tag>b</tag><tag>c</tag><tag>d</tag></tags>", 11, "tags/tag",
			"tags/tag", "字段 tags/tag 数量过多(最多 3 个, 实际 4)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			doc := body(t, tc.xml)
			out, lin, err := r.TraceXMLToJSON(doc, nil)
			_, plainErr := r.XMLToJSON(doc, nil)
			fe := asFieldError(t, err)
			if out != nil || plainErr == nil || plainErr.Error() != err.Error() {
				t.Errorf("traced %v, plain %v", err, plainErr)
			}
			if fe.Path != tc.path || fe.Message() != tc.msg {
				t.Errorf("error %q %q", fe.Path, fe.Message())
			}
			if len(lin) != tc.entries {
				t.Errorf("%d entries, want %d: %+v", len(lin), tc.entries, flatten(lin))
			}
			var carriers []string
			for _, l := range lin {
				if l.Err != nil {
					if l.Err != fe {
						t.Errorf("%s carries another error", l.Source)
					}
					carriers = append(carriers, l.Source)
				}
			}
			if len(carriers) != 1 || carriers[0] != tc.failed {
				t.Errorf("error carried by %q, want [%s]", carriers, tc.failed)
			}
		})
	}
}

const traceReplyRows = `  - {xml: responseTime, var: now, type: string}
  - {xml: resultFlag, json: accepted, type: boolean, required: true}
  - {xml: resultMessage, json: message, aliases: [msg], type: string, required: true}
  - {xml: proposalNo, json: proposalNo, type: string, omit_empty: true}
  - {xml: insured/mobile, json: insured.mobile, type: string, pii: mobile}
  - {xml: payTime, json: paidAt, type: datetime, xml_format: "yyyy-MM-dd HH:mm:ss"}
  - {xml: InvoiceType, json: type, type: enum, values: {"1": electronic, "2": paper}}
  - {xml: channel, const: GB, type: string}
  - xml: items/item
    json: items
    repeat: {max: 5}
    fields:
      - {xml: code, json: code, type: string}
      - {xml: amount, json: amount, type: decimal, scale: 2}
  - {xml: tags/tag, json: tags, repeat: {max: 3}, type: string}
`

func TestTraceJSONToXMLLineage(t *testing.T) {
	r := replyRules(t, traceReplyRows)
	data := []byte(`{"accepted":true,"msg":"投保成功","insured":{"mobile":"13858012345"},"paidAt":"2019-04-01T10:05:30+08:00",
		"type":"paper","items":[null,{"code":"A","amount":1e1},{"code":"B"}],"tags":["x",null,"","y"]}`)
	vars := mapping.Vars{"now": "2019-04-01 10:00:00"}
	els, lin, err := r.TraceJSONToXML(data, vars)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := r.JSONToXML(data, vars)
	if err != nil {
		t.Fatal(err)
	}
	if render(els) != render(plain) {
		t.Errorf("traced output differs:\n got  %s\n want %s", render(els), render(plain))
	}
	src := mapping.OriginSource
	diffLineage(t, lin, []lineRow{
		{"", "", "2019-04-01 10:00:00", mapping.OriginVar, "responseTime", "2019-04-01 10:00:00", true, 0, 0, ""},
		{"accepted", "", "true", src, "resultFlag", "true", true, 0, 0, ""},
		{"msg", "msg", "投保成功", src, "resultMessage", "投保成功", true, 0, 0, ""},
		{"proposalNo", "", "", mapping.OriginAbsent, "proposalNo", "", false, 0, 0, ""},
		{"insured.mobile", "", "13858012345", src, "insured/mobile", "13858012345", true, 0, 0, ""},
		{"paidAt", "", "2019-04-01T10:05:30+08:00", src, "payTime", "2019-04-01 10:05:30", true, 0, 0, ""},
		{"type", "", "paper", src, "InvoiceType", "2", true, 0, 0, ""},
		{"", "", "", mapping.OriginConst, "channel", "GB", true, 0, 0, ""},
		{"items", "", "", src, "items/item", "", true, 2, 0, ""},
		{"items[1].code", "", "A", src, "items/item[1]/code", "A", true, 0, 1, ""},
		{"items[1].amount", "", "1e1", src, "items/item[1]/amount", "10.00", true, 0, 1, ""},
		{"items[2].code", "", "B", src, "items/item[2]/code", "B", true, 0, 1, ""},
		{"items[2].amount", "", "", mapping.OriginAbsent, "items/item[2]/amount", "", true, 0, 1, ""},
		{"tags", "", "", src, "tags/tag", "", true, 2, 0, ""},
		{"tags[0]", "", "x", src, "tags/tag[1]", "x", true, 0, 1, ""},
		{"tags[3]", "", "y", src, "tags/tag[2]", "y", true, 0, 1, ""},
	})
}

func TestTraceJSONToXMLErrors(t *testing.T) {
	r := replyRules(t, traceReplyRows)
	cases := []struct {
		name, json string
		failed     string
		path, msg  string
	}{
		{"missing", `{"message":"x"}`, "accepted", "accepted", "核心系统应答缺少字段 accepted"},
		{"item", `{"accepted":true,"message":"m","items":[{"code":"A"},null,{"amount":"x"}]}`, "items[2].amount",
			"items[2].amount", `核心系统应答字段 items[2].amount 不是有效的金额`},
		{"item not an object", `{"accepted":true,"message":"m","items":[{"code":"A"},7]}`, "items",
			"items[1]", "核心系统应答字段 items[1] 类型错误(应为 对象)"},
		{"scalar item", `{"accepted":true,"message":"m","tags":["a",{}]}`, "tags[1]",
			"tags[1]", "核心系统应答字段 tags[1] 类型错误(应为 字符串)"},
		{"not an array", `{"accepted":true,"message":"m","tags":"a"}`, "tags",
			"tags", "核心系统应答字段 tags 类型错误(应为 数组)"},
		{"count", `{"accepted":true,"message":"m","tags":["a","b","c","d"]}`, "tags",
			"tags", "核心系统应答字段 tags 数量过多(最多 3 个, 实际 4)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, lin, err := r.TraceJSONToXML([]byte(tc.json), nil)
			_, plainErr := r.JSONToXML([]byte(tc.json), nil)
			fe := asFieldError(t, err)
			if plainErr == nil || plainErr.Error() != err.Error() {
				t.Errorf("traced %v, plain %v", err, plainErr)
			}
			if fe.Path != tc.path || fe.Message() != tc.msg {
				t.Errorf("error %q %q", fe.Path, fe.Message())
			}
			var carriers []string
			for _, l := range lin {
				if l.Err != nil {
					carriers = append(carriers, l.Source)
				}
			}
			if len(carriers) != 1 || carriers[0] != tc.failed {
				t.Errorf("error carried by %q, want [%s]; %+v", carriers, tc.failed, flatten(lin))
			}
			for _, l := range lin {
				if l.Err != nil && l.Err != fe {
					t.Errorf("%s carries another error", l.Source)
				}
			}
		})
	}
	if _, lin, err := r.TraceJSONToXML([]byte(`[1]`), nil); !errors.Is(err, mapping.ErrInvalidJSON) || lin != nil {
		t.Errorf("not an object: %v %v", err, lin)
	}
}

func TestTraceWrongDirection(t *testing.T) {
	req, rep := requestRules(t, traceRequestRows), replyRules(t, traceReplyRows)
	if _, _, err := req.TraceJSONToXML([]byte(`{}`), nil); !errors.Is(err, mapping.ErrWrongDirection) {
		t.Errorf("request rules traced JSON→XML: %v", err)
	}
	if _, _, err := rep.TraceXMLToJSON(body(t, ""), nil); !errors.Is(err, mapping.ErrWrongDirection) {
		t.Errorf("reply rules traced XML→JSON: %v", err)
	}
	var none *mapping.Rules
	if _, _, err := none.TraceXMLToJSON(nil, nil); !errors.Is(err, mapping.ErrWrongDirection) {
		t.Errorf("nil rules: %v", err)
	}
}

func TestLineageMasked(t *testing.T) {
	r := requestRules(t, traceRequestRows)
	_, lin, err := r.TraceXMLToJSON(body(t, traceRequestXML), nil)
	if err != nil {
		t.Fatal(err)
	}
	name := lin[1].Masked()
	if name.Input != "陈**" || name.Value != `"陈**"` {
		t.Errorf("masked name: %q %q", name.Input, name.Value)
	}
	if lin[1].Input != "陈大文" {
		t.Error("Masked changed the original")
	}
	if p := lin[0].Masked(); p != lin[0] {
		t.Errorf("a row without pii was masked: %+v", p)
	}
	rep := replyRules(t, traceReplyRows)
	_, lin, err = rep.TraceJSONToXML([]byte(`{"accepted":true,"message":"m","insured":{"mobile":"13858012345"}}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if m := lin[4].Masked(); m.Input != "138****2345" || m.Value != "138****2345" {
		t.Errorf("masked mobile: %q %q", m.Input, m.Value)
	}
}

func TestRowRule(t *testing.T) {
	r := requestRules(t, traceRequestRows+
		"  - {xml: t, json: t, type: datetime, xml_format: yyyyMMdd, json_format: \"yyyy-MM-dd\", timezone: UTC}\n"+
		"  - {xml: n, json: n, type: integer, json_as: string, default: 0}\n")
	rep := replyRules(t, traceReplyRows+"  - {xml: e, json: e, type: string, default: \"\"}\n")
	rules := map[string]string{}
	for _, rows := range [][]*mapping.Row{r.Rows(), r.Rows()[9].Fields.Rows(), rep.Rows()} {
		for _, row := range rows {
			rules[row.XML+"|"+row.JSON] = row.Rule()
		}
	}
	want := map[string]string{
		"policyno|policyNo":                 "string, required, aliases [polycyno]",
		"applicant/name|applicant.name":     "string, max_length 20, pii name",
		"applicant/mobile|applicant.mobile": `string, default "", pii mobile`,
		"InvoiceType|invoice.type":          `enum, values {1: "electronic", 2: "paper"}`,
		"dateInfo/stratDate|period.start":   `datetime, xml_format "yyyy-MM-dd HH:mm:ss", json_format "RFC3339", aliases [startDate]`,
		"fee|fee":                           "decimal, scale 2, precision 10",
		"|channel":                          `string, const "gongbao"`,
		"|receivedAt":                       "string, var now",
		"items/item|items":                  "repeat 0..5, fields",
		"parts/part|parts":                  "repeat 0..3, integer",
		"t|t":                               `datetime, xml_format "yyyyMMdd", json_format "yyyy-MM-dd", timezone UTC`,
		"n|n":                               "integer, json_as string, default \"0\"",
		"proposalNo|proposalNo":             "string, omit_empty",
		"channel|":                          `string, const "GB"`,
		"e|e":                               `string, default ""`,
		"resultMessage|message":             "string, required, aliases [msg]",
	}
	for k, w := range want {
		if rules[k] != w {
			t.Errorf("%s: Rule() = %q, want %q", k, rules[k], w)
		}
	}
}

// TestTraceShipped runs every sample of testdata/messages through both the
// executor and the tracer: same output, same error, and one lineage entry
// per row (the shipped mappings have no repeats).
func TestTraceShipped(t *testing.T) {
	set := shippedSet(t)
	files, err := filepath.Glob(filepath.Join(messagesDir, "*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no samples: %v", err)
	}
	for _, f := range files {
		name := filepath.Base(f)
		key, _, _ := strings.Cut(name, ".")
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var rules *mapping.Rules
		var got, want string
		var lin []mapping.Lineage
		switch {
		case strings.HasSuffix(name, ".xml"):
			env, err := protocol.Parse(data, protocol.Limits{})
			if err != nil {
				t.Fatal(err)
			}
			rules = set.Inbound[key].Request
			out, l, err := rules.TraceXMLToJSON(env.Body, fixedVars)
			plain, perr := rules.XMLToJSON(env.Body, fixedVars)
			got, want, lin = fmt.Sprint(string(out), err), fmt.Sprint(string(plain), perr), l
		default:
			if in, ok := set.Inbound[key]; ok {
				rules = in.Reply
			} else {
				rules = set.Outbound[key].Body
			}
			els, l, err := rules.TraceJSONToXML(data, fixedVars)
			plain, perr := rules.JSONToXML(data, fixedVars)
			got, want, lin = fmt.Sprint(render(els), err), fmt.Sprint(render(plain), perr), l
		}
		if got != want {
			t.Errorf("%s: traced %s, plain %s", name, got, want)
		}
		if len(lin) != len(rules.Rows()) {
			t.Errorf("%s: %d lineage entries for %d rows", name, len(lin), len(rules.Rows()))
		}
		for i, l := range lin {
			if l.Row != rules.Rows()[i] || l.Err != nil {
				t.Errorf("%s: entry %d is for line %d, err %v", name, i, l.Row.Line, l.Err)
			}
		}
	}
}
