package protocol

import (
	"bytes"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"

	"golang.org/x/text/encoding/simplifiedchinese"
)

// explainMessage is the test message; %s is the sign. It has nested
// containers, the later-version elements ProjectType and dateInfo, an
// entity, a CDATA section, an empty element, a value with surrounding
// spaces and a multi-line value.
const explainMessage = `<?xml version="1.0" encoding="UTF-8"?>
<insureRequest>
  <requestHead>
    <requestUUID>u-1</requestUUID>
    <sign>%s</sign>
  </requestHead>
  <requestBody>
    <applicantInfo>
      <name> 陈大文 </name>
      <mobile>13888888888</mobile>
      <ProjectType>施工 &amp; 监理</ProjectType>
    </applicantInfo>
    <policyInfo>
      <sumPremium>20.00</sumPremium>
      <remark/>
      <endorseText><![CDATA[a<b]]></endorseText>
      <dateInfo>
        <startDate>2019-04-01 00:00:00</startDate>
        <endDate>2019-05-01 23:59:59</endDate>
      </dateInfo>
      <note>第一行
第二行</note>
    </policyInfo>
  </requestBody>
</insureRequest>
`

// explainLeaf is one leaf of explainMessage, written out by hand: its
// decoded text and its text as written in the source.
type explainLeaf struct{ name, text, raw string }

var explainLeaves = []explainLeaf{
	{"name", " 陈大文 ", " 陈大文 "},
	{"mobile", "13888888888", "13888888888"},
	{"ProjectType", "施工 & 监理", "施工 &amp; 监理"},
	{"sumPremium", "20.00", "20.00"},
	{"remark", "", ""},
	{"endorseText", "a<b", "<![CDATA[a<b]]>"},
	{"startDate", "2019-04-01 00:00:00", "2019-04-01 00:00:00"},
	{"endDate", "2019-05-01 23:59:59", "2019-05-01 23:59:59"},
	{"note", "第一行\n第二行", "第一行\n第二行"},
}

// Key spellings used by the tests. otherKey is unrelated to testKey.
const (
	misprintedKey = "MeTKJnC3flAxeer8erADRTIJ" // the spec's ambiguous glyphs read the other way
	otherKey      = "Q7vR2xK9pLw4Zt8N"
	oldKey        = "H3nB6mY1cV5xJ0qS"
	spacedKey     = "T4gW8kP2rD6sF1hL " // configured with a stray trailing space
)

// senderV applies a sender's per-leaf mistake to explainLeaves.
func senderV(fn func(explainLeaf) string) string {
	var b strings.Builder
	for _, l := range explainLeaves {
		b.WriteString(fn(l))
	}
	return b.String()
}

func text(l explainLeaf) string { return l.text }

var canonicalV = senderV(text)

// without returns V with the named leaves left out.
func without(names ...string) string {
	return senderV(func(l explainLeaf) string {
		if slices.Contains(names, l.name) {
			return ""
		}
		return l.text
	})
}

// inOrder returns V with the leaves in the given name order.
func inOrder(names ...string) string {
	var b strings.Builder
	for _, n := range names {
		for _, l := range explainLeaves {
			if l.name == n {
				b.WriteString(l.text)
			}
		}
	}
	return b.String()
}

func message(sign string) []byte { return []byte(fmt.Sprintf(explainMessage, sign)) }

// bodyXML is the requestBody element as written in explainMessage.
func bodyXML() string {
	m := string(message(""))
	start := strings.Index(m, "<requestBody>")
	end := strings.Index(m, "</requestBody>") + len("</requestBody>")
	return m[start:end]
}

// allText is every piece of character data under the body, indentation
// included: what a sender hashing the body's text content gets. It is
// computed with encoding/xml, independently of Explain's reading.
func allText(t *testing.T) string {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(bodyXML()))
	var b strings.Builder
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return b.String()
		}
		if err != nil {
			t.Fatal(err)
		}
		if cd, ok := tok.(xml.CharData); ok {
			b.Write(cd)
		}
	}
}

func hexUpper(b []byte) string { return strings.ToUpper(hex.EncodeToString(b)) }

func sha1Upper(s string) string {
	sum := sha1.Sum([]byte(s))
	return hexUpper(sum[:])
}

func sha256Upper(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hexUpper(sum[:])
}

func base64MD5(s string) string {
	sum := md5.Sum([]byte(s))
	return base64.StdEncoding.EncodeToString(sum[:])
}

func gbk(t *testing.T, s string) string {
	b, err := simplifiedchinese.GB18030.NewEncoder().String(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type explainCase struct {
	name    string
	data    []byte
	keys    []string
	cause   Cause
	variant string
	element string
	key     int
	say     []string // substrings the English explanation must contain
}

// explainCases builds one message per cause, its sign computed in the
// test by applying the sender's mistake to the documented algorithm.
func explainCases(t *testing.T) []explainCase {
	V, K := canonicalV, testKey
	trim := func(l explainLeaf) string { return strings.Trim(l.text, " \t\r\n") }
	ent := func(l explainLeaf) string {
		if strings.HasPrefix(l.raw, "<![CDATA[") {
			return l.text
		}
		return l.raw
	}
	cdata := func(l explainLeaf) string {
		if strings.HasPrefix(l.raw, "<![CDATA[") {
			return l.raw
		}
		return l.text
	}
	raw := func(l explainLeaf) string { return l.raw }
	escaped := func(l explainLeaf) string {
		return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(l.text)
	}
	null := func(l explainLeaf) string {
		if l.text == "" {
			return "null"
		}
		return l.text
	}
	var texts, sortedPairs []string
	for _, l := range explainLeaves {
		texts = append(texts, l.text)
		if l.text != "" {
			sortedPairs = append(sortedPairs, l.name+"="+l.text)
		}
	}
	slices.Sort(sortedPairs) // names are distinct: sorting pairs sorts by name
	compact := "<requestBody><applicantInfo><name> 陈大文 </name><mobile>13888888888</mobile>" +
		"<ProjectType>施工 &amp; 监理</ProjectType></applicantInfo><policyInfo><sumPremium>20.00</sumPremium>" +
		"<remark></remark><endorseText>a&lt;b</endorseText><dateInfo><startDate>2019-04-01 00:00:00</startDate>" +
		"<endDate>2019-05-01 23:59:59</endDate></dateInfo><note>第一行\n第二行</note></policyInfo></requestBody>"
	changed := bytes.Replace(message(md5Upper(V+K)), []byte("13888888888"), []byte("13888888889"), 1)
	keys := []string{K}

	return []explainCase{
		{"valid", message(md5Upper(V + K)), keys, CauseValid, "", "", 0, []string{"verifies"}},
		{"valid lower-case hex", message(strings.ToLower(md5Upper(V + K))), keys, CauseValidLowercase, "", "", 0, []string{"lower-case"}},
		{"valid with the second of two keys", message(md5Upper(V + K)), []string{oldKey, K}, CauseValid, "", "", 1, []string{"configured key 2 of 2"}},
		{"empty sign", message(""), keys, CauseNoSign, "", "", -1, []string{"no sign"}},
		{"absent sign", bytes.Replace(message(""), []byte("<sign></sign>"), nil, 1), keys, CauseNoSign, "", "", -1, nil},
		{"sign too short", message("ABC123"), keys, CauseMalformedSign, "", "", -1, []string{"6 characters"}},
		{"sign not hex", message("G" + md5Upper(V + K)[1:]), keys, CauseMalformedSign, "", "", -1, []string{`character 1, 'G'`}},
		{"base64 digest", message(base64MD5(V + K)), keys, CauseSignEncoding, "base64", "", 0, []string{"base64"}},
		{"SHA-1", message(sha1Upper(V + K)), keys, CauseWrongHash, "sha1", "", 0, []string{"SHA-1"}},
		{"SHA-256", message(sha256Upper(V + K)), keys, CauseWrongHash, "sha256", "", 0, []string{"SHA-256"}},
		{"40 hex characters, not SHA-1 either", message(sha1Upper(V + otherKey)), keys, CauseMalformedSign, "", "", -1, []string{"SHA-1 digest"}},
		{"no key appended", message(md5Upper(V)), keys, CauseUnkeyed, "", "", -1, []string{"without appending any key"}},
		{"key first", message(md5Upper(K + V)), keys, CauseKeyPlacement, "key_first", "", 0, nil},
		{"key as parameter", message(md5Upper(V + "&key=" + K)), keys, CauseKeyPlacement, "key_param", "", 0, nil},
		{"spec's misprinted key spelling", message(md5Upper(V + misprintedKey)), keys, CauseKeyVariant, "glyph_confusion", "", 0, []string{"look alike"}},
		{"key with trailing newline", message(md5Upper(V + K + "\n")), keys, CauseKeyVariant, "trailing_newline", "", 0, nil},
		{"configured key has a stray space", message(md5Upper(V + strings.TrimSpace(spacedKey))), []string{spacedKey}, CauseKeyVariant, "trimmed", "", 0, nil},
		{"key in upper case", message(md5Upper(V + strings.ToUpper(K))), keys, CauseKeyVariant, "upper_case", "", 0, nil},
		{"values trimmed", message(md5Upper(senderV(trim) + K)), keys, CauseValuesTrimmed, "leaf_trim", "", 0, []string{"trims"}},
		{"indentation hashed", message(md5Upper(allText(t) + K)), keys, CauseWhitespace, "indentation", "", 0, []string{"white space between elements"}},
		{"CR LF line ends", message(md5Upper(strings.ReplaceAll(V, "\n", "\r\n") + K)), keys, CauseLineEndings, "crlf", "", 0, nil},
		{"entities not decoded", message(md5Upper(senderV(ent) + K)), keys, CauseUndecodedText, "entities", "", 0, []string{"&amp;"}},
		{"CDATA markup hashed", message(md5Upper(senderV(cdata) + K)), keys, CauseUndecodedText, "cdata_markup", "", 0, []string{"CDATA"}},
		{"source text hashed", message(md5Upper(senderV(raw) + K)), keys, CauseUndecodedText, "as_written", "", 0, nil},
		{"values escaped", message(md5Upper(senderV(escaped) + K)), keys, CauseUndecodedText, "escaped", "", 0, nil},
		{"empty as null", message(md5Upper(senderV(null) + K)), keys, CauseEmptyAsNull, "null", "", 0, []string{`"null"`}},
		{"requestUUID hashed", message(md5Upper("u-1" + V + K)), keys, CauseHeadHashed, "uuid_first", "", 0, []string{"requestUUID"}},
		{"body XML hashed", message(md5Upper(bodyXML() + K)), keys, CauseMarkupHashed, "body_xml", "", 0, []string{"<requestBody>"}},
		{"compact body XML hashed", message(md5Upper(compact + K)), keys, CauseMarkupHashed, "compact_body_xml", "", 0, nil},
		{"alphabetical order", message(md5Upper(inOrder("ProjectType", "endDate", "endorseText", "mobile", "name", "note", "remark", "startDate", "sumPremium") + K)),
			keys, CauseFieldOrder, "alphabetical", "", 0, []string{"alphabetical order of element names"}},
		{"sorted map per level", message(md5Upper(inOrder("ProjectType", "mobile", "name", "endDate", "startDate", "endorseText", "note", "remark", "sumPremium") + K)),
			keys, CauseFieldOrder, "alphabetical_per_level", "", 0, nil},
		{"reverse order", message(md5Upper(inOrder("note", "endDate", "startDate", "endorseText", "remark", "sumPremium", "ProjectType", "mobile", "name") + K)),
			keys, CauseFieldOrder, "reverse", "", 0, nil},
		{"newer element missing", message(md5Upper(without("ProjectType") + K)), keys, CauseFieldMissing, "one_element", "applicantInfo/ProjectType", 0,
			[]string{"applicantInfo/ProjectType", "later platform versions"}},
		{"newer container missing", message(md5Upper(without("startDate", "endDate") + K)), keys, CauseFieldMissing, "one_element", "policyInfo/dateInfo", 0, nil},
		{"known element missing", message(md5Upper(without("mobile") + K)), []string{oldKey, K}, CauseFieldMissing, "one_element", "applicantInfo/mobile", 1,
			[]string{"does not know", "configured key 2 of 2"}},
		{"two elements missing", message(md5Upper(without("ProjectType", "startDate", "endDate") + K)), keys, CauseFieldMissing, "two_elements",
			"applicantInfo/ProjectType, policyInfo/dateInfo", 0, nil},
		{"separator", message(md5Upper(strings.Join(texts, "|") + K)), keys, CauseSeparator, "pipe", "", 0, []string{`"|"`}},
		{"name=value pairs", message(md5Upper(strings.Join(sortedPairs, "&") + "&key=" + K)), keys, CauseSeparator, "name_value_sorted_nonempty_key", "", 0, nil},
		{"GBK bytes", message(md5Upper(gbk(t, V) + K)), keys, CauseTextEncoding, "gbk", "", 0, []string{"GBK"}},
		{"another key", message(md5Upper(V + otherKey)), keys, CauseMismatch, "", "", -1, []string{"key that is not configured", "changed after signing"}},
		{"body changed after signing", changed, keys, CauseMismatch, "", "", -1, nil},
		{"not a message", []byte("not xml"), keys, CauseUnparsable, "", "", -1, nil},
		{"no key", message(md5Upper(V + K)), nil, CauseNoKey, "", "", -1, nil},
		{"only empty keys", message(md5Upper(V)), []string{""}, CauseNoKey, "", "", -1, nil},
	}
}

func TestExplainCauses(t *testing.T) {
	for _, tc := range explainCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			d := Explain(tc.data, tc.keys)
			if d.Cause != tc.cause || d.Variant != tc.variant || d.Element != tc.element || d.KeyIndex != tc.key {
				t.Fatalf("got %s/%s %q key %d, want %s/%s %q key %d\n%s",
					d.Cause, d.Variant, d.Element, d.KeyIndex, tc.cause, tc.variant, tc.element, tc.key, d.English)
			}
			if d.English == "" || d.Chinese == "" {
				t.Error("an explanation is missing")
			}
			for _, s := range tc.say {
				if !strings.Contains(d.English, s) {
					t.Errorf("explanation lacks %q: %s", s, d.English)
				}
			}
			if d.Verified() != (tc.cause == CauseValid || tc.cause == CauseValidLowercase) {
				t.Errorf("Verified() = %v", d.Verified())
			}
			if d.Incomplete {
				t.Error("the search hit its budget on a small message")
			}
		})
	}
}

// TestExplainNeverShowsKeys checks that no diagnosis carries any key, or
// any spelling derived from one, even in part.
func TestExplainNeverShowsKeys(t *testing.T) {
	secrets := []string{testKey, misprintedKey, otherKey, oldKey, spacedKey, strings.ToUpper(testKey), strings.ToLower(testKey)}
	for _, tc := range explainCases(t) {
		d := Explain(tc.data, tc.keys)
		out := fmt.Sprintf("%+v", d)
		for _, s := range secrets {
			for i := 0; i+6 <= len(s); i++ {
				if w := s[i : i+6]; strings.Contains(out, w) {
					t.Errorf("%s: diagnosis contains %q, part of a key", tc.name, w)
				}
			}
		}
	}
}

// TestExplainBudget: a search that runs out of budget says so and still
// gives the honest answer.
func TestExplainBudget(t *testing.T) {
	saved := explainBudget
	explainBudget = 2000
	defer func() { explainBudget = saved }()
	d := Explain(message(md5Upper(without("note")+testKey)), []string{testKey})
	if d.Cause != CauseMismatch || !d.Incomplete || !strings.Contains(d.English, "limit") {
		t.Fatalf("got %s incomplete=%v: %s", d.Cause, d.Incomplete, d.English)
	}
}

// TestExplainLargeBody: leaving out one element at a time stays linear,
// and pairs are not tried on large bodies.
func TestExplainLargeBody(t *testing.T) {
	var body strings.Builder
	for i := range 300 {
		fmt.Fprintf(&body, "<item><code>C%03d</code><amount>%d.00</amount></item>", i, i)
	}
	msg := `<r><requestHead><requestUUID>u</requestUUID><sign>` + md5Upper("x"+otherKey) +
		`</sign></requestHead><requestBody>` + body.String() + `</requestBody></r>`
	d := Explain([]byte(msg), []string{testKey})
	if d.Cause != CauseMismatch || d.Incomplete {
		t.Fatalf("got %s incomplete=%v", d.Cause, d.Incomplete)
	}
	if elements := 900; d.Tried < elements || d.Tried > elements+1000 {
		t.Errorf("tried %d candidates; want one per element plus a bounded set", d.Tried)
	}
	// The last item left out, found in the linear pass.
	v := strings.Builder{}
	for i := range 299 {
		fmt.Fprintf(&v, "C%03d%d.00", i, i)
	}
	msg = strings.Replace(msg, md5Upper("x"+otherKey), md5Upper(v.String()+testKey), 1)
	if d := Explain([]byte(msg), []string{testKey}); d.Cause != CauseFieldMissing || d.Element != "item[300]" {
		t.Errorf("got %s %q", d.Cause, d.Element)
	}
}

func TestGlyphVariants(t *testing.T) {
	var got []string
	glyphVariants(testKey, func(k string) bool { got = append(got, k); return true })
	if len(got) != 8 { // I and l each in {I, l, 1}: 3×3 spellings, less the key itself
		t.Errorf("%d variants", len(got))
	}
	if !slices.Contains(got, misprintedKey) || slices.Contains(got, testKey) {
		t.Error("the misprinted spelling is missing, or the key itself is included")
	}
	got = got[:0]
	glyphVariants(strings.Repeat("l0", 20), func(k string) bool { got = append(got, k); return true })
	if len(got) != 20*2+20*1 { // too many combinations: single substitutions only
		t.Errorf("%d single-substitution variants", len(got))
	}
}

func BenchmarkExplainMismatch(b *testing.B) {
	data := message(md5Upper(canonicalV + otherKey))
	keys := []string{testKey, oldKey}
	b.ReportAllocs()
	for b.Loop() {
		Explain(data, keys)
	}
}
