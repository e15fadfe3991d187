package protocol

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func envelope(body string) string {
	return `<?xml version="1.0" encoding="UTF-8"?><insureRequest><requestHead><requestUUID>u</requestUUID>` +
		`<sign>S</sign></requestHead><requestBody>` + body + `</requestBody></insureRequest>`
}

func TestParseErrors(t *testing.T) {
	deep := strings.Repeat("<d>", 40) + strings.Repeat("</d>", 40)
	many := strings.Repeat("<e>1</e>", 2100)
	cases := []struct {
		name    string
		in      string
		lim     Limits
		kind    Kind
		message string // Chinese Message() prefix
	}{
		{"empty", "", Limits{}, KindMalformed, "报文为空"},
		{"blank", " \n ", Limits{}, KindMalformed, "报文为空"},
		{"not xml", "hello, world", Limits{}, KindMalformed, "报文不是合法的XML"},
		{"json", `{"a":1}`, Limits{}, KindMalformed, "报文不是合法的XML"},
		{"unclosed", "<insureRequest><requestHead>", Limits{}, KindMalformed, "报文不是合法的XML"},
		{"mismatched", envelope("<a>1</b>"), Limits{}, KindMalformed, "报文不是合法的XML"},
		{"spec example typo", "<?xml version=\"1.0\"?>\n<r><resultFlag>>true</resultFlag><a>x<a></r>", Limits{}, KindMalformed, "报文不是合法的XML(第2行)"},
		{"unknown entity", envelope("<a>&nbsp;</a>"), Limits{}, KindMalformed, "报文不是合法的XML"},
		{"two roots", envelope("") + "<again/>", Limits{}, KindMalformed, "报文不是合法的XML"},
		{"text after root", envelope("") + "junk", Limits{}, KindMalformed, "报文不是合法的XML"},
		{"late declaration", `<r/><?xml version="1.0"?>`, Limits{}, KindMalformed, "报文不是合法的XML"},
		{"comment before declaration", `<!-- c --><?xml version="1.0"?><r/>`, Limits{}, KindMalformed, "报文不是合法的XML"},
		{"upper-case declaration", `<?XML version="1.0"?><r/>`, Limits{}, KindMalformed, "报文不是合法的XML"},
		{"control character", envelope("<a>\x01</a>"), Limits{}, KindMalformed, "报文不是合法的XML"},
		{"xml 1.1", `<?xml version="1.1"?>` + envelope(""), Limits{}, KindMalformed, "报文不是合法的XML"},
		{"doctype", `<?xml version="1.0"?><!DOCTYPE insureRequest [<!ELEMENT a ANY>]>` + envelope("")[38:], Limits{}, KindForbidden, "报文不允许包含DOCTYPE或ENTITY声明"},
		{"entity", `<!DOCTYPE r [<!ENTITY x "yyyy"><!ENTITY y "&x;&x;">]><r><requestHead/><requestBody><a>&y;</a></requestBody></r>`, Limits{}, KindForbidden, "报文不允许包含DOCTYPE或ENTITY声明"},
		{"bare entity directive", `<!ENTITY x "y"><r/>`, Limits{}, KindForbidden, "报文不允许包含DOCTYPE或ENTITY声明"},
		{"external entity", `<!DOCTYPE r SYSTEM "file:///etc/passwd"><r/>`, Limits{}, KindForbidden, "报文不允许包含DOCTYPE或ENTITY声明"},
		{"encoding GBK", `<?xml version="1.0" encoding="GBK"?><r/>`, Limits{}, KindEncoding, "报文编码必须为UTF-8"},
		{"encoding ISO-8859-1", `<?xml version="1.0" encoding='ISO-8859-1'?><r/>`, Limits{}, KindEncoding, "报文编码必须为UTF-8"},
		{"invalid UTF-8 bytes", envelope("<name>\xb3\xc2\xb4\xf3\xce\xc4</name>"), Limits{}, KindEncoding, "报文编码必须为UTF-8"},
		{"invalid UTF-8 in comment", envelope("<!-- \xff -->"), Limits{}, KindEncoding, "报文编码必须为UTF-8"},
		{"UTF-16 BOM", "\xff\xfe<\x00r\x00/\x00>\x00", Limits{}, KindEncoding, "报文编码必须为UTF-8"},
		{"too big", envelope(strings.Repeat("<a>x</a>", 200)), Limits{MaxBytes: 1000}, KindTooLarge, "报文超过大小限制(最多1000字节)"},
		{"too big default", envelope(strings.Repeat("x", 1<<20)), Limits{}, KindTooLarge, "报文超过大小限制(最多1048576字节)"},
		{"too deep", envelope(deep), Limits{}, KindTooLarge, "报文嵌套层级超过限制(最多32层)"},
		{"too many elements", envelope(many), Limits{}, KindTooLarge, "报文节点数量超过限制(最多2000个)"},
		{"value too long", envelope("<a>" + strings.Repeat("中", 11) + "</a>"), Limits{MaxValueChars: 10}, KindTooLarge, "报文字段值超过长度限制(最多10个字符)"},
		{"value too long across cdata", envelope("<a>" + strings.Repeat("x", 6) + "<![CDATA[" + strings.Repeat("y", 6) + "]]></a>"), Limits{MaxValueChars: 10}, KindTooLarge, "报文字段值超过长度限制"},
		{"attribute too long", envelope(`<a k="` + strings.Repeat("x", 11) + `"/>`), Limits{MaxValueChars: 10}, KindTooLarge, "报文字段值超过长度限制"},
		{"missing body", `<insureRequest><requestHead><requestUUID>u</requestUUID><sign>s</sign></requestHead></insureRequest>`, Limits{}, KindStructure, "报文缺少requestBody节点"},
		{"missing head", `<insureRequest><requestBody/></insureRequest>`, Limits{}, KindStructure, "报文缺少requestHead节点"},
		{"missing response body", `<insureResponse><responseHead/></insureResponse>`, Limits{}, KindStructure, "报文缺少responseBody节点"},
		{"response root without envelope", `<insureResponse/>`, Limits{}, KindStructure, "报文缺少responseHead节点"},
		{"head and body of different types", `<r><requestHead/><responseBody/></r>`, Limits{}, KindStructure, "报文缺少requestBody节点"},
		{"nested body not found", `<r><requestHead/><x><requestBody/></x></r>`, Limits{}, KindStructure, "报文缺少requestBody节点"},
		{"two bodies", `<r><requestHead/><requestBody/><requestBody/></r>`, Limits{}, KindStructure, "报文包含重复的requestBody节点"},
		{"two heads", `<r><requestHead/><responseHead/><requestBody/></r>`, Limits{}, KindStructure, "报文包含重复的requestHead节点"},
		{"duplicate sign", `<r><requestHead><sign>a</sign><sign>b</sign></requestHead><requestBody/></r>`, Limits{}, KindStructure, "报文包含重复的sign节点"},
		{"duplicate requestUUID", `<r><requestHead><requestUUID>a</requestUUID><requestUUID>b</requestUUID></requestHead><requestBody/></r>`, Limits{}, KindStructure, "报文包含重复的requestUUID节点"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			env, err := Parse([]byte(c.in), c.lim)
			if err == nil {
				t.Fatalf("accepted: %+v", env)
			}
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("error %T %v is not *Error", err, err)
			}
			if pe.Kind != c.kind {
				t.Errorf("kind = %v, want %v (%v)", pe.Kind, c.kind, err)
			}
			if !strings.HasPrefix(pe.Message(), c.message) {
				t.Errorf("Message() = %q, want prefix %q", pe.Message(), c.message)
			}
			if !errors.Is(err, c.kind.sentinel()) {
				t.Errorf("errors.Is(err, sentinel of %v) = false", c.kind)
			}
			if !strings.HasPrefix(err.Error(), "protocol: "+c.kind.String()+": ") {
				t.Errorf("Error() = %q", err.Error())
			}
		})
	}
}

func TestParseErrorsNeverLeakValues(t *testing.T) {
	secret := "13812345678"
	inputs := []string{
		envelope("<mobile>" + secret + "</mobile></oops>"),
		envelope(`<!DOCTYPE ` + secret + `>`),
		envelope("<mobile>" + secret + "\xff</mobile>"),
		envelope("<url>a=1&" + secret + "</url>"),
		envelope("<url>a=1&" + secret + ";</url>"),
		envelope("<" + secret + "/>"),
		envelope("<a>" + strings.Repeat(secret, 10) + "</a>"),
	}
	for _, in := range inputs {
		_, err := Parse([]byte(in), Limits{MaxValueChars: 50})
		if err == nil {
			t.Fatalf("accepted %q", in)
		}
		var pe *Error
		errors.As(err, &pe)
		if strings.Contains(err.Error(), secret) || strings.Contains(pe.Message(), secret) {
			t.Errorf("error exposes message content: %v / %s", err, pe.Message())
		}
	}
}

// TestParseSyntaxErrorLine: a well-formedness refusal says on which line
// the problem is, in Error() and in the Chinese message.
func TestParseSyntaxErrorLine(t *testing.T) {
	_, err := Parse([]byte("<r>\n<a></b></r>"), Limits{})
	var pe *Error
	if !errors.As(err, &pe) || pe.Line != 2 || pe.Message() != "报文不是合法的XML(第2行)" {
		t.Fatalf("want a malformed refusal on line 2, got %v", err)
	}
	if !strings.Contains(pe.Error(), "(line 2)") {
		t.Errorf("Error() = %q", pe.Error())
	}
}

// TestParseRefusesForeignNames: the protocol uses no namespaces and ASCII
// names only (DESIGN §1.3). The scanner refuses the rest itself, as
// well-formed XML that is no protocol message, with a message that
// quotes nothing of the input.
func TestParseRefusesForeignNames(t *testing.T) {
	for _, c := range []struct {
		name, in string
		line     int
	}{
		{"prefixed root", `<p:insureRequest xmlns:p="urn:x"><p:requestHead/><p:requestBody><p:a>1</p:a></p:requestBody></p:insureRequest>`, 1},
		{"prefixed field", envelope("<p:claimPhone xmlns:p=\"urn:p\">13812345678</p:claimPhone>"), 1},
		{"default namespace", envelope(`<a xmlns="urn:d">1</a>`), 1},
		{"xml:lang", envelope(`<a xml:lang="zh">1</a>`), 1},
		{"non-ASCII element", "<insureRequest>\n<requestHead/><requestBody><投保人>张三</投保人></requestBody></insureRequest>", 2},
		{"non-ASCII attribute", envelope(`<a 类型="1">1</a>`), 1},
		{"prefixed instruction", envelope(`<?a:b x?>`), 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			pe := mustRefuse(t, c.in, KindStructure)
			if pe.Message() != msgForeignName || pe.Line != c.line {
				t.Errorf("message %q line %d, want %q line %d", pe.Message(), pe.Line, msgForeignName, c.line)
			}
			if !errors.Is(pe, ErrStructure) || strings.ContainsAny(pe.Error()+pe.Message(), "张投类") ||
				strings.Contains(pe.Error(), "138") {
				t.Errorf("Error() = %q", pe.Error())
			}
		})
	}
}

func TestParseAccepts(t *testing.T) {
	cases := []struct{ name, in string }{
		{"lower-case utf-8", `<?xml version="1.0" encoding="utf-8"?>` + envelope("")[38:]},
		{"mixed-case utf-8", `<?xml version="1.0" encoding="Utf-8"?>` + envelope("")[38:]},
		{"no declaration", envelope("")[38:]},
		{"BOM", "\xEF\xBB\xBF" + envelope("<a>1</a>")},
		{"leading newline", "\n" + envelope("")},
		{"comments and PI around", envelope("")[:38] + "<!-- hi -->" + envelope("<?pi x?><a>1</a>")[38:] + "<!-- bye -->\n"},
		{"at the limits", envelope(strings.Repeat("<d>", 29) + strings.Repeat("</d>", 29))}, // root+body+29 = 31 < 32
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			env, err := Parse([]byte(c.in), Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if env.Root != "insureRequest" || env.Body == nil || env.Head == nil {
				t.Errorf("envelope %+v", env)
			}
		})
	}
}

func TestParseExactLimits(t *testing.T) {
	// root(1) + body(2) + 30 nested = depth 32: accepted; 31 nested: refused.
	ok := envelope(strings.Repeat("<d>", 30) + strings.Repeat("</d>", 30))
	if _, err := Parse([]byte(ok), Limits{}); err != nil {
		t.Errorf("depth 32 refused: %v", err)
	}
	bad := envelope(strings.Repeat("<d>", 31) + strings.Repeat("</d>", 31))
	if _, err := Parse([]byte(bad), Limits{}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("depth 33: %v", err)
	}
	// 5 envelope elements (root, head, uuid, sign, body) + 5 = 10.
	ten := envelope(strings.Repeat("<e/>", 5))
	if _, err := Parse([]byte(ten), Limits{MaxElements: 10}); err != nil {
		t.Errorf("10 elements refused: %v", err)
	}
	if _, err := Parse([]byte(ten), Limits{MaxElements: 9}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("10 elements with max 9: %v", err)
	}
	if _, err := Parse([]byte(ten), Limits{MaxBytes: len(ten)}); err != nil {
		t.Errorf("exactly MaxBytes refused: %v", err)
	}
	if _, err := Parse([]byte(ten), Limits{MaxBytes: len(ten) - 1}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("MaxBytes-1: %v", err)
	}
	val := envelope("<a>" + strings.Repeat("中", 10) + "</a>")
	if _, err := Parse([]byte(val), Limits{MaxValueChars: 10}); err != nil {
		t.Errorf("10 characters (30 bytes) refused: %v", err)
	}
}

// TestParseAttributeCount checks the per-element attribute bound on both
// parsers: the scanner (Parse), and the encoding/xml reference on a
// namespaced element (which Parse refuses for its namespace).
func TestParseAttributeCount(t *testing.T) {
	attrs := func(n int, first string) string {
		var b strings.Builder
		b.WriteString("<e")
		for i := range n {
			if i == 0 && first != "" {
				b.WriteString(" " + first)
				continue
			}
			fmt.Fprintf(&b, ` a%d="%d"`, i, i)
		}
		b.WriteString(">x</e>")
		return b.String()
	}
	for _, parser := range []struct{ name, first string }{
		{"scanner", ""},
		{"encoding/xml", `xmlns:p="urn:p"`},
	} {
		t.Run(parser.name, func(t *testing.T) {
			parse := parserFor(parser.first == "")
			at := envelope(attrs(DefaultMaxAttributes, parser.first))
			if _, err := parse([]byte(at), Limits{}); err != nil {
				t.Errorf("%d attributes refused: %v", DefaultMaxAttributes, err)
			}
			over := envelope(attrs(DefaultMaxAttributes+1, parser.first))
			_, err := parse([]byte(over), Limits{})
			var pe *Error
			if !errors.As(err, &pe) || pe.Kind != KindTooLarge {
				t.Fatalf("%d attributes: %v", DefaultMaxAttributes+1, err)
			}
			if want := "报文节点属性数量超过限制(最多16个)"; pe.Message() != want {
				t.Errorf("message %q, want %q", pe.Message(), want)
			}
			if _, err := parse([]byte(at), Limits{MaxAttributes: 4}); !errors.Is(err, ErrTooLarge) {
				t.Errorf("%d attributes with max 4: %v", DefaultMaxAttributes, err)
			}
		})
	}
}

func TestParseResponseAndText(t *testing.T) {
	in := `<?xml version="1.0" encoding="UTF-8"?>
<queryPolicyResponse>
  <responseHead>
    <requestUUID> 5f0c </requestUUID>
    <sign>
      abc
    </sign>
  </responseHead>
  <responseBody>
    <resultFlag>true</resultFlag>
    <resultMessage><![CDATA[成功 & ok]]></resultMessage>
    <info><code> 7 </code></info>
    <empty/>
  </responseBody>
</queryPolicyResponse>`
	env, err := Parse([]byte(in), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if env.Type != ResponseMessage || env.Root != "queryPolicyResponse" {
		t.Errorf("type %v root %q", env.Type, env.Root)
	}
	if env.RequestUUID != "5f0c" || env.Sign != "abc" {
		t.Errorf("head values not trimmed: %q %q", env.RequestUUID, env.Sign)
	}
	for _, c := range []struct {
		path []string
		want string
		ok   bool
	}{
		{[]string{"resultFlag"}, "true", true},
		{[]string{"resultMessage"}, "成功 & ok", true},
		{[]string{"info", "code"}, " 7 ", true},
		{[]string{"info"}, " 7 ", true},
		{[]string{"empty"}, "", true},
		{[]string{"missing"}, "", false},
		{[]string{"info", "missing"}, "", false},
		{[]string{"resultFlag", "deeper"}, "", false},
		{nil, "", false},
	} {
		got, ok := env.Text(c.path...)
		if got != c.want || ok != c.ok {
			t.Errorf("Text(%v) = %q, %v; want %q, %v", c.path, got, ok, c.want, c.ok)
		}
	}
	if env.Find() != env.Body || env.Find("info", "code") == nil {
		t.Error("Find")
	}
}

func TestParseMissingSignIsNotAParseError(t *testing.T) {
	env, err := Parse([]byte(`<r><requestHead><requestUUID>u</requestUUID></requestHead><requestBody><a>1</a></requestBody></r>`), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if env.Sign != "" {
		t.Fatalf("sign %q", env.Sign)
	}
	if _, ok := VerifyAny(env.SignedValue(), env.Sign, []string{testKey}); ok {
		t.Error("missing sign verified")
	}
}

func TestKindStrings(t *testing.T) {
	want := map[Kind]string{KindMalformed: "malformed", KindForbidden: "forbidden", KindTooLarge: "too_large",
		KindEncoding: "encoding", KindStructure: "structure", Kind(99): "kind(99)"}
	for k, s := range want {
		if k.String() != s {
			t.Errorf("%d: %q", int(k), k.String())
		}
	}
}

// TestParseRefusesDuplicateAttributes: XML forbids one attribute name
// twice in a start tag and encoding/xml lets it through; both parsers
// refuse it, and the message quotes nothing of the input.
func TestParseRefusesDuplicateAttributes(t *testing.T) {
	for _, tc := range []struct{ name, body string }{
		{"scanner", `<mobile kind="m" kind="13812345678">1</mobile>`},
		{"encoding/xml", `<mobile xmlns:p="urn:p" p:kind="m" p:kind="13812345678">1</mobile>`},
		{"encoding/xml, two prefixes of one namespace", `<mobile xmlns:p="urn:x" xmlns:q="urn:x" p:k="1" q:k="13812345678"/>`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pe := mustRefuseBy(t, parserFor(tc.name == "scanner"), envelope(tc.body), KindMalformed)
			scannerRefuses(t, envelope(tc.body), tc.name == "scanner")
			if want := "报文不是合法的XML: 节点含有重复的属性(第1行)"; pe.Message() != want {
				t.Errorf("Message() = %q, want %q", pe.Message(), want)
			}
			if !strings.Contains(pe.Error(), "duplicate attribute") || strings.Contains(pe.Error(), "13812345678") {
				t.Errorf("Error() = %q", pe.Error())
			}
		})
	}
}

// TestParseRefusesNonCharacterReferences: encoding/xml turns &#xD800;
// into U+FFFD and accepts noncharacters, so two different inputs could
// carry one signed text and peers in other languages would read them
// differently. Both parsers refuse them, in text and in attributes.
func TestParseRefusesNonCharacterReferences(t *testing.T) {
	refs := []string{"&#xD800;", "&#xDBFF;", "&#xDC00;", "&#xDFFF;", "&#55296;", "&#xFDD0;", "&#xFDEF;",
		"&#xFFFE;", "&#xFFFF;", "&#x1FFFE;", "&#x10FFFF;", "&#0;", "&#x1F;"}
	for _, ref := range refs {
		for _, tc := range []struct{ name, body string }{
			{"scanner text", "<name>浙江" + ref + "公司</name>"},
			{"scanner attribute", `<name k="` + ref + `">x</name>`},
			{"encoding/xml text", `<p:name xmlns:p="urn:p">浙江` + ref + `公司</p:name>`},
			{"encoding/xml attribute", `<name xmlns:p="urn:p" p:k="` + ref + `">x</name>`},
		} {
			t.Run(ref+" "+tc.name, func(t *testing.T) {
				own := strings.HasPrefix(tc.name, "scanner")
				pe := mustRefuseBy(t, parserFor(own), envelope(tc.body), KindMalformed)
				scannerRefuses(t, envelope(tc.body), own)
				if !strings.HasPrefix(pe.Message(), "报文不是合法的XML") || strings.Contains(pe.Message(), "浙江") ||
					strings.ContainsAny(pe.Message(), "&#") {
					t.Errorf("Message() = %q", pe.Message())
				}
			})
		}
	}
	// Neighbours of the refused ranges, and the same text where "&#" is
	// not a reference, stay accepted.
	for _, ok := range []string{"<a>&#xD7FF;&#xE000;&#xFDCF;&#xFDF0;&#xFFFD;&#x10000;&#x10FFFD;</a>",
		"<a><![CDATA[&#xD800;]]><!-- &#xD800; --></a>", "<a>\uFFFD</a>"} {
		if _, err := Parse([]byte(envelope(ok)), Limits{}); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
}

// mustRefuse parses in and returns its *Error, which must be of kind k.
func mustRefuse(t *testing.T, in string, k Kind) *Error {
	t.Helper()
	return mustRefuseBy(t, Parse, in, k)
}

// parserFor is Parse for the scanner's own cases, and the encoding/xml
// reference (parseStd) for the cases only namespaces let reach it: Parse
// refuses those for their namespace first.
func parserFor(own bool) func([]byte, Limits) (*Envelope, error) {
	if own {
		return Parse
	}
	return parseStd
}

func mustRefuseBy(t *testing.T, parse func([]byte, Limits) (*Envelope, error), in string, k Kind) *Error {
	t.Helper()
	_, err := parse([]byte(in), Limits{})
	var pe *Error
	if !errors.As(err, &pe) {
		t.Fatalf("want *Error, got %v", err)
	}
	if pe.Kind != k {
		t.Fatalf("kind %v, want %v (%v)", pe.Kind, k, err)
	}
	return pe
}

// scannerRefuses checks that the scanner refuses in as malformed (own)
// or for its namespace (!own), never accepting it.
func scannerRefuses(t *testing.T, in string, own bool) {
	t.Helper()
	doc, kind := scanDOM([]byte(in), Limits{}.withDefaults())
	want := KindMalformed
	if !own {
		want = KindStructure // a namespace, before anything else
	}
	if doc != nil || kind != want {
		t.Errorf("scanDOM: tree %v, kind %v; want kind %v", doc != nil, kind, want)
	}
}
