package caddymodule_test

// Hostile-input limits of the handler, provisioned in process (issue 7,
// item 2). Each limit is
// shown from both sides: a message exactly at the limit is served (the core
// is called once), one step beyond is answered with an unsigned
// resultFlag=false reply that says what was exceeded, and the core is not
// called. Refused constructs (DOCTYPE, ENTITY, non-UTF-8 declarations,
// invalid UTF-8) get the same treatment. Run with: go test ./caddymodule/ -run Limit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/caddy-gongbao/gongbao/caddymodule/protocol"
)

// The limits the tests configure, below the defaults so that messages
// crossing them stay small. The body size is the harness's 64KiB.
const (
	limBodySize = 64 << 10
	limDepth    = 8
	limElements = 60
	limValueLen = 512
	limAttrs    = 8 // attributes on one element; below the protocol's default (16) so over-limit messages can still be signed
)

var limGlobal = fmt.Sprintf("max_depth %d\n\t\tmax_elements %d\n\t\tmax_value_chars %d\n\t\tmax_attributes %d", limDepth, limElements, limValueLen, limAttrs)

// limSidecar starts the reference core and the sidecar with the limits
// above. The tests pad messages with elements no mapping declares, which
// the shipped insure mapping refuses; the parser's limits are what is
// tested here, so its copy sets unknown_elements: ignore.
func limSidecar(t *testing.T) (*coreFixture, *inProcess) {
	t.Helper()
	fx := startCore(t)
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(repoPath("mappings"))); err != nil {
		t.Fatal(err)
	}
	insure, err := os.OpenFile(dir+"/insure.yaml", os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := insure.WriteString("\nunknown_elements: ignore\n"); err != nil {
		t.Fatal(err)
	}
	insure.Close()
	global := limGlobal + "\n\t\tmappings " + dir
	return fx, startInProcess(t, fx, global)
}

// limInsure is the sample insureRequest with extra placed just before
// </requestBody>, re-signed with the test key and a fresh requestUUID.
func limInsure(t *testing.T, extra string) []byte {
	t.Helper()
	return insureSample(t, testKey, "</requestBody>", extra+"</requestBody>")
}

// limServed posts msg and expects it to be served: resultFlag=true and one
// core call.
func limServed(t *testing.T, fx *coreFixture, gw *inProcess, msg []byte) {
	t.Helper()
	before := fx.callCount()
	reply, _ := postWith(t, gw.Client, sidecarURL, msg)
	if flag := text(reply, "resultFlag"); flag != "true" {
		t.Fatalf("a message at the limit was refused: %s", text(reply, "resultMessage"))
	}
	if got := fx.callCount() - before; got != 1 {
		t.Fatalf("core calls = %d, want 1", got)
	}
}

// limRefused posts msg and expects a resultFlag=false reply whose message
// contains each of want, without any call to the core. Limits are checked
// before the signature, so the refusal is unsigned (post checks that an
// unsigned reply is a refusal, a signed one verifies).
func limRefused(t *testing.T, fx *coreFixture, gw *inProcess, msg []byte, want ...string) {
	t.Helper()
	before := fx.callCount()
	reply, _ := postWith(t, gw.Client, sidecarURL, msg) // post checks well-formedness and our signature
	for _, w := range want {
		assertRefused(t, reply, w)
	}
	if got := fx.callCount() - before; got != 0 {
		t.Fatalf("the core was called %d times for a refused message", got)
	}
}

func TestLimitBodySize(t *testing.T) {
	// The shape limits stay at their defaults here: the padding is one long
	// run of white space, which counts against max_value_chars.
	fx := startCore(t)
	gw := startInProcess(t, fx, "")
	// White space between elements is not signed, so padding after signing
	// keeps the signature valid.
	pad := func(n int) []byte {
		msg := limInsure(t, "")
		fill := n - len(msg)
		if fill < 0 {
			t.Fatalf("sample is already %d bytes", len(msg))
		}
		return bytes.Replace(msg, []byte("</insureRequest>"), []byte(strings.Repeat(" ", fill)+"</insureRequest>"), 1)
	}
	t.Run("at the limit", func(t *testing.T) {
		limServed(t, fx, gw, pad(limBodySize))
	})
	t.Run("one byte over", func(t *testing.T) {
		limRefused(t, fx, gw, pad(limBodySize+1), "报文超过大小限制", "64")
	})
	t.Run("chunked, no Content-Length", func(t *testing.T) {
		before := fx.callCount()
		body := io.MultiReader(bytes.NewReader(pad(limBodySize + 6<<10))) // hides the length
		resp, err := gw.Client.Post(sidecarURL, "application/xml; charset=UTF-8", body)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d: %s", resp.StatusCode, raw)
		}
		env, err := protocol.Parse(raw, protocol.Limits{})
		if err != nil {
			t.Fatalf("reply: %v\n%s", err, raw)
		}
		if env.Sign != "" {
			t.Fatalf("the refusal of an unverified request is signed: %s", raw)
		}
		assertRefused(t, env, "报文超过大小限制")
		if fx.callCount() != before {
			t.Fatal("the core was called")
		}
	})
}

func TestLimitElementDepth(t *testing.T) {
	fx, gw := limSidecar(t)
	// insureRequest > requestBody > d…: k nested elements reach depth 2+k.
	nest := func(k int) string { return strings.Repeat("<d>", k-1) + "<d>x</d>" + strings.Repeat("</d>", k-1) }
	t.Run("at the limit", func(t *testing.T) {
		limServed(t, fx, gw, limInsure(t, nest(limDepth-2)))
	})
	t.Run("one level deeper", func(t *testing.T) {
		limRefused(t, fx, gw, limInsure(t, nest(limDepth-1)), "报文嵌套层级超过限制", fmt.Sprintf("最多%d层", limDepth))
	})
}

var limStartTag = regexp.MustCompile(`<[A-Za-z_]`)

func TestLimitElementCount(t *testing.T) {
	fx, gw := limSidecar(t)
	have := len(limStartTag.FindAll(limInsure(t, ""), -1))
	extra := func(n int) string { return strings.Repeat("<e/>", n) }
	t.Run("at the limit", func(t *testing.T) {
		limServed(t, fx, gw, limInsure(t, extra(limElements-have)))
	})
	t.Run("one element more", func(t *testing.T) {
		limRefused(t, fx, gw, limInsure(t, extra(limElements-have+1)), "报文节点数量超过限制", fmt.Sprintf("最多%d个", limElements))
	})
}

// TestLimitAttributeCount: attributes are neither signed nor mapped, so
// without a bound a message could carry any number of them past every
// other check.
func TestLimitAttributeCount(t *testing.T) {
	fx, gw := limSidecar(t)
	attrs := func(n int) string {
		var b strings.Builder
		b.WriteString("<e")
		for i := range n {
			fmt.Fprintf(&b, ` a%d="%d"`, i, i)
		}
		b.WriteString(">x</e>")
		return b.String()
	}
	t.Run("at the limit", func(t *testing.T) {
		limServed(t, fx, gw, limInsure(t, attrs(limAttrs)))
	})
	t.Run("one attribute more", func(t *testing.T) {
		limRefused(t, fx, gw, limInsure(t, attrs(limAttrs+1)), fmt.Sprintf("报文节点属性数量超过限制(最多%d个)", limAttrs))
	})
}

func TestLimitValueLength(t *testing.T) {
	fx, gw := limSidecar(t)
	// Characters, not bytes: 长 is three bytes in UTF-8.
	t.Run("at the limit", func(t *testing.T) {
		limServed(t, fx, gw, limInsure(t, "<remark>"+strings.Repeat("长", limValueLen)+"</remark>"))
	})
	want := fmt.Sprintf("最多%d个字符", limValueLen)
	t.Run("one character more", func(t *testing.T) {
		limRefused(t, fx, gw, limInsure(t, "<remark>"+strings.Repeat("长", limValueLen+1)+"</remark>"), "报文字段值超过长度限制", want)
	})
	t.Run("split across text and CDATA", func(t *testing.T) {
		half := strings.Repeat("a", limValueLen/2)
		limRefused(t, fx, gw, limInsure(t, "<remark>"+half+"<![CDATA["+half+"]]>b</remark>"), "报文字段值超过长度限制")
	})
	t.Run("attribute value", func(t *testing.T) {
		limRefused(t, fx, gw, limInsure(t, `<remark k="`+strings.Repeat("a", limValueLen+1)+`">x</remark>`), "报文字段值超过长度限制")
	})
}

// The refusals below happen while parsing, before the signature is
// checked, so the messages need no valid sign.

func TestLimitDoctypeRefused(t *testing.T) {
	fx, gw := limSidecar(t)
	decl := `<?xml version="1.0" encoding="UTF-8"?>`
	for name, doctype := range map[string]string{
		"external DTD (XXE)": `<!DOCTYPE insureRequest SYSTEM "file:///etc/passwd">`,
		"public DTD":         `<!DOCTYPE insureRequest PUBLIC "-//x//y" "http://127.0.0.1:1/x.dtd">`,
		"empty DOCTYPE":      `<!DOCTYPE insureRequest>`,
	} {
		t.Run(name, func(t *testing.T) {
			limRefused(t, fx, gw, insureSample(t, "", decl, decl+doctype), "DOCTYPE")
		})
	}
}

func TestLimitEntityRefused(t *testing.T) {
	fx, gw := limSidecar(t)
	decl := `<?xml version="1.0" encoding="UTF-8"?>`
	laughs := `<!DOCTYPE insureRequest [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>`
	for name, edits := range map[string][]string{
		"external entity (XXE)": {decl, decl + `<!DOCTYPE insureRequest [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>`, "<endorseText>", "<endorseText>&xxe;"},
		"entity expansion":      {decl, decl + laughs, "<endorseText>", "<endorseText>&c;"},
		"bare ENTITY":           {decl, decl + `<!ENTITY x "y">`},
		"undeclared reference":  {"<endorseText>", "<endorseText>&nbsp;"},
	} {
		t.Run(name, func(t *testing.T) {
			want := "ENTITY"
			if name == "undeclared reference" {
				want = "报文不是合法的XML" // no declaration, so nothing to name; the reference is malformed
			}
			limRefused(t, fx, gw, insureSample(t, "", edits...), want)
		})
	}
}

func TestLimitDeclaredEncoding(t *testing.T) {
	fx, gw := limSidecar(t)
	for _, enc := range []string{"GBK", "GB2312", "GB18030", "ISO-8859-1", "UTF-16", "US-ASCII"} {
		t.Run(enc, func(t *testing.T) {
			limRefused(t, fx, gw, insureSample(t, "", `encoding="UTF-8"`, `encoding="`+enc+`"`), "编码", "UTF-8")
		})
	}
	t.Run("utf-8 in lower case is UTF-8", func(t *testing.T) {
		msg := insureSample(t, "", `encoding="UTF-8"`, `encoding="utf-8"`)
		limServed(t, fx, gw, signed(t, msg, testKey))
	})
}

func TestLimitInvalidUTF8(t *testing.T) {
	fx, gw := limSidecar(t)
	for name, bad := range map[string]string{
		"stray byte":         "\xff",
		"GBK bytes":          "\xd5\xc5\xc8\xfd", // 张三 in GBK
		"overlong slash":     "\xc0\xaf",
		"surrogate":          "\xed\xa0\x80",
		"truncated sequence": "\xe9\x95",
	} {
		t.Run(name, func(t *testing.T) {
			msg := insureSample(t, "", "<endorseText>", "<endorseText>"+bad)
			limRefused(t, fx, gw, msg, "编码", "UTF-8")
		})
	}
}

// TestLimitTimeoutsOnEveryServer: Caddyfile.example sets its timeouts at the
// servers level; the adapted config must carry them on every server it
// defines (platform endpoint and events intake alike), with a write timeout
// that leaves room for the core call. The events intake and the admin API
// must listen on loopback only.
func TestLimitTimeoutsOnEveryServer(t *testing.T) {
	for _, name := range []string{"GONGBAO_CORE", "GONGBAO_MAPPINGS", "GONGBAO_CALLBACK_BASE", "GONGBAO_INSURANCE_CODE", "GONGBAO_STORE_DSN"} {
		t.Setenv(name, "")
		os.Unsetenv(name)
	}
	input, err := os.ReadFile(repoPath("Caddyfile.example"))
	if err != nil {
		t.Fatal(err)
	}
	out := adapt(t, string(input))
	var cfg struct {
		Admin struct {
			Listen string `json:"listen"`
		} `json:"admin"`
		Apps struct {
			HTTP struct {
				Servers map[string]json.RawMessage `json:"servers"`
			} `json:"http"`
		} `json:"apps"`
	}
	if err := json.Unmarshal([]byte(out), &cfg); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !limLoopback(cfg.Admin.Listen) {
		t.Errorf("admin listens on %q, want loopback", cfg.Admin.Listen)
	}
	if len(cfg.Apps.HTTP.Servers) < 2 {
		t.Fatalf("want the platform server and the events server, got %d servers", len(cfg.Apps.HTTP.Servers))
	}
	for name, raw := range cfg.Apps.HTTP.Servers {
		var srv struct {
			Listen            []string `json:"listen"`
			ReadTimeout       int64    `json:"read_timeout"`
			ReadHeaderTimeout int64    `json:"read_header_timeout"`
			WriteTimeout      int64    `json:"write_timeout"`
			IdleTimeout       int64    `json:"idle_timeout"`
		}
		if err := json.Unmarshal(raw, &srv); err != nil {
			t.Fatal(err)
		}
		for what, d := range map[string]int64{
			"read_timeout": srv.ReadTimeout, "read_header_timeout": srv.ReadHeaderTimeout,
			"write_timeout": srv.WriteTimeout, "idle_timeout": srv.IdleTimeout,
		} {
			if d <= 0 {
				t.Errorf("server %s (%v) has no %s", name, srv.Listen, what)
			}
		}
		body := string(raw)
		if strings.Contains(body, `"handler":"gongbao_notify"`) || strings.Contains(body, `"handler": "gongbao_notify"`) {
			for _, l := range srv.Listen {
				if !limLoopback(l) {
					t.Errorf("events server %s listens on %q, want loopback only", name, l)
				}
			}
		}
		if core := limSum(raw, "dial_timeout", "response_header_timeout"); core > 0 && time.Duration(srv.WriteTimeout) <= time.Duration(core) {
			t.Errorf("server %s: write_timeout %v does not leave room for the core call (%v)", name, time.Duration(srv.WriteTimeout), time.Duration(core))
		}
	}
}

func limLoopback(addr string) bool {
	for _, p := range []string{"localhost:", "127.0.0.1:", "[::1]:", "tcp/127.0.0.1:", "tcp/localhost:"} {
		if strings.HasPrefix(addr, p) {
			return true
		}
	}
	return false
}

// limSum adds up the largest value of each named duration found anywhere in
// the server's JSON (the reverse_proxy transport's timeouts).
func limSum(raw json.RawMessage, names ...string) int64 {
	var tree any
	if json.Unmarshal(raw, &tree) != nil {
		return 0
	}
	var total int64
	for _, name := range names {
		var largest int64
		var walk func(any)
		walk = func(v any) {
			switch v := v.(type) {
			case map[string]any:
				for k, x := range v {
					if f, ok := x.(float64); ok && k == name && int64(f) > largest {
						largest = int64(f)
					}
					walk(x)
				}
			case []any:
				for _, x := range v {
					walk(x)
				}
			}
		}
		walk(tree)
		total += largest
	}
	return total
}
