package gateway_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/caddy-gongbao/gongbao/caddymodule/gateway"
	"github.com/caddy-gongbao/gongbao/caddymodule/protocol"
)

// TestAdmitAndReply: a verified insureRequest is admitted with the core's
// JSON body and the journal notes; the core's answer becomes a signed
// reply with a fresh requestUUID.
func TestAdmitAndReply(t *testing.T) {
	g := newEngine(t)
	msg := insureSample(t, testKey)
	x := open(g, "/gongbao/insureRequest")
	env, err := g.Admit(x, bytes.NewReader(msg), -1, nil)
	if err != nil {
		t.Fatal(err)
	}
	fp := gateway.Fingerprint(env)
	env.Release()
	if !x.Verified || x.Root != "insureRequest" || x.ReplyRoot != "insureResponse" || x.Mapping == nil {
		t.Fatalf("exchange after admit: %+v", x)
	}
	if x.RequestUUID == "" || !bytes.Contains(msg, []byte("<requestUUID>"+x.RequestUUID+"</requestUUID>")) {
		t.Errorf("requestUUID = %q", x.RequestUUID)
	}
	if !bytes.Equal(x.RequestXML, msg) {
		t.Error("the request body is not kept for the journal")
	}
	if !json.Valid(x.CoreRequest) {
		t.Fatalf("core body is not JSON: %s", x.CoreRequest)
	}
	if len(fp) != 64 {
		t.Errorf("fingerprint %q", fp)
	}

	raw, err := g.Reply(x, http.StatusCreated, sample(t, "insureRequest.reply.json"))
	if err != nil {
		t.Fatal(err)
	}
	reply, isSigned := parseReply(t, raw)
	if !isSigned || reply.Root != "insureResponse" || text(reply, "resultFlag") != "true" {
		t.Fatalf("reply:\n%s", raw)
	}
	if reply.RequestUUID == x.RequestUUID || reply.RequestUUID == "" {
		t.Errorf("reply requestUUID %q: want a fresh one", reply.RequestUUID)
	}
	if x.Outcome != "ok" || x.CoreStatus != http.StatusCreated || x.ProposalNo == "" {
		t.Errorf("exchange after reply: outcome %q, core status %d, proposal %q", x.Outcome, x.CoreStatus, x.ProposalNo)
	}
}

// TestBusinessRefusal: a 2xx or a 422 whose result flag is false is the
// core's business answer: translated (its text included, through the
// reply mapping), signed, outcome "refused".
func TestBusinessRefusal(t *testing.T) {
	g := newEngine(t)
	answer := sample(t, "insureRequest.refused.reply.json")
	for _, status := range []int{http.StatusOK, http.StatusUnprocessableEntity} {
		x := admitted(t, g, insureSample(t, testKey))
		raw, err := g.Reply(x, status, answer)
		if err != nil {
			t.Fatalf("HTTP %d: %v", status, err)
		}
		reply, isSigned := parseReply(t, raw)
		if !isSigned || text(reply, "resultFlag") != "false" || x.Outcome != "refused" {
			t.Errorf("HTTP %d: signed %v, outcome %q:\n%s", status, isSigned, x.Outcome, raw)
		}
	}
}

// TestRouteDispatch: a route's message list and its path root are
// enforced before the signature is checked, with fixed texts.
func TestRouteDispatch(t *testing.T) {
	g := newEngine(t)
	route, err := g.Messages([]string{"claimRequest"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.Messages([]string{"fooRequest"}); err == nil {
		t.Error("a route may list a message without a mapping")
	}
	msg := insureSample(t, testKey)

	x := open(g, "/gongbao")
	if _, err := g.Admit(x, bytes.NewReader(msg), -1, route); gateway.Classify(err).Outcome != "unknown_message" {
		t.Errorf("a message the route does not serve: %v", err)
	}
	if x.Root != "" {
		t.Errorf("root %q kept from a refused message", x.Root)
	}

	x = open(g, "/gongbao/claimRequest")
	_, err = g.Admit(x, bytes.NewReader(msg), -1, nil)
	if f := gateway.Classify(err); f.Outcome != "root_mismatch" {
		t.Fatalf("root mismatch: %v", err)
	}
	raw, _ := g.Refuse(x, err)
	reply, isSigned := parseReply(t, raw)
	if isSigned {
		t.Error("a refusal before verification is signed")
	}
	if reply.Root != "insureResponse" {
		t.Errorf("reply root %s", reply.Root)
	}

	// A body too broken to name itself is answered with the route's root.
	x = open(g, "/gongbao/claimRequest")
	_, err = g.Admit(x, strings.NewReader("not xml"), -1, nil)
	raw, _ = g.Refuse(x, err)
	if reply, _ := parseReply(t, raw); reply.Root != "claimResponse" {
		t.Errorf("reply root %s, want claimResponse", reply.Root)
	}
}

// TestSecurityRules: what the engine signs never carries text the sender
// chose, and input that did not verify never gets a signature back.
func TestSecurityRules(t *testing.T) {
	g := newEngine(t)
	const marker = "ATTACKERCHOSEN"

	t.Run("unknown root name is not echoed", func(t *testing.T) {
		msg := insureSample(t, testKey, "<insureRequest>", "<"+marker+"Request>", "</insureRequest>", "</"+marker+"Request>")
		x, err := admit(g, "/gongbao/"+marker+"Request", msg)
		raw, _ := g.Refuse(x, err)
		if bytes.Contains(raw, []byte(marker)) {
			t.Errorf("the refusal repeats the sender's root:\n%s", raw)
		}
		if _, isSigned := parseReply(t, raw); isSigned {
			t.Error("signed refusal of unverified input")
		}
	})
	t.Run("unknown element name is not echoed", func(t *testing.T) {
		msg := insureSample(t, testKey, "<sumPremium>", "<"+marker+">x</"+marker+"><sumPremium>")
		x, err := admit(g, "/gongbao", msg)
		if err == nil {
			t.Fatal("admitted an element the mapping does not declare")
		}
		raw, _ := g.Refuse(x, err)
		if _, isSigned := parseReply(t, raw); !isSigned {
			t.Error("the refusal of a verified request is unsigned")
		}
		if bytes.Contains(raw, []byte(marker)) {
			t.Errorf("the signed refusal repeats the sender's element name:\n%s", raw)
		}
		if !strings.Contains(x.ErrText, marker) {
			t.Errorf("the journal's error text %q does not name the element", x.ErrText)
		}
	})
	t.Run("field values are not quoted", func(t *testing.T) {
		msg := insureSample(t, testKey, "<sumPremium>20.00</sumPremium>", "<sumPremium>"+marker+"</sumPremium>")
		x, err := admit(g, "/gongbao", msg)
		raw, f := g.Refuse(x, err)
		if f.Field != "policyInfo/sumPremium" || bytes.Contains(raw, []byte(marker)) || strings.Contains(x.ErrText, marker) {
			t.Errorf("field %q, error text %q, reply:\n%s", f.Field, x.ErrText, raw)
		}
	})
	t.Run("unverified input is refused unsigned, whatever the failure", func(t *testing.T) {
		msg := insureSample(t, "not-the-platform-key")
		x, err := admit(g, "/gongbao", msg)
		for _, e := range []error{err, gateway.ErrConflict, gateway.CoreError{Kind: gateway.CoreFailed, Status: 500}} {
			raw, _ := g.Refuse(x, e)
			env, perr := protocol.Parse(raw, protocol.Limits{})
			if perr != nil || env.Sign != "" {
				t.Errorf("%v: refusal of an unverified request is signed or broken:\n%s", e, raw)
			}
		}
	})
}

// TestUnknownElementClipped: the element name kept for operators is
// bounded.
func TestUnknownElementClipped(t *testing.T) {
	g := newEngine(t)
	long := "e" + strings.Repeat("x", 100)
	msg := insureSample(t, testKey, "<sumPremium>", "<"+long+">x</"+long+"><sumPremium>")
	_, err := admit(g, "/gongbao", msg)
	el := gateway.UnknownElement(err)
	if el == "" || len([]rune(el)) != 65 || !strings.HasSuffix(el, "…") {
		t.Errorf("unknown element %q", el)
	}
}

// TestFingerprint: indentation between elements does not change the
// fingerprint; moving a text to another element does.
func TestFingerprint(t *testing.T) {
	fp := func(msg string) string {
		env, err := protocol.Parse([]byte(msg), protocol.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		defer env.Release()
		return gateway.Fingerprint(env)
	}
	const head = `<?xml version="1.0" encoding="UTF-8"?><r><requestHead><sign>x</sign><requestUUID>u</requestUUID></requestHead>`
	a := fp(head + `<requestBody><a>1</a><b>2</b></requestBody></r>`)
	b := fp(head + "<requestBody>\n  <a>1</a>\n  <b>2</b>\n</requestBody></r>")
	c := fp(head + `<requestBody><a>12</a><b></b></requestBody></r>`)
	if a != b {
		t.Error("indentation changes the fingerprint")
	}
	if a == c {
		t.Error("moving text between elements keeps the fingerprint")
	}
}

// TestReadFailure: a body that breaks off while being read is refused,
// unsigned, before anything is parsed.
func TestReadFailure(t *testing.T) {
	g := newEngine(t)
	x := open(g, "/gongbao/insureRequest")
	_, err := g.Admit(x, iotest.ErrReader(errors.New("connection reset")), 2048, nil)
	if err == nil {
		t.Fatal("admitted a body that could not be read")
	}
	raw, f := g.Refuse(x, err)
	reply, isSigned := parseReply(t, raw)
	if isSigned || f.Outcome != "read_error" || reply.Root != "insureResponse" {
		t.Errorf("signed %v, outcome %q, root %s", isSigned, f.Outcome, reply.Root)
	}
	assertRefused(t, reply, "读取报文失败")
}

// open is Open for tests that hold the exchange by pointer.
func open(g *gateway.Gateway, path string) *gateway.Exchange {
	x := g.Open(path)
	return &x
}
