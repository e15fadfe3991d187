//go:build !race

// The race detector makes sync.Pool drop items at random, so allocation
// counts are only meaningful without it.

package mapping_test

import (
	"strings"
	"testing"
)

// TestXMLToJSONAllocs holds the hot-path claim: beyond the returned slice,
// XMLToJSON allocates nothing (pooled scratch, no per-request parsing of
// rules, the single-text-node fast path), and the list of unmapped
// elements costs nothing when there are none (the common case) and one
// slice when there are.
func TestXMLToJSONAllocs(t *testing.T) {
	in := benchInbound(t)
	for _, c := range []struct {
		name string
		xml  string
		want float64
	}{
		{"every element mapped", strings.Replace(benchXML, "<ProjectType>1</ProjectType>", "", 1), 1},
		{"an ignored element", benchXML, 2},
	} {
		doc := body(t, c.xml)
		allocs := testing.AllocsPerRun(100, func() {
			if _, _, err := in.Request.XMLToJSONUnmapped(doc, benchVars); err != nil {
				t.Fatal(err)
			}
		})
		if allocs > c.want {
			t.Errorf("%s: XMLToJSONUnmapped allocates %.0f times per call, want %.0f", c.name, allocs, c.want)
		}
	}
}
