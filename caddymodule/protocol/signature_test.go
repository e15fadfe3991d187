package protocol

import (
	"crypto/md5"
	"encoding/hex"
	"os"
	"strings"
	"testing"
)

// testKey is the spec's test key in the spelling that reproduces real
// signed samples (DESIGN §1.2).
const testKey = "MeTKJnC3fIAxeer8erADRTlJ"

// md5Upper is the test's own, independent signature: it does not call Sign.
func md5Upper(s string) string {
	sum := md5.Sum([]byte(s))
	return strings.ToUpper(hex.EncodeToString(sum[:]))
}

// Known answers computed outside Go with
//
//	printf '%s' "abc$KEY" | md5sum
func TestSignKnownAnswers(t *testing.T) {
	cases := []struct{ v, want string }{
		{"abc", "85D33C324C28FFA77E370F62983C3E8F"},
		{"", "0E5B904AD4AC53BF7B82D5472AAD6A1F"},
	}
	for _, c := range cases {
		if got := Sign([]byte(c.v), testKey); got != c.want {
			t.Errorf("Sign(%q) = %s, want %s", c.v, got, c.want)
		}
	}
}

// insureV is V of testdata/insure_request.xml, written by hand leaf by leaf.
// Its signature in the file was computed with md5sum from the same pieces.
var insureV = strings.Join([]string{
	"陈大文", "13888888888", "91440300MA5F0ABC1X",
	"U2FsdGVkX19kZXNpZ24gZG9jdW1lbnQgY2lwaGVydGV4dCBwcm9qZWN0IG5hbWUgJiA8c3BlY2lhbD4gY2hhcnM=", // CDATA
	"U2FsdGVkX1+QmlkU2VjdGlvbkNvZGUtWjQ0MDMwMDIwMTkwMDAwMDEwMDEtY2lwaGVydGV4dA==",
	"U2FsdGVkX1+VGVuZGVyZWVOYW1lLea3seWcs+W4guafkOafkOW7uuiuvueuoeeQhuS4reW/gw==",
	"U2FsdGVkX1+VGVuZGVyZWVDb2RlLTEyNDQwMzAwTUIyQzEyMzQ1WA==",
	"U2FsdGVkX1+VGVuZGVyZWVBZGRyZXNzLea3seWcs+W4guemj+eUsOWMug==",
	"U2FsdGVkX1+MDc1NS04ODg4ODg4OA==",
	"施工 & 监理", // unknown element ProjectType, &amp;
	"深圳市南山区科技园南区某某大厦 18 楼 1801 室",
	"ops@example.com",
	"20.00", "40000.00",
	"特别约定：起保日期需与政府批文一致 <附件> 中中", // &lt; &gt; &#x4E2D; &#20013;
	"2019-04-01 00:00:00", "2019-05-01 23:59:59", // unknown dateInfo{startDate,endDate}
	"",        // <remark/>
	" a<b ",   // white space around CDATA inside a leaf
	"gongbao", // extInfo after a comment
	"7f3c2a9e-0d4b-4e8f-9a61-2b5c8d7e1f00",
	"第一行\n  第二行", // multi-line leaf, not trimmed
}, "")

const insureSign = "DB31B28127959C444A0460163F8B237F" // printf '%s' "$V$KEY" | md5sum

func TestSignedValueInsureSample(t *testing.T) {
	data, err := os.ReadFile("testdata/insure_request.xml")
	if err != nil {
		t.Fatal(err)
	}
	env, err := Parse(data, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if env.Root != "insureRequest" || env.Type != RequestMessage {
		t.Errorf("root %q type %v", env.Root, env.Type)
	}
	if env.RequestUUID != "b98ec45e-8d21-42dd-8187-9637ba6e391e" || env.Sign != insureSign {
		t.Errorf("head: uuid %q sign %q (sign precedes requestUUID in the sample)", env.RequestUUID, env.Sign)
	}
	v := env.SignedValue()
	if string(v) != insureV {
		t.Fatalf("V mismatch\n got %q\nwant %q", v, insureV)
	}
	if md5Upper(insureV+testKey) != insureSign {
		t.Fatal("test vector inconsistent: hand-written V does not hash to the file's sign")
	}
	if i, ok := VerifyAny(v, env.Sign, []string{testKey}); !ok || i != 0 {
		t.Errorf("VerifyAny = %d, %v; want 0, true", i, ok)
	}
	if got := Sign(v, testKey); got != insureSign {
		t.Errorf("Sign = %s, want %s", got, insureSign)
	}
}

// Each case: an envelope (with @SIGN@ where the sign goes) and the V a peer
// computes by hand. The expected sign is computed here with crypto/md5.
func TestSignedValueVectors(t *testing.T) {
	cases := []struct {
		name  string
		body  string
		wantV string
	}{
		{"cdata", `<a><![CDATA[x & <y>]]></a><b>1</b>`, "x & <y>1"},
		{"entities", `<a>&amp;&lt;&gt;&quot;&apos;&#x4E2D;&#20013;</a>`, `&<>"'中中`},
		{"spaces inside values", `<stratDate>2019-04-01 00:00:00</stratDate>`, "2019-04-01 00:00:00"},
		{"leading and trailing spaces kept", `<name>  陈大文 </name>`, "  陈大文 "},
		{"whitespace around cdata", `<memo> <![CDATA[ a ]]>
</memo>`, "  a \n"},
		{"text and cdata pieces", `<x>a<![CDATA[b]]>c<![CDATA[]]>d</x>`, "abcd"},
		{"unknown elements", `<name>n</name><ProjectType>施工</ProjectType>
			<dateInfo>
				<startDate>2019-04-01 00:00:00</startDate>
				<endDate>2019-05-01 23:59:59</endDate>
			</dateInfo>`, "n施工2019-04-01 00:00:002019-05-01 23:59:59"},
		{"empty elements", `<a/><b></b><c>x</c><expressNo/>`, "x"},
		{"whitespace-only leaf is text", `<a> </a><b>
</b>`, " \n"},
		{"nested correctInfo", `
    <isPtextFlag>1</isPtextFlag>
    <endorseText>222</endorseText>
    <policyno>P440300</policyno>
    <correctInfo>
      <dateInfo>
        <stratDate>2019-04-01 00:00:00</stratDate>
        <endDate>2019-05-01 23:59:59</endDate>
        <tender>30</tender>
      </dateInfo>
      <insuredInfo>
        <name>测试</name>
        <idNumber>91440300X</idNumber>
        <mobile/>
      </insuredInfo>
      <baqRequiredInfo>
        <projectName>项目名</projectName>
        <projectNo>项目编号</projectNo>
        <tendereeAddress>招标人地址</tendereeAddress>
      </baqRequiredInfo>
    </correctInfo>
  `, "1222P4403002019-04-01 00:00:002019-05-01 23:59:5930测试91440300X项目名项目编号招标人地址"},
		{"comment inside leaf", `<a>x<!-- c -->y</a>`, "xy"},
		{"comment between elements", `<a>1</a> <!-- c --> <b>2</b>`, "12"},
		{"mixed content kept in order", `<a>pre <b>1</b> mid <c>2</c> </a>`, "pre 1 mid 2"},
		{"crlf normalised, &#xD; kept", "<a>x\r\ny&#xD;z</a>", "x\ny\rz"},
		{"attributes not signed", `<a k="v">1</a>`, "1"},
		{"empty body", ``, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sign := md5Upper(c.wantV + testKey)
			xml := `<?xml version="1.0" encoding="UTF-8"?><testRequest><requestHead>` +
				`<requestUUID>u-1</requestUUID><sign>` + sign + `</sign></requestHead>` +
				`<requestBody>` + c.body + `</requestBody></testRequest>`
			env, err := Parse([]byte(xml), Limits{})
			if err != nil {
				t.Fatal(err)
			}
			v := env.SignedValue()
			if string(v) != c.wantV {
				t.Fatalf("V = %q, want %q", v, c.wantV)
			}
			if _, ok := VerifyAny(v, env.Sign, []string{testKey}); !ok {
				t.Error("signature computed from the hand-written V does not verify")
			}
			if got := string(env.AppendSignedValue([]byte("p"))); got != "p"+c.wantV {
				t.Errorf("AppendSignedValue = %q", got)
			}
		})
	}
}

func TestSignBeforeUUIDAndLowerCase(t *testing.T) {
	v := "陈大文13888888888"
	sign := strings.ToLower(md5Upper(v + testKey))
	xml := `<insureRequest><requestHead><sign>` + sign + `</sign><requestUUID>abc</requestUUID></requestHead>` +
		`<requestBody><name>陈大文</name><mobile>13888888888</mobile></requestBody></insureRequest>`
	env, err := Parse([]byte(xml), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if env.RequestUUID != "abc" || env.Sign != sign {
		t.Fatalf("head read by position? uuid=%q sign=%q", env.RequestUUID, env.Sign)
	}
	if _, ok := VerifyAny(env.SignedValue(), env.Sign, []string{testKey}); !ok {
		t.Error("lower-case sign must verify")
	}
}

func TestVerifyAny(t *testing.T) {
	v := []byte("2019-04-01 00:00:00陈大文")
	good := md5Upper(string(v) + testKey)
	other := "0123456789abcdefABCDEF0123456789"
	oldSign := md5Upper(string(v) + other)

	cases := []struct {
		name      string
		sign      string
		keys      []string
		wantIndex int
		wantOK    bool
	}{
		{"match", good, []string{testKey}, 0, true},
		{"lower case", strings.ToLower(good), []string{testKey}, 0, true},
		{"mixed case", strings.ToLower(good[:16]) + good[16:], []string{testKey}, 0, true},
		{"wrong key", good, []string{"wrong-key"}, -1, false},
		{"missing sign", "", []string{testKey}, -1, false},
		{"no keys", good, nil, -1, false},
		{"empty key never verifies", md5Upper(string(v)), []string{""}, -1, false},
		{"rotation: new key second", good, []string{other, testKey}, 1, true},
		{"rotation: old key second", oldSign, []string{testKey, other}, 1, true},
		{"rotation: neither", md5Upper(string(v) + "third"), []string{testKey, other}, -1, false},
		{"same key twice: first index", good, []string{testKey, testKey}, 0, true},
		{"truncated", good[:31], []string{testKey}, -1, false},
		{"padded", good + " ", []string{testKey}, -1, false},
		{"one digit off", good[:31] + flip(good[31]), []string{testKey}, -1, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			i, ok := VerifyAny(v, c.sign, c.keys)
			if i != c.wantIndex || ok != c.wantOK {
				t.Errorf("VerifyAny = %d, %v; want %d, %v", i, ok, c.wantIndex, c.wantOK)
			}
		})
	}
}

func flip(c byte) string {
	if c == '0' {
		return "1"
	}
	return "0"
}

func TestSignedValueChangesWithAnyElement(t *testing.T) {
	// An element no mapping knows still changes V, so tampering with it
	// breaks the signature.
	base := `<r><requestHead/><requestBody><a>1</a>%s</requestBody></r>`
	e1, err := Parse([]byte(strings.Replace(base, "%s", "<ProjectType>1</ProjectType>", 1)), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	e2, err := Parse([]byte(strings.Replace(base, "%s", "<ProjectType>2</ProjectType>", 1)), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	s1 := Sign(e1.SignedValue(), testKey)
	if _, ok := VerifyAny(e2.SignedValue(), s1, []string{testKey}); ok {
		t.Error("tampered unknown element still verifies")
	}
}
