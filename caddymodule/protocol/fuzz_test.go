package protocol_test

// FuzzParseVerify drives the envelope parser, the signature and the reply
// builder through their exported API only, so it holds whatever the parser
// looks like inside. Invariants, for any input:
//
//   - Parse never panics; every error it returns is a *protocol.Error with
//     a known Kind, the matching sentinel, an English Error() and a short
//     Chinese Message();
//   - Parse is monotonic in its limits: what tight limits accept, the
//     defaults accept too, with the same signed value;
//   - an accepted envelope has a root, a head and a body; SignedValue is
//     valid UTF-8, stable, and (without mixed content) equals the leaf
//     texts of the body in document order (DESIGN §1.2);
//   - Sign/VerifyAny agree: our sign verifies, in either letter case, under
//     the right key wherever it sits in the list, never under an empty or
//     wrong key, and a changed sign never verifies;
//   - Build of the parsed body (any valid names) gives XML that Parse
//     accepts, whose elements are the ones built, whose requestUUID is the
//     one given, and whose signature verifies over LeafValues;
//   - Resign of an accepted message gives one that Parse accepts, with the
//     same signed value and a verifying sign.
//
// Run: go test -run XXX -fuzz FuzzParseVerify -fuzztime 10m -parallel 1 ./caddymodule/protocol/

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/antchfx/xmlquery"

	"github.com/caddy-gongbao/gongbao/caddymodule/protocol"
)

// fzKey is the platform's published test key (DESIGN §1.2).
const fzKey = "MeTKJnC3fIAxeer8erADRTlJ"

// fzTight are limits small enough for fuzzed inputs to cross every one.
var fzTight = protocol.Limits{MaxBytes: 2048, MaxDepth: 5, MaxElements: 40, MaxValueChars: 48}

func FuzzParseVerify(f *testing.F) {
	for _, s := range fzSeeds(f) {
		f.Add(s, fzKey)
	}
	f.Add([]byte(`<r><requestHead><sign>x</sign></requestHead><requestBody/></r>`), "")
	f.Fuzz(func(t *testing.T, data []byte, key string) {
		env, err := protocol.Parse(data, protocol.Limits{})
		tight, terr := protocol.Parse(data, fzTight)
		fzCheckErr(t, err)
		fzCheckErr(t, terr)
		if terr == nil {
			if err != nil {
				t.Fatalf("accepted under tight limits, refused under the defaults: %v", err)
			}
			if !bytes.Equal(tight.SignedValue(), env.SignedValue()) {
				t.Fatal("signed value depends on the limits")
			}
		}
		if err != nil {
			return
		}
		if key == "" {
			key = fzKey
		}
		fzCheckEnvelope(t, env)
		fzCheckSignature(t, env.SignedValue(), env.Sign, key)
		fzCheckBuild(t, env, key)
		fzCheckResign(t, data, env, key)
	})
}

// fzSeeds are the repository's signed messages (requests, replies,
// callbacks) and hand-made hostile inputs.
func fzSeeds(f *testing.F) [][]byte {
	var seeds [][]byte
	for _, pattern := range []string{
		"../../testdata/messages/*.xml",
		"../../testdata/golden/*.xml",
		"testdata/*.xml",
	} {
		files, err := filepath.Glob(pattern)
		if err != nil {
			f.Fatal(err)
		}
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			seeds = append(seeds, data)
		}
	}
	if len(seeds) < 10 {
		f.Fatalf("only %d seed messages found", len(seeds))
	}
	env := func(body string) []byte {
		return []byte(`<?xml version="1.0" encoding="UTF-8"?><insureRequest><requestHead><requestUUID>u-1</requestUUID>` +
			`<sign>00000000000000000000000000000000</sign></requestHead><requestBody>` + body + `</requestBody></insureRequest>`)
	}
	for _, s := range []string{
		`<a>x</a>`,
		`<a><![CDATA[<b>&amp;</b>]]></a>`,
		` <a> <![CDATA[ x ]]> </a> `,
		`<a>&lt;&amp;&#x4E2D;&#xD;&#10;</a><b/>`,
		`<a>mixed<b>1</b>text<c>2</c></a>`,
		`<a><!-- c --><?pi x="1"?>v</a>`,
		`<p:a xmlns:p="urn:x" p:k="v">x</p:a>`,
		`<a k1="1" k2="2" k3="3">x</a>`,
		strings.Repeat("<a>", 40) + strings.Repeat("</a>", 40),
		strings.Repeat("<a>x</a>", 60),
		`<a>` + strings.Repeat("长", 60) + `</a>`,
	} {
		seeds = append(seeds, env(s))
	}
	seeds = append(seeds,
		[]byte(`<?xml version="1.0" encoding="GBK"?><r/>`),
		[]byte(`<!DOCTYPE r [<!ENTITY x "y">]><r>&x;</r>`),
		[]byte("\xEF\xBB\xBF<r><requestHead/><requestBody/></r>"),
		[]byte("<r><requestHead/><requestBody><a>\xff</a></requestBody></r>"),
		[]byte(`<r><responseHead><sign>a</sign><sign>b</sign></responseHead><responseBody/></r>`),
		[]byte(`<r><requestHead/><requestBody/></r><r/>`),
		[]byte(`<?xml version="1.0"?><?xml version="1.0"?><r/>`),
		[]byte(`   `),
	)
	return seeds
}

// fzCheckErr checks the shape of a Parse error.
func fzCheckErr(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	pe, ok := err.(*protocol.Error)
	if !ok {
		t.Fatalf("Parse error %T is not *protocol.Error: %v", err, err)
	}
	sentinels := map[protocol.Kind]error{
		protocol.KindMalformed: protocol.ErrMalformed,
		protocol.KindForbidden: protocol.ErrForbidden,
		protocol.KindTooLarge:  protocol.ErrTooLarge,
		protocol.KindEncoding:  protocol.ErrEncoding,
		protocol.KindStructure: protocol.ErrStructure,
	}
	sentinel, known := sentinels[pe.Kind]
	if !known {
		t.Fatalf("unknown Kind %d: %v", pe.Kind, err)
	}
	if !errors.Is(err, sentinel) {
		t.Fatalf("errors.Is(%v, %v) is false", err, sentinel)
	}
	if !strings.HasPrefix(pe.Error(), "protocol: ") {
		t.Fatalf("Error() = %q", pe.Error())
	}
	msg := pe.Message()
	if msg == "" || len(msg) > 256 || !utf8.ValidString(msg) || !strings.ContainsFunc(msg, func(r rune) bool { return unicode.Is(unicode.Han, r) }) {
		t.Fatalf("Message() = %q: want a short Chinese message", msg)
	}
}

func fzCheckEnvelope(t *testing.T, env *protocol.Envelope) {
	t.Helper()
	if env.Root == "" || env.Head == nil || env.Body == nil {
		t.Fatalf("accepted envelope lacks root/head/body: %+v", env)
	}
	if env.Type != protocol.RequestMessage && env.Type != protocol.ResponseMessage {
		t.Fatalf("envelope type %d", env.Type)
	}
	if strings.Trim(env.Sign, " \t\r\n") != env.Sign || strings.Trim(env.RequestUUID, " \t\r\n") != env.RequestUUID {
		t.Fatalf("head values not trimmed: sign %q, requestUUID %q", env.Sign, env.RequestUUID)
	}
	v := env.SignedValue()
	if !utf8.Valid(v) {
		t.Fatalf("signed value is not UTF-8: %q", v)
	}
	if !bytes.Equal(v, env.SignedValue()) || !bytes.Equal(v, env.AppendSignedValue(nil)) {
		t.Fatal("SignedValue is not stable")
	}
	if !fzMixed(env.Body) && !fzHasText(env.Body) {
		if want := protocol.LeafValues(fzElements(env.Body)); !bytes.Equal(v, want) {
			t.Fatalf("signed value %q, want the leaf texts %q", v, want)
		}
	}
}

func fzCheckSignature(t *testing.T, v []byte, theirSign, key string) {
	t.Helper()
	// Whatever the message carried must be answerable without panicking.
	protocol.VerifyAny(v, theirSign, []string{key, fzKey, ""})

	sign := protocol.Sign(v, key)
	if len(sign) != 32 || strings.ToUpper(sign) != sign {
		t.Fatalf("Sign = %q: want 32 upper-case hex digits", sign)
	}
	for _, s := range []string{sign, strings.ToLower(sign)} {
		if i, ok := protocol.VerifyAny(v, s, []string{key}); !ok || i != 0 {
			t.Fatalf("own sign %q does not verify: %d %v", s, i, ok)
		}
		if i, ok := protocol.VerifyAny(v, s, []string{"", key + "x", key}); !ok || i != 2 {
			t.Fatalf("own sign under the third key: %d %v", i, ok)
		}
	}
	if _, ok := protocol.VerifyAny(v, sign, []string{""}); ok {
		t.Fatal("an empty key verified")
	}
	if _, ok := protocol.VerifyAny(v, sign, nil); ok {
		t.Fatal("no key verified")
	}
	if _, ok := protocol.VerifyAny(v, sign, []string{key + "x"}); ok {
		t.Fatal("a wrong key verified")
	}
	changed := []byte(sign)
	changed[len(v)%32] ^= 1 // '0'↔'1', 'A'↔'@': a different string
	if _, ok := protocol.VerifyAny(v, string(changed), []string{key}); ok {
		t.Fatal("a changed sign verified")
	}
	if _, ok := protocol.VerifyAny(v, sign+"0", []string{key}); ok {
		t.Fatal("a 33-character sign verified")
	}
}

// fzCheckBuild rebuilds the parsed body as a reply (or request) and parses
// it back.
func fzCheckBuild(t *testing.T, env *protocol.Envelope, key string) {
	t.Helper()
	els := fzElements(env.Body)
	typ := protocol.ResponseMessage
	if env.Type == protocol.ResponseMessage {
		typ = protocol.RequestMessage
	}
	out, err := protocol.Build(typ, env.Root, env.RequestUUID, els, key)
	if errors.Is(err, protocol.ErrInvalidName) {
		return // a name Build does not emit (e.g. a letter-like mark); the parser may accept it
	}
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	if typ == protocol.ResponseMessage {
		if !bytes.Equal(out, protocol.BuildResponse(env.Root, env.RequestUUID, els, key)) {
			t.Fatal("BuildResponse differs from Build")
		}
	}
	back, err := protocol.Parse(out, protocol.Limits{MaxBytes: 4 << 20})
	if err != nil {
		t.Fatalf("our own message is refused: %v\n%s", err, out)
	}
	if back.Root != env.Root || back.Type != typ || back.RequestUUID != env.RequestUUID {
		t.Fatalf("round trip: root %q→%q, type %v→%v, uuid %q→%q",
			env.Root, back.Root, typ, back.Type, env.RequestUUID, back.RequestUUID)
	}
	if got := fzElements(back.Body); !fzSameElements(got, els) {
		t.Fatalf("round trip changed the body\nbuilt  %#v\nparsed %#v", els, got)
	}
	v := back.SignedValue()
	if !bytes.Equal(v, protocol.LeafValues(els)) {
		t.Fatalf("receiver's V %q differs from LeafValues %q", v, protocol.LeafValues(els))
	}
	if _, ok := protocol.VerifyAny(v, back.Sign, []string{key}); !ok {
		t.Fatalf("our own sign does not verify:\n%s", out)
	}
}

func fzCheckResign(t *testing.T, data []byte, env *protocol.Envelope, key string) {
	t.Helper()
	out, err := protocol.Resign(data, key, "fuzz-uuid")
	if err != nil {
		t.Fatalf("Resign of an accepted message: %v", err)
	}
	back, err := protocol.Parse(out, protocol.Limits{MaxBytes: 4 << 20})
	if err != nil {
		t.Fatalf("resigned message refused: %v\n%s", err, out)
	}
	if !bytes.Equal(back.SignedValue(), env.SignedValue()) || back.RequestUUID != "fuzz-uuid" || back.Root != env.Root {
		t.Fatalf("Resign changed the message: V %q→%q, uuid %q", env.SignedValue(), back.SignedValue(), back.RequestUUID)
	}
	if _, ok := protocol.VerifyAny(back.SignedValue(), back.Sign, []string{key}); !ok {
		t.Fatal("resigned message does not verify")
	}
}

// fzElements turns a parsed element's children into Build's element tree:
// an element with element children is a container, else a leaf carrying
// its character data (text and CDATA, as decoded).
func fzElements(n *xmlquery.Node) []protocol.Element {
	var out []protocol.Element
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		if c.Type != xmlquery.ElementNode {
			continue
		}
		if kids := fzElements(c); len(kids) > 0 {
			out = append(out, protocol.Element{Name: c.Data, Children: kids})
			continue
		}
		var text strings.Builder
		for g := c.FirstChild; g != nil; g = g.NextSibling {
			if g.Type == xmlquery.TextNode || g.Type == xmlquery.CharDataNode {
				text.WriteString(g.Data)
			}
		}
		out = append(out, protocol.Element{Name: c.Data, Text: text.String()})
	}
	return out
}

func fzSameElements(a, b []protocol.Element) bool {
	if len(a) == 0 && len(b) == 0 {
		return true
	}
	return reflect.DeepEqual(a, b)
}

// fzHasText reports whether n holds non-blank character data of its own:
// in the body, that counts as mixed content even without child elements.
func fzHasText(n *xmlquery.Node) bool {
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		if (c.Type == xmlquery.TextNode || c.Type == xmlquery.CharDataNode) && strings.Trim(c.Data, " \t\r\n") != "" {
			return true
		}
	}
	return false
}

// fzMixed reports whether any element under n (n included) holds both
// element children and non-blank character data.
func fzMixed(n *xmlquery.Node) bool {
	hasKid, hasText := false, false
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		switch c.Type {
		case xmlquery.ElementNode:
			hasKid = true
			if fzMixed(c) {
				return true
			}
		case xmlquery.TextNode, xmlquery.CharDataNode:
			if strings.Trim(c.Data, " \t\r\n") != "" {
				hasText = true
			}
		}
	}
	return hasKid && hasText
}
