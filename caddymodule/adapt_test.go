package caddymodule_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// adaptSeparator splits a .caddyfiletest fixture into the Caddyfile and
// the expected JSON (or "error: <text>" for a Caddyfile that must fail).
const adaptSeparator = "\n----------\n"

// TestCaddyfileAdapt adapts every fixture in testdata/caddyfile_adapt and
// compares with its expected JSON or error.
func TestCaddyfileAdapt(t *testing.T) {
	files, err := filepath.Glob(repoPath("testdata", "caddyfile_adapt", "*.caddyfiletest"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures found: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			input, expected, ok := strings.Cut(string(data), adaptSeparator)
			if !ok {
				t.Fatalf("%s: missing %q separator", file, strings.TrimSpace(adaptSeparator))
			}
			got := adapt(t, input)
			if *update {
				writeFixture(t, file, input, got)
				return
			}
			if strings.TrimSpace(got) != strings.TrimSpace(expected) {
				t.Errorf("%s: adapted output differs\n--- got ---\n%s\n--- want ---\n%s", file, got, expected)
			}
		})
	}
}

// TestCaddyfileExampleAdapts keeps Caddyfile.example from rotting: it must
// adapt, unchanged, to the JSON recorded in testdata.
func TestCaddyfileExampleAdapts(t *testing.T) {
	for _, name := range []string{"GONGBAO_CORE", "GONGBAO_MAPPINGS", "GONGBAO_CALLBACK_BASE", "GONGBAO_INSURANCE_CODE", "GONGBAO_STORE_DSN"} {
		t.Setenv(name, "")
		os.Unsetenv(name)
	}
	input, err := os.ReadFile(repoPath("Caddyfile.example"))
	if err != nil {
		t.Fatal(err)
	}
	golden := repoPath("testdata", "caddyfile_adapt", "Caddyfile.example.json")
	got := adapt(t, string(input))
	if *update {
		if err := os.WriteFile(golden, []byte(got+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(got) != strings.TrimSpace(string(want)) {
		t.Errorf("Caddyfile.example adapts differently\n--- got ---\n%s\n--- want (%s) ---\n%s", got, golden, want)
	}
}

// adapt runs the Caddyfile adapter; a failure is returned as "error: …".
func adapt(t *testing.T, input string) string {
	t.Helper()
	adapter := caddyfile.Adapter{ServerType: httpServerType()}
	out, _, err := adapter.Adapt([]byte(input), nil)
	if err != nil {
		return "error: " + err.Error()
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, out, "", "\t"); err != nil {
		t.Fatalf("adapter produced invalid JSON: %v", err)
	}
	return buf.String()
}

func writeFixture(t *testing.T, file, input, got string) {
	t.Helper()
	if err := os.WriteFile(file, []byte(input+adaptSeparator+got+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}
