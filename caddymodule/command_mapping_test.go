package caddymodule

// Golden tests of the mapping dry run (`caddy gongbao mapping test`): every
// sample of testdata/messages through its shipped mapping, compared with
// testdata/dryrun/<sample>.txt, plus refused inputs.
//
// Run `go test ./caddymodule/ -run Mapping -update` to rewrite the goldens,
// then review every changed file by eye (personal data must stay masked).

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-gongbao/gongbao/caddymodule/mapping"
	"github.com/caddy-gongbao/gongbao/caddymodule/protocol"
)

var (
	dryRunGoldenDir       = filepath.Join("..", "testdata", "dryrun")
	dryRunShippedMappings = filepath.Join("..", "mappings")
	// dryRunFixedVars make the goldens reproducible (the mapping package's
	// goldens use the same values).
	dryRunFixedVars = []string{"--var", "now=2019-04-01 10:00:00", "--var", "insurance_code=GBTEST01"}
)

// dryRunGoldenUpdate reads -update, which the external test package of this
// directory defines (main_test.go); defining it here too would panic.
func dryRunGoldenUpdate() bool {
	f := flag.Lookup("update")
	return f != nil && f.Value.String() == "true"
}

// runDryRun runs `mapping test` with the fixed variables.
func runDryRun(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	all := append([]string{"test"}, args...)
	all = append(all, dryRunFixedVars...)
	return runCLI(t, mappingCommand(), nil, all...)
}

func dryRunCheckGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join(dryRunGoldenDir, name)
	if dryRunGoldenUpdate() {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from the golden (-update rewrites it):\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

// dryRunPersonalData returns the values of the pii: rows of a sample, traced
// with the mapping package directly; no dry-run output may show them.
func dryRunPersonalData(t *testing.T, key, file string) []string {
	t.Helper()
	set, err := mapping.LoadDir(dryRunShippedMappings)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var lineage []mapping.Lineage
	switch {
	case strings.HasSuffix(file, ".xml"):
		env, err := protocol.Parse(data, protocol.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		_, lineage, _ = set.Inbound[key].Request.TraceXMLToJSON(env.Body, nil)
	case set.Inbound[key] != nil:
		_, lineage, _ = set.Inbound[key].Reply.TraceJSONToXML(data, nil)
	default:
		_, lineage, _ = set.Outbound[key].Body.TraceJSONToXML(data, nil)
	}
	var values []string
	for _, l := range lineage {
		if l.Row.PII != "" && l.Input != "" {
			values = append(values, l.Input)
		}
	}
	return values
}

// TestMappingDryRunGolden runs every sample through its shipped mapping,
// named the way the sample is (request root or event name).
func TestMappingDryRunGolden(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "testdata", "messages", "*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no samples: %v", err)
	}
	covered := map[string]bool{}
	for _, f := range files {
		name := filepath.Base(f)
		key, _, _ := strings.Cut(name, ".")
		t.Run(name, func(t *testing.T) {
			out, stderr, code := runDryRun(t, key, f, "--mappings", dryRunShippedMappings)
			if code != 0 {
				t.Fatalf("exit %d: %s\n%s", code, stderr, out)
			}
			for _, pd := range dryRunPersonalData(t, key, f) {
				if strings.Contains(out, pd) {
					t.Errorf("personal data %q is not masked", pd)
				}
			}
			dryRunCheckGolden(t, strings.TrimSuffix(strings.TrimSuffix(name, ".xml"), ".json")+".txt", out)
			file, _, _ := strings.Cut(out, " (")
			covered[strings.TrimPrefix(file, "Mapping  ")+"|"+dryRunKindOf(name)] = true
		})
	}
	mappings, _ := filepath.Glob(filepath.Join(dryRunShippedMappings, "*.yaml"))
	if len(mappings) != 8 {
		t.Errorf("%d shipped mappings, want 8", len(mappings))
	}
	for _, m := range mappings {
		data, err := os.ReadFile(m)
		if err != nil {
			t.Fatal(err)
		}
		kinds := []string{"event"}
		if bytes.Contains(data, []byte("\nmessage:")) {
			kinds = []string{"request", "reply"}
		}
		for _, k := range kinds {
			if !covered[filepath.Base(m)+"|"+k] {
				t.Errorf("%s: no %s sample in testdata/messages", filepath.Base(m), k)
			}
		}
	}
}

// dryRunKindOf names what a sample is, from its file name.
func dryRunKindOf(sample string) string {
	switch {
	case strings.HasSuffix(sample, ".xml"):
		return "request"
	case strings.Contains(sample, "Request."):
		return "reply"
	}
	return "event"
}

// dryRunWriteTemp writes a crafted input and returns its path.
func dryRunWriteTemp(t *testing.T, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func dryRunReplaceOnce(t *testing.T, data []byte, old, new string) []byte {
	t.Helper()
	if !bytes.Contains(data, []byte(old)) {
		t.Fatalf("sample lacks %q", old)
	}
	return bytes.Replace(data, []byte(old), []byte(new), 1)
}

// TestMappingDryRunRefused: inputs the sidecar would refuse print the
// field and the answer the sidecar would give, and exit 2.
func TestMappingDryRunRefused(t *testing.T) {
	cases := []struct {
		golden, mapping, file string
		input                 []byte
		want                  []string // in the output
	}{
		{"insureRequest.missing-name.txt", "insureRequest", "insureRequest.xml",
			dryRunReplaceOnce(t, readSample(t, "insureRequest.xml"), "<name>浙江宏达建设工程有限公司</name>", ""),
			[]string{"field    applicantInfo/name", "message  缺少必填字段 applicantInfo/name",
				"<resultFlag>false</resultFlag>", "<resultMessage>缺少必填字段 applicantInfo/name</resultMessage>",
				"✗ 缺少必填字段 applicantInfo/name", "(not evaluated)"}},
		{"insureRequest.bad-premium.txt", "insure", "insureRequest.xml",
			dryRunReplaceOnce(t, readSample(t, "insureRequest.xml"), "<sumPremium>20.00</sumPremium>", "<sumPremium>20.005</sumPremium>"),
			[]string{"field    policyInfo/sumPremium", `message  字段 policyInfo/sumPremium 小数位数过多(最多 2 位)`}},
		{"insureRequest.reply.missing-accepted.txt", "insureRequest", "reply.json",
			[]byte(`{"message":"投保成功","proposalNo":"TB20190401000001"}`),
			[]string{"field    accepted", "message  核心系统应答无效: 核心系统应答缺少字段 accepted",
				"<resultMessage>核心系统应答无效: 核心系统应答缺少字段 accepted</resultMessage>"}},
		{"policy-paid.missing-policyNo.txt", "policy-paid", "event.json",
			[]byte(`{"eventId":"e1","proposalNo":"TB20190401000001","payType":"3","paidAt":"2019-04-01T10:05:30+08:00","policyUrl":"http://x/p.pdf"}`),
			[]string{"field    policyNo", "message  核心系统事件缺少字段 policyNo",
				`HTTP 400 {"error":"invalid_event","field":"policyNo","message":"核心系统事件缺少字段 policyNo"}`}},
		{"insureRequest.unknown-elements.txt", "insure", "insureRequest.xml",
			dryRunReplaceOnce(t, dryRunReplaceOnce(t, readSample(t, "insureRequest.xml"), "<sumAmount>", "<channel>web</channel><sumAmount>"),
				"<requestBody>", "<requestBody><NewPlatformField>1</NewPlatformField>"),
			[]string{"Unmapped (input elements no row reads", "NewPlatformField    refused: unknown",
				"policyInfo/channel  refused: unknown", "<resultMessage>未知字段: requestBody 下含有本接口未定义的元素</resultMessage>"}},
		{"claimRequest.malformed.txt", "claimRequest", "claimRequest.xml",
			[]byte("<claimRequest><requestHead>"),
			[]string{"Output   none: the input is refused", "<resultFlag>false</resultFlag>"}},
		{"surrendRequest.no-uuid.txt", "surrendRequest", "surrendRequest.xml",
			dryRunReplaceOnce(t, dryRunReplaceOnce(t, readSample(t, "surrendRequest.xml"), "<requestUUID>", "<x>"), "</requestUUID>", "</x>"),
			[]string{"message  报文头缺少requestUUID"}},
	}
	for _, tc := range cases {
		t.Run(tc.golden, func(t *testing.T) {
			path := dryRunWriteTemp(t, tc.file, tc.input)
			out, stderr, code := runDryRun(t, tc.mapping, path, "--mappings", dryRunShippedMappings)
			if code != dryRunExitRefused {
				t.Errorf("exit %d, want %d; stderr %s", code, dryRunExitRefused, stderr)
			}
			if !strings.Contains(stderr, "would be refused") {
				t.Errorf("stderr %q", stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			dryRunCheckGolden(t, filepath.Join("refused", tc.golden), out)
		})
	}
}

// TestMappingDryRunShowPII: --show-pii shows what the golden masks.
func TestMappingDryRunShowPII(t *testing.T) {
	f := filepath.Join("..", "testdata", "messages", "insureRequest.xml")
	masked, _, _ := runDryRun(t, "insureRequest", f, "--mappings", dryRunShippedMappings)
	shown, _, code := runDryRun(t, "insureRequest", f, "--mappings", dryRunShippedMappings, "--show-pii")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, s := range []string{`"name": "浙江宏达建设工程有限公司"`, `"mobile": "13858012345"`, `"138****2345"`} {
		if strings.Contains(masked, s) == strings.Contains(shown, s) {
			t.Errorf("%q: masked has it %v, shown has it %v", s, strings.Contains(masked, s), strings.Contains(shown, s))
		}
	}
	if !strings.Contains(masked, `"name": "浙***********"`) {
		t.Errorf("masked output:\n%s", masked)
	}
}

// TestMappingDryRunJSON checks the --json report: the output is the core
// JSON as sent (masked), one lineage entry per row, errors with answer.
func TestMappingDryRunJSON(t *testing.T) {
	f := filepath.Join("..", "testdata", "messages", "insureRequest.xml")
	out, _, code := runDryRun(t, "insureRequest", f, "--mappings", dryRunShippedMappings, "--json")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	var rep struct {
		Mapping, Kind string
		Output        map[string]json.RawMessage
		Lineage       []struct{ Source, Rule, Target, Value, Origin string }
		Error         *struct{ Field, Message string }
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if rep.Mapping != "insure.yaml" || rep.Kind != "request" || rep.Error != nil || len(rep.Lineage) != 15 { // 12 spec rows + the 3 forwarded extras
		t.Errorf("report %+v", rep)
	}
	if got := string(rep.Output["policy"]); !strings.Contains(got, `"sumPremium": 20.00`) {
		t.Errorf("policy %s", got)
	}
	l := rep.Lineage[1]
	if l.Source != "applicantInfo/mobile" || l.Target != "applicant.mobile" || l.Value != `"138****2345"` ||
		l.Rule != `string, required, pattern "1[3-9][0-9]{9}", pii mobile` || l.Origin != "source" {
		t.Errorf("lineage[1] %+v", l)
	}

	bad := dryRunWriteTemp(t, "event.json", []byte(`{"policyNo":"BD1"}`))
	out, _, code = runDryRun(t, "policy-paid", bad, "--mappings", dryRunShippedMappings, "--json")
	if code != dryRunExitRefused {
		t.Errorf("exit %d", code)
	}
	rep.Error = nil
	if err := json.Unmarshal([]byte(out), &rep); err != nil || rep.Error == nil ||
		rep.Error.Field != "proposalNo" || rep.Error.Message != "核心系统事件缺少字段 proposalNo" {
		t.Errorf("%v %+v", err, rep.Error)
	}
}

// TestMappingDryRunFinding: a mapping is found by file path, message,
// event or file name; misuse exits 1 with a clear message.
func TestMappingDryRunFinding(t *testing.T) {
	sample := filepath.Join("..", "testdata", "messages", "surrendRequest.xml")
	want, _, _ := runDryRun(t, "surrendRequest", sample, "--mappings", dryRunShippedMappings)
	for _, arg := range []string{filepath.Join(dryRunShippedMappings, "surrender.yaml"), "surrender"} {
		got, _, code := runDryRun(t, arg, sample, "--mappings", dryRunShippedMappings)
		if code != 0 || got != want {
			t.Errorf("%s: exit %d, output differs: %s", arg, code, got)
		}
	}
	event := filepath.Join("..", "testdata", "messages", "policy-paid.json")
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"nosuch", sample, "--mappings", dryRunShippedMappings}, `no mapping "nosuch"`},
		{[]string{"policy-paid", sample, "--mappings", dryRunShippedMappings}, "give it an event .json file"},
		{[]string{"insureRequest", sample, "--mappings", dryRunShippedMappings}, "surrendRequest.xml is a surrendRequest; insure.yaml maps insureRequest"},
		{[]string{"insureRequest", sample, "--mappings", t.TempDir()}, "no mapping files"},
		{[]string{"policy-paid", event, "--mappings", dryRunShippedMappings, "--var", "novalue"}, `--var "novalue"`},
		{[]string{"policy-paid", filepath.Join(t.TempDir(), "none.json"), "--mappings", dryRunShippedMappings}, "no such file"},
		{[]string{"policy-paid"}, "accepts 2 arg(s)"},
	}
	for _, tc := range cases {
		_, stderr, code := runCLI(t, mappingCommand(), nil, append([]string{"test"}, tc.args...)...)
		if code != 1 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%q: exit %d, stderr %q, want %q", tc.args, code, stderr, tc.want)
		}
	}
	// A broken mapping file is reported with its file and line.
	broken := dryRunWriteTemp(t, "broken.yaml", []byte("event: x-y\ncallback: aRequest\nreply_root: aResponse\nbody:\n  - {xml: a, json: a, type: decmial}\n"))
	_, stderr, code := runCLI(t, mappingCommand(), nil, "test", broken, event)
	if code != 1 || !strings.Contains(stderr, "broken.yaml:5") {
		t.Errorf("broken mapping: exit %d %q", code, stderr)
	}
}

// TestMappingDryRunStdin reads the message from standard input ("-"),
// telling XML from JSON by its first character.
func TestMappingDryRunStdin(t *testing.T) {
	args := append([]string{"test", "policy-paid", "-", "--mappings", dryRunShippedMappings}, dryRunFixedVars...)
	out, _, code := runCLI(t, mappingCommand(), readSample(t, "policy-paid.json"), args...)
	if code != 0 || !strings.Contains(out, "<insuranceCode>GBTEST01</insuranceCode>") {
		t.Errorf("exit %d\n%s", code, out)
	}
	args = append([]string{"test", "claimRequest", "-", "--mappings", dryRunShippedMappings}, dryRunFixedVars...)
	out, _, code = runCLI(t, mappingCommand(), readSample(t, "claimRequest.xml"), args...)
	if code != 0 || !strings.Contains(out, "the JSON body the core would get") {
		t.Errorf("exit %d\n%s", code, out)
	}
}

// repeatMapping has what the shipped mappings lack: repeated elements,
// with personal data inside items, a const, a default and an alias.
const repeatMapping = `message: listRequest
reply_root: listResponse
core: {method: POST, path: /v1/lists}
request:
  - {xml: policyno, aliases: [polycyno], json: policyNo, type: string, required: true}
  - {json: channel, const: gongbao, type: string}
  - {xml: note, json: note, type: string, default: ""}
  - xml: persons/person
    json: persons
    repeat: {min: 1, max: 3}
    fields:
      - {xml: name, json: name, type: string, pii: name}
      - {xml: mobiles/mobile, json: mobiles, repeat: {max: 2}, type: string, pii: mobile}
reply:
  - {xml: resultFlag, json: accepted, type: boolean, required: true}
  - xml: persons/person
    json: persons
    repeat: {max: 3}
    fields:
      - {xml: name, json: name, type: string, pii: name}
      - {xml: fee, json: fee, type: decimal, scale: 2}
`

// TestMappingDryRunRepeats: items are numbered in the lineage, indented
// under their row, and personal data inside items is masked in the output
// too.
func TestMappingDryRunRepeats(t *testing.T) {
	file := dryRunWriteTemp(t, "list.yaml", []byte(repeatMapping))
	request := dryRunWriteTemp(t, "listRequest.xml", []byte(`<listRequest><requestHead><requestUUID>u1</requestUUID><sign>S</sign></requestHead><requestBody>
<polycyno>BD1</polycyno><persons><person><name>陈大文</name><mobiles><mobile>13900001111</mobile><mobile>13900002222</mobile></mobiles></person>
<person/><person><name>李小明</name></person></persons></requestBody></listRequest>`))
	reply := dryRunWriteTemp(t, "list.reply.json", []byte(`{"accepted":true,"persons":[{"name":"陈大文","fee":"1.5"},null,{"name":"李小明","fee":2}]}`))
	for _, tc := range []struct{ golden, input string }{
		{"list.request.txt", request},
		{"list.reply.txt", reply},
	} {
		out, stderr, code := runDryRun(t, file, tc.input)
		if code != 0 {
			t.Fatalf("%s: exit %d %s\n%s", tc.input, code, stderr, out)
		}
		for _, pd := range []string{"陈大文", "李小明", "13900001111", "13900002222"} {
			if strings.Contains(out, pd) {
				t.Errorf("%s: %q is not masked", tc.golden, pd)
			}
		}
		dryRunCheckGolden(t, filepath.Join("custom", tc.golden), out)
	}
	bad := dryRunWriteTemp(t, "listRequest.xml", []byte(`<listRequest><requestHead><requestUUID>u1</requestUUID></requestHead><requestBody>
<policyno>BD1</policyno><persons><person><name>陈大文</name><mobiles><mobile>1</mobile><mobile>2</mobile><mobile>3</mobile></mobiles></person></persons></requestBody></listRequest>`))
	out, _, code := runDryRun(t, file, bad)
	if code != dryRunExitRefused || !strings.Contains(out, "✗ 字段 persons/person[1]/mobiles/mobile 数量过多(最多 2 个, 实际 3)") {
		t.Errorf("exit %d\n%s", code, out)
	}
	dryRunCheckGolden(t, filepath.Join("custom", "list.request.too-many.txt"), out)
}

// TestMappingExport: `mapping export DIR` writes the built-in mappings,
// which load as they are, and never overwrites a file.
func TestMappingExport(t *testing.T) {
	saved := builtinMappings
	t.Cleanup(func() { builtinMappings = saved })
	root, err := filepath.Abs("..") // the module root holds mappings/
	if err != nil {
		t.Fatal(err)
	}
	builtinMappings = os.DirFS(root)
	dir := filepath.Join(t.TempDir(), "exported")
	stdout, stderr, code := runCLI(t, mappingCommand(), nil, "export", dir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, filepath.Join(dir, "insure.yaml")) {
		t.Errorf("stdout %q does not name insure.yaml", stdout)
	}
	set, err := mapping.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(set.Inbound) != 5 || len(set.Outbound) != 3 || len(set.Warnings) != 0 {
		t.Errorf("%d inbound, %d outbound, warnings %v", len(set.Inbound), len(set.Outbound), set.Warnings)
	}
	if _, stderr, code := runCLI(t, mappingCommand(), nil, "export", dir); code != 1 || !strings.Contains(stderr, "not overwriting") {
		t.Errorf("second export: exit %d, %s", code, stderr)
	}
	// mapping test without --mappings and with no ./mappings folder uses the
	// built-in ones, saying so.
	t.Chdir(t.TempDir())
	sample := filepath.Join(root, "testdata/messages/insureRequest.xml")
	_, stderr, code = runCLI(t, mappingCommand(), nil, "test", "insureRequest", sample)
	if code != 0 || !strings.Contains(stderr, "using the built-in mappings") {
		t.Errorf("built-in fallback: exit %d, stderr %q", code, stderr)
	}
}

// TestMappingDryRunUnmapped: the dry run lists the elements no row reads
// that the mapping lets through, in text and JSON, and the run passes.
func TestMappingDryRunUnmapped(t *testing.T) {
	dir := t.TempDir()
	file := `message: testRequest
reply_root: testResponse
core: {method: POST, path: /v1/test}
ignore: [ProjectType]
unknown_elements: ignore
request:
  - {xml: a, json: a, type: string}
reply:
  - {xml: resultFlag, json: ok, type: boolean}
`
	if err := os.WriteFile(filepath.Join(dir, "test.yaml"), []byte(file), 0o644); err != nil {
		t.Fatal(err)
	}
	msg := `<?xml version="1.0" encoding="UTF-8"?><testRequest><requestHead><requestUUID>u1</requestUUID></requestHead>` +
		`<requestBody><a>x</a><ProjectType>1</ProjectType><info><New>2</New></info></requestBody><sign>s</sign></testRequest>`
	path := dryRunWriteTemp(t, "testRequest.xml", []byte(msg))
	out, stderr, code := runDryRun(t, "testRequest", path, "--mappings", dir)
	if code != 0 {
		t.Fatalf("exit %d: %s\n%s", code, stderr, out)
	}
	for _, w := range []string{"Unmapped (input elements no row reads", "ProjectType  ignored (ignore:)",
		"info         let through (unknown_elements: ignore)"} {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
	out, stderr, code = runDryRun(t, "testRequest", path, "--mappings", dir, "--json")
	if code != 0 || !strings.Contains(out, `"unmapped": [`) || !strings.Contains(out, `"xml": "info"`) ||
		!strings.Contains(out, `"how": "unknown_elements: ignore"`) {
		t.Errorf("exit %d, stderr %s, JSON:\n%s", code, stderr, out)
	}
}

// TestMappingCheck: `mapping check` is quiet on the shipped mappings and
// samples, and names file:line and the near spelling of a mistyped
// optional row (exit 2).
func TestMappingCheck(t *testing.T) {
	samples := filepath.Join("..", "testdata", "messages")
	out, stderr, code := runCLI(t, mappingCommand(), nil, "check", "--mappings", dryRunShippedMappings, "--samples", samples)
	if code != 0 || !strings.Contains(out, "no warnings") {
		t.Fatalf("shipped: exit %d, stderr %s, out:\n%s", code, stderr, out)
	}
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(dryRunShippedMappings)); err != nil {
		t.Fatal(err)
	}
	insure := filepath.Join(dir, "insure.yaml")
	data, err := os.ReadFile(insure)
	if err != nil {
		t.Fatal(err)
	}
	data = dryRunReplaceOnce(t, data, "- xml: dateInfo/startDate ", "- xml: dateInfo/startdate ")
	if err := os.WriteFile(insure, data, 0o644); err != nil {
		t.Fatal(err)
	}
	out, stderr, code = runCLI(t, mappingCommand(), nil, "check", "--mappings", dir, "--samples", samples)
	want := fmt.Sprintf(`warning: %s:94: row xml "dateInfo/startdate" matches no element of the samples; did you mean "dateInfo/startDate"?`, insure)
	if code != 2 || !strings.Contains(out, want) || !strings.Contains(stderr, "1 warning") {
		t.Errorf("exit %d, stderr %s; want 2 and\n%s\nin:\n%s", code, stderr, want, out)
	}
}

// TestValidateWarnsNearSpelling: the sample-free check runs at load, so
// Provision (caddy validate, caddy run) logs a mistyped optional row whose
// intended spelling the file lists under ignore:.
func TestValidateWarnsNearSpelling(t *testing.T) {
	dir := t.TempDir()
	file := `message: testRequest
reply_root: testResponse
core: {method: POST, path: /v1/test}
ignore: [dateInfo/startDate]
request:
  - {xml: dateInfo/startdate, json: start, type: string}
reply:
  - {xml: resultFlag, json: ok, type: boolean}
`
	if err := os.WriteFile(filepath.Join(dir, "t.yaml"), []byte(file), 0o644); err != nil {
		t.Fatal(err)
	}
	app := &App{Mappings: dir}
	set, err := app.loadMappings()
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.WarnLevel)
	logMappingWarnings(zap.New(core), set.Warnings)
	want := filepath.Join(dir, "t.yaml") + `:6: row xml "dateInfo/startdate" is a near spelling of "dateInfo/startDate" (line 4); did you mean "dateInfo/startDate"?`
	entries := logs.FilterMessage("mapping file warning").All()
	if len(entries) != 1 || entries[0].ContextMap()["warning"] != want {
		t.Errorf("logged %+v, want one warning %q", entries, want)
	}
}
