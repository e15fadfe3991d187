package protocol

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/antchfx/xmlquery"
)

// TestDOMMatchesXMLQuery proves the single-pass tree builder produces the
// tree xmlquery.Parse produces, node for node, so code written against
// xmlquery (the mapping engine, xpath queries) sees no difference.
func TestDOMMatchesXMLQuery(t *testing.T) {
	sample, err := os.ReadFile("testdata/insure_request.xml")
	if err != nil {
		t.Fatal(err)
	}
	corpus := []string{
		string(sample),
		envelope(`<a> <![CDATA[x]]> </a><b>&amp;&#x4E2D;<![CDATA[<y>]]>z</b><c/><d k="v" j='w'>1</d>`),
		envelope(`<a>pre <b>1</b> mid <!-- c --> <c>2</c> </a><?pi x="1" y?>`),
		"<r>\n\t<requestHead><sign>s</sign></requestHead>\r\n<requestBody>a\r\nb</requestBody></r>",
		`<p:r xmlns:p="urn:p" xmlns="urn:d"><p:requestHead/><requestBody><q:a xmlns:q="urn:q" q:at="1">x</q:a><b/></requestBody></p:r>`,
		string(BuildResponse("insureResponse", "u", []Element{{Name: "m", Text: "a&b<c>\r\n"}}, testKey)),
	}
	for i, in := range corpus {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			want, err := xmlquery.ParseWithOptions(strings.NewReader(in), xmlquery.ParserOptions{
				Decoder: &xmlquery.DecoderOptions{Strict: true},
			})
			if err != nil {
				t.Fatal(err)
			}
			build := parseDOM
			if strings.Contains(in, "xmlns") {
				build = parseDOMStd // the reference reads namespaces; the scanner refuses them
			}
			got, err := build([]byte(in), Limits{}.withDefaults())
			if err != nil {
				t.Fatal(err)
			}
			var gw, ww bytes.Buffer
			dumpTree(&gw, rootElement(got), "")
			dumpTree(&ww, rootElement(want), "")
			if gw.String() != ww.String() {
				t.Errorf("trees differ\n--- parseDOM\n%s\n--- xmlquery\n%s", gw.String(), ww.String())
			}
		})
	}
}

func dumpTree(w *bytes.Buffer, n *xmlquery.Node, indent string) {
	fmt.Fprintf(w, "%stype=%d data=%q prefix=%q ns=%q attrs=%v", indent, n.Type, n.Data, n.Prefix, n.NamespaceURI, n.Attr)
	if n.ProcInst != nil {
		fmt.Fprintf(w, " pi=%+v", *n.ProcInst)
	}
	w.WriteByte('\n')
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		if c.Parent != n {
			fmt.Fprintf(w, "%s  BAD PARENT\n", indent)
		}
		dumpTree(w, c, indent+"  ")
	}
}

// TestParseRefusesUndeclaredPrefix: the reference refuses a prefix never
// declared as malformed; Parse refuses any prefix for the namespace.
func TestParseRefusesUndeclaredPrefix(t *testing.T) {
	in := []byte("<r>\n<p:requestHead/><requestBody/></r>")
	if _, err := parseStd(in, Limits{}); !errors.Is(err, ErrMalformed) {
		t.Errorf("reference: got %v", err)
	}
	_, err := Parse(in, Limits{})
	pe, ok := err.(*Error)
	if !ok || pe.Kind != KindStructure || pe.Line != 2 {
		t.Fatalf("got %v", err)
	}
}
