package mapping_test

// Golden tests for the shipped mapping files (mappings/*.yaml) against the
// sample messages in testdata/messages:
//
//	<Root>[.<variant>].xml         signed platform request → golden/<same>.json
//	<Root>[.<variant>].reply.json  core answer → golden/<same>.reply.xml (signed reply)
//	<event>[.<variant>].json       core event  → golden/<same>.xml (signed callback)
//
// Run `go test ./caddymodule/mapping/ -run Shipped -update` to rewrite the
// goldens, then review every changed file by eye before committing it.

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-gongbao/gongbao/caddymodule/mapping"
	"github.com/caddy-gongbao/gongbao/caddymodule/protocol"
	"github.com/caddy-gongbao/gongbao/internal/mockcore"
)

const (
	// testKey is the spec's test sign key (DESIGN §1.2); it signs the samples.
	testKey = "MeTKJnC3fIAxeer8erADRTlJ"
	// fixedUUID makes built replies and callbacks reproducible.
	fixedUUID = "00000000-0000-4000-8000-000000000001"
)

var (
	repoRoot    = filepath.Join("..", "..")
	mappingsDir = filepath.Join(repoRoot, "mappings")
	messagesDir = filepath.Join(repoRoot, "testdata", "messages")
	goldenDir   = filepath.Join(repoRoot, "testdata", "golden")

	fixedVars = mapping.Vars{"now": "2019-04-01 10:00:00", "insurance_code": "GBTEST01"}
)

func init() {
	// Another test file of this package may define -update already.
	if flag.Lookup("update") == nil {
		flag.Bool("update", false, "rewrite golden files from the current output")
	}
}

func updating() bool {
	f := flag.Lookup("update")
	return f != nil && f.Value.String() == "true"
}

var loadShipped = sync.OnceValues(func() (*mapping.Set, error) { return mapping.LoadDir(mappingsDir) })

func shippedSet(t *testing.T) *mapping.Set {
	t.Helper()
	set, err := loadShipped()
	if err != nil {
		t.Fatalf("loading shipped mappings: %v", err)
	}
	return set
}

// sample is one file of testdata/messages.
type sample struct {
	file string // file name
	base string // name without the final .xml/.json: the golden's stem
	key  string // request root or event name: the part before the first dot
}

func samples(t *testing.T, keep func(name string) bool) []sample {
	t.Helper()
	entries, err := os.ReadDir(messagesDir)
	if err != nil {
		t.Fatal(err)
	}
	var out []sample
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !keep(name) {
			continue
		}
		base := strings.TrimSuffix(strings.TrimSuffix(name, ".xml"), ".json")
		key, _, _ := strings.Cut(base, ".")
		out = append(out, sample{file: name, base: base, key: key})
	}
	if len(out) == 0 {
		t.Fatal("no samples found")
	}
	return out
}

func isRequestSample(name string) bool { return strings.HasSuffix(name, ".xml") }
func isReplySample(name string) bool   { return strings.HasSuffix(name, ".reply.json") }
func isCallbackSample(name string) bool {
	return strings.HasSuffix(name, ".json") && !isReplySample(name)
}

func readSample(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(messagesDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// golden compares got with testdata/golden/name, or rewrites it under -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join(goldenDir, name)
	if updating() {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file\n got: %s\nwant: %s", name, got, want)
	}
}

func indentJSON(t *testing.T, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := json.Indent(&buf, data, "", "  "); err != nil {
		t.Fatalf("output is not JSON: %v: %s", err, data)
	}
	buf.WriteByte('\n')
	return buf.Bytes()
}

// parseSigned parses a message and checks it is signed with testKey.
func parseSigned(t *testing.T, data []byte) *protocol.Envelope {
	t.Helper()
	env, err := protocol.Parse(data, protocol.Limits{})
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	if _, ok := protocol.VerifyAny(env.SignedValue(), env.Sign, []string{testKey}); !ok {
		t.Errorf("signature does not verify: sign %s, V %q", env.Sign, env.SignedValue())
	}
	return env
}

func TestShippedMappingTable(t *testing.T) {
	set := shippedSet(t)
	inbound := map[string][3]string{ // request root → reply root, method, path
		"insureRequest":  {"insureResponse", http.MethodPost, "/v1/proposals"},
		"surrendRequest": {"surrendResponse", http.MethodPost, "/v1/surrenders"},
		"correctRequest": {"correctResponse", http.MethodPost, "/v1/endorsements"},
		"claimRequest":   {"claimResponse", http.MethodPost, "/v1/claims"},
		"invoiceRequest": {"invoiceResponse", http.MethodPost, "/v1/invoices"},
	}
	outbound := map[string][2]string{ // event → callback root, platform reply root
		mockcore.EventPolicyPaid:       {"queryPolicyRequest", "queryPolicyResponse"},
		mockcore.EventInvoiceIssued:    {"queryInvoiceRequest", "queryInvoiceResponse"},
		mockcore.EventSurrenderSettled: {"querySurrendRequest", "querySurrendResponse"},
	}
	if len(set.Inbound) != len(inbound) || len(set.Outbound) != len(outbound) {
		t.Errorf("shipped %d inbound and %d outbound mappings, want %d and %d",
			len(set.Inbound), len(set.Outbound), len(inbound), len(outbound))
	}
	for root, want := range inbound {
		in := set.Inbound[root]
		if in == nil {
			t.Errorf("no mapping for %s", root)
			continue
		}
		if got := [3]string{in.ReplyRoot, in.Method, in.Path}; got != want {
			t.Errorf("%s (%s): reply/method/path %v, want %v", root, in.File, got, want)
		}
	}
	for event, want := range outbound {
		out := set.Outbound[event]
		if out == nil {
			t.Errorf("no mapping for event %s", event)
			continue
		}
		if got := [2]string{out.Callback, out.ReplyRoot}; got != want {
			t.Errorf("%s (%s): callback/reply %v, want %v", event, out.File, got, want)
		}
		if out.OrderKey != "policyNo" || out.EventID != "eventId" {
			t.Errorf("%s: order_key %q event_id %q", event, out.OrderKey, out.EventID)
		}
	}
}

func TestShippedRequests(t *testing.T) {
	set := shippedSet(t)
	for _, s := range samples(t, isRequestSample) {
		t.Run(s.base, func(t *testing.T) {
			env := parseSigned(t, readSample(t, s.file))
			if env.Root != s.key {
				t.Fatalf("sample root %s, file named for %s", env.Root, s.key)
			}
			in := set.Inbound[env.Root]
			if in == nil {
				t.Fatalf("no mapping for %s", env.Root)
			}
			out, err := in.Request.XMLToJSON(env.Body, fixedVars)
			if err != nil {
				t.Fatalf("XMLToJSON: %v", err)
			}
			golden(t, s.base+".json", indentJSON(t, out))
		})
	}
}

func TestShippedReplies(t *testing.T) {
	set := shippedSet(t)
	for _, s := range samples(t, isReplySample) {
		t.Run(s.base, func(t *testing.T) {
			in := set.Inbound[s.key]
			if in == nil {
				t.Fatalf("no mapping for %s", s.key)
			}
			els, err := in.Reply.JSONToXML(readSample(t, s.file), fixedVars)
			if err != nil {
				t.Fatalf("JSONToXML: %v", err)
			}
			xml := protocol.BuildResponse(in.ReplyRoot, fixedUUID, els, testKey)
			parseSigned(t, xml)
			golden(t, s.base+".xml", append(xml, '\n'))
		})
	}
}

func TestShippedCallbacks(t *testing.T) {
	set := shippedSet(t)
	for _, s := range samples(t, isCallbackSample) {
		t.Run(s.base, func(t *testing.T) {
			out := set.Outbound[s.key]
			if out == nil {
				t.Fatalf("no mapping for event %s", s.key)
			}
			els, err := out.Body.JSONToXML(readSample(t, s.file), fixedVars)
			if err != nil {
				t.Fatalf("JSONToXML: %v", err)
			}
			xml := protocol.BuildRequest(out.Callback, fixedUUID, els, testKey)
			parseSigned(t, xml)
			golden(t, s.base+".xml", append(xml, '\n'))
		})
	}
}

// TestShippedSamplesCoverEveryRow proves the samples exercise every row of
// every shipped mapping, so no row goes untested by the goldens.
func TestShippedSamplesCoverEveryRow(t *testing.T) {
	if updating() {
		t.Skip("goldens are being rewritten")
	}
	set := shippedSet(t)
	// goldens reads the golden outputs of the samples of one message or event.
	goldens := func(key string, keep func(string) bool, ext string) []string {
		var out []string
		for _, s := range samples(t, keep) {
			if s.key != key {
				continue
			}
			data, err := os.ReadFile(filepath.Join(goldenDir, s.base+ext))
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, string(data))
		}
		return out
	}
	for root, in := range set.Inbound {
		requests := goldens(root, isRequestSample, ".json")
		if len(requests) == 0 {
			t.Errorf("%s: no request sample", root)
		}
		for _, row := range in.Request.Rows() {
			if row.JSON == "" {
				continue
			}
			if !slices.ContainsFunc(requests, func(g string) bool { return hasJSONPath(g, row.JSON) }) {
				t.Errorf("%s:%d: no sample fills %s → %s", in.File, row.Line, row.XML, row.JSON)
			}
		}
		replies := goldens(root, isReplySample, ".xml")
		if len(replies) == 0 {
			t.Errorf("%s: no reply sample", root)
		}
		for _, row := range in.Reply.Rows() {
			if !slices.ContainsFunc(replies, func(g string) bool { return hasFilledElement(g, row.XML) }) {
				t.Errorf("%s:%d: no reply sample fills <%s>", in.File, row.Line, row.XML)
			}
		}
	}
	for event, out := range set.Outbound {
		callbacks := goldens(event, isCallbackSample, ".xml")
		if len(callbacks) == 0 {
			t.Errorf("%s: no event sample", event)
		}
		for _, row := range out.Body.Rows() {
			if !slices.ContainsFunc(callbacks, func(g string) bool { return hasFilledElement(g, row.XML) }) {
				t.Errorf("%s:%d: no event sample fills <%s>", out.File, row.Line, row.XML)
			}
		}
	}
}

func hasJSONPath(doc, path string) bool {
	var v any
	if json.Unmarshal([]byte(doc), &v) != nil {
		return false
	}
	for _, k := range strings.Split(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return false
		}
		if v, ok = m[k]; !ok {
			return false
		}
	}
	return v != nil
}

// hasFilledElement reports whether the leaf element path (its last segment
// is enough: shipped reply and callback bodies are flat) has text.
func hasFilledElement(xml, path string) bool {
	name := path[strings.LastIndexByte(path, '/')+1:]
	i := strings.Index(xml, "<"+name+">")
	return i >= 0 && !strings.HasPrefix(xml[i+len(name)+2:], "</"+name+">")
}

// edit returns the sample with old replaced by repl (old must occur exactly once).
func edit(t *testing.T, data []byte, old, repl string) []byte {
	t.Helper()
	if bytes.Count(data, []byte(old)) != 1 {
		t.Fatalf("edit: %q occurs %d times", old, bytes.Count(data, []byte(old)))
	}
	return bytes.Replace(data, []byte(old), []byte(repl), 1)
}

func fieldMessage(t *testing.T, err error) string {
	t.Helper()
	var fe *mapping.FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("error %v (%T) is not a *mapping.FieldError", err, err)
	}
	return fe.Message()
}

// TestShippedRequestErrors feeds broken variants of the samples; the
// executor must refuse each with the Chinese message the platform will see.
func TestShippedRequestErrors(t *testing.T) {
	set := shippedSet(t)
	long := strings.Repeat("长", 501)
	cases := []struct {
		name, sample, old, new, want string
	}{
		{"missing applicant name", "insureRequest.xml", "<name>浙江宏达建设工程有限公司</name>", "",
			"缺少必填字段 applicantInfo/name"},
		{"empty ciphertext", "insureRequest.xml", "<TendereeCode>gxDNWS8kFkHClnEHUQpTolP8Hu7z0ghgXeedPBvDc7Q=</TendereeCode>", "<TendereeCode/>",
			"缺少必填字段 applicantInfo/TendereeCode"},
		{"applicant name too long", "insureRequest.xml", "浙江宏达建设工程有限公司", "浙江宏达建设工程有限公司杭州市分公司第一部",
			"字段 applicantInfo/name 超长(最多 20 个字符, 实际 21)"},
		{"premium not money", "insureRequest.xml", "<sumPremium>20.00</sumPremium>", "<sumPremium>abc</sumPremium>",
			`字段 policyInfo/sumPremium 不是有效的金额`},
		{"premium three decimals", "insureRequest.xml", "<sumPremium>20.00</sumPremium>", "<sumPremium>20.005</sumPremium>",
			`字段 policyInfo/sumPremium 小数位数过多(最多 2 位)`},
		{"premium beyond decimal(10,2)", "insureRequest.xml", "<sumPremium>20.00</sumPremium>", "<sumPremium>123456789.00</sumPremium>",
			`字段 policyInfo/sumPremium 超出范围(最多 8 位整数)`},
		{"surrender without account number", "surrendRequest.xml", "<bankNo>1202020209000012345</bankNo>", "",
			"缺少必填字段 bankNo"},
		{"surrender reason too long", "surrendRequest.xml", "招标项目取消，申请全额退保", long,
			"字段 policyReason 超长(最多 500 个字符, 实际 501)"},
		{"date in neither accepted format", "correctRequest.xml", "<stratDate>2019-04-01 00:00:00</stratDate>", "<stratDate>2019/03/29</stratDate>",
			`字段 correctInfo/dateInfo/stratDate 不是有效的日期时间(格式 yyyy-MM-dd HH:mm:ss 或 yyyyMMdd)`},
		{"tender not a number", "correctRequest.xml", "<tender>30</tender>", "<tender>三十</tender>",
			`字段 correctInfo/dateInfo/tender 不是有效的整数`},
		{"special terms flag", "correctRequest.xml", "<isPtextFlag>1</isPtextFlag>", "<isPtextFlag>2</isPtextFlag>",
			`字段 isPtextFlag 取值无效 (允许: 0, 1)`},
		{"insured idNumber missing", "correctRequest.xml", "<idNumber>913301007042061234</idNumber>", "<idNumber></idNumber>",
			"缺少必填字段 correctInfo/insuredInfo/idNumber"},
		{"claim without reason", "claimRequest.xml", "<cliaimReason><![CDATA[中标人无正当理由放弃中标 <不签订合同>]]></cliaimReason>", "",
			"缺少必填字段 cliaimReason"},
		{"invoice type 4", "invoiceRequest.xml", "<InvoiceType>3</InvoiceType>", "<InvoiceType>4</InvoiceType>",
			`字段 InvoiceType 取值无效 (允许: 1, 2, 3)`},
		{"invoice without title", "invoiceRequest.xml", "<InvoiceHead>浙江宏达建设工程有限公司</InvoiceHead>", "",
			"缺少必填字段 InvoiceHead"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env, err := protocol.Parse(edit(t, readSample(t, tc.sample), tc.old, tc.new), protocol.Limits{})
			if err != nil {
				t.Fatal(err)
			}
			out, err := set.Inbound[env.Root].Request.XMLToJSON(env.Body, fixedVars)
			if err == nil {
				t.Fatalf("accepted: %s", out)
			}
			if got := fieldMessage(t, err); got != tc.want {
				t.Errorf("message %q\n          want %q", got, tc.want)
			}
		})
	}
}

// TestShippedAliases: the spec's spellings and the real-traffic spellings
// give the same JSON.
func TestShippedAliases(t *testing.T) {
	set := shippedSet(t)
	cases := []struct{ sample, from, to string }{
		{"surrendRequest.xml", "policyno", "polycyno"},      // spec typo
		{"invoiceRequest.xml", "policyno", "policyNo"},      // spec table
		{"invoiceRequest.xml", "cuscCode", "cusCode"},       // spec table
		{"correctRequest.xml", "stratDate", "startDate"},    // later platform spelling
		{"claimRequest.xml", "cliaimReason", "claimReason"}, // corrected spelling
	}
	for _, tc := range cases {
		t.Run(tc.sample+"/"+tc.to, func(t *testing.T) {
			data := readSample(t, tc.sample)
			data = edit(t, data, "<"+tc.from+">", "<"+tc.to+">")
			data = edit(t, data, "</"+tc.from+">", "</"+tc.to+">")
			env, err := protocol.Parse(data, protocol.Limits{})
			if err != nil {
				t.Fatal(err)
			}
			out, err := set.Inbound[env.Root].Request.XMLToJSON(env.Body, fixedVars)
			if err != nil {
				t.Fatalf("XMLToJSON: %v", err)
			}
			want, err := os.ReadFile(filepath.Join(goldenDir, strings.TrimSuffix(tc.sample, ".xml")+".json"))
			if err != nil {
				t.Fatal(err)
			}
			if got := indentJSON(t, out); !bytes.Equal(got, want) {
				t.Errorf("with <%s>:\n%s\nwant\n%s", tc.to, got, want)
			}
		})
	}
}

// TestShippedReplyErrors: a core answer the reply mapping cannot express is
// an error (the handler turns it into 系统繁忙), never a half-filled reply.
func TestShippedReplyErrors(t *testing.T) {
	set := shippedSet(t)
	cases := []struct {
		name, root, answer, want string
	}{
		{"no accepted", "insureRequest", `{"message":"投保成功"}`, "accepted"},
		{"no message", "claimRequest", `{"accepted":true}`, "message"},
		{"accepted not boolean", "surrendRequest", `{"accepted":"yes","message":"退保成功"}`, "accepted"},
		{"message not a string", "invoiceRequest", `{"accepted":true,"message":{"text":"受理申请"}}`, "message"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			els, err := set.Inbound[tc.root].Reply.JSONToXML([]byte(tc.answer), fixedVars)
			if err == nil {
				t.Fatalf("accepted: %+v", els)
			}
			var fe *mapping.FieldError
			if !errors.As(err, &fe) || fe.Path != tc.want {
				t.Errorf("error %v, want a field error on %s", err, tc.want)
			}
		})
	}
	if _, err := set.Inbound["insureRequest"].Reply.JSONToXML([]byte(`not json`), fixedVars); !errors.Is(err, mapping.ErrInvalidJSON) {
		t.Errorf("invalid JSON: %v", err)
	}
}

func TestShippedCallbackErrors(t *testing.T) {
	set := shippedSet(t)
	paid := readSample(t, "policy-paid.json")
	cases := []struct {
		name  string
		event string
		data  []byte
		vars  mapping.Vars
		want  string
	}{
		{"no policyNo", mockcore.EventPolicyPaid, edit(t, paid, `"policyNo":"BD20190401000002",`, ""), fixedVars, "policyNo"},
		{"paidAt not RFC3339", mockcore.EventPolicyPaid, edit(t, paid, "2019-04-01T10:05:30+08:00", "2019-04-01 10:05:30"), fixedVars, "paidAt"},
		{"no insurance code configured", mockcore.EventPolicyPaid, paid, mapping.Vars{"now": "2019-04-01 10:00:00"}, ""},
		{"refunded missing", mockcore.EventSurrenderSettled, []byte(`{"eventId":"e","policyNo":"BD1","message":"已退款至原账户"}`), fixedVars, "refunded"},
		{"message over varchar(50)", mockcore.EventSurrenderSettled,
			[]byte(`{"eventId":"e","policyNo":"BD1","refunded":false,"message":"` + strings.Repeat("退", 51) + `"}`), fixedVars, "message"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			els, err := set.Outbound[tc.event].Body.JSONToXML(tc.data, tc.vars)
			if err == nil {
				t.Fatalf("accepted: %+v", els)
			}
			var fe *mapping.FieldError
			if tc.want != "" && (!errors.As(err, &fe) || fe.Path != tc.want) {
				t.Errorf("error %v, want a field error on %s", err, tc.want)
			}
		})
	}
}

// fixedClock pins the reference core to the samples' date, so its numbers
// (TB20190401000001, BD20190401000002, …) match the sample messages.
type fixedClock struct{ now time.Time }

func (c fixedClock) Now() time.Time { return c.now }
func (c fixedClock) After(time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1)
	ch <- c.now
	return ch
}

// TestShippedMappingsAgainstMockcore runs every sample through the shipped
// mappings into the reference core and back: the JSON the mappings produce
// is what the core accepts, the core's answers and events map to valid
// signed XML, and the whole policy lifecycle holds together.
func TestShippedMappingsAgainstMockcore(t *testing.T) {
	set := shippedSet(t)
	events := make(chan []byte, 16)
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		events <- append([]byte(r.URL.Path+"\n"), body...)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer receiver.Close()
	srv := httptest.NewUnstartedServer(nil)
	c := mockcore.New(mockcore.Config{
		PublicURL: "http://" + srv.Listener.Addr().String(),
		EventsURL: receiver.URL,
		Clock:     fixedClock{time.Date(2019, 4, 1, 10, 0, 0, 0, mockcore.CST)},
	})
	defer c.Close()
	srv.Config.Handler = c.Handler()
	srv.Start()
	defer srv.Close()

	// send maps one sample into the core and the answer back to reply XML.
	// The requestUUID is the Idempotency-Key, as the sidecar sends it,
	// unless key overrides it.
	send := func(file, key string, wantStatus int) *protocol.Envelope {
		t.Helper()
		env := parseSigned(t, readSample(t, file))
		in := set.Inbound[env.Root]
		body, err := in.Request.XMLToJSON(env.Body, fixedVars)
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		req, _ := http.NewRequest(in.Method, srv.URL+in.Path, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if key == "" {
			key = env.RequestUUID
		}
		req.Header.Set("Idempotency-Key", key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		answer, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != wantStatus {
			t.Fatalf("%s: core answered %d, want %d: %s\nrequest: %s", file, resp.StatusCode, wantStatus, answer, body)
		}
		els, err := in.Reply.JSONToXML(answer, fixedVars)
		if err != nil {
			t.Fatalf("%s reply: %v", file, err)
		}
		return parseSigned(t, protocol.BuildResponse(in.ReplyRoot, protocol.NewUUID(), els, testKey))
	}
	// callback waits for the next core event and maps it to callback XML.
	callback := func(event string) *protocol.Envelope {
		t.Helper()
		var got []byte
		select {
		case got = <-events:
		case <-time.After(10 * time.Second):
			t.Fatalf("no %s event", event)
		}
		path, body, _ := bytes.Cut(got, []byte("\n"))
		if string(path) != "/events/"+event {
			t.Fatalf("event %s, want %s", path, event)
		}
		out := set.Outbound[event]
		els, err := out.Body.JSONToXML(body, fixedVars)
		if err != nil {
			t.Fatalf("%s: %v: %s", event, err, body)
		}
		return parseSigned(t, protocol.BuildRequest(out.Callback, protocol.NewUUID(), els, testKey))
	}
	expect := func(env *protocol.Envelope, want map[string]string) {
		t.Helper()
		for el, v := range want {
			if got, _ := env.Text(el); got != v {
				t.Errorf("%s <%s> = %q, want %q", env.Root, el, got, v)
			}
		}
	}

	insure := send("insureRequest.xml", "", http.StatusCreated)
	expect(insure, map[string]string{"resultFlag": "true", "resultMessage": "投保成功", "proposalNo": "TB20190401000001", "responseTime": "2019-04-01 10:00:00"})
	payURL, _ := insure.Text("yeepayurl")
	resp, err := http.Get(payURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	paid := callback(mockcore.EventPolicyPaid)
	expect(paid, map[string]string{"policyNo": "BD20190401000002", "proposalNo": "TB20190401000001",
		"payType": "3", "payTime": "2019-04-01 10:00:00", "insuranceCode": "GBTEST01"})

	correct := send("correctRequest.xml", "", http.StatusOK)
	policyURL, _ := paid.Text("downLoadUrl")
	expect(correct, map[string]string{"resultFlag": "true", "InsurancePhone": "95500", "downLoadUrl": policyURL,
		"InsuranceTime": "2019-04-01 00:00:00 至 2019-04-30 23:59:59"})

	expect(send("claimRequest.xml", "", http.StatusOK), map[string]string{"resultFlag": "true", "resultMessage": "受理申请"})

	expect(send("invoiceRequest.xml", "", http.StatusOK), map[string]string{"resultFlag": "true"})
	expect(callback(mockcore.EventInvoiceIssued), map[string]string{"policyNo": "BD20190401000002",
		"downLoadUrl": "", "expressName": "顺丰速运", "insuranceCode": "GBTEST01"})
	send("invoiceRequest.electronic.xml", "", http.StatusOK)
	invoice := callback(mockcore.EventInvoiceIssued)
	if u, _ := invoice.Text("downLoadUrl"); !strings.HasSuffix(u, ".pdf") {
		t.Errorf("electronic invoice downLoadUrl %q", u)
	}
	expect(invoice, map[string]string{"expressName": "", "expressNo": ""})

	expect(send("surrendRequest.xml", "", http.StatusOK), map[string]string{"resultFlag": "true", "resultMessage": "退保成功"})
	expect(callback(mockcore.EventSurrenderSettled), map[string]string{"policyNo": "BD20190401000002",
		"resultFlag": "true", "resultMessage": "已退款至原账户"})

	// Resending a request (same requestUUID as Idempotency-Key) has no second effect.
	send("claimRequest.xml", "", http.StatusOK)
	// A surrendered policy refuses further business, in the core's own words.
	refused := send("correctRequest.xml", protocol.NewUUID(), http.StatusUnprocessableEntity)
	expect(refused, map[string]string{"resultFlag": "false", "resultMessage": "保单 BD20190401000002 已退保，不能再办理业务"})
	if _, present := refused.Text("InsurancePhone"); present {
		t.Error("refusal reply carries InsurancePhone")
	}

	st := c.Stats()
	want := map[string]int{mockcore.OpProposals: 1, mockcore.OpPayments: 1, mockcore.OpEndorsements: 1,
		mockcore.OpClaims: 1, mockcore.OpInvoices: 2, mockcore.OpSurrenders: 1}
	for op, n := range want {
		if st.Effects[op] != n {
			t.Errorf("effects[%s] = %d, want %d (calls %v)", op, st.Effects[op], n, st.Calls)
		}
	}
}
