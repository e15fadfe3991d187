package caddymodule

// FuzzUnmarshalCaddyfile feeds one token stream to each Caddyfile
// unmarshaler: the gongbao global option (App), the gongbao handler and
// the gongbao_notify handler. Invariants: no panic, whatever the tokens;
// what unmarshals also survives a JSON round trip unchanged (the adapted
// config is what Caddy loads), and the app's defaults and checks run on it.
//
// Run: go test -run XXX -fuzz FuzzUnmarshalCaddyfile -fuzztime 10m -parallel 1 ./caddymodule/

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func FuzzUnmarshalCaddyfile(f *testing.F) {
	for _, s := range fuzzCaddyfileSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, input string) {
		// NewTestDispenser exits the process (log.Fatalf) on input the lexer
		// refuses, and expands {$ENV} from this process's environment:
		// both are Caddy's lexer, not our unmarshalers.
		if strings.Contains(input, "{$") {
			return
		}
		if _, err := caddyfile.Tokenize([]byte(input), "Testfile"); err != nil {
			return
		}
		app := new(App)
		if err := app.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input)); err == nil {
			fuzzRoundTrip(t, app, new(App))
			if app.Idempotency != nil {
				app.Idempotency.withDefaults()
				_ = app.Idempotency.validate()
			}
			if app.Journal != nil {
				app.Journal.withDefaults()
			}
		}
		h := new(Handler)
		if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input)); err == nil {
			fuzzRoundTrip(t, h, new(Handler))
		}
		n := new(NotifyHandler)
		if err := n.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input)); err == nil {
			fuzzRoundTrip(t, n, new(NotifyHandler))
		}
	})
}

// fuzzRoundTrip checks that v marshals to JSON that decodes into an equal
// value.
func fuzzRoundTrip(t *testing.T, v, fresh any) {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("%T does not marshal: %v", v, err)
	}
	if err := json.Unmarshal(data, fresh); err != nil {
		t.Fatalf("%T: adapted JSON does not load back: %v\n%s", v, err, data)
	}
	again, err := json.Marshal(fresh)
	if err != nil || string(again) != string(data) {
		t.Fatalf("%T: JSON round trip changed the config:\n%s\n%s", v, data, again)
	}
	if !reflect.DeepEqual(v, fresh) {
		t.Fatalf("%T: JSON round trip changed the value:\n%#v\n%#v", v, v, fresh)
	}
}

// fuzzCaddyfileSeeds: the Caddyfiles of testdata/caddyfile_adapt and
// Caddyfile.example, and every gongbao / gongbao_notify block cut out of
// them (each unmarshaler sees its own block first), plus a few variants.
func fuzzCaddyfileSeeds(f *testing.F) []string {
	files, err := filepath.Glob(filepath.Join("..", "testdata", "caddyfile_adapt", "*.caddyfiletest"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no Caddyfile fixtures: %v", err)
	}
	files = append(files, filepath.Join("..", "Caddyfile.example"))
	var seeds []string
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		input, _, _ := strings.Cut(string(data), "\n----------\n")
		seeds = append(seeds, input)
		seeds = append(seeds, fuzzBlocks(input)...)
	}
	return append(seeds,
		"gongbao",
		"gongbao {\n}",
		"gongbao extra",
		"gongbao {\n\tstore\n}",
		"gongbao {\n\tstore postgres dsn schema extra\n}",
		"gongbao {\n\tstore mysql x\n}",
		"gongbao {\n\tidempotency off extra\n\tidempotency {\n\t\tunknown_outcome maybe\n\t}\n}",
		"gongbao {\n\tjournal {\n\t\tmask_personal_data yes\n\t}\n\tjournal off\n}",
		"gongbao {\n\tcallbacks x {\n\t}\n\tcallbacks {\n\t\turl a\n\t\tworkers -1\n\t\tdeadline 0s\n\t}\n}",
		"gongbao {\n\tmax_body_size 2TiB\n\tmax_depth 0\n\tmax_elements 99999999999999999999\n}",
		"gongbao {\n\tverify_key\n\tsign_key a b\n}",
		"gongbao insureRequest {\n\tmessages\n\tmax_core_reply_size 0\n}",
		"gongbao_notify policy-paid {\n\tevents\n\tmax_event_size -1\n}",
		"gongbao {\n\tsign_key {\n\t}\n}",
		"gongbao {\n\tcallbacks {\n\t\tbase {\n\t\t\tnested\n\t\t}\n\t}\n}",
	)
}

// fuzzBlocks cuts out every line starting with a gongbao directive or
// option, with its braced block when it opens one.
func fuzzBlocks(input string) []string {
	var out []string
	lines := strings.Split(input, "\n")
	for i, line := range lines {
		fields := strings.Fields(line)
		if len(fields) == 0 || (fields[0] != "gongbao" && fields[0] != "gongbao_notify") {
			continue
		}
		depth, end := 0, i
		for j := i; j < len(lines); j++ {
			depth += strings.Count(lines[j], "{") - strings.Count(lines[j], "}")
			end = j
			if depth <= 0 {
				break
			}
		}
		out = append(out, strings.Join(lines[i:end+1], "\n"))
	}
	return out
}
