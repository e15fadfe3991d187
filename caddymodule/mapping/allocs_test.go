//go:build !race

// The race detector makes sync.Pool drop items at random, so allocation
// counts are only meaningful without it.

package mapping_test

import "testing"

// TestXMLToJSONAllocs holds the hot-path claim: beyond the returned slice,
// XMLToJSON allocates nothing (pooled scratch, no per-request parsing of
// rules, the single-text-node fast path).
func TestXMLToJSONAllocs(t *testing.T) {
	in := benchInbound(t)
	doc := body(t, benchXML)
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := in.Request.XMLToJSON(doc, benchVars); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 1 {
		t.Errorf("XMLToJSON allocates %.0f times per call, want 1", allocs)
	}
}
