package caddymodule_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestSecurityNotesSnippets keeps SECURITY.md honest: every caddyfile
// block in it is, byte for byte, the Caddyfile of a fixture in
// testdata/caddyfile_adapt (which TestCaddyfileAdapt adapts and compares),
// and adapts without error.
func TestSecurityNotesSnippets(t *testing.T) {
	doc, err := os.ReadFile(repoPath("SECURITY.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```caddyfile\n(.*?)```").FindAllStringSubmatch(string(doc), -1)
	if len(blocks) == 0 {
		t.Fatal("SECURITY.md has no caddyfile snippet")
	}
	files, err := filepath.Glob(repoPath("testdata", "caddyfile_adapt", "*.caddyfiletest"))
	if err != nil {
		t.Fatal(err)
	}
	fixtures := map[string]string{}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		input, _, _ := strings.Cut(string(data), adaptSeparator)
		fixtures[strings.TrimSpace(input)] = filepath.Base(file)
	}
	for i, b := range blocks {
		snippet := strings.TrimSpace(b[1])
		if _, ok := fixtures[snippet]; !ok {
			t.Errorf("SECURITY.md snippet %d is not the Caddyfile of any fixture in testdata/caddyfile_adapt:\n%s", i+1, snippet)
			continue
		}
		if out := adapt(t, snippet); strings.HasPrefix(out, "error:") {
			t.Errorf("SECURITY.md snippet %d does not adapt: %s", i+1, out)
		}
	}
}
