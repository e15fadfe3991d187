package caddymodule_test

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestUnmappedElementsAreVisible: a request carrying elements no row
// reads, let through by the mapping (an ignore: entry, an unknown element
// under unknown_elements: ignore), is answered; the journal names them,
// gongbao_unmapped_elements_total{message} grows once for the exchange
// and not for one without them, and neither the reply nor any label
// repeats a sender-chosen name.
func TestUnmappedElementsAreVisible(t *testing.T) {
	dir := copyMappings(t, repoPath("mappings"))
	insure := filepath.Join(dir, "insure.yaml")
	data, err := os.ReadFile(insure)
	if err != nil {
		t.Fatal(err)
	}
	data = append(data, "\nunknown_elements: ignore\nignore: [policyInfo/channel]\n"...)
	if err := os.WriteFile(insure, data, 0o644); err != nil {
		t.Fatal(err)
	}
	fx := startCore(t)
	gw := startInProcess(t, fx, "mappings "+dir)

	before := gw.scrape(t)
	plain := insureSample(t, testKey)
	postWith(t, gw.Client, sidecarURL, plain)
	extra := insureSample(t, testKey, "<requestBody>", "<requestBody><NewPlatformField>1</NewPlatformField>",
		"<sumAmount>40000.00</sumAmount>", "<sumAmount>40000.00</sumAmount><channel>web</channel>")
	reply, raw := postWith(t, gw.Client, sidecarURL, extra)
	after := gw.scrape(t)

	if text(reply, "resultFlag") != "true" {
		t.Fatalf("refused:\n%s", raw)
	}
	if bytes.Contains(raw, []byte("NewPlatformField")) || bytes.Contains(raw, []byte("channel")) {
		t.Errorf("the reply repeats an unmapped element's name:\n%s", raw)
	}
	if call := fx.lastCall(t); bytes.Contains(call.Body, []byte("web")) {
		t.Errorf("an unmapped element's text reached the core: %s", call.Body)
	}
	uuid := between(string(extra), "<requestUUID>", "</requestUUID>")
	if got, want := journalEntry(t, gw.Admin, uuid).Unmapped, []string{"NewPlatformField", "policyInfo/channel"}; !slices.Equal(got, want) {
		t.Errorf("journal unmapped = %q, want %q", got, want)
	}
	if got := journalEntry(t, gw.Admin, between(string(plain), "<requestUUID>", "</requestUUID>")).Unmapped; got != nil {
		t.Errorf("journal unmapped of a fully mapped request = %q, want none", got)
	}
	series := `gongbao_unmapped_elements_total{message="insureRequest"}`
	if got := after[series] - before[series]; got != 1 {
		t.Errorf("%s grew by %v, want 1", series, got)
	}
	for s := range after {
		if strings.Contains(s, "NewPlatformField") || strings.Contains(s, "channel") {
			t.Errorf("a label came from request data: %s", s)
		}
	}
}
