package mapping_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/caddy-gongbao/gongbao/caddymodule/mapping"
)

const unmappedHead = `message: testRequest
reply_root: testResponse
core: {method: POST, path: /v1/test}
`

const unmappedRows = `request:
  - {xml: a, json: a, type: string}
  - {xml: items/item, json: items, repeat: {max: 5}, fields: [{xml: n, json: n, type: string}]}
reply:
  - {xml: resultFlag, json: ok, type: boolean}
`

func unmappedRules(t *testing.T, head string) *mapping.Rules {
	t.Helper()
	m, err := mapping.ParseFile("t.yaml", []byte(unmappedHead+head+unmappedRows))
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	return m.Inbound.Request
}

// TestXMLToJSONUnmapped: the production walk reports the elements no row
// reads that the file lets through, each once, in document order; none
// gives nil; a refused unknown element is an error, not a name.
func TestXMLToJSONUnmapped(t *testing.T) {
	declared := unmappedRules(t, "ignore: [ProjectType, dateInfo/startDate, items/item/extra]\n")
	passing := unmappedRules(t, "ignore: [ProjectType]\nunknown_elements: ignore\n")
	refusing := unmappedRules(t, "ignore: [ProjectType]\n")
	for _, c := range []struct {
		name  string
		rules *mapping.Rules
		xml   string
		want  []string
		fails bool
	}{
		{"none", declared, `<a>x</a>`, nil, false},
		{"declared", declared, `<ProjectType>1</ProjectType><a>x</a><dateInfo><startDate>2024</startDate></dateInfo>` +
			`<items><item><n>1</n><extra>e</extra></item><item><n>2</n><extra>f</extra></item></items>`,
			[]string{"ProjectType", "dateInfo/startDate", "items/item/extra"}, false},
		{"passed unknown", passing, `<a>x</a><New>1</New><items><item><n>1</n><More/></item></items><ProjectType/>`,
			[]string{"New", "items/item/More", "ProjectType"}, false},
		{"refused unknown", refusing, `<ProjectType>1</ProjectType><New>1</New>`, []string{"ProjectType"}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, got, err := c.rules.XMLToJSONUnmapped(body(t, c.xml), nil)
			if (err != nil) != c.fails {
				t.Fatalf("err = %v, want failure %v", err, c.fails)
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("unmapped = %q, want %q", got, c.want)
			}
		})
	}
}

// TestXMLToJSONUnmappedBounded: a body with many unknown elements gives
// at most MaxUnmapped names.
func TestXMLToJSONUnmappedBounded(t *testing.T) {
	r := unmappedRules(t, "unknown_elements: ignore\n")
	var b strings.Builder
	for i := range 100 {
		fmt.Fprintf(&b, "<x%d/>", i)
	}
	_, got, err := r.XMLToJSONUnmapped(body(t, b.String()), nil)
	if err != nil || len(got) != mapping.MaxUnmapped {
		t.Fatalf("got %d names, err %v; want %d", len(got), err, mapping.MaxUnmapped)
	}
}

// TestUnmappedDryRun: the dry run's list names every unread element,
// refused ones included (XMLToJSON stops at the first), with how the file
// treats each.
func TestUnmappedDryRun(t *testing.T) {
	r := unmappedRules(t, "ignore: [ProjectType]\n")
	got := r.Unmapped(body(t, `<ProjectType>1</ProjectType><a>x</a><New>1</New><items><item><n>1</n><Other/></item></items>`))
	want := []mapping.Unmapped{
		{Path: "ProjectType", How: mapping.IgnoredDeclared},
		{Path: "New", How: mapping.RefusedUnknown},
		{Path: "items/item/Other", How: mapping.RefusedUnknown},
	}
	if !slices.Equal(got, want) {
		t.Errorf("Unmapped = %+v, want %+v", got, want)
	}
	passing := unmappedRules(t, "unknown_elements: ignore\n")
	got = passing.Unmapped(body(t, `<a>x</a><New>1</New>`))
	if want := []mapping.Unmapped{{Path: "New", How: mapping.PassedUnknown}}; !slices.Equal(got, want) {
		t.Errorf("Unmapped = %+v, want %+v", got, want)
	}
}
