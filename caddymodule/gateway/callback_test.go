package gateway_test

import (
	"bytes"
	"net/http"
	"strings"
	"testing"

	"github.com/caddy-gongbao/gongbao/caddymodule/gateway"
	"github.com/caddy-gongbao/gongbao/caddymodule/protocol"
)

// TestCallback: a core event becomes the platform's signed callback with
// the configured insurance code, a fresh requestUUID and the keys the
// delivery engine orders and deduplicates by.
func TestCallback(t *testing.T) {
	g := newEngine(t)
	event := sample(t, "policy-paid.json")
	cb, err := g.Callback("policy-paid", "", event)
	if err != nil {
		t.Fatal(err)
	}
	env, err := protocol.Parse(cb.Body, protocol.Limits{})
	if err != nil {
		t.Fatalf("callback is not a well-formed message: %v\n%s", err, cb.Body)
	}
	if env.Root != "queryPolicyRequest" || env.Root != cb.Mapping.Callback {
		t.Errorf("callback root %s", env.Root)
	}
	if env.RequestUUID != cb.RequestUUID || cb.RequestUUID == "" {
		t.Errorf("requestUUID %q, callback says %q", env.RequestUUID, cb.RequestUUID)
	}
	if _, ok := env.Verify([]string{testKey}); !ok {
		t.Error("the callback's signature does not verify")
	}
	if !bytes.Contains(cb.Body, []byte("TEST")) {
		t.Errorf("the insurance code is not in the callback:\n%s", cb.Body)
	}
	if cb.OrderKey != "BD20190401000002" {
		t.Errorf("order key %q", cb.OrderKey)
	}
	if cb.IdempotencyKey != "policy-paid:id:3f2b8c1e-7d4a-4e9b-a6c5-0d1e2f3a4b5c" {
		t.Errorf("idempotency key %q", cb.IdempotencyKey)
	}
	if len(cb.Elements) == 0 {
		t.Error("no mapped elements")
	}

	withHeader, err := g.Callback("policy-paid", "core-key-1", event)
	if err != nil {
		t.Fatal(err)
	}
	if withHeader.IdempotencyKey != "policy-paid:key:core-key-1" {
		t.Errorf("idempotency key %q, want the core's header", withHeader.IdempotencyKey)
	}
	if withHeader.RequestUUID == cb.RequestUUID {
		t.Error("two callbacks share a requestUUID")
	}

	noID := strings.Replace(string(event), `"eventId":"3f2b8c1e-7d4a-4e9b-a6c5-0d1e2f3a4b5c",`, "", 1)
	byContent, err := g.Callback("policy-paid", "", []byte(noID))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(byContent.IdempotencyKey, "policy-paid:sha256:") {
		t.Errorf("idempotency key %q, want the content's digest", byContent.IdempotencyKey)
	}
}

// TestCallbackRefusals: an event the mapping cannot take is a 400 naming
// the field; an unknown event a 404.
func TestCallbackRefusals(t *testing.T) {
	g := newEngine(t)
	cases := []struct {
		name, event, body string
		status            int
		field             string
	}{
		{"not JSON", "policy-paid", "not json", http.StatusBadRequest, ""},
		{"missing policyNo", "policy-paid", strings.Replace(string(sample(t, "policy-paid.json")), `"policyNo":"BD20190401000002",`, "", 1), http.StatusBadRequest, "policyNo"},
		{"unknown event", "no-such-event", "{}", http.StatusNotFound, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := g.Callback(tc.event, "", []byte(tc.body))
			ee, ok := err.(*gateway.EventError)
			if !ok {
				t.Fatalf("error %v (%T), want an *EventError", err, err)
			}
			if ee.Status != tc.status || (tc.field != "" && !strings.Contains(ee.Field, tc.field)) {
				t.Errorf("status %d field %q, want %d %q", ee.Status, ee.Field, tc.status, tc.field)
			}
		})
	}
}
