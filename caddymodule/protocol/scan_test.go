package protocol

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/antchfx/xmlquery"
)

// The scanner (scanDOMSlab, Parse's only XML parser) against the
// encoding/xml reference (parseDOMStd, reference_test.go): whatever the
// scanner accepts, the reference accepts with an identical tree, so the
// scanner never accepts what the reference refuses; on input with only
// ASCII names and no namespaces, whatever the reference accepts the
// scanner accepts, and whatever it refuses the scanner refuses with the
// same Kind. Input with a namespace or a non-ASCII name the scanner
// refuses itself (KindStructure). Parse, likewise, gives the envelope and
// signed value the reference gives, or an error of the same Kind.
//
// Run the fuzzer with:
//
//	go test -run XXX -fuzz FuzzScanMatchesDecoder -fuzztime 10m ./caddymodule/protocol/

// scanLimits are the limit sets the differential checks run under, so
// that limit refusals meet every other kind of refusal in the same input.
var scanLimits = []Limits{
	{},
	{MaxDepth: 4, MaxElements: 12, MaxValueChars: 8},
	{MaxValueChars: 1},
	{MaxDepth: 2, MaxElements: 3},
}

// scanCorpus covers each construct the scanner reads and each way it can
// go wrong; TestScanMatchesDecoder runs it and it seeds the fuzzer.
var scanCorpus = []string{
	// Accepted shapes.
	`<r/>`,
	`<r></r>`,
	"\n \t<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n<r>\n  <a>1</a>\n</r>\n",
	`<?xml version='1.0' encoding='utf-8' standalone="yes"?><r/>`,
	`<?xml  version="1.0"   encoding = "UTF-8"?><r/>`,
	`<?xml?><r/>`,
	`<r><a> <![CDATA[x]]> </a><b>&amp;&#x4E2D;<![CDATA[<y>]]>z</b><c/><d k="v" j='w'>1</d></r>`,
	`<r>pre <b>1</b> mid <!-- c --> <c>2</c> <?pi x="1" y?></r>`,
	"<r>a\r\nb\rc\r\r\nd&#13;&#xD;\r&#10;</r>",
	"<r a=\"x\r\ny\tz\nw\"/>",
	"<r><![CDATA[a\r\nb\r]]></r>",
	`<r>&lt;&gt;&amp;&apos;&quot;&#65;&#x41;&#x10FFFD;&#xD7FF;&#xE000;&#xFDCF;&#xFDF0;&#xFFFD;&#x0000041;&#00000065;&#9;</r>`,
	`<r a="&lt;&quot;&apos;&#x41;" b='"' c="'" d="]]>" e="" f=''/>`,
	`<r a="1"b="2"/>`,
	"<r a = \"1\"\n\tb\n=\n'2' ></r >",
	`<_r.1-2><a_b.c-d/></_r.1-2>`,
	`<r><!----><!-- - --><!--a-b--><![CDATA[]]><![CDATA[]]]><![CDATA[]]]]></r>`,
	`<r><?pi?><?pi ?><?pi>?><?pi?x?><?xml-stylesheet href="a.xsl"?><?pi  a=1 a=2 b='x' =c d=?></r>`,
	`<!-- before --><r/><!-- after --><?pi after?>` + "\n",
	`<![CDATA[ ]]><?xml version="1.0"?><r/>`,
	`&#32;&#x9;<r/>&#10;`,
	"<r>]</r><!-- ]] -->",
	`<r>]]&gt;] ]>]</r>`,
	"<r>\u00a0\u0085\u2028\ufffd\U0010ffff\x7f\u0080</r>",
	"<r><!-- \x01 \uffff --><?pi \x01\ufffe?></r>",
	"\ufeff<r/>",
	"<r>" + strings.Repeat("<d>", 30) + strings.Repeat("</d>", 30) + "</r>",

	// Refused by the scanner alone (KindStructure): namespaces and
	// non-ASCII names, which the reference reads.
	`<p:r xmlns:p="urn:p" xmlns="urn:d"><p:a/><b q:x="1" xmlns:q="urn:q"/></p:r>`,
	`<r xmlns="urn:d"><a/></r>`,
	`<r xml:lang="zh"/>`,
	`<根><子/></根>`,
	`<r><a:/></r>`,
	`<r><:a/></r>`,
	`<r><?a:b x?></r>`,

	// Refused: malformed.
	"", " ", "x", "<", "<r", "<r>", "<r/", "<r/ >", "</r>", "<r></s>", "<r></r", "<r></ r>",
	"<r>&", "<r>&lt", "<r>&lt</r>", "<r>&lt ;</r>", "<r>&nbsp;</r>", "<r>&;</r>", "<r>&#;</r>",
	"<r>&#x;</r>", "<r>&#X41;</r>", "<r>&#12a;</r>", "<r>&#0;</r>", "<r>&#1;</r>", "<r>&#xFFFE;</r>",
	"<r>&#x110000;</r>", "<r>&#99999999999999999999999;</r>", "<r>&é;</r>", "<r>&a:b;</r>",
	"<r>]]></r>", "<r>\x01</r>", "<r>\x00</r>", "<r>\uffff</r>", "<r>\ufffe</r>", "<r a=\"\x0b\"/>",
	"<r a=\"\uffff\"/>", "<r><![CDATA[\x1f]]></r>", "<r><![CDATA[\ufffe]]></r>",
	`<r a=1/>`, `<r a/>`, `<r a="1/>`, `<r a="<"/>`, `<r a="&x;"/>`, `<r "a"/>`, `<r =/>`, `<r a=/>`,
	`<1r/>`, `<-r/>`, `<.r/>`, `< r/>`, `<r 1a="1"/>`, `<r><1/></r>`,
	`<r><!- x --></r>`, `<r><!-- a -- b --></r>`, `<r><!-- a ---></r>`, `<r><!-- a`, `<r><!--`, `<r><!-`,
	`<r><![CDATA[x</r>`, `<r><![CDAT[x]]></r>`, `<r><![`, `<r><!`,
	`<r><?</r>`, `<r><? pi?></r>`, `<r><?1pi?></r>`, `<r><?pi x</r>`, `<r><?pi`,
	`<r/><r/>`, `<r/>x`, `x<r/>`, `<r/></r>`, `<!-- only -->`, `<?pi only?>`,
	`<r/><?xml version="1.0"?>`, `<!-- c --><?xml version="1.0"?><r/>`, `<?XML version="1.0"?><r/>`,
	`<?xml version="1.0"?><?xml version="1.0"?><r/>`,
	`<?xml version="1.1"?><r/>`, `<r><?xml version="2.0"?></r>`, `<?xml version=1.0?><r/>`,
	`<?Xml?><r/>`,
	// Duplicate attributes and references to surrogates or noncharacters,
	// which encoding/xml lets through and parseDOMStd refuses.
	`<r a="1" a="2"/>`, `<r a="1" b="2" a="1"/>`, `<r><e a='' a=""/></r>`,
	`<r xmlns:p="urn:p" p:a="1" p:a="2"/>`, `<r xmlns:p="urn:x" xmlns:q="urn:x" p:a="1" q:a="2"/>`,
	`<r xmlns:p="urn:p" xmlns:p="urn:q"/>`,
	"<r>&#xD800;</r>", "<r>&#xDFFF;</r>", "<r>&#55296;</r>", "<r>&#xFDD0;</r>", "<r>&#xFDEF;</r>",
	"<r>&#xFFFF;</r>", "<r>&#x1FFFE;</r>", "<r>&#x10FFFF;</r>", `<r a="&#xD800;"/>`, `<r a='&#xFDD0;'/>`,
	`<r xmlns:p="urn:p"><p:a>&#xD800;</p:a></r>`, `<r><a x="&#xDFFF;" xmlns:p="urn:p"/></r>`,
	"<r><![CDATA[&#xD800;]]><!-- &#xD800; --><?pi &#xD800;?></r>",

	// Refused: encoding.
	`<?xml version="1.0" encoding="GBK"?><r/>`,
	`<r><?xml encoding='latin1'?></r>`,
	`<r/><?xml version="1.0" encoding="UTF-16"?>`,

	// Refused: forbidden, or malformed when the declaration never ends.
	`<!DOCTYPE r><r/>`,
	`<!DOCTYPE r [<!ENTITY a "b">]><r>&a;</r>`,
	`<!DOCTYPE r [<!-- > --> <!ELEMENT r ANY>]><r/>`,
	`<!DOCTYPE r "unterminated>`,
	`<!DOCTYPE r [<!ENTITY a "b">`,
	`<!D<>`, `<!D<>>`, `<!>>`, `<!'>'>`, `<!D <!-- x`, `<!D <!- x>`,
	`<r><!ELEMENT x></r>`,

	// Refused: limits (under some of scanLimits), in every position.
	`<r><a>123456789</a></r>`,
	`<r><a>1234<!-- c -->56789</a></r>`,
	`<r><a>1234<![CDATA[56789]]></a></r>`,
	`<r><a>&#x4E2D;&#x4E2D;&#x4E2D;&#x4E2D;&#x4E2D;&#x4E2D;&#x4E2D;&#x4E2D;&#x4E2D;</a></r>`,
	`<r><a k="123456789"/></r>`,
	`<r><a k="123456789" 1/></r>`,
	`<r><a><b><c><d><e/></d></c></b></a></r>`,
	`<r><a/><a/><a/><a/><a/><a/><a/><a/><a/><a/><a/><a/><a/></r>`,
	`<r><a><b><c><d><e>&bad;</e></d></c></b></a></r>`,
	`<r><a>123456789&bad;</a></r>`,
	`<r><a>123456789</a><!DOCTYPE x></r>`,
	`<r/><r><a/></r>`,
	`<r><a>12<![CDATA[34]]>56<!--c-->78<?pi?>9</a></r>`,
	`<r><a>12<![CDATA[34]]>56<!--c-->7&#x4E2D;</a></r>`,

	// More nodes than the first slab holds.
	"<r>" + strings.Repeat("x<a/>", 100) + "y</r>",
}

func TestScanMatchesDecoder(t *testing.T) {
	for _, in := range scanSeeds(t) {
		for _, lim := range scanLimits {
			checkScan(t, in, lim)
		}
	}
}

// scanSeeds is scanCorpus plus every sample message of the repository.
func scanSeeds(t testing.TB) [][]byte {
	var seeds [][]byte
	for _, s := range scanCorpus {
		seeds = append(seeds, []byte(s))
	}
	for _, glob := range []string{"testdata/*.xml", "../../testdata/messages/*.xml", "../../testdata/golden/*.xml"} {
		files, err := filepath.Glob(glob)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			seeds = append(seeds, b)
		}
	}
	seeds = append(seeds, BuildResponse("insureResponse", "u", []Element{{Name: "m", Text: "a&b<c>\r\n\x01"}}, testKey))
	return seeds
}

func FuzzScanMatchesDecoder(f *testing.F) {
	for _, s := range scanSeeds(f) {
		for i := range scanLimits {
			f.Add(s, uint8(i))
		}
	}
	f.Fuzz(func(t *testing.T, data []byte, limits uint8) {
		checkScan(t, data, scanLimits[int(limits)%len(scanLimits)])
	})
}

// checkScan runs both builders and Parse on one input.
func checkScan(t *testing.T, data []byte, lim Limits) {
	t.Helper()
	lim = lim.withDefaults()
	checkParseMatchesStd(t, data, lim)
	in, err := checkBytes(data, lim)
	if err != nil {
		return // refused before either builder runs
	}
	want, stdErr := parseDOMStd(in, lim)
	got, kind := scanDOM(in, lim)
	switch {
	case got != nil:
		if stdErr != nil {
			t.Fatalf("scanner accepts what encoding/xml refuses (%v): %q", stdErr, in)
		}
		if diff := treeDiff(got, want); diff != "" {
			t.Fatalf("trees differ: %s\ninput %q", diff, in)
		}
	case foreignNames(in):
		// Out of the protocol's scope: refusing is always right, with
		// whatever Kind the first problem found has.
	default:
		var pe *Error
		if !errors.As(stdErr, &pe) {
			t.Fatalf("scanner refuses (%v) what encoding/xml accepts: %q", kind, in)
		}
		if pe.Kind != kind {
			t.Fatalf("scanner refuses as %v, encoding/xml as %v (%v): %q", kind, pe.Kind, stdErr, in)
		}
	}
}

// foreignNames: the input may hold a namespace or a non-ASCII name, which
// the scanner refuses and the reference reads (conservatively: any ':',
// "xmlns" or non-ASCII byte anywhere).
func foreignNames(in []byte) bool {
	if bytes.IndexByte(in, ':') >= 0 || bytes.Contains(in, []byte("xmlns")) {
		return true
	}
	for _, c := range in {
		if c >= 0x80 {
			return true
		}
	}
	return false
}

// parseStd is Parse as it was before the scanner: encoding/xml only.
func parseStd(data []byte, lim Limits) (*Envelope, error) {
	lim = lim.withDefaults()
	data, err := checkBytes(data, lim)
	if err != nil {
		return nil, err
	}
	doc, err := parseDOMStd(data, lim)
	if err != nil {
		return nil, err
	}
	return envelopeOf(doc)
}

func checkParseMatchesStd(t *testing.T, data []byte, lim Limits) {
	t.Helper()
	want, wantErr := parseStd(data, lim)
	got, gotErr := Parse(data, lim)
	if gotErr != nil {
		var g *Error
		if !errors.As(gotErr, &g) {
			t.Fatalf("not *Error: %v", gotErr)
		}
		if g.Kind == KindMalformed && g.msg != msgEmpty && g.Line == 0 {
			t.Fatalf("a well-formedness refusal without a line: %#v: %q", g, data)
		}
		if foreignNames(data) {
			return
		}
		var w *Error
		if !errors.As(wantErr, &w) {
			t.Fatalf("Parse refuses (%v) what the reference accepts: %q", gotErr, data)
		}
		if g.Kind != w.Kind {
			t.Fatalf("Parse error %#v, reference %#v: %q", g, w, data)
		}
		return
	}
	if wantErr != nil {
		t.Fatalf("Parse accepts what the reference refuses (%v): %q", wantErr, data)
	}
	if got.Root != want.Root || got.RequestUUID != want.RequestUUID || got.Sign != want.Sign || got.Type != want.Type {
		t.Fatalf("envelope %+v, reference %+v", got, want)
	}
	if !bytes.Equal(got.SignedValue(), want.SignedValue()) {
		t.Fatalf("signed value %q, reference %q", got.SignedValue(), want.SignedValue())
	}
	if diff := treeDiff(got.Head, want.Head); diff != "" {
		t.Fatalf("heads differ: %s", diff)
	}
	if diff := treeDiff(got.Body, want.Body); diff != "" {
		t.Fatalf("bodies differ: %s", diff)
	}
}

// treeDiff compares two trees node by node: every exported field, the
// links between nodes, and the unexported level through Level().
func treeDiff(a, b *xmlquery.Node) string {
	switch {
	case a == nil && b == nil:
		return ""
	case a == nil || b == nil:
		return "one tree is missing"
	}
	if a.Type != b.Type || a.Data != b.Data || a.Prefix != b.Prefix || a.NamespaceURI != b.NamespaceURI ||
		a.LineNumber != b.LineNumber || a.Level() != b.Level() {
		return "node " + nodeLabel(a) + " vs " + nodeLabel(b)
	}
	if !reflect.DeepEqual(a.Attr, b.Attr) {
		return "attributes of " + nodeLabel(a)
	}
	if !reflect.DeepEqual(a.ProcInst, b.ProcInst) {
		return "processing instruction " + nodeLabel(a)
	}
	ca, cb := a.FirstChild, b.FirstChild
	var prev *xmlquery.Node
	for ca != nil && cb != nil {
		if ca.Parent != a || ca.PrevSibling != prev {
			return "broken links under " + nodeLabel(a)
		}
		if d := treeDiff(ca, cb); d != "" {
			return d
		}
		prev = ca
		ca, cb = ca.NextSibling, cb.NextSibling
	}
	if ca != nil || cb != nil {
		return "child count of " + nodeLabel(a)
	}
	if a.LastChild != prev {
		return "LastChild of " + nodeLabel(a)
	}
	return ""
}

func nodeLabel(n *xmlquery.Node) string {
	return fmt.Sprintf("type %d %q", n.Type, n.Data)
}

// addPseudoAttrsNaive is addPseudoAttrs as it was: one AddAttr per pair.
func addPseudoAttrsNaive(n *xmlquery.Node, inst string) {
	for _, pair := range strings.Fields(inst) {
		if i := strings.IndexByte(pair, '='); i > 0 {
			xmlquery.AddAttr(n, pair[:i], strings.Trim(pair[i+1:], `"'`))
		}
	}
}

// TestPseudoAttrsMatchAddAttr holds addPseudoAttrs (one allocation, a set
// for repeats) to the original AddAttr loop, below and above the size
// where it switches to the set.
func TestPseudoAttrsMatchAddAttr(t *testing.T) {
	insts := []string{
		``, `x`, `=x`, `version="1.0" encoding="UTF-8"`, `a=1 a=2 b='x' =c d= e`,
		`p:a=1 p:a=2 a=3 :a=4 :a=5 p:=6 p:=7 a:b:c=8 a:b:c=9`,
		"a=\"1\"\u00a0b='2'\u2028c=3\td=\"'4'\"",
	}
	var many strings.Builder
	for i := range 40 {
		fmt.Fprintf(&many, "k%d=%d p:k%d=x k%d=again =v %d ", i%13, i, i%5, i%7, i)
	}
	insts = append(insts, many.String())
	for _, inst := range insts {
		var got, want xmlquery.Node
		addPseudoAttrs(&got, inst)
		addPseudoAttrsNaive(&want, inst)
		if len(got.Attr) != len(want.Attr) || (len(want.Attr) > 0 && !reflect.DeepEqual(got.Attr, want.Attr)) {
			t.Errorf("%q:\n got %v\nwant %v", inst, got.Attr, want.Attr)
		}
	}
}

// TestManyPseudoAttrsAreLinear: a 1 MiB processing instruction of distinct
// pseudo-attribute names took minutes (linear search per name); now it is
// parsed like any other message of its size.
func TestManyPseudoAttrsAreLinear(t *testing.T) {
	var b strings.Builder
	b.WriteString("<r><?pi ")
	for i := 0; b.Len() < DefaultMaxBytes-100; i++ {
		fmt.Fprintf(&b, "a%d=1 ", i)
	}
	b.WriteString("?><requestHead/><requestBody/></r>")
	for _, parse := range []func([]byte, Limits) (*Envelope, error){Parse, parseStd} {
		env, err := parse([]byte(b.String()), Limits{})
		if err != nil {
			t.Fatal(err)
		}
		if pi := env.Head.PrevSibling; pi == nil || len(pi.Attr) < 100000 {
			t.Fatal("pseudo-attributes lost")
		}
	}
}

// scanFragments are the pieces TestScanRandomFragments strings together:
// every construct, its broken variants, and the characters that matter.
var scanFragments = []string{
	"<r>", "</r>", "<a>", "</a>", "<b/>", "<a x='1'>", `<a x="&amp;" y='"'>`, "<a x=1>", "<a x='1' x='2'>", "<a x>", "< a>", "</ a>", "</a >",
	"<a\n>", "<1a>", "<_a.b-c>", "</_a.b-c>", "<p:a>", "<a xmlns='u'>", "<é/>",
	"text", " ", "\n", "\t", "\r", "\r\n", "中文", "\u00a0", "\ufeff", "\uffff", "\ufffe", "\x01", "\x00", "\x7f",
	"&lt;", "&gt;", "&amp;", "&apos;", "&quot;", "&#65;", "&#x4E2D;", "&#xD800;", "&#xFDD0;", "&#0;", "&#x110000;", "&nbsp;", "&", "&#", "&#x", ";", "&lt",
	"<![CDATA[", "]]>", "]", "]]", "<![CDATA[x]]>", "<![CDATA[]]>",
	"<!--", "-->", "--", "-", "<!-- c -->", "<!---->",
	"<?pi x='1'?>", "<?pi", "?>", "<?xml version='1.0'?>", `<?xml version="1.0" encoding="GBK"?>`, "<?xml version='1.1'?>", "<?XML?>",
	"<!DOCTYPE r>", "<!DOCTYPE r [", "<!ENTITY e 'x'>", "]>", "<!", "<![", "<", ">", "'", `"`, "=", "/", "/>",
	"<requestHead>", "</requestHead>", "<requestBody>", "</requestBody>", "<sign>S</sign>", "<requestUUID>u</requestUUID>",
}

// TestScanRandomFragments runs the differential check on random strings of
// fragments, which reach combinations byte-level mutation seldom builds.
// SCAN_FRAGMENT_ROUNDS raises the number of rounds for a longer run.
func TestScanRandomFragments(t *testing.T) {
	rounds := 5000
	if n, err := strconv.Atoi(os.Getenv("SCAN_FRAGMENT_ROUNDS")); err == nil {
		rounds = n
	}
	rng := rand.New(rand.NewPCG(7, uint64(rounds)))
	var b strings.Builder
	for i := range rounds {
		b.Reset()
		if i%2 == 0 {
			for n := 1 + rng.IntN(14); n > 0; n-- {
				b.WriteString(scanFragments[rng.IntN(len(scanFragments))])
			}
		} else {
			writeRandomDocument(&b, rng)
		}
		checkScan(t, []byte(b.String()), scanLimits[i%len(scanLimits)])
	}
}

// scanContent are well-formed pieces of element content.
var scanContent = []string{
	"text", " ", "\n  ", "\r\n", "中文，；", "&lt;&gt;&amp;&apos;&quot;", "&#65;&#x4E2D;&#13;", "]", "]]", "a]]&gt;",
	"<![CDATA[x]]>", "<![CDATA[]]>", "<![CDATA[ <a> & \r\n ]]]>", "<!-- c -->", "<!---->", "<?pi x='1' y?>", "<?pi?>",
	"<e/>", `<e a="1" b='&amp;' c="'" d='"' e="a\tb\nc\r\nd"/>`, "<e\n/>", "<e></e >",
}

// writeRandomDocument writes a mostly well-formed document: an optional
// declaration, one root of nested elements with random content and,
// sometimes, one random fragment spliced in anywhere.
func writeRandomDocument(b *strings.Builder, rng *rand.Rand) {
	if rng.IntN(2) == 0 {
		b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	}
	var element func(depth int)
	element = func(depth int) {
		name := []string{"r", "a", "b_c", "d.e-1", "requestBody"}[rng.IntN(5)]
		b.WriteString("<" + name)
		if rng.IntN(4) == 0 {
			b.WriteString(` k="v&amp;"`)
		}
		b.WriteString(">")
		for n := rng.IntN(5); n > 0; n-- {
			if depth < 6 && rng.IntN(3) == 0 {
				element(depth + 1)
			} else {
				b.WriteString(scanContent[rng.IntN(len(scanContent))])
			}
		}
		b.WriteString("</" + name + ">")
	}
	element(0)
	if rng.IntN(3) == 0 {
		b.WriteString("\n<!-- after -->\n")
	}
	if rng.IntN(4) == 0 {
		doc := b.String()
		at := rng.IntN(len(doc) + 1)
		b.Reset()
		b.WriteString(doc[:at] + scanFragments[rng.IntN(len(scanFragments))] + doc[at:])
	}
}
