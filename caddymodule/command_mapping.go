package caddymodule

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/caddy-gongbao/gongbao/caddymodule/gateway"
	"github.com/caddy-gongbao/gongbao/caddymodule/mapping"
	"github.com/caddy-gongbao/gongbao/caddymodule/protocol"
)

// The mapping dry run: `caddy gongbao mapping test <mapping> <file>` shows
// what a mapping does with one message, field by field, without calling the
// core or the network. It runs the sidecar's own executors (traced), its
// own failure wording (gateway.Classify, gateway.InvalidEvent) and its own
// builders (command_mapping_output.go), so what it prints is what the
// sidecar would send.

// dryRunExitRefused is the dry run's status when the input would be refused.
const dryRunExitRefused = 2

// dryRunInsuranceCodePlaceholder stands in for the configured insurance_code,
// which the sidecar always has (it refuses to start without it).
const dryRunInsuranceCodePlaceholder = "{insurance_code}"

func mappingCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "mapping test|export|check …",
		Short: "Works with mapping files (mappings/*.yaml)",
	}
	cmd.AddCommand(mappingTestCommand(), mappingExportCommand(), mappingCheckCommand())
	return cmd
}

// mappingExportCommand is `mapping export DIR`: it writes the shipped
// mapping files, which a binary built with xcaddy carries embedded but has
// no mappings/ folder beside it.
func mappingExportCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "export <dir>",
		Short: "Writes the built-in mapping files into a folder, to edit them",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return run(func(cmd *cobra.Command) error {
				return exportMappings(cmd.OutOrStdout(), args[0])
			})(cmd, args)
		},
	}
}

// exportMappings copies the built-in mappings into dir, refusing to
// overwrite a file that exists.
func exportMappings(w io.Writer, dir string) error {
	if builtinMappings == nil {
		return exitError{1, errors.New("this binary has no built-in mappings")}
	}
	entries, err := fs.ReadDir(builtinMappings, "mappings")
	if err != nil {
		return exitError{1, err}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return exitError{1, err}
	}
	for _, e := range entries {
		data, err := fs.ReadFile(builtinMappings, "mappings/"+e.Name())
		if err != nil {
			return exitError{1, err}
		}
		dst := filepath.Join(dir, e.Name())
		f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return exitError{1, fmt.Errorf("not overwriting: %w", err)}
		}
		_, err = f.Write(data)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return exitError{1, err}
		}
		fmt.Fprintln(w, "wrote", dst)
	}
	return nil
}

// dryRunOptions are the flags of `mapping test`.
type dryRunOptions struct {
	dir     string
	showPII bool
	asJSON  bool
	vars    []string
}

func mappingTestCommand() *cobra.Command {
	var opts dryRunOptions
	cmd := &cobra.Command{
		Use:   "test <mapping.yaml|name> <file.xml|file.json|->",
		Short: "Dry run: shows what a mapping makes of a message, field by field",
		Long: `
Runs a mapping on one message and prints the output it would produce, a
per-field lineage (source path → rule → target path → value) and the errors
the sidecar would answer with. Nothing is sent: no core call, no network.
The platform's signature is not checked.

<mapping> is a mapping file, or a request root, event name or file name
(without .yaml) looked up in --mappings. The direction follows the mapping
and the file:

  inbound mapping  + .xml   platform request → the JSON the core would get;
                            errors: the resultMessage of the signed reply
  inbound mapping  + .json  the core's answer (2xx or 422) → the reply body;
                            errors: the resultMessage of the signed reply
  outbound mapping + .json  core event → the callback body;
                            errors: the HTTP 400 the core would get

Personal data (rows with pii:) is masked unless --show-pii. Runtime
variables default to now = the current time and insurance_code = ` + dryRunInsuranceCodePlaceholder + `;
set them with --var name=value.

Exit status: 0 the message maps; 1 usage, file or mapping error; 2 the
message would be refused.`,
		Args: cobra.ExactArgs(2),
	}
	cmd.Flags().StringVar(&opts.dir, "mappings", "mappings", "folder of mapping files, for a mapping given by name")
	cmd.Flags().BoolVar(&opts.showPII, "show-pii", false, "show personal data unmasked")
	cmd.Flags().BoolVar(&opts.asJSON, "json", false, "print the result as JSON")
	cmd.Flags().StringArrayVar(&opts.vars, "var", nil, "runtime variable name=value (repeatable), e.g. --var insurance_code=GB01")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		return run(func(cmd *cobra.Command) error {
			return dryRun(cmd, args[0], args[1], &opts)
		})(cmd, args)
	}
	return cmd
}

// dryRun is `mapping test`.
func dryRun(cmd *cobra.Command, mappingArg, inputArg string, opts *dryRunOptions) error {
	m, err := dryRunFindMapping(mappingArg, opts.dir, cmd.ErrOrStderr())
	if err != nil {
		return exitError{1, err}
	}
	vars, err := dryRunVars(opts.vars)
	if err != nil {
		return exitError{1, err}
	}
	data, err := readInput(inputArg, cmd.InOrStdin())
	if err != nil {
		return exitError{1, err}
	}
	r, err := dryRunTraceMapping(m, inputArg, data, vars)
	if err != nil {
		return exitError{1, err}
	}
	r.mask(!opts.showPII)
	out := cmd.OutOrStdout()
	if opts.asJSON {
		err = r.writeJSON(out)
	} else {
		err = r.writeText(out, opts.showPII)
	}
	if err != nil {
		return err
	}
	if r.refusal != nil {
		return exitError{dryRunExitRefused, fmt.Errorf("%s would be refused: %s", r.input, r.refusal.message)}
	}
	return nil
}

// dryRunFindMapping loads a mapping file, or finds one by message, event or file
// name in dir.
func dryRunFindMapping(arg, dir string, errOut io.Writer) (any, error) {
	if st, err := os.Stat(arg); err == nil && st.Mode().IsRegular() ||
		strings.HasSuffix(arg, ".yaml") || strings.HasSuffix(arg, ".yml") {
		data, err := os.ReadFile(arg)
		if err != nil {
			return nil, err
		}
		f, err := mapping.ParseFile(arg, data)
		if err != nil {
			return nil, err
		}
		for _, w := range f.Warnings {
			fmt.Fprintln(errOut, "warning:", w)
		}
		if f.Inbound != nil {
			return f.Inbound, nil
		}
		return f.Outbound, nil
	}
	set, err := dryRunLoadSet(dir, errOut)
	if err != nil {
		return nil, err
	}
	if in, ok := set.Inbound[arg]; ok {
		return in, nil
	}
	if out, ok := set.Outbound[arg]; ok {
		return out, nil
	}
	var names []string
	for _, in := range set.Inbound {
		if dryRunFileStem(in.File) == arg {
			return in, nil
		}
		names = append(names, in.Message)
	}
	for _, out := range set.Outbound {
		if dryRunFileStem(out.File) == arg {
			return out, nil
		}
		names = append(names, out.Event)
	}
	slices.Sort(names)
	return nil, fmt.Errorf("no mapping %q in %s (messages and events: %s)", arg, dir, strings.Join(names, ", "))
}

func dryRunFileStem(name string) string {
	name = filepath.Base(name)
	return strings.TrimSuffix(strings.TrimSuffix(name, ".yaml"), ".yml")
}

// dryRunLoadSet loads dir; when dir is the default "mappings" and there is
// no such folder, it uses the built-in mappings and says so on errOut.
func dryRunLoadSet(dir string, errOut io.Writer) (*mapping.Set, error) {
	var set *mapping.Set
	var err error
	if _, statErr := os.Stat(dir); errors.Is(statErr, fs.ErrNotExist) && dir == "mappings" && builtinMappings != nil {
		fmt.Fprintln(errOut, "no ./mappings folder: using the built-in mappings (caddy gongbao mapping export DIR writes them out)")
		set, err = mapping.LoadFS(builtinMappings, "mappings")
	} else {
		set, err = mapping.LoadDir(dir)
	}
	if err != nil {
		return nil, err
	}
	for _, w := range set.Warnings {
		fmt.Fprintln(errOut, "warning:", w)
	}
	return set, nil
}

// dryRunVars are the runtime variables: the sidecar's (now in China
// Standard Time; insurance_code from configuration, here a placeholder),
// overridden by --var.
func dryRunVars(flags []string) (mapping.Vars, error) {
	vars := mapping.Vars{
		"now":            gateway.Timestamp(time.Now()),
		"insurance_code": dryRunInsuranceCodePlaceholder,
	}
	for _, f := range flags {
		name, value, ok := strings.Cut(f, "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("--var %q: want name=value", f)
		}
		vars[name] = value
	}
	return vars, nil
}

// dryRunResult is everything the dry run reports.
type dryRunResult struct {
	file      string // mapping file
	kind      string // "request", "reply" or "event"
	heading   string // what the mapping does, one line
	input     string // input file name
	root      string // root element printed around XML output
	bodyName  string // requestBody or responseBody
	rules     *mapping.Rules
	vars      mapping.Vars // the variables the rows read
	notes     []string     // extra header lines (requestUUID, keys)
	jsonOut   []byte       // request: the core JSON
	xmlOut    []protocol.Element
	lineage   []mapping.Lineage
	unmapped  []mapping.Unmapped // request input elements no row reads
	refusal   *dryRunRefusal
	piiPaths  map[string]mapping.PII // target path without [n] → pii kind
	maskedOut bool
}

// dryRunRefusal is how the sidecar would answer a refused input.
type dryRunRefusal struct {
	field   string
	message string // Chinese
	reply   string // the answer, as sent (XML body or JSON)
}

// dryRunTraceMapping picks the direction from the mapping and the input, and
// runs the traced executor.
func dryRunTraceMapping(m any, inputArg string, data []byte, vars mapping.Vars) (*dryRunResult, error) {
	isXML := dryRunInputIsXML(inputArg, data)
	r := &dryRunResult{input: filepath.Base(inputArg)}
	if inputArg == "-" {
		r.input = "standard input"
	}
	switch m := m.(type) {
	case *mapping.Inbound:
		r.file = filepath.Base(m.File) // the header names the file; load errors name its path
		if isXML {
			return r, r.traceRequest(m, data, vars)
		}
		r.traceReply(m, data, vars)
	case *mapping.Outbound:
		r.file = filepath.Base(m.File)
		if isXML {
			return nil, fmt.Errorf("%s maps core events (JSON) to callbacks; give it an event .json file", r.file)
		}
		r.traceEvent(m, data, vars)
	}
	return r, nil
}

// dryRunInputIsXML decides by extension, else by the first non-blank byte.
func dryRunInputIsXML(name string, data []byte) bool {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".xml":
		return true
	case ".json":
		return false
	}
	trimmed := bytes.TrimLeft(data, " \t\r\n\ufeff")
	return len(trimmed) > 0 && trimmed[0] == '<'
}

func (r *dryRunResult) traceRequest(m *mapping.Inbound, data []byte, vars mapping.Vars) error {
	r.kind, r.rules = "request", m.Request
	r.heading = fmt.Sprintf("inbound %s, request rows: platform XML → core JSON for %s %s", m.Message, m.Method, m.Path)
	r.root, r.bodyName = m.ReplyRoot, "responseBody"
	r.vars = dryRunUsedVars(m.Request, vars)
	env, err := protocol.Parse(data, protocol.Limits{})
	if err != nil {
		r.refuseInbound(err)
		return nil
	}
	if env.Root != m.Message {
		return fmt.Errorf("%s is a %s; %s maps %s", r.input, env.Root, r.file, m.Message)
	}
	r.notes = append(r.notes, "requestUUID "+dryRunOrNone(env.RequestUUID)+" (signature not checked)")
	out, lineage, err := m.Request.TraceXMLToJSON(env.Body, vars)
	r.jsonOut, r.lineage = out, lineage
	r.unmapped = m.Request.Unmapped(env.Body)
	switch {
	case env.RequestUUID == "":
		// The sidecar refuses this before mapping; the lineage still shows
		// what the mapping would make of the body.
		r.refuseInbound(gateway.ErrMissingRequestUUID)
	case err != nil:
		r.refuseInbound(err)
	}
	return nil
}

func (r *dryRunResult) traceReply(m *mapping.Inbound, data []byte, vars mapping.Vars) {
	r.kind, r.rules = "reply", m.Reply
	r.heading = fmt.Sprintf("inbound %s, reply rows: core JSON answer → %s body", m.Message, m.ReplyRoot)
	r.root, r.bodyName = m.ReplyRoot, "responseBody"
	r.vars = dryRunUsedVars(m.Reply, vars)
	els, lineage, err := m.Reply.TraceJSONToXML(data, vars)
	r.xmlOut, r.lineage = els, lineage
	if err != nil {
		// What exchangeWithCore makes of an answer it cannot translate.
		r.refuseInbound(gateway.CoreError{Kind: gateway.CoreInvalid, Cause: err})
	}
}

func (r *dryRunResult) traceEvent(m *mapping.Outbound, data []byte, vars mapping.Vars) {
	r.kind, r.rules = "event", m.Body
	r.heading = fmt.Sprintf("outbound %s, body rows: core event JSON → %s callback to the platform", m.Event, m.Callback)
	r.root, r.bodyName = m.Callback, "requestBody"
	r.vars = dryRunUsedVars(m.Body, vars)
	els, lineage, err := m.Body.TraceJSONToXML(data, vars)
	r.xmlOut, r.lineage = els, lineage
	var orderKey, eventID string
	if err == nil {
		orderKey, eventID, err = m.Keys(data)
	}
	if err != nil {
		ne := gateway.InvalidEvent(err)
		answer, _ := json.Marshal(eventRefusal(ne))
		r.refusal = &dryRunRefusal{field: ne.Field, message: ne.Message,
			reply: fmt.Sprintf("HTTP %d %s", ne.Status, answer)}
		return
	}
	if m.OrderKey != "" {
		r.notes = append(r.notes, "order key "+m.OrderKey+" = "+dryRunOrNone(orderKey)+" (callbacks of one key are delivered in order)")
	}
	if m.EventID != "" {
		r.notes = append(r.notes, "event id "+m.EventID+" = "+dryRunOrNone(eventID)+" (resends with this id are one callback)")
	}
}

// refuseInbound records the signed resultFlag=false reply the platform
// would get, worded by the engine (gateway.Classify) as the handler words it.
func (r *dryRunResult) refuseInbound(err error) {
	f := gateway.Classify(err)
	reply := protocol.BuildUnsignedResponse(r.root, "", gateway.RefusalBody(f))
	r.refusal = &dryRunRefusal{field: f.Field, message: f.Message, reply: dryRunIndentXML(reply)}
}

func dryRunOrNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// dryRunUsedVars keeps the variables the rules read, for the header.
func dryRunUsedVars(rules *mapping.Rules, vars mapping.Vars) mapping.Vars {
	used := mapping.Vars{}
	var walk func(*mapping.Rules)
	walk = func(rs *mapping.Rules) {
		for _, row := range rs.Rows() {
			if row.Var != "" {
				used[row.Var] = vars[row.Var]
			}
			if row.Fields != nil {
				walk(row.Fields)
			}
		}
	}
	walk(rules)
	return used
}

var dryRunItemIndex = regexp.MustCompile(`\[\d+\]`)

// mask masks the lineage and remembers which output paths carry personal
// data, so the printed output is masked alike.
func (r *dryRunResult) mask(on bool) {
	r.maskedOut = on
	if !on {
		return
	}
	r.piiPaths = map[string]mapping.PII{}
	for i, l := range r.lineage {
		if l.Row.PII != "" {
			r.piiPaths[dryRunItemIndex.ReplaceAllString(l.Target, "")] = l.Row.PII
			r.lineage[i] = l.Masked()
		}
	}
}

// writeText prints the human-readable report.
func (r *dryRunResult) writeText(w io.Writer, showPII bool) error {
	var b strings.Builder
	fmt.Fprintf(&b, "Mapping  %s (%s)\n", r.file, r.heading)
	fmt.Fprintf(&b, "Input    %s\n", r.input)
	for _, n := range r.notes {
		fmt.Fprintf(&b, "         %s\n", n)
	}
	if len(r.vars) > 0 {
		fmt.Fprintf(&b, "Vars     %s\n", r.varList())
	}
	b.WriteString("\n")
	r.writeOutput(&b)
	b.WriteString("\n")
	if showPII {
		b.WriteString("Lineage (personal data shown)\n")
	} else {
		b.WriteString("Lineage (personal data masked; --show-pii shows it)\n")
	}
	r.writeLineage(&b)
	r.writeUnmapped(&b)
	if r.refusal != nil {
		b.WriteString("\nErrors\n")
		if r.refusal.field != "" {
			fmt.Fprintf(&b, "  field    %s\n", r.refusal.field)
		}
		fmt.Fprintf(&b, "  message  %s\n", r.refusal.message)
		b.WriteString("  answer   " + r.refusedTo() + ":\n")
		for _, line := range strings.Split(strings.TrimRight(r.refusal.reply, "\n"), "\n") {
			b.WriteString("    " + line + "\n")
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// writeUnmapped lists the input elements no row reads and what the
// mapping does with each; nothing when every element is read.
func (r *dryRunResult) writeUnmapped(b *strings.Builder) {
	if len(r.unmapped) == 0 {
		return
	}
	b.WriteString("\nUnmapped (input elements no row reads: signed, never sent to the core)\n")
	tw := tabwriter.NewWriter(b, 0, 0, 2, ' ', 0)
	for _, u := range r.unmapped {
		fmt.Fprintf(tw, "  %s\t%s\n", u.Path, dryRunDisposition(u.How))
	}
	tw.Flush()
}

func dryRunDisposition(how mapping.Disposition) string {
	switch how {
	case mapping.IgnoredDeclared:
		return "ignored (ignore:)"
	case mapping.PassedUnknown:
		return "let through (unknown_elements: ignore)"
	}
	return "refused: unknown to the mapping (declare it under ignore: or map it)"
}

func (r *dryRunResult) varList() string {
	names := make([]string, 0, len(r.vars))
	for name := range r.vars {
		names = append(names, name)
	}
	slices.Sort(names)
	for i, name := range names {
		names[i] = name + "=" + r.vars[name]
	}
	return strings.Join(names, ", ")
}

func (r *dryRunResult) refusedTo() string {
	switch r.kind {
	case "event":
		return "the core's POST would be answered"
	case "reply":
		return "the platform would get, signed, instead of a reply built from this answer"
	}
	return "the platform would get, signed; the core is not called"
}

// writeOutput prints what the mapping produced.
func (r *dryRunResult) writeOutput(b *strings.Builder) {
	switch {
	case r.refusal != nil && r.jsonOut == nil && r.xmlOut == nil:
		b.WriteString("Output   none: the input is refused (see Errors)\n")
	case r.kind == "request":
		b.WriteString("Output   the JSON body the core would get")
		if r.refusal != nil {
			b.WriteString(" (but see Errors: the message is refused first)")
		}
		b.WriteString("\n")
		b.WriteString(r.prettyJSON())
		b.WriteString("\n")
	case r.kind == "reply":
		b.WriteString("Output   the reply body (requestUUID and sign are added when it is signed)\n")
		b.WriteString(r.outputXML())
	default:
		b.WriteString("Output   the callback body (requestUUID and sign are added when it is signed)\n")
		b.WriteString(r.outputXML())
	}
}

// writeLineage prints one line per row: source → rule → target → value.
// Rows after a failure are listed as not evaluated.
func (r *dryRunResult) writeLineage(b *strings.Builder) {
	tw := tabwriter.NewWriter(b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  SOURCE\tRULE\tTARGET\tVALUE")
	top := 0
	for _, l := range r.lineage {
		if l.Depth == 0 {
			top++
		}
		indent := strings.Repeat("  ", l.Depth+1)
		fmt.Fprintf(tw, "%s%s\t%s\t%s\t%s\n", indent, dryRunSourceCell(l), l.Row.Rule(), l.Target, r.valueCell(l))
	}
	rows := r.rules.Rows()
	for _, row := range rows[min(top, len(rows)):] {
		src, tgt := row.XML, row.JSON
		if r.kind != "request" {
			src, tgt = row.JSON, row.XML
		}
		if row.Var != "" {
			src = "var " + row.Var
		} else if src == "" {
			src = "const"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", src, row.Rule(), tgt, "(not evaluated)")
	}
	tw.Flush()
}

func dryRunSourceCell(l mapping.Lineage) string {
	switch {
	case l.Origin == mapping.OriginConst:
		return "const"
	case l.Row.Var != "":
		return "var " + l.Row.Var
	case l.Alias != "":
		return l.Source + " (alias)"
	}
	return l.Source
}

// valueCell shows the value written, where it came from when that is not
// plain, and the row's error.
func (r *dryRunResult) valueCell(l mapping.Lineage) string {
	if l.Err != nil {
		return "✗ " + l.Err.Message()
	}
	if l.Items > 0 { // a repeated row (its scalar items have Items 0)
		return fmt.Sprintf("%d item(s)", l.Items)
	}
	if !l.Written {
		return "(absent: left out)"
	}
	v, plain := dryRunQuote(dryRunShorten(l.Value)), l.Value
	if r.kind == "request" { // the value is a JSON fragment
		if s, ok := dryRunJSONString(l.Value); ok {
			v, plain = dryRunQuote(dryRunShorten(s)), s
		} else {
			v = dryRunShorten(l.Value)
		}
	}
	switch {
	case l.Origin == mapping.OriginDefault:
		v += " (default)"
	case l.Origin == mapping.OriginAbsent:
		v = "(absent: empty element)"
	case l.Input != "" && l.Input != plain && l.Origin != mapping.OriginConst:
		v += " ← " + dryRunQuote(dryRunShorten(l.Input))
	}
	return v
}

// dryRunQuote writes text as a JSON string, without escaping <, > and &.
func dryRunQuote(s string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)
	return strings.TrimSuffix(b.String(), "\n")
}

// dryRunJSONString decodes a JSON string fragment.
func dryRunJSONString(fragment string) (string, bool) {
	var s string
	err := json.Unmarshal([]byte(fragment), &s)
	return s, err == nil
}

// dryRunShorten keeps long values (ciphertext, clauses) readable in the table;
// the output above has them in full.
func dryRunShorten(s string) string {
	const max = 32
	n := utf8.RuneCountInString(s)
	if n <= max+8 {
		return s
	}
	return fmt.Sprintf("%s…(%d chars)", string([]rune(s)[:max]), n)
}

// dryRunJSON is the --json report.
type dryRunJSON struct {
	Mapping string            `json:"mapping"`
	Kind    string            `json:"kind"` // request, reply or event
	Input   string            `json:"input"`
	Vars    map[string]string `json:"vars,omitempty"`
	Notes   []string          `json:"notes,omitempty"`
	// Output is the core JSON (request) or the body XML (reply, event).
	Output  any             `json:"output,omitempty"`
	Lineage []dryRunLineage `json:"lineage"`
	// Unmapped are the input elements no row reads.
	Unmapped []dryRunUnmapped `json:"unmapped,omitempty"`
	Error    *dryRunJSONError `json:"error,omitempty"`
}

type dryRunUnmapped struct {
	XML string `json:"xml"`
	How string `json:"how"` // ignore, unknown_elements: ignore, refused
}

type dryRunLineage struct {
	Source string `json:"source,omitempty"`
	Alias  string `json:"alias,omitempty"`
	Var    string `json:"var,omitempty"`
	Rule   string `json:"rule"`
	Target string `json:"target"`
	Input  string `json:"input,omitempty"`
	Origin string `json:"origin"`
	Value  string `json:"value,omitempty"`
	Items  int    `json:"items,omitempty"`
	Depth  int    `json:"depth,omitempty"`
	Error  string `json:"error,omitempty"`
	Line   int    `json:"line"`
}

type dryRunJSONError struct {
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
	Answer  string `json:"answer"`
}

func (r *dryRunResult) writeJSON(w io.Writer) error {
	rep := dryRunJSON{Mapping: r.file, Kind: r.kind, Input: r.input, Vars: r.vars, Notes: r.notes,
		Lineage: []dryRunLineage{}}
	switch {
	case r.jsonOut != nil:
		rep.Output = json.RawMessage(r.prettyJSON())
	case r.xmlOut != nil:
		rep.Output = r.outputXML()
	}
	for _, l := range r.lineage {
		e := dryRunLineage{Source: l.Source, Alias: l.Alias, Var: l.Row.Var, Rule: l.Row.Rule(), Target: l.Target,
			Input: l.Input, Origin: string(l.Origin), Value: l.Value, Items: l.Items, Depth: l.Depth, Line: l.Row.Line}
		if l.Err != nil {
			e.Error = l.Err.Message()
		}
		rep.Lineage = append(rep.Lineage, e)
	}
	for _, u := range r.unmapped {
		rep.Unmapped = append(rep.Unmapped, dryRunUnmapped{XML: u.Path, How: string(u.How)})
	}
	if r.refusal != nil {
		rep.Error = &dryRunJSONError{Field: r.refusal.field, Message: r.refusal.message, Answer: r.refusal.reply}
	}
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}
