package caddymodule

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-gongbao/gongbao/caddymodule/store"
)

const goLiveKey = "MeTKJnC3fIAxeer8erADRTlJ"

// TestResolveKeyErrors: a key whose placeholder resolves to nothing is an
// error naming the setting and the placeholder, never a key.
func TestResolveKeyErrors(t *testing.T) {
	t.Setenv("GONGBAO_GOLIVE_KEY", goLiveKey)
	os.Unsetenv("GONGBAO_GOLIVE_UNSET")
	keyFile := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(keyFile, []byte(goLiveKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	repl := caddy.NewReplacer()
	cases := []struct {
		name      string
		sign      string
		verify    []string
		errHas    []string
		wantValid int
	}{
		{"env and file", "{env.GONGBAO_GOLIVE_KEY}", []string{"{env.GONGBAO_GOLIVE_KEY}", "{file." + keyFile + "}"}, nil, 2},
		{"default verify key", "{env.GONGBAO_GOLIVE_KEY}", nil, nil, 1},
		{"unset verify key", "{env.GONGBAO_GOLIVE_KEY}", []string{"{env.GONGBAO_GOLIVE_KEY}", "{env.GONGBAO_GOLIVE_UNSET}"},
			[]string{"verify_key #2", "{env.GONGBAO_GOLIVE_UNSET}", "empty"}, 0},
		{"single unset verify key", "{env.GONGBAO_GOLIVE_KEY}", []string{"{env.GONGBAO_GOLIVE_UNSET}"},
			[]string{"verify_key:", "{env.GONGBAO_GOLIVE_UNSET}"}, 0},
		{"missing key file", "{env.GONGBAO_GOLIVE_KEY}", []string{"{file./nonexistent/gongbao_key}"},
			[]string{"verify_key", "{file./nonexistent/gongbao_key}"}, 0},
		{"unset sign key", "{env.GONGBAO_GOLIVE_UNSET}", nil, []string{"sign_key", "{env.GONGBAO_GOLIVE_UNSET}"}, 0},
		{"half a key", "{env.GONGBAO_GOLIVE_KEY}{env.GONGBAO_GOLIVE_UNSET}", nil, []string{"sign_key", "{env.GONGBAO_GOLIVE_UNSET}"}, 0},
		{"unknown placeholder", "{envv.GONGBAO_GOLIVE_KEY}", nil, []string{"sign_key", "not a known placeholder"}, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sign, verify, err := resolveKeys(repl, c.sign, c.verify)
			if c.errHas == nil {
				if err != nil || sign != goLiveKey || len(verify) != c.wantValid {
					t.Fatalf("got %d verify keys, err %v", len(verify), err)
				}
				for _, k := range verify {
					if k != goLiveKey {
						t.Fatal("a verify key resolved wrongly")
					}
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			for _, want := range c.errHas {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			if strings.Contains(err.Error(), goLiveKey) {
				t.Error("the error shows a key")
			}
		})
	}
}

// TestConfigurationLogLine: one info line names the store, mappings,
// messages, callback addresses, insurance code and key fingerprints, never
// a key or a password; placeholder-looking values get warnings.
func TestConfigurationLogLine(t *testing.T) {
	t.Setenv("GONGBAO_GOLIVE_KEY", goLiveKey)
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	dbPath := filepath.Join(t.TempDir(), "gongbao.db")
	app := &App{
		SignKey:       "{env.GONGBAO_GOLIVE_KEY}",
		Mappings:      filepath.Join("..", "mappings"),
		InsuranceCode: "TEST",
		Store:         &StoreConfig{Driver: "sqlite", Path: dbPath},
		Callbacks: &CallbackConfig{Base: "http://platform.example/api",
			URLs: map[string]string{"queryInvoiceRequest": "https://user:secret@platform.example/invoice"}},
	}
	if err := app.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	defer app.Cleanup()
	core, logs := observer.New(zapcore.InfoLevel)
	app.logConfiguration(zap.New(core), &store.Config{Driver: "sqlite", Path: dbPath})

	infos := logs.FilterMessage("gongbao configuration").All()
	if len(infos) != 1 {
		t.Fatalf("%d configuration lines, want 1", len(infos))
	}
	fields := infos[0].ContextMap()
	want := map[string]string{
		"store":                "sqlite " + dbPath,
		"mappings":             filepath.Join("..", "mappings"),
		"callback_base":        "http://platform.example/api",
		"insurance_code":       "TEST",
		"sign_key_fingerprint": keyFingerprint(goLiveKey),
		"reply_signature":      "optional",
		"refusal":              "retry",
	}
	for k, v := range want {
		if got := fields[k]; got != v {
			t.Errorf("%s = %v, want %s", k, got, v)
		}
	}
	if len(keyFingerprint(goLiveKey)) != 8 {
		t.Errorf("fingerprint %q is not 8 hex digits", keyFingerprint(goLiveKey))
	}
	urls := strings.Join(anyStrings(fields["callback_urls"]), " ")
	for _, want := range []string{"queryPolicyRequest=http://platform.example/api/queryPolicyRequest",
		"queryInvoiceRequest=https://user:xxxxx@platform.example/invoice"} {
		if !strings.Contains(urls, want) {
			t.Errorf("callback_urls %q lack %q", urls, want)
		}
	}
	if msgs := anyStrings(fields["messages"]); len(msgs) != 5 {
		t.Errorf("messages %v, want the 5 inbound messages", msgs)
	}
	var warnings []string
	for _, e := range logs.FilterLevelExact(zapcore.WarnLevel).All() {
		warnings = append(warnings, e.ContextMap()["problem"].(string))
	}
	all := strings.Join(warnings, "\n")
	if !strings.Contains(all, "not 5 digits") || strings.Count(all, "plain http") != 2 || len(warnings) != 3 {
		t.Errorf("warnings:\n%s", all)
	}
	for _, e := range logs.All() {
		line := e.Message + " " + strings.Join(anyStrings(e.ContextMap()), " ")
		if strings.Contains(line, goLiveKey) || strings.Contains(line, "secret") {
			t.Errorf("a log line shows a key or a password: %s", line)
		}
	}
}

// anyStrings flattens a logged field value to strings.
func anyStrings(v any) []string {
	switch v := v.(type) {
	case []any:
		var out []string
		for _, x := range v {
			out = append(out, anyStrings(x)...)
		}
		return out
	case []string:
		return v
	case map[string]any:
		var out []string
		for k, x := range v {
			out = append(out, k)
			out = append(out, anyStrings(x)...)
		}
		return out
	case string:
		return []string{v}
	}
	return nil
}

// TestDescribeStoreHidesPassword: a PostgreSQL store is named by host,
// database and schema.
func TestDescribeStoreHidesPassword(t *testing.T) {
	got := describeStore(store.Config{Driver: "postgres", DSN: "postgres://gongbao:hunter2@db.internal:5433/prod?sslmode=verify-full", Schema: "gb"})
	if got != "postgres host=db.internal:5433 db=prod schema=gb" {
		t.Errorf("got %q", got)
	}
	got = describeStore(store.Config{Driver: "postgres", DSN: "host=db.internal user=gongbao password=hunter2 dbname=prod"})
	if strings.Contains(got, "hunter2") || !strings.Contains(got, "db.internal") || !strings.Contains(got, "schema=public") {
		t.Errorf("got %q", got)
	}
}

// TestGoLiveRules: the insurance code and callback address checks.
func TestGoLiveRules(t *testing.T) {
	for code, ok := range map[string]bool{"12345": true, "TEST": false, "": false, "123456": false, "1234a": false} {
		if got := insuranceCodeProblem(code) == ""; got != ok {
			t.Errorf("insurance code %q: ok=%v, want %v", code, got, ok)
		}
	}
	for u, ok := range map[string]bool{"https://p.example/x": true, "http://127.0.0.1:7070/x": true, "http://localhost/x": true,
		"http://[::1]:7070/x": true, "http://p.example/x": false, "http://10.0.0.5/x": false} {
		if got := plainHTTPProblem(u) == ""; got != ok {
			t.Errorf("%s: ok=%v, want %v", u, got, ok)
		}
	}
}

// TestValidateCallbackModes: a bad reply_signature or refusal in a JSON
// config is a Validate error naming the field.
func TestValidateCallbackModes(t *testing.T) {
	for _, c := range []struct {
		cfg  CallbackConfig
		says string
	}{
		{CallbackConfig{ReplySignature: "sometimes"}, `reply_signature must be "optional" or "required", not "sometimes"`},
		{CallbackConfig{Refusal: "ignore"}, `refusal must be "retry" or "dead_letter", not "ignore"`},
	} {
		err := c.cfg.validate(nil)
		if err == nil || !strings.Contains(err.Error(), c.says) || !strings.Contains(err.Error(), "gongbao callbacks") {
			t.Errorf("%+v: %v, want an error saying %s", c.cfg, err, c.says)
		}
	}
	ok := CallbackConfig{ReplySignature: "required", Refusal: "dead_letter"}
	if err := ok.validate(nil); err != nil {
		t.Errorf("valid modes refused: %v", err)
	}
}
