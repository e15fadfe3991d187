package delivery

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/riverqueue/river/rivertype"

	"github.com/caddy-gongbao/gongbao/caddymodule/protocol"
)

// The real schedule, on real durations: 10 s, 30 s, 1 m, 2 m, 5 m, 10 m,
// 20 m, 30 m, then hourly; jitter only adds (≤ 10 %); never under 10 s.
func TestBackoffSchedule(t *testing.T) {
	want := []time.Duration{
		10 * time.Second, 30 * time.Second, time.Minute, 2 * time.Minute,
		5 * time.Minute, 10 * time.Minute, 20 * time.Minute, 30 * time.Minute,
		time.Hour, time.Hour, time.Hour,
	}
	for i, w := range want {
		failures := i + 1
		if got := Backoff(failures, 0); got != w {
			t.Errorf("Backoff(%d, 0) = %s, want %s", failures, got, w)
		}
		hi := Backoff(failures, math.Nextafter(1, 0))
		if hi < w || hi > w+w/10 {
			t.Errorf("Backoff(%d, ~1) = %s, want in [%s, %s]", failures, hi, w, w+w/10)
		}
		if mid := Backoff(failures, 0.5); mid != w+w/20 {
			t.Errorf("Backoff(%d, 0.5) = %s, want %s", failures, mid, w+w/20)
		}
	}
	if got := Backoff(10000, 0); got != time.Hour {
		t.Errorf("far tail: %s", got)
	}
	// Hostile arguments never go under the floor nor below the step.
	for _, f := range []int{-5, 0, 1} {
		for _, j := range []float64{-1, math.NaN(), math.Inf(-1), 0, 5, math.Inf(1)} {
			got := Backoff(f, j)
			if got < MinGap || got > MinGap+MinGap/10 {
				t.Errorf("Backoff(%d, %v) = %s", f, j, got)
			}
		}
	}
	for f := 1; f < 50; f++ {
		for _, j := range []float64{0, 0.3, 0.999} {
			if Backoff(f, j) < MinGap {
				t.Fatalf("Backoff(%d, %v) under the floor", f, j)
			}
		}
	}
}

func TestCapToDeadline(t *testing.T) {
	cases := []struct{ wait, until, want time.Duration }{
		{time.Hour, 2 * time.Hour, time.Hour},           // far from the deadline
		{time.Hour, 20 * time.Minute, 20 * time.Minute}, // aim at the deadline
		{time.Hour, 3 * time.Second, MinGap},            // never under the floor
		{time.Hour, -time.Hour, MinGap},                 // past it: one more try, 10 s on
		{10 * time.Second, 5 * time.Minute, 10 * time.Second},
	}
	for _, c := range cases {
		if got := capToDeadline(c.wait, c.until); got != c.want {
			t.Errorf("capToDeadline(%s, %s) = %s, want %s", c.wait, c.until, got, c.want)
		}
	}
}

// The retry policy River calls: failures counted from the job's errors,
// capped at the deadline in the args, converted to wall time.
func TestRetryPolicy(t *testing.T) {
	clock := SystemClock()
	p := retryPolicy{clock: clock, jitter: func() float64 { return 0 }}
	job := func(errs int, deadline time.Time) *rivertype.JobRow {
		args, _ := json.Marshal(deliveryArgs{DeliveryID: 1, DeadlineAt: deadline})
		return &rivertype.JobRow{EncodedArgs: args, Errors: make([]rivertype.AttemptError, errs)}
	}
	far := time.Now().Add(72 * time.Hour)
	for errs, want := range []time.Duration{10 * time.Second, 30 * time.Second, time.Minute} {
		before := time.Now()
		got := p.NextRetry(job(errs, far)).Sub(before)
		if got < want || got > want+time.Second {
			t.Errorf("after %d earlier errors: retry in %s, want %s", errs, got, want)
		}
	}
	got := p.NextRetry(job(20, time.Now().Add(15*time.Minute))).Sub(time.Now())
	if got > 15*time.Minute+time.Second || got < 14*time.Minute {
		t.Errorf("capped: %s", got)
	}
	// Scaled: the wait is divided by the factor, never shortened below it.
	sp := retryPolicy{clock: ScaledClock(3600), jitter: func() float64 { return 0 }}
	before := time.Now()
	got = sp.NextRetry(job(8, time.Time{})).Sub(before) // 9th failure: an hour → 1 s
	if got < time.Second || got > 2*time.Second {
		t.Errorf("scaled hour: %s", got)
	}
}

func TestScaledClock(t *testing.T) {
	c := ScaledClock(3600)
	for _, d := range []time.Duration{time.Nanosecond, 10 * time.Second, time.Hour, 72 * time.Hour} {
		if w := c.Wall(d); float64(w)*3600 < float64(d) {
			t.Errorf("Wall(%s) = %s shortens the wait", d, w)
		}
	}
	if c.Wall(-time.Second) != 0 || SystemClock().Wall(time.Minute) != time.Minute {
		t.Error("Wall edge cases")
	}
	a := c.Now()
	b := c.Now()
	if b.Before(a) {
		t.Error("scaled time ran backwards")
	}
}

func TestJudgeReply(t *testing.T) {
	keys := []string{"old-key", testKey}
	signed := func(root, flag, msg, key string) []byte {
		body := []protocol.Element{{Name: "resultFlag", Text: flag}}
		if msg != "" {
			body = append(body, protocol.Element{Name: "resultMessage", Text: msg})
		}
		return protocol.BuildResponse(root, protocol.NewUUID(), body, key)
	}
	noFlag := protocol.BuildResponse("queryPolicyResponse", "u", []protocol.Element{{Name: "resultMessage", Text: "x"}}, testKey)
	cases := []struct {
		name    string
		status  int
		reply   []byte
		root    string
		keys    []string
		outcome Outcome
		errHas  string
	}{
		{"accepted", 200, signed("queryPolicyResponse", "true", "成功", testKey), "queryPolicyResponse", keys, OutcomeAccepted, ""},
		{"accepted with the old key", 200, signed("queryPolicyResponse", "true", "", "old-key"), "queryPolicyResponse", keys, OutcomeAccepted, ""},
		{"any root when none expected", 200, signed("whatever", " true ", "", testKey), "", keys, OutcomeAccepted, ""},
		{"refused", 200, signed("queryPolicyResponse", "false", "保单不存在", testKey), "queryPolicyResponse", keys, OutcomeRefused, "platform refused: 保单不存在"},
		{"refused without message", 200, signed("queryPolicyResponse", "false", "", testKey), "", keys, OutcomeRefused, "no resultMessage"},
		{"refusal with a bad signature", 200, signed("queryPolicyResponse", "false", "x", "forged"), "", keys, OutcomeFailed, "signature"},
		{"5xx", 503, signed("queryPolicyResponse", "true", "", testKey), "", keys, OutcomeFailed, "HTTP 503"},
		{"redirect", 302, nil, "", keys, OutcomeFailed, "HTTP 302"},
		{"malformed", 200, []byte("<queryPolicyResponse>"), "", keys, OutcomeFailed, "malformed reply"},
		{"empty", 200, nil, "", keys, OutcomeFailed, "malformed reply"},
		{"wrong root", 200, signed("insureResponse", "true", "", testKey), "queryPolicyResponse", keys, OutcomeFailed, "reply root is insureResponse"},
		{"bad signature", 200, signed("queryPolicyResponse", "true", "", "forged"), "", keys, OutcomeFailed, "signature does not verify"},
		{"no keys configured", 200, signed("queryPolicyResponse", "true", "", testKey), "", nil, OutcomeFailed, "no platform key"},
		{"no resultFlag", 200, noFlag, "", keys, OutcomeFailed, "no resultFlag"},
		{"odd resultFlag", 200, signed("queryPolicyResponse", "yes", "", testKey), "", keys, OutcomeFailed, "neither true nor false"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			outcome, msg := judgeReply(c.status, c.reply, c.root, c.keys, protocol.Limits{})
			if outcome != c.outcome || !strings.Contains(msg, c.errHas) || (c.errHas == "" && msg != "") {
				t.Fatalf("got %s %q, want %s containing %q", outcome, msg, c.outcome, c.errHas)
			}
		})
	}
}

func TestClip(t *testing.T) {
	long := strings.Repeat("保", 400) // 1200 bytes
	got := clip(long)
	if len(got) > 504 || !strings.HasSuffix(got, "…") || !strings.HasPrefix(long, strings.TrimSuffix(got, "…")) {
		t.Fatalf("clip: %d bytes", len(got))
	}
	if clip("short") != "short" {
		t.Fatal("short text clipped")
	}
}

func TestNewDeliveryValidate(t *testing.T) {
	body := protocol.BuildRequest("queryPolicyRequest", "uuid-1", []protocol.Element{{Name: "policyNo", Text: "P"}}, testKey)
	ok := NewDelivery{Callback: "queryPolicyRequest", URL: "https://gongbao.example/cb", RequestUUID: "uuid-1", Body: body}
	if err := ok.validate(); err != nil || ok.IdempotencyKey != "uuid-1" {
		t.Fatalf("valid delivery: %v, key %q", err, ok.IdempotencyKey)
	}
	bad := []func(n *NewDelivery){
		func(n *NewDelivery) { n.Body = nil },
		func(n *NewDelivery) { n.RequestUUID = "" },
		func(n *NewDelivery) { n.RequestUUID = "uuid-2" },
		func(n *NewDelivery) { n.Callback = "queryInvoiceRequest" },
		func(n *NewDelivery) { n.URL = "/relative" },
		func(n *NewDelivery) { n.URL = "ftp://x/y" },
		func(n *NewDelivery) { n.Body = []byte("<not-xml") },
	}
	for i, mutate := range bad {
		n := ok
		mutate(&n)
		if err := n.validate(); err == nil {
			t.Errorf("case %d: accepted", i)
		}
	}
}
