package mapping_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/antchfx/xmlquery"

	"github.com/caddy-gongbao/gongbao/caddymodule/mapping"
	"github.com/caddy-gongbao/gongbao/caddymodule/protocol"
)

// fileHead is an inbound file up to its request rows, which start on line 7.
const fileHead = `message: testRequest
reply_root: testResponse
core: {method: POST, path: /v1/test}
reply:
  - {xml: resultFlag, json: accepted, type: boolean}
request:
`

// requestRules compiles rows (YAML list items) as request rows.
func requestRules(t *testing.T, rows string) *mapping.Rules {
	t.Helper()
	m, err := mapping.ParseFile("t.yaml", []byte(fileHead+rows))
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	return m.Inbound.Request
}

// replyRules compiles rows as the reply rows of an inbound file.
func replyRules(t *testing.T, rows string) *mapping.Rules {
	t.Helper()
	src := "message: testRequest\nreply_root: testResponse\ncore: {method: POST, path: /v1/test}\n" +
		"request:\n  - {xml: a, json: a, type: string}\nreply:\n" + rows
	m, err := mapping.ParseFile("t.yaml", []byte(src))
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	return m.Inbound.Reply
}

// bodyRules compiles rows as the body of an outbound file.
func bodyRules(t *testing.T, rows string) *mapping.Rules {
	t.Helper()
	src := "event: test-event\ncallback: queryTestRequest\nreply_root: queryTestResponse\nbody:\n" + rows
	m, err := mapping.ParseFile("t.yaml", []byte(src))
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	return m.Outbound.Body
}

// body parses <requestBody>inner</requestBody> with xmlquery, as the
// protocol package does, and returns the body element.
func body(t testing.TB, inner string) *xmlquery.Node {
	t.Helper()
	doc, err := xmlquery.Parse(strings.NewReader(`<?xml version="1.0" encoding="UTF-8"?><r><requestBody>` + inner + `</requestBody></r>`))
	if err != nil {
		t.Fatalf("xml: %v", err)
	}
	b := doc.SelectElement("r/requestBody")
	if b == nil {
		t.Fatal("no requestBody")
	}
	return b
}

func asFieldError(t *testing.T, err error) *mapping.FieldError {
	t.Helper()
	var fe *mapping.FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("error %v (%T) is not a *mapping.FieldError", err, err)
	}
	return fe
}

// render writes elements as compact XML-ish text for comparisons
// (no escaping: test values avoid markup).
func render(els []protocol.Element) string {
	var b strings.Builder
	var walk func([]protocol.Element)
	walk = func(els []protocol.Element) {
		for _, e := range els {
			if len(e.Children) == 0 && e.Text == "" {
				b.WriteString("<" + e.Name + "/>")
				continue
			}
			b.WriteString("<" + e.Name + ">")
			if len(e.Children) > 0 {
				walk(e.Children)
			} else {
				b.WriteString(e.Text)
			}
			b.WriteString("</" + e.Name + ">")
		}
	}
	walk(els)
	return b.String()
}
