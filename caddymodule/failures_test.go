package caddymodule_test

import (
	"strings"
	"testing"
)

// The failure table of DESIGN §4 runs on the engine, without Caddy:
// gateway/failures_test.go (TestRequestFailures, TestStoreRefusals,
// TestCoreFailures). What remains here is the wiring the engine cannot
// see: reverse_proxy's own errors becoming the engine's core errors. It
// runs the test Caddyfile's reverse_proxy in process
// (startInProcessBehindProxy); the HTTP server around it adds nothing here.

// insureSample returns the sample insureRequest after applying edits to its
// text; the result is re-signed with key unless key is empty.
func insureSample(t *testing.T, key string, edits ...string) []byte {
	t.Helper()
	msg := strings.NewReplacer(edits...).Replace(string(sample(t, "insureRequest.xml")))
	if key == "" {
		return []byte(msg)
	}
	return signed(t, []byte(msg), key)
}

// TestCoreDown: nothing listens at the core's address. reverse_proxy's
// dial error is a core certainly not reached: 系统繁忙.
func TestCoreDown(t *testing.T) {
	gw := startInProcessBehindProxy(t, startCore(t), "127.0.0.1:1", "")
	reply, _ := postWith(t, gw.Client, sidecarURL, insureSample(t, testKey))
	assertRefused(t, reply, "系统繁忙")
}
