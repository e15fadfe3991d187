package mapping_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/caddy-gongbao/gongbao/caddymodule/mapping"
	"github.com/caddy-gongbao/gongbao/caddymodule/protocol"
)

// TestJSONToXML runs hand-built reply rows on core answers and compares the
// element tree (order included).
func TestJSONToXML(t *testing.T) {
	cases := []struct {
		name string
		rows string
		json string
		vars mapping.Vars
		want string
	}{
		{"reply: var, boolean, strings, omit_empty",
			`  - {xml: responseTime, var: now, type: string, max_length: 20}
  - {xml: resultFlag, json: accepted, type: boolean, required: true}
  - {xml: resultMessage, json: message, type: string, required: true}
  - {xml: proposalNo, json: proposalNo, type: string, omit_empty: true}
  - {xml: yeepayurl, json: paymentUrl, type: string, omit_empty: true}
  - {xml: note, json: note, type: string}
`,
			`{"accepted":false,"message":"保单 X 不存在","extra":{"ignored":[1,2]}}`, mapping.Vars{"now": "2019-04-01 10:00:00"},
			`<responseTime>2019-04-01 10:00:00</responseTime><resultFlag>false</resultFlag><resultMessage>保单 X 不存在</resultMessage><note/>`},
		{"null and blank are absent",
			"  - {xml: a, json: a, type: string, omit_empty: true}\n  - {xml: b, json: b, type: string, omit_empty: true}\n  - {xml: c, json: c, type: string}\n",
			`{"a":null,"b":"","c":"x"}`, nil,
			`<c>x</c>`},
		{"strings keep digits and inner spaces, trimmed; numbers and booleans as text",
			"  - {xml: a, json: a, type: string}\n  - {xml: b, json: b, type: string}\n  - {xml: c, json: c, type: string}\n  - {xml: d, json: d, type: string}\n  - {xml: e, json: e, type: string, trim: false}\n",
			`{"a":"007","b":" x y ","c":12345678901234567890,"d":true,"e":" x "}`, nil,
			`<a>007</a><b>x y</b><c>12345678901234567890</c><d>true</d><e> x </e>`},
		{"booleans from JSON booleans or strings",
			"  - {xml: a, json: a, type: boolean}\n  - {xml: b, json: b, type: boolean}\n",
			`{"a":true,"b":"FALSE"}`, nil,
			`<a>true</a><b>false</b>`},
		{"decimals formatted to scale, exactly",
			"  - {xml: a, json: a, type: decimal, scale: 2}\n  - {xml: b, json: b, type: decimal, scale: 2}\n  - {xml: c, json: c, type: decimal, scale: 2}\n  - {xml: d, json: d, type: decimal, scale: 2}\n  - {xml: e, json: e, type: decimal, scale: 2}\n  - {xml: f, json: f, type: decimal}\n",
			`{"a":20.5,"b":"20.00","c":0.1,"d":1e3,"e":12345678901234567890.01,"f":1.5E-3}`, nil,
			`<a>20.50</a><b>20.00</b><c>0.10</c><d>1000.00</d><e>12345678901234567890.01</e><f>0.0015</f>`},
		{"integers",
			"  - {xml: a, json: a, type: integer}\n  - {xml: b, json: b, type: integer}\n",
			`{"a":30,"b":"007"}`, nil,
			`<a>30</a><b>7</b>`},
		{"datetime RFC3339 to pattern in +08:00",
			"  - {xml: payTime, json: paidAt, type: datetime, xml_format: \"yyyy-MM-dd HH:mm:ss\", json_format: RFC3339}\n  - {xml: utc, json: utc, type: datetime, xml_format: \"yyyy-MM-dd HH:mm:ss\"}\n  - {xml: ms, json: ms, type: datetime, xml_format: \"yyyy-MM-dd HH:mm:ss:SSS\"}\n",
			`{"paidAt":"2019-04-20T15:28:39+08:00","utc":"2019-04-20T15:28:39Z","ms":"2018-05-25T10:25:04.732+08:00"}`, nil,
			`<payTime>2019-04-20 15:28:39</payTime><utc>2019-04-20 23:28:39</utc><ms>2018-05-25 10:25:04:732</ms>`},
		{"datetime var in a pattern",
			"  - {xml: responseTime, var: now, type: datetime, xml_format: \"yyyy-MM-dd HH:mm:ss\"}\n",
			`{}`, mapping.Vars{"now": "2019-04-01T02:00:00Z"},
			`<responseTime>2019-04-01 10:00:00</responseTime>`},
		{"enum reversed",
			"  - {xml: InvoiceType, json: type, type: enum, values: {\"1\": electronic, \"2\": paper, \"3\": special}}\n  - {xml: flag, json: custom, type: enum, values: {\"1\": true, \"0\": false}}\n  - {xml: pay, json: payType, type: enum, values: {\"3\": 3}}\n",
			`{"type":"paper","custom":true,"payType":3}`, nil,
			`<InvoiceType>2</InvoiceType><flag>1</flag><pay>3</pay>`},
		{"const and default",
			"  - {xml: payType, const: \"3\", type: string}\n  - {xml: flag, json: ok, type: boolean, default: false}\n  - {xml: fee, json: fee, type: decimal, scale: 2, default: 0}\n",
			`{}`, nil,
			`<payType>3</payType><flag>false</flag><fee>0.00</fee>`},
		{"json aliases",
			"  - {xml: policyNo, json: policyNo, aliases: [policyNumber], type: string}\n",
			`{"policyNumber":"BD1"}`, nil,
			`<policyNo>BD1</policyNo>`},
		{"nested JSON in, nested elements out, grouped in first-appearance order",
			`  - {xml: isPtextFlag, json: flag, type: string}
  - {xml: correctInfo/dateInfo/stratDate, json: period.start, type: string}
  - {xml: policyno, json: policyNo, type: string}
  - {xml: correctInfo/insuredInfo/name, json: insured.name, type: string}
  - {xml: correctInfo/dateInfo/endDate, json: period.end, type: string}
  - {xml: correctInfo/dateInfo/tender, json: period.days, type: integer}
`,
			`{"flag":"1","period":{"start":"s","end":"e","days":30},"policyNo":"BD1","insured":{"name":"n"}}`, nil,
			`<isPtextFlag>1</isPtextFlag><correctInfo><dateInfo><stratDate>s</stratDate><endDate>e</endDate><tender>30</tender></dateInfo><insuredInfo><name>n</name></insuredInfo></correctInfo><policyno>BD1</policyno>`},
		{"containers whose children are all omitted are omitted",
			"  - {xml: express/name, json: express.company, type: string, omit_empty: true}\n  - {xml: express/no, json: express.trackingNo, type: string, omit_empty: true}\n  - {xml: url, json: downloadUrl, type: string}\n",
			`{"downloadUrl":"https://x.example/a?b=1&c=2"}`, nil,
			`<url>https://x.example/a?b=1&c=2</url>`},
		{"repeated objects and scalars",
			`  - xml: items/item
    json: items
    repeat: {min: 1, max: 3}
    fields:
      - {xml: code, json: code, type: string}
      - {xml: amount, json: money.amount, type: decimal, scale: 2, omit_empty: true}
  - {xml: tags/tag, json: tags, type: string, repeat: {max: 3}}
  - {xml: none/n, json: none, type: string, repeat: {max: 3}}
`,
			`{"items":[{"code":"A","money":{"amount":1.5}},null,{"code":"B"}],"tags":["x",null,"","y"]}`, nil,
			`<items><item><code>A</code><amount>1.50</amount></item><item><code>B</code></item></items><tags><tag>x</tag><tag>y</tag></tags>`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := replyRules(t, tc.rows)
			els, err := r.JSONToXML([]byte(tc.json), tc.vars)
			if err != nil {
				t.Fatalf("JSONToXML: %v", err)
			}
			if got := render(els); got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

// TestJSONToXMLLeafShape: leaves have no Children, containers no Text, so
// protocol.BuildResponse signs exactly the emitted texts.
func TestJSONToXMLLeafShape(t *testing.T) {
	r := replyRules(t, "  - {xml: a/b, json: b, type: string}\n  - {xml: c, json: c, type: string}\n")
	els, err := r.JSONToXML([]byte(`{"b":"1","c":"2"}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []protocol.Element{{Name: "a", Children: []protocol.Element{{Name: "b", Text: "1"}}}, {Name: "c", Text: "2"}}
	if !reflect.DeepEqual(els, want) {
		t.Errorf("got %+v, want %+v", els, want)
	}
	if got := string(protocol.LeafValues(els)); got != "12" {
		t.Errorf("LeafValues = %q", got)
	}
}

func TestJSONToXMLErrors(t *testing.T) {
	cases := []struct {
		name   string
		rules  func(*testing.T, string) *mapping.Rules
		rows   string
		json   string
		vars   mapping.Vars
		reason mapping.Reason
		path   string
		msg    string
	}{
		{"reply field missing", replyRules,
			"  - {xml: resultFlag, json: accepted, type: boolean, required: true}\n",
			`{"message":"x"}`, nil,
			mapping.ReasonMissing, "accepted", "核心系统应答缺少字段 accepted"},
		{"reply field null", replyRules,
			"  - {xml: resultMessage, json: message, type: string, required: true}\n",
			`{"accepted":true,"message":null}`, nil,
			mapping.ReasonMissing, "message", "核心系统应答缺少字段 message"},
		{"event field missing", bodyRules,
			"  - {xml: policyNo, json: policyNo, type: string, required: true}\n",
			`{"eventId":"e"}`, nil,
			mapping.ReasonMissing, "policyNo", "核心系统事件缺少字段 policyNo"},
		{"var missing names the element", bodyRules,
			"  - {xml: insuranceCode, var: insurance_code, type: string, required: true}\n",
			`{}`, nil,
			mapping.ReasonMissing, "insuranceCode", "核心系统事件缺少字段 insuranceCode"},
		{"boolean not a boolean", replyRules,
			"  - {xml: resultFlag, json: accepted, type: boolean}\n",
			`{"accepted":"yes"}`, nil,
			mapping.ReasonInvalid, "accepted", `核心系统应答字段 accepted 不是有效的布尔值(应为 true 或 false)`},
		{"boolean number", replyRules,
			"  - {xml: resultFlag, json: accepted, type: boolean}\n",
			`{"accepted":1}`, nil,
			mapping.ReasonType, "accepted", `核心系统应答字段 accepted 类型错误(应为 布尔值)`},
		{"string given an object", replyRules,
			"  - {xml: resultMessage, json: message, type: string}\n",
			`{"message":{"text":"x"}}`, nil,
			mapping.ReasonType, "message", `核心系统应答字段 message 类型错误(应为 字符串)`},
		{"string too long", bodyRules,
			"  - {xml: resultMessage, json: message, type: string, max_length: 50}\n",
			`{"message":"` + strings.Repeat("退", 51) + `"}`, nil,
			mapping.ReasonTooLong, "message", "核心系统事件字段 message 超长(最多 50 个字符, 实际 51)"},
		{"decimal scale", replyRules,
			"  - {xml: fee, json: fee, type: decimal, scale: 2}\n",
			`{"fee":20.005}`, nil,
			mapping.ReasonScale, "fee", `核心系统应答字段 fee 小数位数过多(最多 2 位)`},
		{"decimal string with exponent", replyRules,
			"  - {xml: fee, json: fee, type: decimal, scale: 2}\n",
			`{"fee":"1e3"}`, nil,
			mapping.ReasonInvalid, "fee", `核心系统应答字段 fee 不是有效的金额`},
		{"integer with fraction", replyRules,
			"  - {xml: days, json: days, type: integer}\n",
			`{"days":1.5}`, nil,
			mapping.ReasonInvalid, "days", `核心系统应答字段 days 不是有效的整数`},
		{"datetime not RFC3339", bodyRules,
			"  - {xml: payTime, json: paidAt, type: datetime, xml_format: \"yyyy-MM-dd HH:mm:ss\"}\n",
			`{"paidAt":"2019-04-01 10:05:30"}`, nil,
			mapping.ReasonInvalid, "paidAt", `核心系统事件字段 paidAt 不是有效的日期时间(格式 RFC3339)`},
		{"enum unknown lists JSON values", replyRules,
			"  - {xml: InvoiceType, json: type, type: enum, values: {\"2\": paper, \"1\": electronic}}\n",
			`{"type":"fax"}`, nil,
			mapping.ReasonEnum, "type", `核心系统应答字段 type 取值无效 (允许: electronic, paper)`},
		{"path through a non-object", replyRules,
			"  - {xml: name, json: express.company, type: string}\n",
			`{"express":"SF"}`, nil,
			mapping.ReasonType, "express", `核心系统应答字段 express 类型错误(应为 对象)`},
		{"repeat not an array", replyRules,
			"  - {xml: tags/tag, json: tags, type: string, repeat: {max: 3}}\n",
			`{"tags":"x"}`, nil,
			mapping.ReasonType, "tags", `核心系统应答字段 tags 类型错误(应为 数组)`},
		{"too many items", replyRules,
			"  - {xml: tags/tag, json: tags, type: string, repeat: {max: 1}}\n",
			`{"tags":["a","b"]}`, nil,
			mapping.ReasonTooMany, "tags", "核心系统应答字段 tags 数量过多(最多 1 个, 实际 2)"},
		{"too few items", replyRules,
			"  - {xml: tags/tag, json: tags, type: string, repeat: {min: 1, max: 2}}\n",
			`{}`, nil,
			mapping.ReasonTooFew, "tags", "核心系统应答字段 tags 数量不足(至少 1 个, 实际 0)"},
		{"error inside an item", replyRules,
			"  - xml: items/item\n    json: items\n    repeat: {max: 3}\n    fields:\n      - {xml: code, json: code, type: string, required: true}\n",
			`{"items":[{"code":"A"},{"name":"x"}]}`, nil,
			mapping.ReasonMissing, "items[1].code", "核心系统应答缺少字段 items[1].code"},
		{"scalar item of the wrong type", replyRules,
			"  - {xml: ns/n, json: ns, type: integer, repeat: {max: 3}}\n",
			`{"ns":[1,"x"]}`, nil,
			mapping.ReasonInvalid, "ns[1]", `核心系统应答字段 ns[1] 不是有效的整数`},
		{"item not an object", replyRules,
			"  - xml: items/item\n    json: items\n    repeat: {max: 3}\n    fields:\n      - {xml: code, json: code, type: string}\n",
			`{"items":["A"]}`, nil,
			mapping.ReasonType, "items[0]", `核心系统应答字段 items[0] 类型错误(应为 对象)`},
		{"first error in row order", replyRules,
			"  - {xml: a, json: a, type: integer}\n  - {xml: b, json: b, type: string, required: true}\n",
			`{"a":"x"}`, nil,
			mapping.ReasonInvalid, "a", `核心系统应答字段 a 不是有效的整数`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.rules(t, tc.rows)
			els, err := r.JSONToXML([]byte(tc.json), tc.vars)
			if err == nil {
				t.Fatalf("accepted: %s", render(els))
			}
			fe := asFieldError(t, err)
			if fe.Reason != tc.reason || fe.Path != tc.path {
				t.Errorf("reason %q path %q, want %q %q", fe.Reason, fe.Path, tc.reason, tc.path)
			}
			if got := fe.Message(); got != tc.msg {
				t.Errorf("message %q\n   want %q", got, tc.msg)
			}
		})
	}
}

func TestJSONToXMLInvalidJSON(t *testing.T) {
	r := replyRules(t, "  - {xml: a, json: a, type: string}\n")
	for _, in := range []string{``, `   `, `not json`, `{"a":`, `[1,2]`, `"x"`, `null`, `{"a":"x"} {"a":"y"}`, `{"a":"x"}]`} {
		if _, err := r.JSONToXML([]byte(in), nil); !errors.Is(err, mapping.ErrInvalidJSON) {
			t.Errorf("%q: error %v, want ErrInvalidJSON", in, err)
		}
	}
	if _, err := r.JSONToXML([]byte(" {\"a\":\"x\"}\n"), nil); err != nil {
		t.Errorf("surrounding whitespace: %v", err)
	}
}

func TestOutboundKeys(t *testing.T) {
	src := "event: policy-paid\ncallback: queryPolicyRequest\nreply_root: queryPolicyResponse\norder_key: policy.no\nevent_id: eventId\nbody:\n  - {xml: policyNo, json: policy.no, type: string}\n"
	m, err := mapping.ParseFile("paid.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	out := m.Outbound
	if out.OrderKey != "policy.no" || out.EventID != "eventId" {
		t.Fatalf("order_key %q event_id %q", out.OrderKey, out.EventID)
	}
	key, id, err := out.Keys([]byte(`{"eventId":"ev-1","policy":{"no":"BD1"}}`))
	if err != nil || key != "BD1" || id != "ev-1" {
		t.Errorf("Keys = %q %q %v", key, id, err)
	}
	key, id, err = out.Keys([]byte(`{"eventId":7}`))
	if err != nil || key != "" || id != "7" {
		t.Errorf("Keys = %q %q %v", key, id, err)
	}
	if _, _, err := out.Keys([]byte(`[]`)); !errors.Is(err, mapping.ErrInvalidJSON) {
		t.Errorf("Keys on an array: %v", err)
	}
}
