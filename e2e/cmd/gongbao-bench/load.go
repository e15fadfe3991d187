package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"sync/atomic"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/caddy-gongbao/gongbao/caddymodule/gateway"
	"github.com/caddy-gongbao/gongbao/caddymodule/mapping"
	"github.com/caddy-gongbao/gongbao/caddymodule/protocol"
)

// uuidPlaceholder is the requestUUID the pool is signed under. The
// requestUUID sits in the head, outside the signed value, so overwriting
// it in a copy keeps the signature valid: every request gets a fresh
// requestUUID without signing in the load generator's hot loop.
const uuidPlaceholder = "00000000-0000-4000-8000-000000000000"

// messagePool is N distinct signed insureRequests (they differ in the
// applicant's mobile number, so their bodies and signatures differ) and
// the JSON the sidecar sends the core for each.
type messagePool struct {
	xml    [][]byte
	uuidAt []int // offset of uuidPlaceholder in xml[i]
	json   [][]byte
}

// newMessagePool signs n variants of the insureRequest sample.
func newMessagePool(root string, n int, key string) (*messagePool, error) {
	raw, err := os.ReadFile(filepath.Join(root, "testdata", "messages", "insureRequest.xml"))
	if err != nil {
		return nil, err
	}
	set, err := mapping.LoadDir(filepath.Join(root, "mappings"))
	if err != nil {
		return nil, err
	}
	m, ok := set.Inbound["insureRequest"]
	if !ok {
		return nil, errors.New("the mappings have no insureRequest")
	}
	const mobile = "<mobile>13858012345</mobile>"
	if !bytes.Contains(raw, []byte(mobile)) {
		return nil, errors.New("insureRequest sample: applicant mobile not found")
	}
	p := &messagePool{}
	for i := range n {
		variant := bytes.Replace(raw, []byte(mobile), fmt.Appendf(nil, "<mobile>138%08d</mobile>", i), 1)
		signed, err := protocol.Resign(variant, key, uuidPlaceholder)
		if err != nil {
			return nil, fmt.Errorf("signing pool message %d: %w", i, err)
		}
		at := bytes.Index(signed, []byte(uuidPlaceholder))
		if at < 0 {
			return nil, errors.New("signed message lost its requestUUID placeholder")
		}
		env, err := protocol.Parse(signed, protocol.Limits{})
		if err != nil {
			return nil, err
		}
		body, err := m.Request.XMLToJSON(env.Body, mapping.Vars{"now": time.Now().Format(time.DateTime)})
		if err != nil {
			return nil, fmt.Errorf("mapping pool message %d: %w", i, err)
		}
		p.xml = append(p.xml, signed)
		p.uuidAt = append(p.uuidAt, at)
		p.json = append(p.json, body)
	}
	return p, nil
}

// uuids makes unique requestUUIDs cheaply: a random per-run prefix and a
// counter, in the 8-4-4-4-12 shape.
type uuids struct {
	prefix string // 24 characters, up to the last group
	n      atomic.Uint64
}

func newUUIDs() *uuids {
	var b [10]byte
	_, _ = rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return &uuids{prefix: h[0:8] + "-" + h[8:12] + "-4" + h[12:15] + "-8" + h[15:18] + "-"}
}

// put writes the next UUID into dst (36 bytes).
func (u *uuids) put(dst []byte) {
	copy(dst, u.prefix)
	s := strconv.FormatUint(u.n.Add(1), 16)
	tail := dst[len(u.prefix):36]
	for i := range tail {
		tail[i] = '0'
	}
	copy(tail[len(tail)-len(s):], s)
}

func (u *uuids) next() string {
	var b [36]byte
	u.put(b[:])
	return string(b[:])
}

// counted wraps a target-making function into a Targeter that stops the
// attack after limit targets (0: no limit).
func counted(limit uint64, fill func(k uint64, t *vegeta.Target)) vegeta.Targeter {
	var next atomic.Uint64
	return func(t *vegeta.Target) error {
		k := next.Add(1) - 1
		if limit > 0 && k >= limit {
			return vegeta.ErrNoTargets
		}
		fill(k, t)
		return nil
	}
}

// xmlTargeter posts the pool's signed messages round robin, each copy
// with a fresh requestUUID.
func xmlTargeter(url string, p *messagePool, ids *uuids) vegeta.Targeter {
	header := http.Header{"Content-Type": {"application/xml; charset=UTF-8"}}
	return counted(0, func(k uint64, t *vegeta.Target) {
		i := int(k % uint64(len(p.xml)))
		body := bytes.Clone(p.xml[i])
		ids.put(body[p.uuidAt[i]:])
		t.Method, t.URL, t.Body, t.Header = http.MethodPost, url, body, header
	})
}

// jsonTargeter posts the JSON the sidecar would send the core, with the
// headers it would send: a fresh Idempotency-Key each time, as the
// sidecar passes the platform's requestUUID.
func jsonTargeter(url string, p *messagePool, ids *uuids) vegeta.Targeter {
	return counted(0, func(k uint64, t *vegeta.Target) {
		i := int(k % uint64(len(p.json)))
		t.Method, t.URL, t.Body = http.MethodPost, url, p.json[i]
		t.Header = http.Header{
			"Content-Type":    {"application/json; charset=utf-8"},
			"Accept":          {"application/json"},
			"Idempotency-Key": {ids.next()},
		}
	})
}

// eventTargeter posts n distinct policy-paid events, numbered from
// first+1, to the intake. Each is its own policy, so per-policy ordering
// never holds a delivery back.
func eventTargeter(url string, first, n uint64, ids *uuids) vegeta.Targeter {
	return counted(n, func(k uint64, t *vegeta.Target) {
		id := ids.next()
		seq := first + k + 1
		policy := fmt.Sprintf("BD%014d", seq)
		body, _ := json.Marshal(map[string]string{
			"eventId":    id,
			"policyNo":   policy,
			"proposalNo": fmt.Sprintf("TB%014d", seq),
			"payType":    "3",
			"paidAt":     "2019-04-01T10:05:30+08:00",
			"policyUrl":  "http://127.0.0.1:9000/policies/" + policy + ".pdf",
		})
		t.Method, t.URL, t.Body = http.MethodPost, url, body
		t.Header = http.Header{"Content-Type": {"application/json"}, "Idempotency-Key": {id}}
	})
}

// checker says why a response is not the expected success, or nil.
type checker func(code int, body []byte, full bool) error

var (
	acceptedJSON = []byte(`"accepted":true`)
	resultTrue   = []byte("<resultFlag>true</resultFlag>")
)

// coreOK: the core created the proposal.
func coreOK(code int, body []byte, _ bool) error {
	if code != http.StatusCreated || !bytes.Contains(body, acceptedJSON) {
		return fmt.Errorf("HTTP %d %s", code, clip(body))
	}
	return nil
}

// gongbaoOK: a signed resultFlag=true reply. The signature is checked
// when full is set (every reply in smoke mode, a sample otherwise, so
// that verifying does not eat the CPU the server is measured with) and on
// every reply that is not a success. A signed 系统繁忙 reply is errShed.
// The unsampled shortcut only spots the success bytes to save the load
// generator's CPU; every judgement is protocol.ReadReply's, the one rule
// delivery, send and the simulator use.
func gongbaoOK(key string) checker {
	return func(code int, body []byte, full bool) error {
		if code != http.StatusOK {
			return fmt.Errorf("HTTP %d %s", code, clip(body))
		}
		if !full && bytes.Contains(body, resultTrue) {
			return nil
		}
		r, err := protocol.ReadReply(body, protocol.Limits{}, []string{key})
		if err != nil {
			return fmt.Errorf("reply does not parse: %w", err)
		}
		if r.Signature != protocol.SignatureVerified {
			return errors.New("reply signature does not verify")
		}
		if r.Flag == protocol.FlagTrue {
			return nil
		}
		if r.Message == gateway.MsgBusy {
			return errShed
		}
		// No requestUUID in the reason, so equal failures are counted together.
		return fmt.Errorf("resultFlag=%s: %s", r.FlagText, r.Message)
	}
}

// errShed is the sidecar's designed "retry later" when it cannot serve a
// request in time: a signed 系统繁忙 reply to the platform, a 503
// store_unavailable to the core. It is a failure, except where the
// attack allows it (an open-loop phase offered more than the variant's
// measured throughput; the event intake, whose refused events are posted
// again as the core would), where it is counted apart.
var errShed = errors.New("retry later (load shed)")

// eventOK: the intake stored the event (202 with its delivery). Its 503
// store_unavailable (not stored, retry later) is errShed.
func eventOK(code int, body []byte, _ bool) error {
	if code == http.StatusServiceUnavailable && bytes.Contains(body, []byte(`"store_unavailable"`)) {
		return errShed
	}
	if code != http.StatusAccepted || !bytes.Contains(body, []byte(`"requestUUID"`)) {
		return fmt.Errorf("HTTP %d %s", code, clip(body))
	}
	return nil
}

func clip(b []byte) string {
	const limit = 160
	if len(b) > limit {
		return strconv.Quote(string(b[:limit])) + "…"
	}
	return strconv.Quote(string(b))
}

// attackSpec is one vegeta attack.
type attackSpec struct {
	name        string
	targeter    vegeta.Targeter
	rate        int // requests per second; 0: closed loop, as fast as the workers go
	workers     uint64
	maxWorkers  uint64
	duration    time.Duration // 0: until the targeter runs out
	check       checker
	verifyEvery uint64 // check fully every n-th success (1: all)
	timeout     time.Duration
	allowShed   bool             // errShed is not a failure (the rate exceeds the variant's capacity)
	latencies   *[]time.Duration // if set, every request's latency is appended
}

// attackResult summarises an attack.
type attackResult struct {
	Requests   uint64
	OK         uint64
	Elapsed    time.Duration // first request sent to last answer received
	Rate       float64       // requests sent per second
	Throughput float64       // successes per second
	P50, P99   time.Duration
	Max        time.Duration
	Shed       uint64            // signed 系统繁忙 replies
	Failures   map[string]uint64 // reason → count, a few reasons at most
	failures   uint64
}

// failed tells whether any request failed (errShed counts only when not
// allowed).
func (r attackResult) failed() bool { return r.failures > 0 || r.Requests == 0 }

// failureSummary names the failures briefly.
func (r attackResult) failureSummary() string {
	if r.Requests == 0 {
		return "no request was made"
	}
	reasons := make([]string, 0, len(r.Failures))
	for k := range r.Failures {
		reasons = append(reasons, k)
	}
	sort.Strings(reasons)
	var b bytes.Buffer
	fmt.Fprintf(&b, "%d of %d requests failed", r.failures, r.Requests)
	for _, k := range reasons {
		fmt.Fprintf(&b, "; %d× %s", r.Failures[k], k)
	}
	return b.String()
}

// maxFailureReasons bounds the distinct failure reasons kept.
const maxFailureReasons = 5

// attack runs spec with vegeta and checks every answer. It stops early
// when ctx ends.
func attack(ctx context.Context, spec attackSpec) attackResult {
	if spec.timeout == 0 {
		spec.timeout = 15 * time.Second
	}
	atk := vegeta.NewAttacker(
		vegeta.Workers(spec.workers),
		vegeta.MaxWorkers(spec.maxWorkers),
		vegeta.Timeout(spec.timeout),
		vegeta.KeepAlive(true),
		vegeta.Connections(int(spec.maxWorkers)),
		vegeta.Redirects(vegeta.NoFollow),
		vegeta.Proxy(nil), // loopback only, never through a proxy from the environment
		vegeta.HTTP2(false),
	)
	pacer := vegeta.ConstantPacer{Freq: spec.rate, Per: time.Second} // Freq 0: no pacing
	results := atk.Attack(spec.targeter, pacer, spec.duration, spec.name)

	var (
		metrics vegeta.Metrics
		res     attackResult
	)
	res.Failures = map[string]uint64{}
	stop := context.AfterFunc(ctx, func() { atk.Stop() })
	defer stop()
	for r := range results {
		if r.Code == 0 && r.Error == vegeta.ErrNoTargets.Error() {
			continue // the targeter ran out: no request was made
		}
		metrics.Add(r)
		res.Requests++
		if spec.latencies != nil {
			*spec.latencies = append(*spec.latencies, r.Latency)
		}
		// vegeta sets Code once the whole answer is read, and reports a
		// non-2xx status as an error too: with a Code, the checker judges.
		var err error
		if r.Code == 0 {
			err = errors.New(r.Error)
		} else {
			err = spec.check(int(r.Code), r.Body, spec.verifyEvery > 0 && res.OK%spec.verifyEvery == 0)
		}
		if errors.Is(err, errShed) {
			res.Shed++
			if spec.allowShed {
				continue
			}
		}
		if err != nil {
			res.failures++
			reason := err.Error()
			if _, ok := res.Failures[reason]; ok || len(res.Failures) < maxFailureReasons {
				res.Failures[reason]++
			} else {
				res.Failures["(other reasons)"]++
			}
			continue
		}
		res.OK++
	}
	metrics.Close()
	res.Elapsed = metrics.Duration + metrics.Wait
	res.Rate = metrics.Rate
	if res.Elapsed > 0 {
		res.Throughput = float64(res.OK) / res.Elapsed.Seconds()
	}
	res.P50, res.P99, res.Max = metrics.Latencies.P50, metrics.Latencies.P99, metrics.Latencies.Max
	return res
}

// merge sums the rounds of one variant's phase: counts, time under load
// and, from the latencies of every request when given (else the worst
// round), the quantiles.
func merge(rounds []attackResult, latencies []time.Duration) attackResult {
	total := attackResult{Failures: map[string]uint64{}}
	for _, r := range rounds {
		total.Requests += r.Requests
		total.OK += r.OK
		total.Shed += r.Shed
		total.failures += r.failures
		total.Elapsed += r.Elapsed
		for k, v := range r.Failures {
			total.Failures[k] += v
		}
		total.P50, total.P99, total.Max = max(total.P50, r.P50), max(total.P99, r.P99), max(total.Max, r.Max)
	}
	if total.Elapsed > 0 {
		total.Rate = float64(total.Requests) / total.Elapsed.Seconds()
		total.Throughput = float64(total.OK) / total.Elapsed.Seconds()
	}
	if len(latencies) > 0 {
		sorted := slices.Clone(latencies)
		slices.Sort(sorted)
		total.P50, total.P99, total.Max = quantile(sorted, 0.50), quantile(sorted, 0.99), sorted[len(sorted)-1]
	}
	return total
}

// quantile is the nearest-rank quantile of sorted latencies.
func quantile(sorted []time.Duration, q float64) time.Duration {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}
