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

// TestJudgeReply: every kind of reply, in both signature modes. Optional
// judges by resultFlag and records the sign; required also retries a
// missing or wrong sign. Not XML, wrong root or no resultFlag is a failure
// in either mode.
func TestJudgeReply(t *testing.T) {
	keys := []string{"old-key", testKey}
	reply := func(root, flag, msg, key string) []byte { return platformReply(root, flag, msg, key) }
	noFlag := protocol.BuildResponse("queryPolicyResponse", "u", []protocol.Element{{Name: "resultMessage", Text: "x"}}, testKey)
	const (
		opt = SignatureOptional
		req = SignatureRequired
	)
	cases := []struct {
		name    string
		mode    SignatureMode
		status  int
		reply   []byte
		root    string
		keys    []string
		outcome Outcome
		sig     ReplySignature
		errHas  string
	}{
		{"accepted", req, 200, reply("queryPolicyResponse", "true", "成功", testKey), "queryPolicyResponse", keys, OutcomeAccepted, SignatureVerified, ""},
		{"accepted with the old key", req, 200, reply("queryPolicyResponse", "true", "", "old-key"), "queryPolicyResponse", keys, OutcomeAccepted, SignatureVerified, ""},
		{"any root when none expected", req, 200, reply("whatever", " true ", "", testKey), "", keys, OutcomeAccepted, SignatureVerified, ""},
		{"refused", req, 200, reply("queryPolicyResponse", "false", "保单不存在", testKey), "queryPolicyResponse", keys, OutcomeRefused, SignatureVerified, "platform refused: 保单不存在"},
		{"refused without message", req, 200, reply("queryPolicyResponse", "false", "", testKey), "", keys, OutcomeRefused, SignatureVerified, "no resultMessage"},
		{"required: refusal with a bad signature", req, 200, reply("queryPolicyResponse", "false", "x", "forged"), "", keys, OutcomeFailed, SignatureMismatch, "signature does not verify"},
		{"required: bad signature", req, 200, reply("queryPolicyResponse", "true", "", "forged"), "", keys, OutcomeFailed, SignatureMismatch, "signature does not verify"},
		{"required: unsigned", req, 200, reply("queryPolicyResponse", "true", "", ""), "", keys, OutcomeFailed, SignatureUnsigned, "unsigned"},
		{"required: no keys configured", req, 200, reply("queryPolicyResponse", "true", "", testKey), "", nil, OutcomeFailed, SignatureMismatch, "no platform key"},
		{"optional: unsigned acceptance", opt, 200, reply("queryPolicyResponse", "true", "", ""), "queryPolicyResponse", keys, OutcomeAccepted, SignatureUnsigned, ""},
		{"optional: bad signature acceptance", opt, 200, reply("queryPolicyResponse", "true", "", "forged"), "queryPolicyResponse", keys, OutcomeAccepted, SignatureMismatch, ""},
		{"optional: unsigned refusal", opt, 200, reply("queryPolicyResponse", "false", "验签失败", ""), "", keys, OutcomeRefused, SignatureUnsigned, "验签失败"},
		{"optional: signed acceptance", opt, 200, reply("queryPolicyResponse", "true", "", testKey), "", keys, OutcomeAccepted, SignatureVerified, ""},
		{"5xx", opt, 503, reply("queryPolicyResponse", "true", "", testKey), "", keys, OutcomeFailed, "", "HTTP 503"},
		{"redirect", opt, 302, nil, "", keys, OutcomeFailed, "", "HTTP 302"},
		{"malformed", opt, 200, []byte("<queryPolicyResponse>"), "", keys, OutcomeFailed, "", "malformed reply"},
		{"not XML", opt, 200, []byte("ok"), "", keys, OutcomeFailed, "", "malformed reply"},
		{"empty", opt, 200, nil, "", keys, OutcomeFailed, "", "malformed reply"},
		{"wrong root", opt, 200, reply("insureResponse", "true", "", testKey), "queryPolicyResponse", keys, OutcomeFailed, "", "reply root is insureResponse"},
		{"no resultFlag", opt, 200, noFlag, "", keys, OutcomeFailed, SignatureVerified, "no resultFlag"},
		{"no resultFlag, required", req, 200, noFlag, "", keys, OutcomeFailed, SignatureVerified, "no resultFlag"},
		{"odd resultFlag", opt, 200, reply("queryPolicyResponse", "yes", "", testKey), "", keys, OutcomeFailed, SignatureVerified, "neither true nor false"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := judgeReply(c.status, c.reply, c.root, &Policy{Keys: c.keys, ReplySignature: c.mode}, protocol.Limits{})
			if v.outcome != c.outcome || v.signature != c.sig || !strings.Contains(v.err, c.errHas) || (c.errHas == "" && v.err != "") {
				t.Fatalf("got %s %s %q, want %s %s containing %q", v.outcome, v.signature, v.err, c.outcome, c.sig, c.errHas)
			}
		})
	}
}

// TestPolicyModes: the settings' spellings and defaults.
func TestPolicyModes(t *testing.T) {
	if m, err := ParseSignatureMode(""); err != nil || m != SignatureOptional {
		t.Errorf("default reply_signature: %s %v", m, err)
	}
	if m, err := ParseRefusalMode(""); err != nil || m != RefusalRetry {
		t.Errorf("default refusal: %s %v", m, err)
	}
	if _, err := ParseSignatureMode("sometimes"); err == nil || !strings.Contains(err.Error(), "reply_signature") {
		t.Errorf("bad reply_signature: %v", err)
	}
	if _, err := ParseRefusalMode("ignore"); err == nil || !strings.Contains(err.Error(), "refusal") {
		t.Errorf("bad refusal: %v", err)
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
