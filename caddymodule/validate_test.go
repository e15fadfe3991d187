package caddymodule

import (
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// TestValidateNamesOneFieldEach: every mistake is reported on its own line
// naming the setting, the rule and the value.
func TestValidateNamesOneFieldEach(t *testing.T) {
	for _, c := range []struct {
		name string
		err  error
		want []string
	}{{
		name: "callbacks",
		err: (&CallbackConfig{
			Workers: -1, Deadline: caddy.Duration(-time.Hour), PollInterval: caddy.Duration(-time.Second),
			StopGrace: caddy.Duration(time.Second), Refusal: "ignore",
		}).validate(map[string]string{"policy-paid": "ftp://x", "invoice-issued": "https://ok.example/cb"}),
		want: []string{
			`gongbao callbacks: event policy-paid: "ftp://x" is not an http(s) URL`,
			"gongbao callbacks: workers must not be negative (got -1)",
			"gongbao callbacks: deadline must not be negative (got -1h0m0s)",
			"gongbao callbacks: poll_interval must not be negative (got -1s)",
			"gongbao callbacks: stop_grace must not be shorter than attempt_timeout 30s, or a stop would cut attempts short (got 1s)",
			`gongbao callbacks: invalid delivery: refusal must be "retry" or "dead_letter", not "ignore"`,
		},
	}, {
		name: "idempotency",
		err: (&IdempotencyConfig{UnknownOutcome: "maybe", WaitInFlight: caddy.Duration(-time.Second),
			Retention: caddy.Duration(time.Hour)}).validate(),
		want: []string{
			`gongbao idempotency: unknown_outcome must be "retry" or "hold" (got "maybe")`,
			"gongbao idempotency: wait_in_flight must not be negative (got -1s)",
			"gongbao idempotency: lease must be positive (got 0s)",
		},
	}} {
		t.Run(c.name, func(t *testing.T) {
			if c.err == nil {
				t.Fatal("no error")
			}
			got := strings.Split(c.err.Error(), "\n")
			if strings.Join(got, "\n") != strings.Join(c.want, "\n") {
				t.Errorf("got\n%s\nwant\n%s", c.err, strings.Join(c.want, "\n"))
			}
		})
	}
}
