package protocol

import (
	"encoding/xml"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/google/uuid"
)

func TestBuildResponseExactBytes(t *testing.T) {
	body := []Element{
		{Name: "responseTime", Text: "2019-04-01 10:25:04"},
		{Name: "resultFlag", Text: "true"},
		{Name: "resultMessage", Text: "投保成功"},
		{Name: "proposalNo"},
	}
	v := "2019-04-01 10:25:04true投保成功"
	want := `<?xml version="1.0" encoding="UTF-8"?><insureResponse><responseHead><requestUUID>u-1</requestUUID>` +
		`<sign>` + md5Upper(v+testKey) + `</sign></responseHead><responseBody>` +
		`<responseTime>2019-04-01 10:25:04</responseTime><resultFlag>true</resultFlag>` +
		`<resultMessage>投保成功</resultMessage><proposalNo></proposalNo></responseBody></insureResponse>`
	if got := string(BuildResponse("insureResponse", "u-1", body, testKey)); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if got := string(LeafValues(body)); got != v {
		t.Errorf("LeafValues = %q", got)
	}
}

func TestBuildRequestHead(t *testing.T) {
	out := string(BuildRequest("queryPolicyRequest", "id", []Element{{Name: "policyNo", Text: "P1"}}, testKey))
	want := `<queryPolicyRequest><requestHead><requestUUID>id</requestUUID><sign>` + md5Upper("P1"+testKey) +
		`</sign></requestHead><requestBody><policyNo>P1</policyNo></requestBody></queryPolicyRequest>`
	if !strings.HasSuffix(out, want) || !strings.HasPrefix(out, `<?xml version="1.0" encoding="UTF-8"?><`) {
		t.Errorf("got %s", out)
	}
}

func TestBuildRoundTrip(t *testing.T) {
	body := []Element{
		{Name: "resultFlag", Text: "false"},
		{Name: "resultMessage", Text: `字段 applicantInfo/name 超长 & <b>"引号"</b> 'x' ]]> 中文`},
		{Name: "yeepayurl", Text: "https://pay.example/qr?qr=80B1D&id=4494&sg=59C2"},
		{Name: "express", Children: []Element{
			{Name: "company", Text: "顺丰速运"},
			{Name: "trackingNo", Text: "  SF 123  "},
			{Name: "ignoredText", Text: "", Children: []Element{{Name: "x", Text: "y"}}},
		}},
		{Name: "empty"},
		{Name: "blank", Text: "  "},
		{Name: "lines", Text: "a\r\nb\rc\nd\te"},
		{Name: "controls", Text: "a\x00b\x1fc\uFFFEd\xffe"},
		{Name: "cdataEnd", Text: "]]>"},
	}
	out := BuildResponse("insureResponse", `uuid&<>"`, body, testKey)

	// Well-formed for a plain encoding/xml reader, too.
	d := xml.NewDecoder(strings.NewReader(string(out)))
	for {
		if _, err := d.Token(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("not well-formed: %v\n%s", err, out)
		}
	}

	env, err := Parse(out, Limits{})
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if env.Type != ResponseMessage || env.Root != "insureResponse" || env.RequestUUID != `uuid&<>"` {
		t.Errorf("envelope %+v", env)
	}
	if string(env.SignedValue()) != string(LeafValues(body)) {
		t.Errorf("receiver V differs from signed V\n got %q\nwant %q", env.SignedValue(), LeafValues(body))
	}
	if _, ok := VerifyAny(env.SignedValue(), env.Sign, []string{testKey}); !ok {
		t.Errorf("own reply does not verify:\n%s", out)
	}
	for _, c := range []struct {
		path []string
		want string
	}{
		{[]string{"resultMessage"}, body[1].Text},
		{[]string{"yeepayurl"}, body[2].Text},
		{[]string{"express", "company"}, "顺丰速运"},
		{[]string{"express", "trackingNo"}, "  SF 123  "},
		{[]string{"express", "ignoredText"}, "y"},
		{[]string{"empty"}, ""},
		{[]string{"blank"}, "  "},
		{[]string{"lines"}, "a\r\nb\rc\nd\te"}, // CR survives as &#xD;
		{[]string{"controls"}, "a\uFFFDb\uFFFDc\uFFFDd\uFFFDe"},
		{[]string{"cdataEnd"}, "]]>"},
	} {
		if got, _ := env.Text(c.path...); got != c.want {
			t.Errorf("Text(%v) = %q, want %q", c.path, got, c.want)
		}
	}
	// Escaped exactly once: no double escaping, no raw markup.
	s := string(out)
	for _, frag := range []string{"&amp;amp;", "<b>", `&amp;id=4494`, "]]>"} {
		has := strings.Contains(s, frag)
		if want := frag == "&amp;id=4494"; has != want {
			t.Errorf("output contains %q = %v\n%s", frag, has, s)
		}
	}
}

func TestLeafValuesMatchesHandWritten(t *testing.T) {
	body := []Element{
		{Name: "a", Text: "x & y"},
		{Name: "b", Children: []Element{{Name: "c", Text: "1"}, {Name: "d"}, {Name: "e", Text: " 2 "}}},
		{Name: "f", Text: "中"},
	}
	want := "x & y1 2 中"
	if got := string(LeafValues(body)); got != want {
		t.Errorf("LeafValues = %q, want %q", got, want)
	}
	out := BuildResponse("r", "u", body, testKey)
	if !strings.Contains(string(out), "<sign>"+md5Upper(want+testKey)+"</sign>") {
		t.Errorf("sign is not MD5(V+key): %s", out)
	}
}

func TestBuildInvalidNames(t *testing.T) {
	for _, c := range []struct {
		root string
		body []Element
	}{
		{"", nil},
		{"bad root", nil},
		{"r", []Element{{Name: ""}}},
		{"r", []Element{{Name: "a><script"}}},
		{"r", []Element{{Name: "ok", Children: []Element{{Name: "1digit"}}}}},
		{"r", []Element{{Name: "ns:x"}}},
	} {
		if _, err := Build(ResponseMessage, c.root, "u", c.body, testKey); !errors.Is(err, ErrInvalidName) {
			t.Errorf("Build(%q, %+v) err = %v", c.root, c.body, err)
		}
	}
	defer func() {
		if r := recover(); r == nil {
			t.Error("BuildResponse with an invalid name did not panic")
		}
	}()
	BuildResponse("r", "u", []Element{{Name: "a b"}}, testKey)
}

func TestValidName(t *testing.T) {
	for _, n := range []string{"a", "resultFlag", "TendereeContactPhoneNumber", "_x", "a-b.c1", "名称"} {
		if !ValidName(n) {
			t.Errorf("ValidName(%q) = false", n)
		}
	}
	for _, n := range []string{"", "1a", "-a", ".a", "a b", "a:b", "a<", "a&", "\xff"} {
		if ValidName(n) {
			t.Errorf("ValidName(%q) = true", n)
		}
	}
}

func TestNewUUID(t *testing.T) {
	a, b := NewUUID(), NewUUID()
	if a == b || len(a) != 36 {
		t.Fatalf("%q %q", a, b)
	}
	if u, err := uuid.Parse(a); err != nil || u.Version() != 4 {
		t.Errorf("%q: %v", a, err)
	}
}

func TestBuildLargeBodyNotPooled(t *testing.T) {
	// Bodies beyond the pool cap still build correctly (and the buffer is dropped).
	big := strings.Repeat("中", 40000)
	out := BuildResponse("r", "u", []Element{{Name: "a", Text: big}}, testKey)
	env, err := Parse(out, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := env.Text("a"); got != big {
		t.Error("large value mangled")
	}
	if _, ok := VerifyAny(env.SignedValue(), env.Sign, []string{testKey}); !ok {
		t.Error("large reply does not verify")
	}
}
