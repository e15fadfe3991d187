package mapping_test

import (
	"strings"
	"testing"

	"github.com/antchfx/xmlquery"

	"github.com/caddy-gongbao/gongbao/caddymodule/mapping"
)

const typoFile = `message: testRequest
reply_root: testResponse
core: {method: POST, path: /v1/test}
ignore: [dateInfo/startDate]
request:
  - {xml: a, json: a, type: string, required: true}
  - {xml: dateInfo/startdate, json: start, type: string}
  - {xml: dateInfo/endDate, json: end, type: string}
  - {xml: policyInfo/sumAmout, json: amount, type: string}
  - {xml: policyInfo/SumAmout, json: amount2, type: string}
  - {xml: policyInfo/address, json: address, type: string}
  - {xml: policyInfo/addressee, json: addressee, type: string}
reply:
  - {xml: resultFlag, json: ok, type: boolean}
`

// TestTypoWarningAtLoad: an optional row whose path is a near spelling of
// another path of the file (here an ignore: entry) is a load warning
// naming file:line; distinct names are not.
func TestTypoWarningAtLoad(t *testing.T) {
	f, err := mapping.ParseFile("mappings/t.yaml", []byte(typoFile))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, w := range f.Warnings {
		got = append(got, w.Error())
	}
	want := []string{
		`mappings/t.yaml:7: row xml "dateInfo/startdate" is a near spelling of "dateInfo/startDate" (line 4); did you mean "dateInfo/startDate"?`,
		`mappings/t.yaml:9: row xml "policyInfo/sumAmout" is a near spelling of "policyInfo/SumAmout" (line 10); did you mean "policyInfo/SumAmout"?`,
		`mappings/t.yaml:10: row xml "policyInfo/SumAmout" is a near spelling of "policyInfo/sumAmout" (line 9); did you mean "policyInfo/sumAmout"?`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("warnings\n got %q\nwant %q", got, want)
	}
}

// TestCheckSamples: rows matching nothing in the samples while a near
// spelling does are reported; rows that match, or have no near spelling,
// are not.
func TestCheckSamples(t *testing.T) {
	f, err := mapping.ParseFile("mappings/t.yaml", []byte(strings.Replace(typoFile, "ignore: [dateInfo/startDate]\n", "unknown_elements: ignore\n", 1)))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := xmlquery.Parse(strings.NewReader(`<testRequest><requestBody><a>1</a><dateInfo><startDate>x</startDate><endDate>y</endDate></dateInfo>` +
		`<policyInfo><sumAmount>1</sumAmount></policyInfo></requestBody></testRequest>`))
	if err != nil {
		t.Fatal(err)
	}
	warns := f.Inbound.CheckSamples([]*xmlquery.Node{doc.SelectElement("testRequest/requestBody")})
	var got []string
	for _, w := range warns {
		got = append(got, w.Error())
	}
	want := []string{
		`mappings/t.yaml:7: row xml "dateInfo/startdate" matches no element of the samples; did you mean "dateInfo/startDate"?`,
		`mappings/t.yaml:9: row xml "policyInfo/sumAmout" matches no element of the samples; did you mean "policyInfo/sumAmount"?`,
		`mappings/t.yaml:10: row xml "policyInfo/SumAmout" matches no element of the samples; did you mean "policyInfo/sumAmount"?`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("warnings\n got %q\nwant %q", got, want)
	}
}

// TestShippedMappingsHaveNoTypoWarnings: the shipped files load without
// near-spelling warnings, and their rows match the sample messages.
func TestShippedMappingsHaveNoTypoWarnings(t *testing.T) {
	set, err := mapping.LoadDir("../../mappings")
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range set.Warnings {
		if strings.Contains(w.Error(), "near spelling") {
			t.Errorf("shipped mapping: %v", w)
		}
	}
}
