package mapping

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/caddy-gongbao/gongbao/caddymodule/protocol"
)

// LoadDir loads every *.yaml and *.yml file of dir (not recursive; names
// starting with "." are skipped). Errors name the file as configured,
// folder and name, and the line: "mappings/insure.yaml:12: unknown type
// \"decmial\" …"; all problems of all files are reported, joined.
// Warnings (deprecated forms) are in Set.Warnings.
func LoadDir(dir string) (*Set, error) {
	if dir == "" {
		return nil, fmt.Errorf("%w: mapping folder not set", ErrNoMappings)
	}
	return load(os.DirFS(dir), ".", dir)
}

// LoadFS is LoadDir on a file system, e.g. the embedded default mappings.
func LoadFS(fsys fs.FS, dir string) (*Set, error) {
	return load(fsys, dir, dir)
}

func load(fsys fs.FS, dir, label string) (*Set, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("reading mapping folder %q: %w", label, err)
	}
	set := &Set{Inbound: map[string]*Inbound{}, Outbound: map[string]*Outbound{}}
	var errs []error
	files := 0
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || strings.HasPrefix(name, ".") ||
			!strings.HasSuffix(name, ".yaml") && !strings.HasSuffix(name, ".yml") {
			continue
		}
		files++
		data, err := fs.ReadFile(fsys, path.Join(dir, name))
		if err != nil {
			errs = append(errs, fmt.Errorf("reading mapping %q: %w", path.Join(label, name), err))
			continue
		}
		f, err := ParseFile(path.Join(label, name), data)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		set.Warnings = append(set.Warnings, f.Warnings...)
		if err := set.add(f); err != nil {
			errs = append(errs, err)
		}
	}
	if files == 0 {
		return nil, fmt.Errorf("%w: no *.yaml or *.yml file in %q", ErrNoMappings, label)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return set, nil
}

// add registers a parsed file; two files may not claim one message or event.
func (s *Set) add(f *File) error {
	if m := f.Inbound; m != nil {
		if prev, ok := s.Inbound[m.Message]; ok {
			return &LoadError{File: m.File, Line: m.line,
				Msg: fmt.Sprintf("message %q is already mapped by %s:%d", m.Message, prev.File, prev.line)}
		}
		s.Inbound[m.Message] = m
	}
	if m := f.Outbound; m != nil {
		if prev, ok := s.Outbound[m.Event]; ok {
			return &LoadError{File: m.File, Line: m.line,
				Msg: fmt.Sprintf("event %q is already mapped by %s:%d", m.Event, prev.File, prev.line)}
		}
		s.Outbound[m.Event] = m
	}
	return nil
}

// File is one parsed mapping file: exactly one of Inbound (the file has
// message:) and Outbound (it has event:) is set.
type File struct {
	Inbound  *Inbound
	Outbound *Outbound
	// Warnings are problems that do not stop loading (deprecated forms),
	// each located by file and line.
	Warnings []*LoadError
}

// Name is the file name the mapping came from.
func (f *File) Name() string {
	if f.Inbound != nil {
		return f.Inbound.File
	}
	return f.Outbound.File
}

// ParseFile parses and compiles one mapping file; name (the path as
// configured) is used in errors and as File.
func ParseFile(name string, data []byte) (*File, error) {
	p := &parser{file: name, zone: defaultZone}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			p.errf(nil, "empty mapping file")
		} else {
			p.yamlErr(err, data)
		}
		return nil, p.err()
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			p.yamlErr(err, data)
		} else {
			p.errf(&extra, "only one YAML document per file")
		}
		return nil, p.err()
	}
	if len(doc.Content) == 0 || implicitNull(doc.Content[0]) {
		p.errf(nil, "empty mapping file")
		return nil, p.err()
	}
	f := p.file1(doc.Content[0])
	if err := p.err(); err != nil {
		return nil, err
	}
	f.Warnings = p.warns
	return f, nil
}

// implicitNull is a document with nothing in it ("---" alone, or only
// comments after it). yaml.v3 places that null one line past the end of
// the file, so it is reported as an empty file instead.
func implicitNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null" && n.Value == "" && n.Style == 0
}

// parser collects every problem of one file.
type parser struct {
	file  string
	zone  *time.Location // file default for datetime rows
	errs  []error
	warns []*LoadError
}

func (p *parser) warnf(n *yaml.Node, format string, args ...any) {
	p.warns = append(p.warns, &LoadError{File: p.file, Line: n.Line, Msg: fmt.Sprintf(format, args...)})
}

func (p *parser) errf(n *yaml.Node, format string, args ...any) {
	line := 0
	if n != nil {
		line = n.Line
	}
	p.errAt(line, format, args...)
}

func (p *parser) errAt(line int, format string, args ...any) {
	p.errs = append(p.errs, &LoadError{File: p.file, Line: line, Msg: fmt.Sprintf(format, args...)})
}

// err reports the file's problems in line order.
func (p *parser) err() error {
	slices.SortStableFunc(p.errs, func(a, b error) int {
		return a.(*LoadError).Line - b.(*LoadError).Line
	})
	switch len(p.errs) {
	case 0:
		return nil
	case 1:
		return p.errs[0]
	}
	return errors.Join(p.errs...)
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// yamlErr turns "yaml: line 3: did not find expected key" into file:3.
// yaml.v3 reports some problems at the line where the enclosing block
// starts (an indentation slip on line 75 inside the rows that start on
// line 16 reads "line 16: did not find expected key"); yamlSyntaxLine
// finds the line the problem is on. yaml.v3 gives no line at all for some
// problems; yamlProblemLine finds it.
func (p *parser) yamlErr(err error, data []byte) {
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		line, _ := strconv.Atoi(m[1])
		p.errAt(yamlSyntaxLine(data, line, m[2]), "%s", m[2])
		return
	}
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	p.errAt(yamlProblemLine(msg, data), "%s", msg)
}

// kv is one key and its value in a YAML mapping.
type kv struct{ k, v *yaml.Node }

// resolve follows YAML aliases (*anchor).
func resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

// fields reads a YAML mapping whose keys must all be in known, reporting
// unknown and repeated keys.
func (p *parser) fields(n *yaml.Node, what string, known []string) map[string]kv {
	n = resolve(n)
	if n.Kind != yaml.MappingNode {
		p.errf(n, "%s must be a mapping", what)
		return nil
	}
	out := make(map[string]kv, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], resolve(n.Content[i+1])
		if !p.knownKey(k, what, known) {
			continue
		}
		if prev, dup := out[k.Value]; dup {
			p.errf(k, "duplicate key %q (first at line %d)", k.Value, prev.k.Line)
			continue
		}
		out[k.Value] = kv{k, v}
	}
	return out
}

func (p *parser) knownKey(k *yaml.Node, what string, known []string) bool {
	if k.Kind != yaml.ScalarNode {
		p.errf(k, "%s keys must be plain words", what)
		return false
	}
	if slices.Contains(known, k.Value) {
		return true
	}
	p.errf(k, "unknown key %q in %s%s", k.Value, what, suggest(k.Value, known))
	return false
}

// suggest offers the nearest known word for a typo.
func suggest(got string, known []string) string {
	best, bestD := "", 3
	for _, w := range known {
		if d := editDistance(got, w); d < bestD {
			best, bestD = w, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// editDistance is the Levenshtein distance (short words only).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// str reads a non-empty plain string scalar.
func (p *parser) str(f kv) (string, bool) {
	if f.v.Kind != yaml.ScalarNode || f.v.Tag == "!!null" {
		p.errf(f.v, "%s must be a single value", f.k.Value)
		return "", false
	}
	if f.v.Value == "" {
		p.errf(f.v, "%s must not be empty", f.k.Value)
		return "", false
	}
	return f.v.Value, true
}

func (p *parser) boolean(f kv) bool {
	var b bool
	if f.v.Kind != yaml.ScalarNode || f.v.Tag != "!!bool" || f.v.Decode(&b) != nil {
		p.errf(f.v, "%s must be true or false, not %q", f.k.Value, f.v.Value)
		return false
	}
	return b
}

func (p *parser) integer(f kv, minimum int) (int, bool) {
	n, err := strconv.Atoi(f.v.Value)
	if f.v.Kind != yaml.ScalarNode || f.v.Tag != "!!int" || err != nil || n < minimum {
		p.errf(f.v, "%s must be a whole number of at least %d, not %q", f.k.Value, minimum, f.v.Value)
		return 0, false
	}
	return n, true
}

// value reads const:/default: — any scalar but null, taken as text.
func (p *parser) value(f kv) (string, bool) {
	if f.v.Kind != yaml.ScalarNode || f.v.Tag == "!!null" {
		p.errf(f.v, "%s must be a single value (quote it: \"\" for empty)", f.k.Value)
		return "", false
	}
	return f.v.Value, true
}

var (
	inboundKeys  = []string{"message", "reply_root", "reply", "core", "request", "timezone", "ignore", "unknown_elements"}
	outboundKeys = []string{"event", "callback", "reply_root", "reply", "order_key", "event_id", "body", "timezone"}
	coreKeys     = []string{"method", "path"}
	httpMethods  = []string{"GET", "POST", "PUT", "PATCH", "DELETE"}
	eventName    = regexp.MustCompile(`^[a-z0-9]+(-[a-z0-9]+)*$`)
)

// file1 compiles the top-level mapping. The reply root element is
// reply_root:; reply: holds the reply rows (inbound). The old form, where
// inbound files had reply: twice (the root as a name, then the rows as a
// list) is still read, with a deprecation warning: YAML forbids a key
// twice, so editors, linters and yq reject it or drop one.
func (p *parser) file1(n *yaml.Node) *File {
	n = resolve(n)
	if n.Kind != yaml.MappingNode {
		p.errf(n, "a mapping file is a YAML mapping starting with message: (inbound) or event: (outbound)")
		return nil
	}
	inbound, outbound := false, false
	for i := 0; i+1 < len(n.Content); i += 2 {
		switch n.Content[i].Value {
		case "message":
			inbound = true
		case "event":
			outbound = true
		}
	}
	switch {
	case inbound && outbound:
		p.errf(n, "a mapping file has message: (inbound) or event: (outbound), not both")
		return nil
	case !inbound && !outbound:
		p.errf(n, "missing message: (inbound request root) or event: (outbound event name)")
		return nil
	}
	known, what := inboundKeys, "inbound mapping"
	if outbound {
		known, what = outboundKeys, "outbound mapping"
	}
	top := map[string]kv{}
	var replyRows kv
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], resolve(n.Content[i+1])
		if !p.knownKey(k, what, known) {
			continue
		}
		key := k.Value
		if key == "reply" && v.Kind != yaml.SequenceNode {
			p.warnf(k, "reply: with the reply root element is deprecated; write reply_root: %s (YAML forbids a key twice)", v.Value)
			key = "reply_root"
		}
		if key == "reply" {
			if outbound {
				p.errf(k, "an outbound mapping has no reply rows; rows go under body:, the platform reply root under reply_root:")
				continue
			}
			if replyRows.k != nil {
				p.errf(k, "duplicate reply rows (first at line %d)", replyRows.k.Line)
				continue
			}
			replyRows = kv{k, v}
			continue
		}
		if prev, dup := top[key]; dup {
			p.errf(k, "duplicate key %q (first at line %d)", key, prev.k.Line)
			continue
		}
		top[key] = kv{k, v}
	}
	if f, ok := top["timezone"]; ok {
		if name, ok := p.str(f); ok {
			zone, err := loadZone(name)
			if err != nil {
				p.errf(f.v, "%v", err)
			} else {
				p.zone = zone
			}
		}
	}
	if inbound {
		return &File{Inbound: p.inbound(n, top, replyRows)}
	}
	return &File{Outbound: p.outbound(n, top)}
}

// rootName reads a required XML root element name.
func (p *parser) rootName(n *yaml.Node, top map[string]kv, key, what string) string {
	f, ok := top[key]
	if !ok {
		p.errf(n, "missing %s: (%s)", key, what)
		return ""
	}
	if f.v.Kind == yaml.SequenceNode {
		p.errf(f.v, "%s: must be the %s", key, what)
		return ""
	}
	name, ok := p.str(f)
	if ok && !isXMLName(name) {
		p.errf(f.v, "%s %q is not a valid element name", key, name)
	}
	return name
}

func (p *parser) inbound(n *yaml.Node, top map[string]kv, replyRows kv) *Inbound {
	m := &Inbound{File: p.file}
	m.Message = p.rootName(n, top, "message", "request root element, e.g. insureRequest")
	if f, ok := top["message"]; ok {
		m.line = f.v.Line
	}
	m.ReplyRoot = p.rootName(n, top, "reply_root", "reply root element, e.g. insureResponse")
	if f, ok := top["core"]; !ok {
		p.errf(n, "missing core: (method and path of the core call)")
	} else {
		m.Method, m.Path = p.core(f)
	}
	if f, ok := top["request"]; !ok {
		p.errf(n, "missing request: rows (platform XML → core JSON)")
	} else {
		m.Request = p.rules(f, xmlToJSON, "")
	}
	var ignore []ignoreEntry
	if f, ok := top["ignore"]; ok {
		ignore = p.ignoreList(f)
	}
	unknown := unknownRefuse
	if f, ok := top["unknown_elements"]; ok {
		unknown = p.unknownElements(f)
	}
	if m.Request != nil {
		m.Request.shape = p.compileShape(m.Request, ignore, unknown)
		p.typoWarnings(m.Request, m.Request.shape)
	}
	if replyRows.k == nil {
		p.errf(n, "missing reply: rows (core JSON → reply XML)")
	} else {
		m.Reply = p.rules(replyRows, jsonToXML, "核心系统应答")
	}
	return m
}

func (p *parser) core(f kv) (method, urlPath string) {
	c := p.fields(f.v, "core", coreKeys)
	if c == nil {
		return "", ""
	}
	if mf, ok := c["method"]; !ok {
		p.errf(f.v, "missing core.method (GET, POST, PUT, PATCH or DELETE)")
	} else if method, ok = p.str(mf); ok && !slices.Contains(httpMethods, method) {
		p.errf(mf.v, "core.method %q must be one of GET, POST, PUT, PATCH, DELETE", method)
	}
	if pf, ok := c["path"]; !ok {
		p.errf(f.v, "missing core.path (e.g. /v1/proposals)")
	} else if urlPath, ok = p.str(pf); ok && (!strings.HasPrefix(urlPath, "/") || strings.ContainsAny(urlPath, " \t\n")) {
		p.errf(pf.v, "core.path %q must start with / and contain no spaces", urlPath)
	}
	return method, urlPath
}

func (p *parser) outbound(n *yaml.Node, top map[string]kv) *Outbound {
	m := &Outbound{File: p.file}
	if f, ok := top["event"]; ok {
		m.line = f.v.Line
		if name, ok := p.str(f); ok {
			m.Event = name
			if !eventName.MatchString(name) {
				p.errf(f.v, "event %q must be lower-case words joined by -, e.g. policy-paid", name)
			}
		}
	}
	m.Callback = p.rootName(n, top, "callback", "callback request root element, e.g. queryPolicyRequest")
	m.ReplyRoot = p.rootName(n, top, "reply_root", "platform reply root element, e.g. queryPolicyResponse")
	if f, ok := top["order_key"]; ok {
		m.OrderKey, m.orderSeg = p.jsonPath(f)
	}
	if f, ok := top["event_id"]; ok {
		m.EventID, m.idSeg = p.jsonPath(f)
	}
	if f, ok := top["body"]; !ok {
		p.errf(n, "missing body: rows (event JSON → callback XML)")
	} else {
		m.Body = p.rules(f, jsonToXML, "核心系统事件")
	}
	return m
}

// jsonPath reads a dot-separated JSON path.
func (p *parser) jsonPath(f kv) (string, []string) {
	s, ok := p.str(f)
	if !ok {
		return "", nil
	}
	segs := strings.Split(s, ".")
	for _, seg := range segs {
		if seg == "" {
			p.errf(f.v, "%s path %q has an empty segment", f.k.Value, s)
			return s, nil
		}
	}
	return s, segs
}

// xmlPath reads a slash-separated element path.
func (p *parser) xmlPath(f kv) (string, []string) {
	s, ok := p.str(f)
	if !ok {
		return "", nil
	}
	segs := strings.Split(s, "/")
	for _, seg := range segs {
		if !isXMLName(seg) {
			if seg == "" {
				p.errf(f.v, "xml path %q has an empty segment", s)
			} else {
				p.errf(f.v, "xml path %q: %q is not a valid element name", s, seg)
			}
			return s, nil
		}
	}
	return s, segs
}

// isXMLName accepts what protocol.Build accepts, so a loaded mapping can
// never make reply building fail (BuildResponse panics on a bad name).
func isXMLName(s string) bool { return protocol.ValidName(s) }
