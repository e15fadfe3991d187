package gateway_test

import (
	"bytes"
	"net/http"
	"testing"
)

// BenchmarkVerifyMapSign is the sidecar's own work on one insureRequest
// (the ~2 KB sample), through the calls the handler makes: Open, Admit
// (read, parse, dispatch, verify, map the body to the core's JSON),
// Release of the parsed tree, and Reply (map the core's answer back,
// build and sign the reply). Network, the core and the store are
// excluded.
func BenchmarkVerifyMapSign(b *testing.B) {
	g := newEngine(b)
	msg := insureSample(b, testKey)
	answer := sample(b, "insureRequest.reply.json")
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		x := g.Open("/gongbao")
		env, err := g.Admit(&x, bytes.NewReader(msg), int64(len(msg)), nil)
		if err != nil {
			b.Fatal(err)
		}
		env.Release()
		if _, err := g.Reply(&x, http.StatusCreated, answer); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRefuseUnverified is the answer to a message whose signature
// does not verify: parse, dispatch, verify (and fail), build the unsigned
// refusal. It bounds what a flood of forged messages costs.
func BenchmarkRefuseUnverified(b *testing.B) {
	g := newEngine(b)
	msg := insureSample(b, "not-the-platform-key")
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		x := g.Open("/gongbao")
		_, err := g.Admit(&x, bytes.NewReader(msg), int64(len(msg)), nil)
		if err == nil {
			b.Fatal("admitted a forged message")
		}
		g.Refuse(&x, err)
	}
}

// BenchmarkCallback is one core event mapped and signed as a callback.
func BenchmarkCallback(b *testing.B) {
	g := newEngine(b)
	event := sample(b, "policy-paid.json")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := g.Callback("policy-paid", "", event); err != nil {
			b.Fatal(err)
		}
	}
}
