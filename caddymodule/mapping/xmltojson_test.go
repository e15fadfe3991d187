package mapping_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/antchfx/xmlquery"

	"github.com/caddy-gongbao/gongbao/caddymodule/mapping"
)

// TestXMLToJSON runs hand-built rows on small XML bodies and compares the
// exact JSON (member order included).
func TestXMLToJSON(t *testing.T) {
	cases := []struct {
		name string
		rows string
		xml  string
		vars mapping.Vars
		want string
	}{
		// strings pass through untouched
		{"identifiers keep leading zeros and trailing X",
			"  - {xml: code, json: code, type: string}\n  - {xml: id, json: id, type: string}\n",
			"<code>007</code><id>91330106MA2GL8XK3X</id>", nil,
			`{"code":"007","id":"91330106MA2GL8XK3X"}`},
		{"string keeps inner spaces, trims outer ones",
			"  - {xml: a, json: a, type: string}\n",
			"<a> 2019-04-01 00:00:00 </a>", nil,
			`{"a":"2019-04-01 00:00:00"}`},
		{"trim: false keeps outer spaces",
			"  - {xml: a, json: a, type: string, trim: false}\n",
			"<a> 2019-04-01 00:00:00 </a>", nil,
			`{"a":" 2019-04-01 00:00:00 "}`},
		{"indented CDATA identifier reaches the core without newlines",
			"  - {xml: a, json: a, type: string, max_length: 8, pattern: \"[0-9]{8}\"}\n",
			"<a>\n      <![CDATA[20190401]]>\n    </a>", nil,
			`{"a":"20190401"}`},
		{"ciphertext and escaping",
			"  - {xml: a, json: a, type: string}\n  - {xml: b, json: b, type: string}\n",
			`<a>gxDNWS8kFkHClnEHUQpTolP8Hu7z0ghgXeedPBvDc7Q=</a><b>"q" \ &lt;t&gt; &amp; x` + "\n\t" + `</b>`, nil,
			`{"a":"gxDNWS8kFkHClnEHUQpTolP8Hu7z0ghgXeedPBvDc7Q=","b":"\"q\" \\ <t> & x"}`},
		{"CDATA is text",
			"  - {xml: a, json: a, type: string}\n",
			"<a><![CDATA[中标人 <不签订合同>]]></a>", nil,
			`{"a":"中标人 <不签订合同>"}`},
		{"text around CDATA is joined",
			"  - {xml: a, json: a, type: string}\n",
			"<a>x <![CDATA[<y>]]> z</a>", nil,
			`{"a":"x <y> z"}`},
		{"absent optional and empty elements are left out",
			"  - {xml: a, json: a, type: string}\n  - {xml: b, json: b, type: string}\n  - {xml: c, json: c, type: string}\n",
			"<b/><c>  </c>", nil,
			`{}`},
		{"unknown elements pass when the file says unknown_elements: ignore",
			"  - {xml: a, json: a, type: string}\nunknown_elements: ignore\n",
			"<ProjectType>1</ProjectType><a>x</a><dateInfo><startDate>y<z/></startDate></dateInfo>", nil,
			`{"a":"x"}`},
		{"declared extras are signed and dropped",
			"  - {xml: a/b, json: b, type: string}\nignore: [ProjectType, dateInfo/startDate, dateInfo/endDate, a/extra]\n",
			"<ProjectType>1</ProjectType><a><b>x</b><extra>e</extra></a><dateInfo><startDate>y</startDate></dateInfo>", nil,
			`{"b":"x"}`},
		{"max_length counts characters not bytes",
			"  - {xml: a, json: a, type: string, max_length: 4}\n",
			"<a>陈大文好</a>", nil,
			`{"a":"陈大文好"}`},

		// aliases, default, const, var
		{"alias accepted",
			"  - {xml: policyno, aliases: [polycyno, policyNo], json: policyNo, type: string}\n",
			"<polycyno>BD1</polycyno>", nil,
			`{"policyNo":"BD1"}`},
		{"alias under a parent",
			"  - {xml: correctInfo/dateInfo/stratDate, aliases: [startDate], json: start, type: string}\n",
			"<correctInfo><dateInfo><startDate>s</startDate></dateInfo></correctInfo>", nil,
			`{"start":"s"}`},
		{"default when absent or empty",
			"  - {xml: mobile, json: mobile, type: string, default: \"\"}\n  - {xml: n, json: n, type: integer, default: 0}\n  - {xml: d, json: d, type: decimal, scale: 2, default: \"0\"}\n",
			"<mobile/>", nil,
			`{"mobile":"","n":0,"d":0.00}`},
		{"const of each kind",
			"  - {json: channel, const: gongbao, type: string}\n  - {json: kind, const: \"2\", type: enum, values: {\"1\": electronic, \"2\": paper}}\n  - {json: fee, const: \"5\", type: decimal, scale: 2}\n  - {json: on, const: true, type: boolean}\n",
			"", nil,
			`{"channel":"gongbao","kind":"paper","fee":5.00,"on":true}`},
		{"var",
			"  - {json: receivedAt, var: now, type: string}\n  - {json: insurer, var: insurance_code, type: string}\n  - {json: missing, var: other, type: string}\n",
			"", mapping.Vars{"now": "2019-04-01 10:00:00", "insurance_code": "GB01"},
			`{"receivedAt":"2019-04-01 10:00:00","insurer":"GB01"}`},

		// nesting and grouping
		{"json objects grouped in first-appearance order",
			"  - {xml: n1, json: applicant.name, type: string}\n  - {xml: p, json: policy.no, type: string}\n  - {xml: n2, json: applicant.mobile, type: string}\n  - {xml: t, json: project.tenderee.name, type: string}\n  - {xml: n3, json: applicant.id.number, type: string}\n",
			"<n1>a</n1><p>b</p><n2>c</n2><t>d</t><n3>e</n3>", nil,
			`{"applicant":{"name":"a","mobile":"c","id":{"number":"e"}},"policy":{"no":"b"},"project":{"tenderee":{"name":"d"}}}`},
		{"objects whose members are all absent are left out",
			"  - {xml: a, json: x.a, type: string}\n  - {xml: b, json: y.b, type: string}\n  - {xml: c, json: y.z.c, type: string}\n",
			"<b>1</b>", nil,
			`{"y":{"b":"1"}}`},
		{"xml paths navigate nested elements",
			"  - {xml: correctInfo/dateInfo/tender, json: days, type: integer}\n  - {xml: correctInfo/insuredInfo/name, json: name, type: string}\n",
			"<correctInfo><insuredInfo><name>测试</name></insuredInfo><dateInfo><tender>90</tender></dateInfo></correctInfo>", nil,
			`{"days":90,"name":"测试"}`},

		// decimal exactness
		{"decimal digits exactly",
			"  - {xml: a, json: a, type: decimal, scale: 2}\n  - {xml: b, json: b, type: decimal, scale: 2}\n  - {xml: c, json: c, type: decimal, scale: 2}\n  - {xml: d, json: d, type: decimal, scale: 2}\n  - {xml: e, json: e, type: decimal, scale: 2}\n  - {xml: f, json: f, type: decimal, scale: 2}\n",
			"<a>20.00</a><b>0.1</b><c>40000</c><d>007.50</d><e>-0.00</e><f> 12.3 </f>", nil,
			`{"a":20.00,"b":0.10,"c":40000.00,"d":7.50,"e":0.00,"f":12.30}`},
		{"decimal beyond float64 precision",
			"  - {xml: a, json: a, type: decimal, scale: 2}\n",
			"<a>12345678901234567890.01</a>", nil,
			`{"a":12345678901234567890.01}`},
		{"decimal without scale keeps its digits",
			"  - {xml: a, json: a, type: decimal}\n",
			"<a>3.14159</a>", nil,
			`{"a":3.14159}`},
		{"decimal json_as string",
			"  - {xml: a, json: a, type: decimal, scale: 2, json_as: string}\n",
			"<a>20</a>", nil,
			`{"a":"20.00"}`},
		{"decimal within precision",
			"  - {xml: a, json: a, type: decimal, scale: 2, precision: 10}\n",
			"<a>12345678.99</a>", nil,
			`{"a":12345678.99}`},

		// integer, boolean
		{"integer",
			"  - {xml: a, json: a, type: integer}\n  - {xml: b, json: b, type: integer}\n  - {xml: c, json: c, type: integer, json_as: string}\n  - {xml: d, json: d, type: integer}\n",
			"<a>30</a><b>-0012</b><c>9223372036854775807</c><d>\n 5\n</d>", nil,
			`{"a":30,"b":-12,"c":"9223372036854775807","d":5}`},
		{"boolean",
			"  - {xml: a, json: a, type: boolean}\n  - {xml: b, json: b, type: boolean}\n  - {xml: c, json: c, type: boolean}\n",
			"<a>true</a><b>FALSE</b><c> True </c>", nil,
			`{"a":true,"b":false,"c":true}`},

		// datetime
		{"datetime pattern to RFC3339 in +08:00",
			"  - {xml: s, json: start, type: datetime, xml_format: \"yyyy-MM-dd HH:mm:ss\"}\n  - {xml: e, json: end, type: datetime, xml_format: \"yyyy-MM-dd HH:mm:ss\", json_format: RFC3339}\n",
			"<s>2019-04-01 00:00:00</s><e>2019-04-30 23:59:59</e>", nil,
			`{"start":"2019-04-01T00:00:00+08:00","end":"2019-04-30T23:59:59+08:00"}`},
		{"datetime compact date and milliseconds after a colon",
			"  - {xml: d, json: d, type: datetime, xml_format: yyyyMMdd, json_format: yyyy-MM-dd}\n  - {xml: t, json: t, type: datetime, xml_format: \"yyyy-MM-dd HH:mm:ss:SSS\"}\n",
			"<d>20190329</d><t>2018-05-25 10:25:04:732</t>", nil,
			`{"d":"2019-03-29","t":"2018-05-25T10:25:04.732+08:00"}`},
		{"datetime RFC3339 keeps its own offset; row timezone",
			"  - {xml: a, json: a, type: datetime, xml_format: RFC3339}\n  - {xml: b, json: b, type: datetime, xml_format: \"yyyy-MM-dd'T'HH:mm\", timezone: UTC}\n",
			"<a>2019-04-01T02:00:00Z</a><b>2019-04-01T02:00</b>", nil,
			`{"a":"2019-04-01T02:00:00Z","b":"2019-04-01T02:00:00Z"}`},

		// enum
		{"enum to strings, booleans and numbers",
			"  - {xml: t, json: type, type: enum, values: {\"1\": electronic, \"2\": paper, \"3\": special}}\n  - {xml: f, json: custom, type: enum, values: {\"1\": true, \"0\": false}}\n  - {xml: p, json: payType, type: enum, values: {\"3\": 3}}\n",
			"<t>2</t><f>0</f><p> 3 </p>", nil,
			`{"type":"paper","custom":false,"payType":3}`},

		// repeats
		{"repeated scalars",
			"  - {xml: codes/code, json: codes, type: string, repeat: {max: 5}}\n",
			"<codes><code>a</code><code>b</code><code/></codes>", nil,
			`{"codes":["a","b"]}`},
		{"repeated objects",
			"  - xml: items/item\n    json: items\n    repeat: {min: 1, max: 3}\n    fields:\n      - {xml: code, json: code, type: string}\n      - {xml: amount, json: money.amount, type: decimal, scale: 2}\n  - {xml: after, json: after, type: string}\n",
			"<items><item><code>A</code><amount>1.5</amount></item><item><code>B</code></item></items><after>z</after>", nil,
			`{"items":[{"code":"A","money":{"amount":1.50}},{"code":"B"}],"after":"z"}`},
		{"repeated directly under the body with alias",
			"  - {xml: item, aliases: [itm], json: items, type: integer, repeat: {max: 3}}\n",
			"<itm>1</itm><itm>2</itm>", nil,
			`{"items":[1,2]}`},
		{"no items means absent",
			"  - {xml: items/item, json: items, type: string, repeat: {min: 0, max: 3}}\n",
			"<items/>", nil,
			`{}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := requestRules(t, tc.rows)
			got, err := r.XMLToJSON(body(t, tc.xml), tc.vars)
			if err != nil {
				t.Fatalf("XMLToJSON: %v", err)
			}
			if string(got) != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
			if !json.Valid(got) {
				t.Errorf("not valid JSON: %s", got)
			}
		})
	}
}

// TestXMLToJSONErrors checks each refusal: reason, path and the exact
// Chinese message the platform gets.
func TestXMLToJSONErrors(t *testing.T) {
	cases := []struct {
		name   string
		rows   string
		xml    string
		vars   mapping.Vars
		reason mapping.Reason
		path   string
		msg    string
	}{
		{"required absent",
			"  - {xml: applicantInfo/name, json: name, type: string, required: true}\n",
			"<applicantInfo><mobile>1</mobile></applicantInfo>", nil,
			mapping.ReasonMissing, "applicantInfo/name", "缺少必填字段 applicantInfo/name"},
		{"required parent absent",
			"  - {xml: applicantInfo/name, json: name, type: string, required: true}\n",
			"", nil,
			mapping.ReasonMissing, "applicantInfo/name", "缺少必填字段 applicantInfo/name"},
		{"required empty element",
			"  - {xml: applicantInfo/name, json: name, type: string, required: true}\n",
			"<applicantInfo><name/></applicantInfo>", nil,
			mapping.ReasonMissing, "applicantInfo/name", "缺少必填字段 applicantInfo/name"},
		{"required whitespace only",
			"  - {xml: name, json: name, type: string, required: true}\n",
			"<name>\n  </name>", nil,
			mapping.ReasonMissing, "name", "缺少必填字段 name"},
		{"required var not given",
			"  - {json: insurer, var: insurance_code, type: string, required: true}\n",
			"", mapping.Vars{"now": "x"},
			mapping.ReasonMissing, "insurer", "缺少必填字段 insurer"},
		{"too long",
			"  - {xml: applicantInfo/name, json: name, type: string, max_length: 20}\n",
			"<applicantInfo><name>" + strings.Repeat("长", 25) + "</name></applicantInfo>", nil,
			mapping.ReasonTooLong, "applicantInfo/name", "字段 applicantInfo/name 超长(最多 20 个字符, 实际 25)"},
		{"decimal not a number",
			"  - {xml: policyInfo/sumPremium, json: p, type: decimal, scale: 2}\n",
			"<policyInfo><sumPremium>abc</sumPremium></policyInfo>", nil,
			mapping.ReasonInvalid, "policyInfo/sumPremium", `字段 policyInfo/sumPremium 不是有效的金额`},
		{"decimal exponent refused",
			"  - {xml: p, json: p, type: decimal, scale: 2}\n",
			"<p>1e3</p>", nil,
			mapping.ReasonInvalid, "p", `字段 p 不是有效的金额`},
		{"decimal bare fraction refused",
			"  - {xml: p, json: p, type: decimal}\n",
			"<p>.5</p>", nil,
			mapping.ReasonInvalid, "p", `字段 p 不是有效的金额`},
		{"decimal plus sign refused",
			"  - {xml: p, json: p, type: decimal}\n",
			"<p>+1</p>", nil,
			mapping.ReasonInvalid, "p", `字段 p 不是有效的金额`},
		{"decimal thousands separator refused",
			"  - {xml: p, json: p, type: decimal}\n",
			"<p>1,000.00</p>", nil,
			mapping.ReasonInvalid, "p", `字段 p 不是有效的金额`},
		{"decimal too many fraction digits",
			"  - {xml: p, json: p, type: decimal, scale: 2}\n",
			"<p>20.005</p>", nil,
			mapping.ReasonScale, "p", `字段 p 小数位数过多(最多 2 位)`},
		{"decimal trailing zero beyond scale is still refused",
			"  - {xml: p, json: p, type: decimal, scale: 2}\n",
			"<p>20.000</p>", nil,
			mapping.ReasonScale, "p", `字段 p 小数位数过多(最多 2 位)`},
		{"decimal beyond precision",
			"  - {xml: p, json: p, type: decimal, scale: 2, precision: 10}\n",
			"<p>123456789.00</p>", nil,
			mapping.ReasonPrecision, "p", `字段 p 超出范围(最多 8 位整数)`},
		{"integer with fraction",
			"  - {xml: correctInfo/dateInfo/tender, json: d, type: integer}\n",
			"<correctInfo><dateInfo><tender>1.5</tender></dateInfo></correctInfo>", nil,
			mapping.ReasonInvalid, "correctInfo/dateInfo/tender", `字段 correctInfo/dateInfo/tender 不是有效的整数`},
		{"integer letters",
			"  - {xml: n, json: n, type: integer}\n",
			"<n>abc</n>", nil,
			mapping.ReasonInvalid, "n", `字段 n 不是有效的整数`},
		{"integer overflow",
			"  - {xml: n, json: n, type: integer}\n",
			"<n>9223372036854775808</n>", nil,
			mapping.ReasonInvalid, "n", `字段 n 不是有效的整数`},
		{"boolean 1 is not a boolean",
			"  - {xml: f, json: f, type: boolean}\n",
			"<f>1</f>", nil,
			mapping.ReasonInvalid, "f", `字段 f 不是有效的布尔值(应为 true 或 false)`},
		{"datetime wrong format",
			"  - {xml: correctInfo/dateInfo/stratDate, json: s, type: datetime, xml_format: \"yyyy-MM-dd HH:mm:ss\"}\n",
			"<correctInfo><dateInfo><stratDate>20190329</stratDate></dateInfo></correctInfo>", nil,
			mapping.ReasonInvalid, "correctInfo/dateInfo/stratDate", `字段 correctInfo/dateInfo/stratDate 不是有效的日期时间(格式 yyyy-MM-dd HH:mm:ss)`},
		{"datetime impossible date",
			"  - {xml: s, json: s, type: datetime, xml_format: \"yyyy-MM-dd HH:mm:ss\"}\n",
			"<s>2019-02-30 00:00:00</s>", nil,
			mapping.ReasonInvalid, "s", `字段 s 不是有效的日期时间(格式 yyyy-MM-dd HH:mm:ss)`},
		{"datetime hour 24",
			"  - {xml: s, json: s, type: datetime, xml_format: \"yyyy-MM-dd HH:mm:ss\"}\n",
			"<s>2019-02-01 24:00:00</s>", nil,
			mapping.ReasonInvalid, "s", `字段 s 不是有效的日期时间(格式 yyyy-MM-dd HH:mm:ss)`},
		{"enum unknown value lists the allowed ones in code order",
			"  - {xml: InvoiceType, json: t, type: enum, values: {\"3\": special, \"1\": electronic, \"2\": paper}}\n",
			"<InvoiceType>9</InvoiceType>", nil,
			mapping.ReasonEnum, "InvoiceType", `字段 InvoiceType 取值无效 (允许: 1, 2, 3)`},
		{"too many items",
			"  - {xml: items/item, json: items, type: string, repeat: {max: 2}}\n",
			"<items><item>a</item><item>b</item><item>c</item></items>", nil,
			mapping.ReasonTooMany, "items/item", "字段 items/item 数量过多(最多 2 个, 实际 3)"},
		{"too few items",
			"  - {xml: items/item, json: items, type: string, repeat: {min: 2, max: 5}}\n",
			"<items><item>a</item><item/></items>", nil,
			mapping.ReasonTooFew, "items/item", "字段 items/item 数量不足(至少 2 个, 实际 1)"},
		{"error inside an item names the item",
			"  - xml: items/item\n    json: items\n    repeat: {max: 5}\n    fields:\n      - {xml: code, json: code, type: string, required: true}\n",
			"<items><item><code>A</code></item><item><name>x</name></item></items>", nil,
			mapping.ReasonMissing, "items/item[2]/code", "缺少必填字段 items/item[2]/code"},
		{"error in a scalar item",
			"  - {xml: n, json: n, type: integer, repeat: {max: 5}}\n",
			"<n>1</n><n>x</n>", nil,
			mapping.ReasonInvalid, "n[2]", `字段 n[2] 不是有效的整数`},
		{"duplicate element",
			"  - {xml: policyInfo/sumPremium, json: p, type: decimal}\n",
			"<policyInfo><sumPremium>20.00</sumPremium><sumPremium>0.01</sumPremium></policyInfo>", nil,
			mapping.ReasonDuplicate, "policyInfo/sumPremium", "字段 policyInfo/sumPremium 重复出现"},
		{"duplicate parent",
			"  - {xml: policyInfo/sumPremium, json: p, type: decimal}\n",
			"<policyInfo><sumPremium>20.00</sumPremium></policyInfo><policyInfo/>", nil,
			mapping.ReasonDuplicate, "policyInfo", "字段 policyInfo 重复出现"},
		{"duplicate alias spelling",
			"  - {xml: policyno, aliases: [polycyno], json: p, type: string}\n",
			"<polycyno>a</polycyno><polycyno>b</polycyno>", nil,
			mapping.ReasonDuplicate, "polycyno", "字段 polycyno 重复出现"},
		{"canonical and alias spellings together",
			"  - {xml: cuscCode, aliases: [cusCode], json: taxpayerId, type: string}\n",
			"<cusCode>alias</cusCode><cuscCode>canonical</cuscCode>", nil,
			mapping.ReasonDuplicate, "cuscCode", "字段 cuscCode 重复出现"},
		{"empty canonical beside its alias",
			"  - {xml: a, aliases: [b], json: a, type: string}\n",
			"<a/><b>x</b>", nil,
			mapping.ReasonDuplicate, "a", "字段 a 重复出现"},
		{"repeated items under two spellings",
			"  - {xml: item, aliases: [itm], json: items, type: integer, repeat: {max: 3}}\n",
			"<item>1</item><itm>2</itm>", nil,
			mapping.ReasonDuplicate, "item", "字段 item 重复出现"},
		{"unknown element inside a repeat container",
			"  - {xml: codes/code, json: codes, type: string, repeat: {max: 5}}\n",
			"<codes><code>a</code><other>x</other></codes>", nil,
			mapping.ReasonUnknown, "codes", "未知字段: codes 下含有本接口未定义的元素"},
		{"unknown element inside an item names the item",
			"  - xml: items/item\n    json: items\n    repeat: {max: 5}\n    fields:\n      - {xml: code, json: code, type: string}\n",
			"<items><item><code>A</code></item><item/><item><code>B</code><x/></item></items>", nil,
			mapping.ReasonUnknown, "items/item[2]", "未知字段: items/item[2] 下含有本接口未定义的元素"},
		{"scalar item holding an element",
			"  - {xml: n, json: n, type: integer, repeat: {max: 5}}\n",
			"<n>1</n><n>2<n>3</n></n>", nil,
			mapping.ReasonNested, "n[2]", "字段 n[2] 不是单一值(含有子元素)"},
		{"personal data is not quoted",
			"  - {xml: mobile, json: m, type: enum, pii: mobile, values: {a: b}}\n",
			"<mobile>13888888888</mobile>", nil,
			mapping.ReasonEnum, "mobile", "字段 mobile 取值无效 (允许: a)"},
		{"first error in row order",
			"  - {xml: b, json: b, type: integer}\n  - {xml: a, json: a, type: string, required: true}\n",
			"<a/><b>x</b>", nil,
			mapping.ReasonInvalid, "b", `字段 b 不是有效的整数`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := requestRules(t, tc.rows)
			out, err := r.XMLToJSON(body(t, tc.xml), tc.vars)
			if err == nil {
				t.Fatalf("accepted: %s", out)
			}
			fe := asFieldError(t, err)
			if fe.Reason != tc.reason || fe.Path != tc.path {
				t.Errorf("reason %q path %q, want %q %q", fe.Reason, fe.Path, tc.reason, tc.path)
			}
			if got := fe.Message(); got != tc.msg {
				t.Errorf("message %q\n   want %q", got, tc.msg)
			}
			if !strings.HasPrefix(err.Error(), "mapping: field "+tc.path+": ") {
				t.Errorf("Error() = %q", err.Error())
			}
		})
	}
}

// TestFieldErrorLogSafe: Error() is for logs and never carries the value.
func TestFieldErrorLogSafe(t *testing.T) {
	r := requestRules(t, "  - {xml: p, json: p, type: decimal, scale: 2}\n")
	_, err := r.XMLToJSON(body(t, "<p>secret-ish 13888888888</p>"), nil)
	if err == nil || strings.Contains(err.Error(), "13888888888") {
		t.Fatalf("Error() leaks the value: %v", err)
	}
	if want := "mapping: field p: not a valid decimal"; err.Error() != want {
		t.Errorf("Error() = %q, want %q", err.Error(), want)
	}
}

func TestXMLToJSONNilBody(t *testing.T) {
	r := requestRules(t, "  - {xml: a/b, json: a, type: string}\n  - {json: c, const: x, type: string}\n")
	got, err := r.XMLToJSON(nil, nil)
	if err != nil || string(got) != `{"c":"x"}` {
		t.Fatalf("got %s, %v", got, err)
	}
	r = requestRules(t, "  - {xml: a, json: a, type: string, required: true}\n")
	if _, err := r.XMLToJSON(nil, nil); asFieldError(t, err).Reason != mapping.ReasonMissing {
		t.Fatalf("err %v", err)
	}
}

func TestWrongDirection(t *testing.T) {
	req := requestRules(t, "  - {xml: a, json: a, type: string}\n")
	if _, err := req.JSONToXML([]byte(`{}`), nil); !errors.Is(err, mapping.ErrWrongDirection) {
		t.Errorf("JSONToXML on request rows: %v", err)
	}
	rep := replyRules(t, "  - {xml: a, json: a, type: string}\n")
	if _, err := rep.XMLToJSON(body(t, "<a>x</a>"), nil); !errors.Is(err, mapping.ErrWrongDirection) {
		t.Errorf("XMLToJSON on reply rows: %v", err)
	}
	var nilRules *mapping.Rules
	if _, err := nilRules.XMLToJSON(nil, nil); !errors.Is(err, mapping.ErrWrongDirection) {
		t.Errorf("nil rules: %v", err)
	}
}

// TestXMLToJSONConcurrent shares one Rules between goroutines (run with
// -race): pooled scratch must not leak between calls.
func TestXMLToJSONConcurrent(t *testing.T) {
	r := requestRules(t, "  - {xml: a, json: x.a, type: string}\n  - xml: items/item\n    json: items\n    repeat: {max: 50}\n    fields:\n      - {xml: c, json: c, type: integer}\n")
	const workers = 8
	type job struct {
		doc  *xmlquery.Node
		want string
	}
	jobs := make([]job, workers)
	for g := range jobs {
		var in, want strings.Builder
		in.WriteString("<a>g</a><items>")
		want.WriteString(`{"x":{"a":"g"},"items":[`)
		for i := range g + 1 {
			in.WriteString("<item><c>" + strings.Repeat("1", i+1) + "</c></item>")
			if i > 0 {
				want.WriteByte(',')
			}
			want.WriteString(`{"c":` + strings.Repeat("1", i+1) + `}`)
		}
		in.WriteString("</items>")
		want.WriteString(`]}`)
		jobs[g] = job{body(t, in.String()), want.String()}
	}
	done := make(chan error, workers)
	for _, j := range jobs {
		go func() {
			for range 200 {
				got, err := r.XMLToJSON(j.doc, nil)
				if err != nil || string(got) != j.want {
					done <- fmt.Errorf("got %s, %v; want %s", got, err, j.want)
					return
				}
			}
			done <- nil
		}()
	}
	for range workers {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}
