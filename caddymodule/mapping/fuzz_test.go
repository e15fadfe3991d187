package mapping_test

// Fuzz targets for the mapping loader and both executors, over the shipped
// mappings (mappings/*.yaml). Run one at a time, e.g.
//
//	go test -run XXX -fuzz FuzzXMLToJSON -fuzztime 10m -parallel 1 ./caddymodule/mapping/
//
// Invariants:
//   - FuzzXMLToJSON: for any request body the parser accepts, no panic;
//     output is one valid JSON object; errors are *FieldError with a known
//     Reason, a Chinese Message() and an Error() free of input text; the
//     result is the same on a second run (pooled buffers) and under
//     TraceXMLToJSON (the dry run).
//   - FuzzJSONToXML: for any core answer or event, no panic; errors are
//     *FieldError or wrap ErrInvalidJSON; the elements build into
//     well-formed XML that protocol.Parse accepts, whose signed value is
//     LeafValues and whose sign verifies; same under TraceJSONToXML.
//   - FuzzParseFile: for any file, no panic; every error is a *LoadError
//     naming the file and a line inside it (line 0, "the whole file", only
//     for an empty file or a UTF-16 one); a file that loads compiles into
//     rules that run and only ever build valid XML.

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/antchfx/xmlquery"

	"github.com/caddy-gongbao/gongbao/caddymodule/mapping"
	"github.com/caddy-gongbao/gongbao/caddymodule/protocol"
)

const fzKey = "MeTKJnC3fIAxeer8erADRTlJ"

var fzVars = mapping.Vars{"now": "2019-04-01 10:00:00", "insurance_code": "TEST"}

// fzShipped loads the shipped mappings once per fuzz target.
func fzShipped(f *testing.F) *mapping.Set {
	f.Helper()
	set, err := mapping.LoadDir(filepath.Join("..", "..", "mappings"))
	if err != nil {
		f.Fatal(err)
	}
	return set
}

// fzFiles reads every file matching pattern under the repository root.
func fzFiles(f *testing.F, pattern string) map[string][]byte {
	f.Helper()
	files, err := filepath.Glob(filepath.Join("..", "..", pattern))
	if err != nil || len(files) == 0 {
		f.Fatalf("no seed files match %s: %v", pattern, err)
	}
	out := make(map[string][]byte, len(files))
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		out[filepath.Base(file)] = data
	}
	return out
}

var fzBodyRE = regexp.MustCompile(`(?s)<requestBody>(.*)</requestBody>`)

func FuzzXMLToJSON(f *testing.F) {
	set := fzShipped(f)
	roots := fzSortedKeys(set.Inbound)
	for _, data := range fzFiles(f, "testdata/messages/*.xml") {
		if m := fzBodyRE.FindSubmatch(data); m != nil {
			f.Add(m[1])
		}
	}
	for _, s := range []string{
		"",
		"<policyno/>",
		"<policyno>BD1</policyno><polycyno>BD2</polycyno>",
		"<policyno>BD1</policyno><policyno>BD2</policyno>",
		"<applicantInfo><name><![CDATA[ 张 三 ]]></name></applicantInfo><policyInfo><sumPremium> 20.005 </sumPremium></policyInfo>",
		"<policyInfo><sumPremium>-0.00</sumPremium><sumAmount>99999999999999999999.99</sumAmount></policyInfo>",
		"<InvoiceType>4</InvoiceType><InvoiceHead>&lt;x&gt;&amp;</InvoiceHead>",
		"<correctInfo><dateInfo><stratDate>2019-02-30 25:61:61</stratDate><tender>-9223372036854775809</tender></dateInfo></correctInfo>",
		"<a>\u2028\u0001</a><claimReason>\"\\</claimReason>",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, inner []byte) {
		for _, root := range roots {
			m := set.Inbound[root]
			msg := `<` + root + `><requestHead><requestUUID>u</requestUUID><sign>s</sign></requestHead><requestBody>` +
				string(inner) + `</requestBody></` + root + `>`
			env, err := protocol.Parse([]byte(msg), protocol.Limits{})
			if err != nil {
				continue // refused before any mapping runs
			}
			out, err := m.Request.XMLToJSON(env.Body, fzVars)
			fzCheckXMLResult(t, m.File, out, err)
			again, err2 := m.Request.XMLToJSON(env.Body, fzVars)
			if !bytes.Equal(out, again) || fzErrText(err) != fzErrText(err2) {
				t.Fatalf("%s: second run differs: %s / %v, then %s / %v", m.File, out, err, again, err2)
			}
			traced, lineage, err3 := m.Request.TraceXMLToJSON(env.Body, fzVars)
			if !bytes.Equal(out, traced) || fzErrText(err) != fzErrText(err3) {
				t.Fatalf("%s: dry run differs: %s / %v, traced %s / %v", m.File, out, err, traced, err3)
			}
			for _, l := range lineage {
				_ = l.Masked()
			}
		}
	})
}

func fzCheckXMLResult(t *testing.T, file string, out []byte, err error) {
	t.Helper()
	if err != nil {
		if out != nil {
			t.Fatalf("%s: output %s with error %v", file, out, err)
		}
		fzCheckFieldError(t, file, err)
		return
	}
	var obj map[string]any
	if !json.Valid(out) || json.Unmarshal(out, &obj) != nil || obj == nil {
		t.Fatalf("%s: output is not one JSON object: %s", file, out)
	}
	if !utf8.Valid(out) {
		t.Fatalf("%s: output is not UTF-8: %q", file, out)
	}
}

var fzReasons = []mapping.Reason{
	mapping.ReasonMissing, mapping.ReasonTooLong, mapping.ReasonInvalid, mapping.ReasonScale,
	mapping.ReasonPrecision, mapping.ReasonEnum, mapping.ReasonTooMany, mapping.ReasonTooFew,
	mapping.ReasonDuplicate, mapping.ReasonType, mapping.ReasonPattern, mapping.ReasonUnknown,
	mapping.ReasonNested, mapping.ReasonLooseText,
}

// fzCheckFieldError: a *FieldError (not merely wrapping one), with a path,
// a known reason, a Chinese message naming the path, and an English,
// ASCII-only Error(): the shipped mappings' paths and the details are
// ASCII, so anything else would be input text leaking into logs.
func fzCheckFieldError(t *testing.T, file string, err error) {
	t.Helper()
	fe, ok := err.(*mapping.FieldError)
	if !ok {
		t.Fatalf("%s: error %T is not *mapping.FieldError: %v", file, err, err)
	}
	if fe.Path == "" || !slices.Contains(fzReasons, fe.Reason) {
		t.Fatalf("%s: field error without path or with unknown reason: %#v", file, fe)
	}
	msg := fe.Message()
	if !utf8.ValidString(msg) || !strings.Contains(msg, fe.Path) ||
		!strings.ContainsFunc(msg, func(r rune) bool { return unicode.Is(unicode.Han, r) }) {
		t.Fatalf("%s: Message() = %q: want Chinese naming %s", file, msg, fe.Path)
	}
	if s := fe.Error(); strings.ContainsFunc(s, func(r rune) bool { return r >= utf8.RuneSelf || r < ' ' }) {
		t.Fatalf("%s: Error() carries input text: %q", file, s)
	}
}

func fzErrText(err error) string {
	var fe *mapping.FieldError
	if errors.As(err, &fe) {
		return fe.Message()
	}
	if err != nil {
		return err.Error()
	}
	return ""
}

// fzRules is one JSON→XML rule list of the shipped set with the roots its
// output is built under.
type fzRules struct {
	file, root string
	typ        protocol.MessageType
	rules      *mapping.Rules
	out        *mapping.Outbound
}

func fzJSONRules(set *mapping.Set) []fzRules {
	var all []fzRules
	for _, k := range fzSortedKeys(set.Inbound) {
		m := set.Inbound[k]
		all = append(all, fzRules{m.File, m.ReplyRoot, protocol.ResponseMessage, m.Reply, nil})
	}
	for _, k := range fzSortedKeys(set.Outbound) {
		m := set.Outbound[k]
		all = append(all, fzRules{m.File, m.Callback, protocol.RequestMessage, m.Body, m})
	}
	return all
}

func FuzzJSONToXML(f *testing.F) {
	all := fzJSONRules(fzShipped(f))
	for _, data := range fzFiles(f, "testdata/messages/*.json") {
		f.Add(data)
	}
	for _, s := range []string{
		`{}`, `[]`, `null`, `{"accepted":true} {}`, ``,
		`{"accepted":"TRUE","message":"<&>]]>\r\n","proposalNo":12,"paymentUrl":null}`,
		`{"accepted":false,"message":"\u0000\ud800\uffff","insurancePeriod":{"start":"x"}}`,
		`{"eventId":1e400,"policyNo":1.5e-7,"paidAt":"2019-04-20T15:28:39Z","express":{"company":[],"trackingNo":{}}}`,
		`{"policyNo":"P","refunded":"yes","message":"` + strings.Repeat("长", 300) + `"}`,
		`{"a":{"b":{"c":{"d":[1,[2,[3]]]}}}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, r := range all {
			els, err := r.rules.JSONToXML(data, fzVars)
			fzCheckJSONResult(t, r, els, err)
			traced, _, err2 := r.rules.TraceJSONToXML(data, fzVars)
			if fzErrText(err) != fzErrText(err2) || (err == nil && !bytes.Equal(protocol.LeafValues(els), protocol.LeafValues(traced))) {
				t.Fatalf("%s: dry run differs: %v / %v", r.file, err, err2)
			}
			if r.out != nil {
				_, _, kerr := r.out.Keys(data)
				if (kerr == nil) != (err == nil || !errors.Is(err, mapping.ErrInvalidJSON)) {
					t.Fatalf("%s: Keys and JSONToXML disagree on the JSON: %v / %v", r.file, kerr, err)
				}
			}
		}
	})
}

func fzCheckJSONResult(t *testing.T, r fzRules, els []protocol.Element, err error) {
	t.Helper()
	if err != nil {
		if errors.Is(err, mapping.ErrInvalidJSON) {
			return
		}
		fzCheckFieldErrorJSON(t, r.file, err)
		return
	}
	out, err := protocol.Build(r.typ, r.root, "fuzz-uuid", els, fzKey)
	if err != nil {
		t.Fatalf("%s: elements do not build: %v", r.file, err)
	}
	env, err := protocol.Parse(out, protocol.Limits{MaxBytes: 64 << 20, MaxValueChars: 1 << 30})
	if err != nil {
		t.Fatalf("%s: built XML refused: %v\n%s", r.file, err, out)
	}
	if env.Root != r.root || env.RequestUUID != "fuzz-uuid" {
		t.Fatalf("%s: built root %q uuid %q", r.file, env.Root, env.RequestUUID)
	}
	if !bytes.Equal(env.SignedValue(), protocol.LeafValues(els)) {
		t.Fatalf("%s: signed value %q, LeafValues %q", r.file, env.SignedValue(), protocol.LeafValues(els))
	}
	if _, ok := protocol.VerifyAny(env.SignedValue(), env.Sign, []string{fzKey}); !ok {
		t.Fatalf("%s: own sign does not verify", r.file)
	}
}

// fzCheckFieldErrorJSON is fzCheckFieldError for JSON-side errors, whose
// paths are JSON paths of the core's answer (ASCII in the shipped files).
func fzCheckFieldErrorJSON(t *testing.T, file string, err error) {
	t.Helper()
	fzCheckFieldError(t, file, err)
}

func FuzzParseFile(f *testing.F) {
	for _, data := range fzFiles(f, "mappings/*.yaml") {
		f.Add(data)
	}
	for _, s := range []string{
		"",
		"---\n---\n",
		"message: a\nmessage: b\n",
		"event: Bad Name\ncallback: x\nreply: y\nbody: []\n",
		"message: xRequest\nreply_root: xResponse\ncore: {method: POST, path: /x}\nrequest:\n  - &r {xml: a, json: a, type: string}\n  - *r\nreply:\n  - {xml: b, json: b, type: decmial}\n",
		"message: xRequest\nreply_root: xResponse\ncore: {method: POST, path: /x}\nrequest:\n  - {xml: items/item, json: items, repeat: {min: 2, max: 1}, fields: [{xml: c, json: c, type: enum, values: {\"1\": a, \"2\": a}}]}\nreply: []\n",
		"message: xRequest\nreply_root: xResponse\ncore: {method: POST, path: /x}\nrequest:\n  - {xml: d, json: d, type: datetime, xml_format: \"yyyy-MM-dd HH:mm:ss.SSS\", json_format: RFC3339, default: \"2019-01-01 00:00:00.000\"}\nreply:\n  - {xml: r, var: now, type: string, max_length: 3}\ntimezone: Asia/Shanghai\n",
		"a: [\n",
		"\t- x",
	} {
		f.Add([]byte(s))
	}
	body := fzInsureBody(f)
	replies := fzFiles(f, "testdata/messages/*.json")
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := mapping.ParseFile("fuzz.yaml", data)
		if err != nil {
			if m != nil {
				t.Fatalf("result %T with error %v", m, err)
			}
			fzCheckLoadError(t, data, err)
			return
		}
		switch {
		case m.Inbound != nil && m.Outbound == nil:
			m := m.Inbound
			if m.Request == nil || m.Reply == nil || !protocol.ValidName(m.Message) || !protocol.ValidName(m.ReplyRoot) {
				t.Fatalf("loaded inbound mapping is incomplete: %+v", m)
			}
			m.Request.XMLToJSON(body, fzVars)
			fzRunJSON(t, m.Reply, m.ReplyRoot, protocol.ResponseMessage, replies)
		case m.Outbound != nil && m.Inbound == nil:
			m := m.Outbound
			if m.Body == nil || !protocol.ValidName(m.Callback) || !protocol.ValidName(m.ReplyRoot) {
				t.Fatalf("loaded outbound mapping is incomplete: %+v", m)
			}
			fzRunJSON(t, m.Body, m.Callback, protocol.RequestMessage, replies)
			for _, data := range replies {
				m.Keys(data)
			}
		default:
			t.Fatalf("ParseFile returned %+v", m)
		}
	})
}

// fzRunJSON runs compiled JSON→XML rules over the sample answers and
// events: whatever a loaded file says, building must not fail.
func fzRunJSON(t *testing.T, rules *mapping.Rules, root string, typ protocol.MessageType, inputs map[string][]byte) {
	t.Helper()
	for _, k := range fzSortedKeys(inputs) {
		els, err := rules.JSONToXML(inputs[k], fzVars)
		if err != nil {
			continue
		}
		if _, err := protocol.Build(typ, root, "u", els, fzKey); err != nil {
			t.Fatalf("a loaded mapping builds invalid XML from %s: %v", k, err)
		}
	}
}

var fzLoadLine = regexp.MustCompile(`^fuzz\.yaml(:(\d+))?: `)

// fzCheckLoadError: every problem is a *LoadError for this file, at a line
// of the file, and wraps ErrInvalidMapping.
func fzCheckLoadError(t *testing.T, data []byte, err error) {
	t.Helper()
	if !errors.Is(err, mapping.ErrInvalidMapping) {
		t.Fatalf("load error does not wrap ErrInvalidMapping: %v", err)
	}
	var leaves []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		leaves = j.Unwrap()
	} else {
		leaves = []error{err}
	}
	lines := fzYAMLLines(data)
	for _, e := range leaves {
		le, ok := e.(*mapping.LoadError)
		if !ok {
			t.Fatalf("load error %T is not *mapping.LoadError: %v", e, e)
		}
		if le.File != "fuzz.yaml" || le.Line < 0 || le.Line > lines || le.Msg == "" {
			t.Fatalf("load error %q: file %q line %d of %d", le.Error(), le.File, le.Line, lines)
		}
		// Line 0 means "the whole file": only an empty file, or bytes
		// that cannot be located (a UTF-16 file), may have it.
		utf16 := bytes.HasPrefix(data, []byte{0xFF, 0xFE}) || bytes.HasPrefix(data, []byte{0xFE, 0xFF})
		if le.Line == 0 && le.Msg != "empty mapping file" && !utf16 {
			t.Fatalf("load error %q has no line", le.Error())
		}
		if !fzLoadLine.MatchString(le.Error()) {
			t.Fatalf("load error %q does not start with file:line", le.Error())
		}
	}
}

// fzYAMLLines counts lines as YAML does: CR LF, CR, LF, NEL, LS and PS
// each end a line (a file with old Mac line ends has CR only), in a file
// that a byte-order mark may declare UTF-16.
func fzYAMLLines(data []byte) int {
	s := strings.ReplaceAll(fzYAMLText(data), "\r\n", "\n")
	n := 1
	for _, r := range s {
		switch r {
		case '\n', '\r', '\u0085', '\u2028', '\u2029':
			n++
		}
	}
	return n
}

// fzYAMLText decodes UTF-16 input (byte-order mark FF FE or FE FF) as
// yaml.v3 does; anything else is taken as UTF-8.
func fzYAMLText(data []byte) string {
	var order binary.ByteOrder
	switch {
	case bytes.HasPrefix(data, []byte{0xFF, 0xFE}):
		order = binary.LittleEndian
	case bytes.HasPrefix(data, []byte{0xFE, 0xFF}):
		order = binary.BigEndian
	default:
		return string(data)
	}
	units := make([]uint16, 0, len(data)/2)
	for i := 2; i+1 < len(data); i += 2 {
		units = append(units, order.Uint16(data[i:]))
	}
	return string(utf16.Decode(units))
}

func fzInsureBody(f *testing.F) *xmlquery.Node {
	f.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "testdata", "messages", "insureRequest.xml"))
	if err != nil {
		f.Fatal(err)
	}
	env, err := protocol.Parse(data, protocol.Limits{})
	if err != nil {
		f.Fatal(err)
	}
	return env.Body
}

func fzSortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
