package protocol

import (
	"bytes"
	"os"
	"testing"

	"github.com/antchfx/xmlquery"
)

// BenchmarkParseVerify is the inbound hot path on the ~2 KB insureRequest
// sample: parse (scanner + tree), compute V, verify against two keys —
// with V in a new slice (SignedValue), in a pooled buffer
// (Envelope.Verify), and with the tree returned to the pool as well
// (Release: what the handler does).
func BenchmarkParseVerify(b *testing.B) {
	data, err := os.ReadFile("testdata/insure_request.xml")
	if err != nil {
		b.Fatal(err)
	}
	keys := []string{"old-key-being-rotated-out", testKey}
	for _, c := range []struct {
		name    string
		verify  func(*Envelope) bool
		release bool
	}{
		{"signed_value", func(e *Envelope) bool { _, ok := VerifyAny(e.SignedValue(), e.Sign, keys); return ok }, false},
		{"envelope_verify", func(e *Envelope) bool { _, ok := e.Verify(keys); return ok }, false},
		{"envelope_verify_release", func(e *Envelope) bool { _, ok := e.Verify(keys); return ok }, true},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				env, err := Parse(data, Limits{})
				if err != nil {
					b.Fatal(err)
				}
				if !c.verify(env) {
					b.Fatal("does not verify")
				}
				if c.release {
					env.Release()
				}
			}
		})
	}
}

// BenchmarkSignedValueVerify isolates V and the two-key verification.
func BenchmarkSignedValueVerify(b *testing.B) {
	data, err := os.ReadFile("testdata/insure_request.xml")
	if err != nil {
		b.Fatal(err)
	}
	env, err := Parse(data, Limits{})
	if err != nil {
		b.Fatal(err)
	}
	keys := []string{"old-key-being-rotated-out", testKey}
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := VerifyAny(env.SignedValue(), env.Sign, keys); !ok {
			b.Fatal("does not verify")
		}
	}
}

// BenchmarkBuildResponse builds a typical signed insureResponse.
func BenchmarkBuildResponse(b *testing.B) {
	body := []Element{
		{Name: "responseTime", Text: "2019-04-01 10:25:04"},
		{Name: "resultFlag", Text: "true"},
		{Name: "resultMessage", Text: "投保成功"},
		{Name: "proposalNo", Text: "TBD2019040100000001"},
		{Name: "yeepayurl", Text: "https://yimafu.yeepay.com/yymf-pay/qrPay/index?qr=80B1DWS7&id=4494180525900005&sg=59C21A433C5A83C2BC6EF0D1638A961D"},
	}
	b.ReportAllocs()
	for b.Loop() {
		if out := BuildResponse("insureResponse", "b98ec45e-8d21-42dd-8187-9637ba6e391e", body, testKey); len(out) == 0 {
			b.Fatal("empty")
		}
	}
}

// BenchmarkXMLQueryParseOnly is the reference for parseDOM's single pass:
// xmlquery.Parse alone on the same sample, without any of our checks.
// Compare with BenchmarkParseDOM.
func BenchmarkXMLQueryParseOnly(b *testing.B) {
	data, err := os.ReadFile("testdata/insure_request.xml")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := xmlquery.Parse(bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseDOM is our checked single-pass tree build alone.
func BenchmarkParseDOM(b *testing.B) {
	data, err := os.ReadFile("testdata/insure_request.xml")
	if err != nil {
		b.Fatal(err)
	}
	lim := Limits{}.withDefaults()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := parseDOM(data, lim); err != nil {
			b.Fatal(err)
		}
	}
}
