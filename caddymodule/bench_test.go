package caddymodule_test

import (
	"os"
	"testing"

	"github.com/caddy-gongbao/gongbao/caddymodule/mapping"
	"github.com/caddy-gongbao/gongbao/caddymodule/protocol"
)

// BenchmarkVerifyMapSign is the sidecar's own work on one insureRequest
// (the ~2 KB sample): parse and verify, map the body to the core's JSON,
// map the core's answer back and build the signed reply. Network and the
// core are excluded. It uses the calls the handler makes: Verify into a
// pooled buffer, and Release of the parsed tree once the body is mapped.
func BenchmarkVerifyMapSign(b *testing.B) {
	set, err := mapping.LoadDir(repoPath("mappings"))
	if err != nil {
		b.Fatal(err)
	}
	msg, err := os.ReadFile(repoPath("testdata", "messages", "insureRequest.xml"))
	if err != nil {
		b.Fatal(err)
	}
	answer, err := os.ReadFile(repoPath("testdata", "messages", "insureRequest.reply.json"))
	if err != nil {
		b.Fatal(err)
	}
	m := set.Inbound["insureRequest"]
	keys := []string{testKey}
	vars := mapping.Vars{"now": "2019-04-01 10:00:00"}
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		env, err := protocol.Parse(msg, protocol.Limits{})
		if err != nil {
			b.Fatal(err)
		}
		if _, ok := env.Verify(keys); !ok {
			b.Fatal("sample does not verify")
		}
		if _, err := m.Request.XMLToJSON(env.Body, vars); err != nil {
			b.Fatal(err)
		}
		env.Release()
		elements, err := m.Reply.JSONToXML(answer, vars)
		if err != nil {
			b.Fatal(err)
		}
		_ = protocol.BuildResponse(m.ReplyRoot, "00000000-0000-0000-0000-000000000000", elements, testKey)
	}
}
