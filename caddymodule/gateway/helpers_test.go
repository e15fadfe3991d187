package gateway_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddy-gongbao/gongbao/caddymodule/gateway"
	"github.com/caddy-gongbao/gongbao/caddymodule/mapping"
	"github.com/caddy-gongbao/gongbao/caddymodule/protocol"
)

// testKey is the platform's published test key (DESIGN §1.2).
const testKey = "MeTKJnC3fIAxeer8erADRTlJ"

// fixedNow is the engine's clock in these tests.
var fixedNow = time.Date(2019, 4, 1, 2, 0, 0, 0, time.UTC) // 10:00 in Shanghai

// repoPath names a file relative to the repository root.
func repoPath(parts ...string) string {
	return filepath.Join(append([]string{"..", ".."}, parts...)...)
}

// newEngine builds the engine over the shipped mappings, with the limits
// the Caddy tests used (64 KiB bodies).
func newEngine(tb testing.TB) *gateway.Gateway {
	tb.Helper()
	set, err := mapping.LoadDir(repoPath("mappings"))
	if err != nil {
		tb.Fatal(err)
	}
	return gateway.New(gateway.Config{
		SignKey:       testKey,
		VerifyKeys:    []string{testKey},
		Mappings:      set,
		Limits:        protocol.Limits{MaxBytes: 64 << 10},
		InsuranceCode: "TEST",
		Now:           func() time.Time { return fixedNow },
	})
}

// sample reads testdata/messages/<name>.
func sample(tb testing.TB, name string) []byte {
	tb.Helper()
	data, err := os.ReadFile(repoPath("testdata", "messages", name))
	if err != nil {
		tb.Fatal(err)
	}
	return data
}

// signed re-signs msg with key and a fresh requestUUID.
func signed(tb testing.TB, msg []byte, key string) []byte {
	tb.Helper()
	out, err := protocol.Resign(msg, key, protocol.NewUUID())
	if err != nil {
		tb.Fatalf("signing: %v", err)
	}
	return out
}

// insureSample returns the sample insureRequest after applying edits to its
// text; the result is re-signed with key unless key is empty.
func insureSample(tb testing.TB, key string, edits ...string) []byte {
	tb.Helper()
	msg := strings.NewReplacer(edits...).Replace(string(sample(tb, "insureRequest.xml")))
	if key == "" {
		return []byte(msg)
	}
	return signed(tb, []byte(msg), key)
}

// admit runs a message through Open and Admit on the default route.
func admit(g *gateway.Gateway, path string, msg []byte) (*gateway.Exchange, error) {
	x := g.Open(path)
	env, err := g.Admit(&x, bytes.NewReader(msg), int64(len(msg)), nil)
	if env != nil {
		env.Release()
	}
	return &x, err
}

// admitted admits a message that must be admitted.
func admitted(tb testing.TB, g *gateway.Gateway, msg []byte) *gateway.Exchange {
	tb.Helper()
	x, err := admit(g, "/gongbao", msg)
	if err != nil {
		tb.Fatalf("admit: %v", err)
	}
	return x
}

// parseReply parses a reply and checks its signature rule: signed with
// our key, or an unsigned refusal — never a signed reply that does not
// verify, never an unsigned acceptance. It tells whether it is signed.
func parseReply(tb testing.TB, raw []byte) (*protocol.Envelope, bool) {
	tb.Helper()
	env, err := protocol.Parse(raw, protocol.Limits{})
	if err != nil {
		tb.Fatalf("the reply is not a well-formed message: %v\n%s", err, raw)
	}
	if env.Sign == "" {
		if text(env, "resultFlag") != "false" {
			tb.Fatalf("an unsigned reply that is not a refusal:\n%s", raw)
		}
		return env, false
	}
	if _, ok := protocol.VerifyAny(env.SignedValue(), env.Sign, []string{testKey}); !ok {
		tb.Fatalf("the reply's signature does not verify:\n%s", raw)
	}
	return env, true
}

// text reads a body leaf of a message.
func text(env *protocol.Envelope, path ...string) string {
	s, _ := env.Text(path...)
	return s
}

// assertRefused checks a resultFlag=false reply whose message contains
// wantMessage.
func assertRefused(tb testing.TB, env *protocol.Envelope, wantMessage string) {
	tb.Helper()
	flag, msg := text(env, "resultFlag"), text(env, "resultMessage")
	if flag != "false" || !strings.Contains(msg, wantMessage) {
		tb.Fatalf("reply resultFlag=%q resultMessage=%q, want false and a message containing %q", flag, msg, wantMessage)
	}
	if msg == "" {
		tb.Error("empty resultMessage")
	}
}
