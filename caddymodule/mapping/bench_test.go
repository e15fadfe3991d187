package mapping_test

import (
	"strings"
	"testing"

	"github.com/caddy-gongbao/gongbao/caddymodule/mapping"
)

// benchFile is insureRequest-like: the spec's rows plus a datetime, an
// enum, an integer and a short repeat, so every converter is on the path.
const benchFile = `message: insureRequest
reply_root: insureResponse
core: {method: POST, path: /v1/proposals}
ignore: [ProjectType]
request:
  - {xml: applicantInfo/name, json: applicant.name, type: string, required: true, max_length: 20, pii: name}
  - {xml: applicantInfo/mobile, json: applicant.mobile, type: string, required: true, pii: mobile}
  - {xml: applicantInfo/idNumber, json: applicant.idNumber, type: string, required: true, pii: id}
  - {xml: applicantInfo/ProjectName, json: project.name, type: string, required: true}
  - {xml: applicantInfo/BidSectionCode, json: project.bidSectionCode, type: string, required: true}
  - {xml: applicantInfo/TendereeName, json: project.tenderee.name, type: string, required: true}
  - {xml: applicantInfo/TendereeCode, json: project.tenderee.code, type: string, required: true}
  - {xml: applicantInfo/TendereeAddress, json: project.tenderee.address, type: string}
  - {xml: applicantInfo/TendereeContactPhoneNumber, json: project.tenderee.phone, type: string}
  - {xml: policyInfo/sumPremium, json: policy.sumPremium, type: decimal, required: true, scale: 2, precision: 10}
  - {xml: policyInfo/sumAmount, json: policy.sumAmount, type: decimal, required: true, scale: 2, precision: 18}
  - {xml: policyInfo/endorseText, json: policy.endorseText, type: string, required: true}
  - {xml: dateInfo/startDate, aliases: [stratDate], json: period.start, type: datetime, xml_format: "yyyy-MM-dd HH:mm:ss"}
  - {xml: dateInfo/tender, json: period.days, type: integer}
  - {xml: InvoiceType, json: invoice.type, type: enum, values: {"1": electronic, "2": paper, "3": special}}
  - {json: channel, const: gongbao, type: string}
  - {json: receivedAt, var: now, type: string}
  - xml: items/item
    json: items
    repeat: {max: 5}
    fields:
      - {xml: code, json: code, type: string}
      - {xml: amount, json: amount, type: decimal, scale: 2}
reply:
  - {xml: responseTime, var: now, type: string}
  - {xml: resultFlag, json: accepted, type: boolean, required: true}
  - {xml: resultMessage, json: message, type: string, required: true}
  - {xml: proposalNo, json: proposalNo, type: string, omit_empty: true}
  - {xml: yeepayurl, json: paymentUrl, type: string, omit_empty: true}
  - {xml: applicantInfo/name, json: applicant.name, type: string}
  - {xml: applicantInfo/mobile, json: applicant.mobile, type: string}
  - {xml: applicantInfo/idNumber, json: applicant.idNumber, type: string}
  - {xml: applicantInfo/ProjectName, json: project.name, type: string}
  - {xml: applicantInfo/TendereeCode, json: project.tenderee.code, type: string}
  - {xml: policyInfo/sumPremium, json: policy.sumPremium, type: decimal, scale: 2}
  - {xml: policyInfo/sumAmount, json: policy.sumAmount, type: decimal, scale: 2}
  - {xml: dateInfo/startDate, json: period.start, type: datetime, xml_format: "yyyy-MM-dd HH:mm:ss"}
  - {xml: dateInfo/tender, json: period.days, type: integer}
  - {xml: InvoiceType, json: invoice.type, type: enum, values: {"1": electronic, "2": paper, "3": special}}
  - xml: items/item
    json: items
    repeat: {max: 5}
    fields:
      - {xml: code, json: code, type: string}
      - {xml: amount, json: amount, type: decimal, scale: 2}
`

const benchXML = `<applicantInfo>
  <name>浙江宏达建设工程有限公司</name>
  <mobile>13858012345</mobile>
  <idNumber>91330106MA2GL8XK3X</idNumber>
  <ProjectName>UvImZaYMEtKJGF2VDuiBNgkWb2sRPReNbA/TkB/yOaGglfIPk5VlDPk4C47bIkprJIoekk6P0K4uGpSSozBfGIy2EJAPnjR/rohtxlB3lex0XEw/yy6yxz4Uk0yGfuBXunJJm/oSHoNrKsFXJu59awr2qxPDjpLK4NFQV7FZmH+UzHQR1xfxRXmyqhAPu7NPpZP+rtJySLdi46tYBfB2WiucHX4PN8RJIb0/ZWTq338UKnJmjEfiI9Fu3YxHtGr8</ProjectName>
  <BidSectionCode>MlY0e5/85pzXAHrop1jMpBXVqR7oY8i2wDN64y1vyqJVFs3y+Lhldma+8hW5KCv+</BidSectionCode>
  <TendereeName>W67iYfU7JhUtJjuoOwN81JYuQ0gBJWuIXpyQUfMgsNuD856nrb0NdObex/PfrsyPZGVmZBp7omYPMBH8NXApHFeZDRoAkSaJGfJdnQYS3zWdYCaiQPRYml15Hx3ZfP76</TendereeName>
  <TendereeCode>gxDNWS8kFkHClnEHUQpTolP8Hu7z0ghgXeedPBvDc7Q=</TendereeCode>
  <TendereeAddress>d3p7TxUkGr9XvUN61LEphAU08/OHXCWwi+oGwodM+qTdF7LYQoRd6CpbxTmIiseAVKI5nM/J/MLaMc490Wa9zTozhH5buwf9B8pHeEIxsZr0WHLO77n8WfT5XRQ4Gjp4</TendereeAddress>
  <TendereeContactPhoneNumber>Fz80bfTJB3SshmxdOAR9Nu5OqpRb5UDQYruWM2K5978=</TendereeContactPhoneNumber>
</applicantInfo>
<policyInfo>
  <sumPremium>20.00</sumPremium>
  <sumAmount>40000.00</sumAmount>
  <endorseText>本保单起保日期以招标文件规定的投标截止日为准，保险期间与政府批文一致；投保人在投标有效期内撤销投标文件或中标后无正当理由放弃中标的，保险人依约承担保证责任。</endorseText>
</policyInfo>
<ProjectType>1</ProjectType>
<dateInfo><stratDate>2019-04-01 00:00:00</stratDate><tender>90</tender></dateInfo>
<InvoiceType>1</InvoiceType>
<items><item><code>A1</code><amount>10.5</amount></item><item><code>B2</code><amount>9.50</amount></item></items>
`

var benchVars = mapping.Vars{"now": "2019-04-01 10:00:00", "insurance_code": "GB01"}

func benchInbound(b testing.TB) *mapping.Inbound {
	m, err := mapping.ParseFile("bench.yaml", []byte(benchFile))
	if err != nil {
		b.Fatal(err)
	}
	return m.Inbound
}

func BenchmarkXMLToJSON(b *testing.B) {
	in := benchInbound(b)
	doc := body(b, benchXML)
	b.SetBytes(int64(len(benchXML)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := in.Request.XMLToJSON(doc, benchVars); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkJSONToXML(b *testing.B) {
	in := benchInbound(b)
	doc := body(b, benchXML)
	data, err := in.Request.XMLToJSON(doc, benchVars)
	if err != nil {
		b.Fatal(err)
	}
	// A reply carrying everything the request carried, plus the core's own fields.
	data = append([]byte(`{"accepted":true,"message":"投保成功","proposalNo":"TB20190401000001","paymentUrl":"https://pay.example.com/pay/TB20190401000001?a=1&b=2",`), data[1:]...)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := in.Reply.JSONToXML(data, benchVars); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseFile(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		benchInbound(b)
	}
}

// TestBenchInputs keeps the benchmark inputs honest: the bench body maps
// and its reply comes back complete.
func TestBenchInputs(t *testing.T) {
	in := benchInbound(t)
	out, err := in.Request.XMLToJSON(body(t, benchXML), benchVars)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"applicant":{"name":"浙江宏达建设工程有限公司","mobile":"13858012345","idNumber":"91330106MA2GL8XK3X"},"project":{"name":"UvImZaYMEtKJGF2VDuiBNgkWb2sRPReNbA/TkB/yOaGglfIPk5VlDPk4C47bIkprJIoekk6P0K4uGpSSozBfGIy2EJAPnjR/rohtxlB3lex0XEw/yy6yxz4Uk0yGfuBXunJJm/oSHoNrKsFXJu59awr2qxPDjpLK4NFQV7FZmH+UzHQR1xfxRXmyqhAPu7NPpZP+rtJySLdi46tYBfB2WiucHX4PN8RJIb0/ZWTq338UKnJmjEfiI9Fu3YxHtGr8","bidSectionCode":"MlY0e5/85pzXAHrop1jMpBXVqR7oY8i2wDN64y1vyqJVFs3y+Lhldma+8hW5KCv+","tenderee":{"name":"W67iYfU7JhUtJjuoOwN81JYuQ0gBJWuIXpyQUfMgsNuD856nrb0NdObex/PfrsyPZGVmZBp7omYPMBH8NXApHFeZDRoAkSaJGfJdnQYS3zWdYCaiQPRYml15Hx3ZfP76","code":"gxDNWS8kFkHClnEHUQpTolP8Hu7z0ghgXeedPBvDc7Q=","address":"d3p7TxUkGr9XvUN61LEphAU08/OHXCWwi+oGwodM+qTdF7LYQoRd6CpbxTmIiseAVKI5nM/J/MLaMc490Wa9zTozhH5buwf9B8pHeEIxsZr0WHLO77n8WfT5XRQ4Gjp4","phone":"Fz80bfTJB3SshmxdOAR9Nu5OqpRb5UDQYruWM2K5978="}},"policy":{"sumPremium":20.00,"sumAmount":40000.00,"endorseText":"本保单起保日期以招标文件规定的投标截止日为准，保险期间与政府批文一致；投保人在投标有效期内撤销投标文件或中标后无正当理由放弃中标的，保险人依约承担保证责任。"},"period":{"start":"2019-04-01T00:00:00+08:00","days":90},"invoice":{"type":"electronic"},"channel":"gongbao","receivedAt":"2019-04-01 10:00:00","items":[{"code":"A1","amount":10.50},{"code":"B2","amount":9.50}]}`
	if string(out) != want {
		t.Errorf("got  %s\nwant %s", out, want)
	}
	reply := append([]byte(`{"accepted":true,"message":"投保成功",`), out[1:]...)
	els, err := in.Reply.JSONToXML(reply, benchVars)
	if err != nil {
		t.Fatal(err)
	}
	if got := render(els); !strings.Contains(got, "<dateInfo><startDate>2019-04-01 00:00:00</startDate><tender>90</tender></dateInfo><InvoiceType>1</InvoiceType><items><item><code>A1</code><amount>10.50</amount></item>") {
		t.Errorf("reply %s", got)
	}
}
