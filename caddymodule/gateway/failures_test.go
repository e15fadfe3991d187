package gateway_test

import (
	"context"
	"errors"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/caddy-gongbao/gongbao/caddymodule/gateway"
)

// TestRequestFailures covers the request-side rows of DESIGN §4: each is
// refused by Admit (so the core is never called: there is no core body),
// and answered with a well-formed reply, resultFlag=false and a specific
// message. Refusals of requests that did not verify are unsigned
// (SECURITY.md: a signed answer to unverified input is a signature its
// sender could reuse); refusals of verified requests are signed with our
// key.
func TestRequestFailures(t *testing.T) {
	g := newEngine(t)
	signSpan := regexp.MustCompile(`<sign>[^<]*</sign>`)

	const signed, unsigned = true, false
	cases := []struct {
		name, wantRoot, wantMessage, wantOutcome string
		wantSigned                               bool
		msg                                      []byte
	}{
		{"bad sign", "insureResponse", "验签失败", "bad_signature", unsigned,
			[]byte(signSpan.ReplaceAllString(string(insureSample(t, testKey)), "<sign>0123456789ABCDEF0123456789ABCDEF</sign>"))},
		{"missing sign", "insureResponse", "验签失败: 报文头缺少sign", "bad_signature", unsigned,
			[]byte(signSpan.ReplaceAllString(string(insureSample(t, testKey)), ""))},
		{"wrong key", "insureResponse", "验签失败", "bad_signature", unsigned, insureSample(t, "not-the-platform-key")},
		{"body changed after signing", "insureResponse", "验签失败", "bad_signature", unsigned,
			[]byte(strings.Replace(string(insureSample(t, testKey)), "20.00", "2.00", 1))},
		{"not XML", "errorResponse", "报文不是合法的XML", "malformed", unsigned, []byte("this is not xml")},
		{"empty body", "errorResponse", "", "malformed", unsigned, nil},
		{"unknown root", "errorResponse", "不支持的报文类型", "unknown_message", unsigned,
			insureSample(t, testKey, "<insureRequest>", "<fooRequest>", "</insureRequest>", "</fooRequest>")},
		{"DOCTYPE", "errorResponse", "DOCTYPE", "malformed", unsigned,
			insureSample(t, "", `<?xml version="1.0" encoding="UTF-8"?>`, `<?xml version="1.0" encoding="UTF-8"?><!DOCTYPE insureRequest [<!ENTITY x "y">]>`)},
		{"GBK encoding", "errorResponse", "UTF-8", "malformed", unsigned,
			insureSample(t, "", `encoding="UTF-8"`, `encoding="GBK"`)},
		{"oversize", "errorResponse", "报文超过大小限制", "too_large", unsigned,
			insureSample(t, "", "<endorseText>", "<endorseText>"+strings.Repeat("x", 70<<10))},
		{"missing requestUUID", "insureResponse", "缺少requestUUID", "missing_uuid", unsigned,
			[]byte(regexp.MustCompile(`<requestUUID>[^<]*</requestUUID>`).ReplaceAllString(string(insureSample(t, testKey)), ""))},
		{"requestUUID with a space", "insureResponse", "requestUUID格式无效", "bad_uuid", unsigned,
			[]byte(regexp.MustCompile(`<requestUUID>[^<]*</requestUUID>`).ReplaceAllString(string(insureSample(t, testKey)), "<requestUUID>a b</requestUUID>"))},
		{"requestUUID too long", "insureResponse", "requestUUID过长(最多 64 个字符)", "bad_uuid", unsigned,
			[]byte(regexp.MustCompile(`<requestUUID>[^<]*</requestUUID>`).ReplaceAllString(string(insureSample(t, testKey)), "<requestUUID>"+strings.Repeat("a", 65)+"</requestUUID>"))},
		{"missing required field", "insureResponse", "缺少必填字段 applicantInfo/mobile", "invalid_field", signed,
			insureSample(t, testKey, "<mobile>13858012345</mobile>", "")},
		{"field too long", "insureResponse", "applicantInfo/name 超长", "invalid_field", signed,
			insureSample(t, testKey, "<name>浙江宏达建设工程有限公司</name>", "<name>"+strings.Repeat("长", 21)+"</name>")},
		{"bad decimal", "insureResponse", "policyInfo/sumPremium 不是有效的金额", "invalid_field", signed,
			insureSample(t, testKey, "<sumPremium>20.00</sumPremium>", "<sumPremium>20.0O</sumPremium>")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			x, err := admit(g, "/gongbao", tc.msg)
			if err == nil {
				t.Fatal("admitted; want a refusal")
			}
			if x.CoreRequest != nil {
				t.Error("a refused request has a core body")
			}
			raw, f := g.Refuse(x, err)
			reply, isSigned := parseReply(t, raw)
			if reply.Root != tc.wantRoot {
				t.Errorf("reply root = %s, want %s", reply.Root, tc.wantRoot)
			}
			assertRefused(t, reply, tc.wantMessage)
			if isSigned != tc.wantSigned {
				t.Errorf("reply signed = %v, want %v", isSigned, tc.wantSigned)
			}
			if f.Outcome != tc.wantOutcome || x.Outcome != tc.wantOutcome {
				t.Errorf("outcome = %q (exchange %q), want %q", f.Outcome, x.Outcome, tc.wantOutcome)
			}
			if x.ErrText == "" {
				t.Error("no error text for the journal")
			}
		})
	}
}

// TestStoreRefusals covers the idempotency rows of DESIGN §4 as far as the
// engine words them: the caller's store decides, the engine answers a
// verified request with a signed, fixed text.
func TestStoreRefusals(t *testing.T) {
	g := newEngine(t)
	cases := []struct {
		name, wantMessage, wantOutcome string
		err                            error
	}{
		{"same requestUUID, different body", "requestUUID 已用于内容不同的报文", "conflict", gateway.ErrConflict},
		{"same requestUUID while in flight", "处理中", "in_progress", gateway.ErrInProgress},
		{"same content under a new requestUUID", "报文内容与此前已受理的请求完全相同", "content_replay", gateway.ErrContentReplay},
		{"store unavailable", "系统繁忙", "store_unavailable", gateway.Busy("store_unavailable", errors.New("disk full"))},
		{"platform hung up", "系统繁忙", "client_gone", gateway.Busy("client_gone", context.Canceled)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			x := admitted(t, g, insureSample(t, testKey))
			raw, f := g.Refuse(x, tc.err)
			reply, isSigned := parseReply(t, raw)
			if !isSigned {
				t.Error("the refusal of a verified request is unsigned")
			}
			if reply.Root != "insureResponse" {
				t.Errorf("reply root = %s", reply.Root)
			}
			assertRefused(t, reply, tc.wantMessage)
			if f.Outcome != tc.wantOutcome {
				t.Errorf("outcome = %q, want %q", f.Outcome, tc.wantOutcome)
			}
			if strings.Contains(string(raw), "disk full") {
				t.Error("the store's error text reached the platform")
			}
		})
	}
}

// TestCoreFailures covers the core-side rows: each answered with a signed
// resultFlag=false reply that says what the platform should do, with a
// fixed text: the core's own words never reach the platform. notActed
// tells whether the idempotency record may be released for a resend.
func TestCoreFailures(t *testing.T) {
	g := newEngine(t)
	const secret = "password=hunter2"
	cases := []struct {
		name, wantMessage, wantOutcome string
		status                         int    // the core's answer, when it answered
		answer                         string // its body
		wire                           error  // what the caller met on the wire instead
		notActed                       bool
	}{
		{name: "core 500", wantMessage: "系统繁忙", wantOutcome: "core_error",
			status: http.StatusInternalServerError, answer: "boom " + secret},
		{name: "core 503", wantMessage: "系统繁忙", wantOutcome: "core_unavailable", notActed: true,
			status: http.StatusServiceUnavailable, answer: "maintenance " + secret},
		{name: "core 429", wantMessage: "系统繁忙", wantOutcome: "core_unavailable", notActed: true,
			status: http.StatusTooManyRequests, answer: secret},
		{name: "core timeout", wantMessage: "系统繁忙", wantOutcome: "core_timeout",
			wire: gateway.CoreError{Kind: gateway.CoreUnavailable, Cause: context.DeadlineExceeded}},
		{name: "core down", wantMessage: "系统繁忙", wantOutcome: "core_unavailable", notActed: true,
			wire: gateway.CoreError{Kind: gateway.CoreUnavailable, NotSent: true, Cause: errors.New("connection refused")}},
		{name: "core reply too large", wantMessage: "核心系统应答无效", wantOutcome: "core_invalid",
			wire: gateway.CoreError{Kind: gateway.CoreInvalid, Status: 200, Cause: errors.New("core reply exceeds max_core_reply_size")}},
		{name: "core answers HTML", wantMessage: "核心系统应答无效", wantOutcome: "core_invalid",
			status: http.StatusOK, answer: "<html>login " + secret + "</html>"},
		{name: "core answer lacks accepted", wantMessage: "核心系统应答无效", wantOutcome: "core_invalid",
			status: http.StatusOK, answer: `{"message":"` + secret + `"}`},
		{name: "core rejects with 400", wantMessage: "核心系统拒绝请求(HTTP 400)", wantOutcome: "core_rejected", notActed: true,
			status: http.StatusBadRequest, answer: `{"accepted":false,"message":"缺少字段 x ` + secret + `"}`},
		{name: "core 422 that is not a business answer", wantMessage: "核心系统拒绝请求(HTTP 422)", wantOutcome: "core_rejected", notActed: true,
			status: http.StatusUnprocessableEntity, answer: `{"accepted":true,"message":"` + secret + `"}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			x := admitted(t, g, insureSample(t, testKey))
			if x.CoreRequest == nil {
				t.Fatal("admitted without a core body")
			}
			err := tc.wire
			if err == nil {
				var reply []byte
				reply, err = g.Reply(x, tc.status, []byte(tc.answer))
				if err == nil {
					t.Fatalf("the answer was translated:\n%s", reply)
				}
			}
			raw, f := g.Refuse(x, err)
			reply, isSigned := parseReply(t, raw)
			if !isSigned {
				t.Error("a core failure's refusal is unsigned")
			}
			assertRefused(t, reply, tc.wantMessage)
			if f.Outcome != tc.wantOutcome {
				t.Errorf("outcome = %q, want %q", f.Outcome, tc.wantOutcome)
			}
			if strings.Contains(string(raw), secret) || strings.Contains(string(raw), "缺少字段 x") {
				t.Errorf("the core's text reached the platform:\n%s", raw)
			}
			if got := gateway.CertainlyNotActed(err); got != tc.notActed {
				t.Errorf("certainly not acted = %v, want %v", got, tc.notActed)
			}
		})
	}
}
