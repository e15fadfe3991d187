package mapping_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/caddy-gongbao/gongbao/caddymodule/mapping"
	"github.com/caddy-gongbao/gongbao/caddymodule/protocol"
)

// TestShippedRequiredIf: each required-on-success and required-if row of
// the shipped mappings, passing and refusing. A refusal names the field
// and the mapping's condition, never a value.
func TestShippedRequiredIf(t *testing.T) {
	set := shippedSet(t)
	insure := set.Inbound["insureRequest"].Reply
	correct := set.Inbound["correctRequest"].Reply
	invoice := set.Outbound["invoice-issued"].Body
	cases := []struct {
		name  string
		rules *mapping.Rules
		json  string
		want  string // "" = accepted; else the FieldError's Message()
	}{
		{"insure success with proposal and link", insure,
			`{"accepted":true,"message":"投保成功","proposalNo":"TB1","paymentUrl":"http://x/pay"}`, ""},
		{"insure success without proposalNo", insure,
			`{"accepted":true,"message":"投保成功","paymentUrl":"http://x/pay"}`,
			"核心系统应答缺少字段 proposalNo (resultFlag 为 true 时必填)"},
		{"insure success without yeepayurl", insure,
			`{"accepted":true,"message":"投保成功","proposalNo":"TB1"}`,
			"核心系统应答缺少字段 paymentUrl (resultFlag 为 true 时必填)"},
		{"insure refusal needs neither", insure,
			`{"accepted":false,"message":"保费不足"}`, ""},
		{"correct success complete", correct,
			`{"accepted":true,"message":"批改成功","insurerPhone":"95500","policyUrl":"http://x/p.pdf","insurancePeriod":"2019-04-01 00:00:00 至 2019-04-30 23:59:59"}`, ""},
		{"correct success without InsurancePhone", correct,
			`{"accepted":true,"message":"批改成功","policyUrl":"http://x/p.pdf","insurancePeriod":"p"}`,
			"核心系统应答缺少字段 insurerPhone (resultFlag 为 true 时必填)"},
		{"correct success without downLoadUrl", correct,
			`{"accepted":true,"message":"批改成功","insurerPhone":"95500","insurancePeriod":"p"}`,
			"核心系统应答缺少字段 policyUrl (resultFlag 为 true 时必填)"},
		{"correct success without InsuranceTime", correct,
			`{"accepted":true,"message":"批改成功","insurerPhone":"95500","policyUrl":"http://x/p.pdf"}`,
			"核心系统应答缺少字段 insurancePeriod (resultFlag 为 true 时必填)"},
		{"correct refusal needs none", correct,
			`{"accepted":false,"message":"保单已退保"}`, ""},
		{"electronic invoice with URL", invoice,
			`{"policyNo":"BD1","downloadUrl":"http://x/i.pdf"}`, ""},
		{"electronic invoice without URL", invoice,
			`{"policyNo":"BD1"}`,
			"核心系统事件缺少字段 downloadUrl (expressName 为空时必填)"},
		{"paper invoice with courier and number", invoice,
			`{"policyNo":"BD1","express":{"company":"顺丰速运","trackingNo":"SF1"}}`, ""},
		{"paper invoice without tracking number", invoice,
			`{"policyNo":"BD1","express":{"company":"顺丰速运"}}`,
			"核心系统事件缺少字段 express.trackingNo (expressName 有值时必填)"},
		{"paper invoice without courier", invoice,
			`{"policyNo":"BD1","downloadUrl":"http://x/i.pdf","express":{"trackingNo":"SF1"}}`,
			"核心系统事件缺少字段 express.company (expressNo 有值时必填)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.rules.JSONToXML([]byte(tc.json), fixedVars)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var fe *mapping.FieldError
			if !errors.As(err, &fe) || fe.Reason != mapping.ReasonMissing || fe.Message() != tc.want {
				t.Fatalf("got %v, want missing %q", err, tc.want)
			}
		})
	}
}

// TestRequiredIfLoadErrors: required_if: is checked at load.
func TestRequiredIfLoadErrors(t *testing.T) {
	cases := []struct{ name, rows, want string }{
		{"names no row", "  - {xml: a, json: a, type: string}\n  - {xml: b, json: b, type: string, required_if: {xml: resultFlg, equals: true}}\n  - {xml: resultFlag, json: ok, type: boolean}\n",
			`t.yaml:8: required_if: no other row of this list fills xml "resultFlg" (did you mean "resultFlag"?)`},
		{"needs a condition", "  - {xml: a, json: a, type: string, required_if: {xml: b}}\n  - {xml: b, json: b, type: string}\n",
			`t.yaml:7: required_if needs equals: (a value or a list of values of b) or present: true|false`},
		{"not with required", "  - {xml: a, json: a, type: string, required: true, required_if: {xml: b, present: true}}\n  - {xml: b, json: b, type: string}\n",
			`t.yaml:7: required_if: and required: true cannot be combined (the row is always required)`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := "message: testRequest\nreply_root: testResponse\ncore: {method: POST, path: /v1/test}\n" +
				"request:\n  - {xml: a, json: a, type: string}\nreply:\n" + tc.rows
			_, err := mapping.ParseFile("t.yaml", []byte(src))
			if err == nil || err.Error() != tc.want {
				t.Errorf("error\n got %v\nwant %s", err, tc.want)
			}
		})
	}
	src := "message: testRequest\nreply_root: testResponse\ncore: {method: POST, path: /v1/test}\n" +
		"request:\n  - {xml: a, json: a, type: string, required_if: {xml: b, equals: x}}\nreply:\n  - {xml: a, json: a, type: string}\n"
	if _, err := mapping.ParseFile("t.yaml", []byte(src)); err == nil || err.Error() != "t.yaml:5: required_if: applies only to rows that produce XML (reply: and body:)" {
		t.Errorf("request row: %v", err)
	}
}

// TestCorrectBothDateFormats: correctRequest's stratDate/endDate accept the
// spec table's yyyy-MM-dd HH:mm:ss and the spec example's yyyyMMdd.
func TestCorrectBothDateFormats(t *testing.T) {
	rules := shippedSet(t).Inbound["correctRequest"].Request
	sample := string(readSample(t, "correctRequest.xml"))
	for _, tc := range []struct{ start, end, wantStart, wantEnd string }{
		{"2019-04-01 00:00:00", "2019-04-30 23:59:59", `"start":"2019-04-01T00:00:00+08:00"`, `"end":"2019-04-30T23:59:59+08:00"`},
		{"20190329", "20190429", `"start":"2019-03-29T00:00:00+08:00"`, `"end":"2019-04-29T00:00:00+08:00"`},
	} {
		xml := replaceElement(t, sample, "stratDate", tc.start)
		xml = replaceElement(t, xml, "endDate", tc.end)
		env := parseSigned(t, resign(t, xml))
		out, err := rules.XMLToJSON(env.Body, fixedVars)
		if err != nil {
			t.Fatalf("%s: refused: %v", tc.start, err)
		}
		if !bytes.Contains(out, []byte(tc.wantStart)) || !bytes.Contains(out, []byte(tc.wantEnd)) {
			t.Errorf("%s: core gets %s", tc.start, out)
		}
	}
}

// resign signs an edited sample again with the test key, over V as the
// protocol package computes it.
func resign(t *testing.T, xml string) []byte {
	t.Helper()
	env, err := protocol.Parse([]byte(xml), protocol.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	return []byte(strings.Replace(xml, "<sign>"+env.Sign+"</sign>", "<sign>"+protocol.Sign(env.SignedValue(), testKey)+"</sign>", 1))
}

// replaceElement replaces the text of the one element name in xml.
func replaceElement(t *testing.T, xml, name, text string) string {
	t.Helper()
	open, end := "<"+name+">", "</"+name+">"
	i := strings.Index(xml, open)
	j := strings.Index(xml, end)
	if i < 0 || j < i || strings.Count(xml, open) != 1 {
		t.Fatalf("no single <%s> in the sample", name)
	}
	return xml[:i+len(open)] + text + xml[j:]
}

// TestTrimmedValueUntrimmedSignature: an identifier in indented CDATA
// reaches the core trimmed, while the signature still covers the text as
// sent, white space included.
func TestTrimmedValueUntrimmedSignature(t *testing.T) {
	rules := shippedSet(t).Inbound["insureRequest"].Request
	raw := "\n        <![CDATA[91330106MA2GL8XK3X]]>\n      "
	xml := replaceElement(t, string(readSample(t, "insureRequest.xml")), "idNumber", raw)
	env := parseSigned(t, resign(t, xml))
	if !bytes.Contains(env.SignedValue(), []byte("\n        91330106MA2GL8XK3X\n      ")) {
		t.Fatalf("V does not hold the untrimmed text: %q", env.SignedValue())
	}
	out, err := rules.XMLToJSON(env.Body, fixedVars)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(out, []byte(`"idNumber":"91330106MA2GL8XK3X"`)) {
		t.Errorf("core gets %s", out)
	}
}

// TestReplyRootDeprecation: the old form (reply: twice) still loads, with a
// warning naming file:line; reply_root: loads without one.
func TestReplyRootDeprecation(t *testing.T) {
	old := "message: aRequest\nreply: aResponse\ncore: {method: POST, path: /x}\nrequest:\n  - {xml: a, json: a, type: string}\nreply:\n  - {xml: r, json: r, type: string}\n"
	f, err := mapping.ParseFile("mappings/a.yaml", []byte(old))
	if err != nil {
		t.Fatal(err)
	}
	if f.Inbound.ReplyRoot != "aResponse" || f.Inbound.Reply == nil {
		t.Errorf("old form: %+v", f.Inbound)
	}
	want := `mappings/a.yaml:2: reply: with the reply root element is deprecated; write reply_root: aResponse (YAML forbids a key twice)`
	if len(f.Warnings) != 1 || f.Warnings[0].Error() != want {
		t.Errorf("warnings %v, want %s", f.Warnings, want)
	}
	f, err = mapping.ParseFile("a.yaml", []byte(strings.Replace(old, "reply: aResponse", "reply_root: aResponse", 1)))
	if err != nil || len(f.Warnings) != 0 {
		t.Errorf("reply_root: %v %v", err, f.Warnings)
	}
}

// TestYAMLErrorLines: each kind of YAML syntax error is reported on the
// line where the problem is, not where its block starts.
func TestYAMLErrorLines(t *testing.T) {
	head := "message: aRequest\nreply_root: aResponse\ncore: {method: POST, path: /x}\nrequest:\n" +
		"  - xml: a\n    json: a\n    type: string\n" +
		"  - xml: b\n    json: b\n    type: string\n"
	cases := []struct{ name, tail, want string }{
		{"indentation slip in a row", "  - xml: c\n    json: c\n   type: string\n",
			"a.yaml:13: did not find expected '-' indicator"},
		{"row indented out of its list", "  - xml: c\n    json: c\n    type: string\n - xml: d\n",
			"a.yaml:14: did not find expected key"},
		{"tab indentation", "  - xml: c\n\tjson: c\n",
			"a.yaml:12: found a tab character that violates indentation"},
		{"unterminated quote", "  - xml: \"c\n    json: c\n",
			"a.yaml:11: found unexpected end of stream"},
		{"unclosed flow mapping", "  - {xml: c, json: c\n",
			"a.yaml:11: did not find expected ',' or '}'"},
		{"unknown anchor", "  - *nope\n",
			"a.yaml:11: unknown anchor 'nope' referenced"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := mapping.ParseFile("a.yaml", []byte(head+tc.tail+"reply:\n  - {xml: r, json: r, type: string}\n"))
			if err == nil || err.Error() != tc.want {
				t.Errorf("error\n got %v\nwant %s", err, tc.want)
			}
		})
	}
}
