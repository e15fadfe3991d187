package mapping_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/caddy-gongbao/gongbao/caddymodule/mapping"
	"github.com/caddy-gongbao/gongbao/caddymodule/protocol"
)

// The signature covers the concatenated text of the body, not its markup
// (DESIGN §1.2). These tests take the genuine signed samples, rearrange
// markup so that the signature still verifies, and check that the shipped
// mappings refuse every rearrangement that would change what the core
// gets — with a message that names the field and quotes nothing sent —
// and that the dry run (TraceXMLToJSON) refuses it the same way.

// strictCase is one rearrangement of a sample: edits applied in order,
// each replacing text that occurs exactly once.
type strictCase struct {
	name    string
	sample  string
	edits   [][2]string
	reason  mapping.Reason
	path    string
	message string
	element string // FieldError.Element (unknown elements)
}

func TestStrictStructureRefusals(t *testing.T) {
	cases := []strictCase{
		{name: "value split by a child element (money)", sample: "insureRequest.xml",
			edits:  [][2]string{{"<sumAmount>40000.00</sumAmount>", "<sumAmount>40000<x>.</x>00</sumAmount>"}},
			reason: mapping.ReasonPattern, path: "policyInfo/sumAmount", message: "字段 policyInfo/sumAmount 格式不正确"},
		{name: "value split by a child element (name)", sample: "insureRequest.xml",
			edits:  [][2]string{{"<name>浙江宏达建设工程有限公司</name>", "<name>浙江<x>宏达建设工程</x>有限公司</name>"}},
			reason: mapping.ReasonNested, path: "applicantInfo/name", message: "字段 applicantInfo/name 不是单一值(含有子元素)"},
		{name: "value split by a known element", sample: "insureRequest.xml",
			edits:  [][2]string{{"<name>浙江宏达建设工程有限公司</name>", "<name>浙江<name>宏达建设工程</name>有限公司</name>"}},
			reason: mapping.ReasonNested, path: "applicantInfo/name", message: "字段 applicantInfo/name 不是单一值(含有子元素)"},
		{name: "text moved between adjacent fields", sample: "insureRequest.xml",
			edits: [][2]string{
				{"<mobile>13858012345</mobile>", "<mobile>1385801234</mobile>"},
				{"<idNumber>91330106MA2GL8XK3X</idNumber>", "<idNumber>591330106MA2GL8XK3X</idNumber>"}},
			reason: mapping.ReasonPattern, path: "applicantInfo/mobile", message: "字段 applicantInfo/mobile 格式不正确"},
		{name: "money boundary moved (20.0|040000.00)", sample: "insureRequest.xml",
			edits: [][2]string{
				{"<sumPremium>20.00</sumPremium>", "<sumPremium>20.0</sumPremium>"},
				{"<sumAmount>40000.00</sumAmount>", "<sumAmount>040000.00</sumAmount>"}},
			reason: mapping.ReasonPattern, path: "policyInfo/sumPremium", message: "字段 policyInfo/sumPremium 格式不正确"},
		{name: "text moved into a new unknown element", sample: "insureRequest.xml",
			edits:  [][2]string{{"<sumAmount>40000.00</sumAmount>", "<sumAmount>40000.00</sumAmount><x></x>"}},
			reason: mapping.ReasonUnknown, path: "policyInfo", message: "未知字段: policyInfo 下含有本接口未定义的元素", element: "x"},
		{name: "optional field renamed", sample: "insureRequest.xml",
			edits:  [][2]string{{"<TendereeAddress>", "<TendereeAddr>"}, {"</TendereeAddress>", "</TendereeAddr>"}},
			reason: mapping.ReasonUnknown, path: "applicantInfo", message: "未知字段: applicantInfo 下含有本接口未定义的元素", element: "TendereeAddr"},
		{name: "required field renamed (names are case-sensitive)", sample: "insureRequest.xml",
			edits:  [][2]string{{"<mobile>", "<Mobile>"}, {"</mobile>", "</Mobile>"}},
			reason: mapping.ReasonMissing, path: "applicantInfo/mobile", message: "缺少必填字段 applicantInfo/mobile"},
		{name: "ignored element moved to a place it is not declared", sample: "insureRequest.xml",
			edits: [][2]string{
				{"<ProjectType>uaIhkKbqGVpuJce8UzgqRA==</ProjectType>", ""},
				{"<sumPremium>", "<ProjectType>uaIhkKbqGVpuJce8UzgqRA==</ProjectType><sumPremium>"}},
			reason: mapping.ReasonUnknown, path: "policyInfo", message: "未知字段: policyInfo 下含有本接口未定义的元素", element: "ProjectType"},
		{name: "forwarded extra holding an element", sample: "insureRequest.xml",
			edits:  [][2]string{{"<startDate>2019-05-01 00:00:00</startDate>", "<startDate>2019-05-01<x> 00:00:00</x></startDate>"}},
			reason: mapping.ReasonInvalid, path: "dateInfo/startDate", message: "字段 dateInfo/startDate 不是有效的日期时间(格式 yyyy-MM-dd HH:mm:ss)"},
		{name: "ignored element out of shape", sample: "insureRequest.xml",
			edits: [][2]string{
				{"<ProjectType>uaIhkKbqGVpuJce8UzgqRA==</ProjectType>", "<ProjectType>uaIhkKbqGVpuJce8UzgqRA==2</ProjectType>"},
				{"<sumPremium>20.00</sumPremium>", "<sumPremium>0.00</sumPremium>"}},
			reason: mapping.ReasonPattern, path: "applicantInfo/ProjectType", message: "字段 applicantInfo/ProjectType 格式不正确"},
		{name: "forwarded extra emptied (allow_empty: false)", sample: "insureRequest.xml",
			edits: [][2]string{
				{"</endorseText>", "2019-05-01 00:00:00</endorseText>"},
				{"<startDate>2019-05-01 00:00:00</startDate>", "<startDate/>"}},
			reason: mapping.ReasonPattern, path: "dateInfo/startDate", message: "字段 dateInfo/startDate 格式不正确"},
		{name: "unknown element in an ignored container", sample: "insureRequest.xml",
			edits:  [][2]string{{"<endDate>", "<end>"}, {"</endDate>", "</end>"}},
			reason: mapping.ReasonUnknown, path: "dateInfo", message: "未知字段: dateInfo 下含有本接口未定义的元素", element: "end"},
		{name: "unknown element in the body", sample: "claimRequest.xml",
			edits:  [][2]string{{"<claimPhone>", "<note/><claimPhone>"}},
			reason: mapping.ReasonUnknown, path: "requestBody", message: "未知字段: requestBody 下含有本接口未定义的元素", element: "note"},
		{name: "loose text in the body", sample: "claimRequest.xml",
			// Indentation next to loose text is part of its run, and so of V: none here.
			edits:  [][2]string{{"<requestBody>\n    <policyno>BD20190401000002</policyno>", "<requestBody>BD<policyno>20190401000002</policyno>"}},
			reason: mapping.ReasonLooseText, path: "requestBody", message: "报文结构错误: requestBody 下含有不属于任何字段的文本"},
		{name: "loose text in a wrapper", sample: "correctRequest.xml",
			edits:  [][2]string{{"<tender>30</tender>\n      </dateInfo>", "<tender>3</tender>0</dateInfo>"}},
			reason: mapping.ReasonLooseText, path: "correctInfo/dateInfo", message: "报文结构错误: correctInfo/dateInfo 下含有不属于任何字段的文本"},
		{name: "loose CDATA in a wrapper", sample: "correctRequest.xml",
			edits:  [][2]string{{"<tender>30</tender>\n      </dateInfo>", "<tender>3</tender><![CDATA[0]]></dateInfo>"}},
			reason: mapping.ReasonLooseText, path: "correctInfo/dateInfo", message: "报文结构错误: correctInfo/dateInfo 下含有不属于任何字段的文本"},
		{name: "canonical and alias spellings together", sample: "claimRequest.xml",
			edits: [][2]string{{"<cliaimReason><![CDATA[中标人无正当理由放弃中标 <不签订合同>]]></cliaimReason>",
				"<cliaimReason><![CDATA[中标人无正当理由放弃中标 ]]></cliaimReason><claimReason><![CDATA[<不签订合同>]]></claimReason>"}},
			reason: mapping.ReasonDuplicate, path: "cliaimReason", message: "字段 cliaimReason 重复出现"},
		{name: "text moved into an alias spelling of an absent field", sample: "invoiceRequest.electronic.xml",
			edits:  [][2]string{{"<cusCode>91330106MA2GL8XK3X</cusCode>", "<cusCode>91330106MA2GL8XK3</cusCode><cuscCode>X</cuscCode>"}},
			reason: mapping.ReasonPattern, path: "cuscCode", message: "字段 cuscCode 格式不正确"},
	}
	set := shippedSet(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			data := readSample(t, tc.sample)
			for _, e := range tc.edits {
				data = edit(t, data, e[0], e[1])
			}
			env := parseSigned(t, data) // the signature still verifies
			rules := set.Inbound[env.Root].Request
			out, err := rules.XMLToJSON(env.Body, fixedVars)
			if err == nil {
				t.Fatalf("accepted: %s", out)
			}
			fe := asFieldError(t, err)
			if fe.Reason != tc.reason || fe.Path != tc.path || fe.Message() != tc.message || fe.Element != tc.element {
				t.Errorf("got reason %s path %q message %q element %q\nwant reason %s path %q message %q element %q",
					fe.Reason, fe.Path, fe.Message(), fe.Element, tc.reason, tc.path, tc.message, tc.element)
			}
			if tc.element != "" && (strings.Contains(fe.Message(), tc.element) || strings.Contains(fe.Error(), tc.element)) {
				t.Errorf("the sender's element name leaks: %q / %q", fe.Message(), fe.Error())
			}
			_, _, terr := rules.TraceXMLToJSON(env.Body, fixedVars)
			if tfe := asFieldError(t, terr); tfe.Message() != fe.Message() || tfe.Reason != fe.Reason {
				t.Errorf("dry run refuses with %v, production with %v", terr, err)
			}
		})
	}
}

// TestStrictHarmlessRearrangements: comments, CDATA and character
// references change the markup but not a single value; they pass and the
// core gets exactly the JSON of the genuine message.
func TestStrictHarmlessRearrangements(t *testing.T) {
	cases := []struct {
		name, sample string
		edits        [][2]string
	}{
		{"comment inside a value", "insureRequest.xml", [][2]string{{"<sumAmount>40000.00<", "<sumAmount>40000<!-- x -->.00<"}}},
		{"CDATA inside a value", "insureRequest.xml", [][2]string{{"<name>浙江宏达建设工程有限公司<", "<name>浙江<![CDATA[宏达建设]]>工程有限公司<"}}},
		{"character references", "insureRequest.xml", [][2]string{{"<mobile>13858012345<", "<mobile>&#49;3858&#x30;12345<"}}},
		{"alias spelling", "surrendRequest.xml", [][2]string{{"<policyno>", "<polycyno>"}, {"</policyno>", "</polycyno>"}}},
		{"attributes", "claimRequest.xml", [][2]string{{"<claimPhone>", `<claimPhone kind="mobile">`}}},
		{"comments and white space between fields", "correctRequest.xml", [][2]string{{"<tender>", "<!-- days -->\n  <?pi x?><tender>"}}},
	}
	set := shippedSet(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			genuine := readSample(t, tc.sample)
			data := genuine
			for _, e := range tc.edits {
				data = edit(t, data, e[0], e[1])
			}
			env := parseSigned(t, data)
			rules := set.Inbound[env.Root].Request
			want, err := rules.XMLToJSON(parseSigned(t, genuine).Body, fixedVars)
			if err != nil {
				t.Fatal(err)
			}
			got, err := rules.XMLToJSON(env.Body, fixedVars)
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("core gets\n%s\nnot\n%s", got, want)
			}
		})
	}
}

// TestStrictDeclaredExtrasAreForwarded: the real-traffic extras of
// insureRequest are signed (V has their text) and reach the core as the
// optional fields project.type, period.start and period.end.
func TestStrictDeclaredExtrasAreForwarded(t *testing.T) {
	env := parseSigned(t, readSample(t, "insureRequest.xml"))
	out, err := shippedSet(t).Inbound["insureRequest"].Request.XMLToJSON(env.Body, fixedVars)
	if err != nil {
		t.Fatal(err)
	}
	for _, extra := range []string{"uaIhkKbqGVpuJce8UzgqRA==", "2019-05-01 00:00:00", "2019-07-29 23:59:59"} {
		if !bytes.Contains(env.SignedValue(), []byte(extra)) {
			t.Errorf("%s is not signed", extra)
		}
	}
	for _, sent := range []string{`"type":"uaIhkKbqGVpuJce8UzgqRA=="`, `"start":"2019-05-01T00:00:00+08:00"`, `"end":"2019-07-29T23:59:59+08:00"`} {
		if !bytes.Contains(out, []byte(sent)) {
			t.Errorf("%s does not reach the core: %s", sent, out)
		}
	}
}

// TestStrictParserRefusals: rearrangements only the XML parser can see.
func TestStrictParserRefusals(t *testing.T) {
	cases := []struct {
		name  string
		edits [][2]string
	}{
		{"duplicate attributes", [][2]string{{"<sumAmount>", `<sumAmount unit="yuan" unit="fen">`}}},
		{"surrogate character reference", [][2]string{{"<name>浙江宏达建设工程有限公司<", "<name>浙江&#xD800;宏达建设工程有限公司<"}}},
		{"noncharacter reference", [][2]string{{"<name>浙江宏达建设工程有限公司<", "<name>浙江&#xFDD0;宏达建设工程有限公司<"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			data := readSample(t, "insureRequest.xml")
			for _, e := range tc.edits {
				data = edit(t, data, e[0], e[1])
			}
			_, err := protocol.Parse(data, protocol.Limits{})
			var pe *protocol.Error
			if !errors.As(err, &pe) || pe.Kind != protocol.KindMalformed {
				t.Fatalf("want a malformed-XML refusal, got %v", err)
			}
			if strings.Contains(pe.Message(), "浙江") || strings.Contains(pe.Message(), "yuan") {
				t.Errorf("message quotes the input: %s", pe.Message())
			}
		})
	}
}

// TestStrictHandBuiltRules covers the walk on rules without any pattern:
// the structure alone refuses the split value of the security report.
func TestStrictHandBuiltRules(t *testing.T) {
	r := requestRules(t, "  - {xml: policyInfo/sumAmount, json: amount, type: decimal, scale: 2}\n")
	_, err := r.XMLToJSON(body(t, "<policyInfo><sumAmount>40000<x>.</x>00</sumAmount></policyInfo>"), nil)
	if fe := asFieldError(t, err); fe.Reason != mapping.ReasonNested || fe.Path != "policyInfo/sumAmount" {
		t.Errorf("got %v", err)
	}
}

// TestPatternRows: pattern: is anchored, matched after the type's checks
// on the text as sent (strings untrimmed; other types trimmed, before
// canonical formatting), and its refusal never quotes the value.
func TestPatternRows(t *testing.T) {
	rows := "  - {xml: m, json: m, type: string, pattern: \"1[3-9][0-9]{9}\"}\n" +
		"  - {xml: p, json: p, type: decimal, scale: 2, pattern: \"(0|[1-9][0-9]*)[.][0-9]{2}\"}\n" +
		"  - {xml: n, json: n, type: integer, pattern: \"^[1-9][0-9]*$\"}\n" +
		"  - {xml: d, json: d, type: datetime, xml_format: \"yyyy-MM-dd\", pattern: \"20[0-9]{2}-.*\"}\n"
	r := requestRules(t, rows)
	ok := map[string]string{
		"<m>13858012345</m><p> 20.00 </p><n>30</n><d>2019-04-01</d>": `{"m":"13858012345","p":20.00,"n":30,"d":"2019-04-01T00:00:00+08:00"}`,
		"<p>0.50</p>": `{"p":0.50}`,
		// Strings are matched as sent: trimmed.
		"<m> 13858012345\n</m>": `{"m":"13858012345"}`,
	}
	for in, want := range ok {
		got, err := r.XMLToJSON(body(t, in), nil)
		if err != nil || string(got) != want {
			t.Errorf("%s: got %s, %v; want %s", in, got, err, want)
		}
	}
	refused := map[string]string{
		"<m>138580123456</m>": "m", // anchored at the end
		"<m>x13858012345</m>": "m", // anchored at the start
		"<p>20.0</p>":         "p", // the decimal type would write 20.00
		"<p>020.00</p>":       "p",
		"<n>030</n>":          "n",
		"<d>1999-04-01</d>":   "d",
		"<m>1385801234</m>":   "m",
		"<m>1385801234五</m>":  "m",
	}
	for in, path := range refused {
		_, err := r.XMLToJSON(body(t, in), nil)
		fe := asFieldError(t, err)
		want := "字段 " + path + " 格式不正确"
		if fe.Reason != mapping.ReasonPattern || fe.Path != path || fe.Message() != want {
			t.Errorf("%s: got %s %s %q, want pattern %s %q", in, fe.Reason, fe.Path, fe.Message(), path, want)
		}
	}
	// Reply rows check the text they produce.
	reply := replyRules(t, "  - {xml: phone, json: phone, type: string, pattern: \"[0-9-]+\"}\n")
	if _, err := reply.JSONToXML([]byte(`{"phone":"0571-86001234"}`), nil); err != nil {
		t.Errorf("reply: %v", err)
	}
	_, err := reply.JSONToXML([]byte(`{"phone":"call me"}`), nil)
	if fe := asFieldError(t, err); fe.Reason != mapping.ReasonPattern || strings.Contains(fe.Message(), "call me") {
		t.Errorf("reply: %v / %s", err, fe.Message())
	}
	// The dry run shows the pattern as written.
	if rule := r.Rows()[0].Rule(); !strings.Contains(rule, `pattern "1[3-9][0-9]{9}"`) {
		t.Errorf("Rule() = %s", rule)
	}
}
