package caddymodule_test

import (
	"net/http"
	"regexp"
	"strings"
	"testing"
)

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

// TestRequestFailures covers the request-side rows of DESIGN §4: each is
// answered with a well-formed reply, resultFlag=false and a specific
// message, and the core is never called. Refusals of requests that did not
// verify are unsigned (SECURITY.md: a signed answer to unverified input is
// a signature its sender could reuse); refusals of verified requests are
// signed with our key.
func TestRequestFailures(t *testing.T) {
	fx := startCore(t)
	tester := startSidecar(t, sidecarConfig(t, fx.srv.Listener.Addr().String(), "", ""))
	signSpan := regexp.MustCompile(`<sign>[^<]*</sign>`)

	const signed, unsigned = true, false
	cases := []struct {
		name, wantRoot, wantMessage string
		wantSigned                  bool
		msg                         []byte
	}{
		{"bad sign", "insureResponse", "验签失败", unsigned,
			[]byte(signSpan.ReplaceAllString(string(insureSample(t, testKey)), "<sign>0123456789ABCDEF0123456789ABCDEF</sign>"))},
		{"missing sign", "insureResponse", "验签失败: 报文头缺少sign", unsigned,
			[]byte(signSpan.ReplaceAllString(string(insureSample(t, testKey)), ""))},
		{"wrong key", "insureResponse", "验签失败", unsigned, insureSample(t, "not-the-platform-key")},
		{"body changed after signing", "insureResponse", "验签失败", unsigned,
			[]byte(strings.Replace(string(insureSample(t, testKey)), "20.00", "2.00", 1))},
		{"not XML", "errorResponse", "报文不是合法的XML", unsigned, []byte("this is not xml")},
		{"empty body", "errorResponse", "", unsigned, nil},
		{"unknown root", "errorResponse", "不支持的报文类型", unsigned,
			insureSample(t, testKey, "<insureRequest>", "<fooRequest>", "</insureRequest>", "</fooRequest>")},
		{"DOCTYPE", "errorResponse", "DOCTYPE", unsigned,
			insureSample(t, "", `<?xml version="1.0" encoding="UTF-8"?>`, `<?xml version="1.0" encoding="UTF-8"?><!DOCTYPE insureRequest [<!ENTITY x "y">]>`)},
		{"GBK encoding", "errorResponse", "UTF-8", unsigned,
			insureSample(t, "", `encoding="UTF-8"`, `encoding="GBK"`)},
		{"oversize", "errorResponse", "报文超过大小限制", unsigned,
			insureSample(t, "", "<endorseText>", "<endorseText>"+strings.Repeat("x", 70<<10))},
		{"missing requestUUID", "insureResponse", "缺少requestUUID", unsigned,
			[]byte(regexp.MustCompile(`<requestUUID>[^<]*</requestUUID>`).ReplaceAllString(string(insureSample(t, testKey)), ""))},
		{"missing required field", "insureResponse", "缺少必填字段 applicantInfo/mobile", signed,
			insureSample(t, testKey, "<mobile>13858012345</mobile>", "")},
		{"field too long", "insureResponse", "applicantInfo/name 超长", signed,
			insureSample(t, testKey, "<name>浙江宏达建设工程有限公司</name>", "<name>"+strings.Repeat("长", 21)+"</name>")},
		{"bad decimal", "insureResponse", "policyInfo/sumPremium 不是有效的金额", signed,
			insureSample(t, testKey, "<sumPremium>20.00</sumPremium>", "<sumPremium>20.0O</sumPremium>")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := fx.callCount()
			reply, _ := post(t, tester, sidecarURL, tc.msg)
			if reply.Root != tc.wantRoot {
				t.Errorf("reply root = %s, want %s", reply.Root, tc.wantRoot)
			}
			assertRefused(t, reply, tc.wantMessage)
			if msg := text(reply, "resultMessage"); msg == "" {
				t.Error("empty resultMessage")
			}
			if got := reply.Sign != ""; got != tc.wantSigned {
				t.Errorf("reply signed = %v, want %v", got, tc.wantSigned)
			}
			if fx.callCount() != before {
				t.Errorf("the core was called (%d calls)", fx.callCount()-before)
			}
		})
	}
}

// TestCoreFailures covers the core-side rows: each answered with a signed
// resultFlag=false reply that says what the platform should do.
func TestCoreFailures(t *testing.T) {
	fx := startCore(t)
	tester := startSidecar(t, sidecarConfig(t, fx.srv.Listener.Addr().String(), "", ""))
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })

	cases := []struct {
		name, wantMessage string
		core              http.HandlerFunc
	}{
		{"core 500", "系统繁忙", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "boom", http.StatusInternalServerError)
		}},
		{"core 503", "系统繁忙", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "maintenance", http.StatusServiceUnavailable)
		}},
		{"core timeout", "系统繁忙", func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}},
		{"core answers HTML", "核心系统应答无效", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.Write([]byte("<html>login</html>"))
		}},
		{"core answer lacks accepted", "核心系统应答无效", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"message":"ok"}`))
		}},
		{"core rejects with 400", "核心系统拒绝请求(HTTP 400)", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			w.Write([]byte(`{"accepted":false,"message":"缺少字段 x"}`))
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fx.setOverride(tc.core)
			defer fx.setOverride(nil)
			before := fx.callCount()
			reply, _ := post(t, tester, sidecarURL, insureSample(t, testKey))
			assertRefused(t, reply, tc.wantMessage)
			if fx.callCount() != before+1 {
				t.Errorf("core calls = %d, want 1", fx.callCount()-before)
			}
		})
	}
}

// TestCoreDown: nothing listens at the core's address.
func TestCoreDown(t *testing.T) {
	tester := startSidecar(t, sidecarConfig(t, "127.0.0.1:1", "", ""))
	reply, _ := post(t, tester, sidecarURL, insureSample(t, testKey))
	assertRefused(t, reply, "系统繁忙")
}
