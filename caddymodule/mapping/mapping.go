package mapping

import (
	"errors"
	"regexp"
	"strings"
	"time"

	"github.com/caddy-gongbao/gongbao/internal/pii"
)

// Sentinel errors. Load errors wrap ErrInvalidMapping; executor errors other
// than *FieldError wrap one of the others.
var (
	// ErrInvalidMapping is wrapped by every *LoadError.
	ErrInvalidMapping = errors.New("invalid mapping")
	// ErrNoMappings means a mapping folder holds no *.yaml or *.yml file.
	ErrNoMappings = errors.New("no mapping files")
	// ErrInvalidJSON means the core sent something that is not one JSON object.
	ErrInvalidJSON = errors.New("invalid JSON from core")
	// ErrWrongDirection means XMLToJSON was called on reply/body rules or
	// JSONToXML on request rules.
	ErrWrongDirection = errors.New("mapping rules run in the other direction")
)

// Type is the declared type of a row's value.
type Type string

// The row types. Identifiers stay TypeString so leading zeros and a trailing
// X survive; money is TypeDecimal and never passes through float64.
const (
	TypeString   Type = "string"
	TypeDecimal  Type = "decimal"
	TypeInteger  Type = "integer"
	TypeBoolean  Type = "boolean"
	TypeDatetime Type = "datetime"
	TypeEnum     Type = "enum"
)

// Vars are runtime variables a row can read with `var:` (the caller provides
// e.g. "now" and "insurance_code"). A missing or empty variable is absent.
type Vars map[string]string

// Set is every mapping of a folder, keyed for dispatch.
type Set struct {
	Inbound  map[string]*Inbound  // by request root, e.g. "insureRequest"
	Outbound map[string]*Outbound // by event name, e.g. "policy-paid"
	// Warnings are the files' non-fatal problems (deprecated forms), each
	// located by file and line.
	Warnings []*LoadError
}

// Inbound maps one platform request to a core call and the core's answer
// back to the platform reply.
type Inbound struct {
	File      string // file name the mapping came from (for messages)
	Message   string // request root element, the dispatch key
	ReplyRoot string // reply root element, e.g. "insureResponse"
	Method    string // HTTP method of the core call
	Path      string // HTTP path of the core call
	Request   *Rules // request body XML → core JSON
	Reply     *Rules // core JSON → reply body elements

	line int // line of `message:` for duplicate reports
}

// Outbound maps one core event to a platform callback.
type Outbound struct {
	File      string // file name the mapping came from
	Event     string // event name (route /events/<name>)
	Callback  string // callback request root, e.g. "queryPolicyRequest"
	ReplyRoot string // platform reply root, e.g. "queryPolicyResponse"
	Body      *Rules // event JSON → callback body elements
	OrderKey  string // JSON path of the per-policy ordering key ("" if none)
	EventID   string // JSON path of the event's own id ("" if none)

	line     int
	orderSeg []string
	idSeg    []string
}

// direction says which executor a Rules value serves.
type direction uint8

const (
	xmlToJSON direction = iota + 1 // request rows
	jsonToXML                      // reply and body rows
)

// Rules is one compiled list of rows. It is immutable after loading and safe
// for concurrent use.
type Rules struct {
	dir    direction
	origin string // who wrote the JSON side, for Chinese messages ("核心系统应答")
	rows   []*Row
	// tree is the output layout: JSON members (xml→json) or elements
	// (json→xml), in first-appearance order with shared prefixes grouped.
	tree []*outNode
	// shape is the element structure a request body must have (top-level
	// request rules only; see shape.go).
	shape *shape
}

// Rows returns the compiled rows in file order (for dry-run output, lineage
// and masking). The rows must not be modified.
func (r *Rules) Rows() []*Row {
	if r == nil {
		return nil
	}
	return r.rows
}

// PersonalData notes, in xmlNames and jsonKeys, the last element name and
// the last JSON key of every row tagged pii: (sub-rows of repeated items
// included), with its kind, for masking whole bodies (pii.BodyMasker).
func (r *Rules) PersonalData(xmlNames, jsonKeys map[string]PII) {
	for _, row := range r.Rows() {
		if row.PII != "" {
			if row.XML != "" {
				pii.Merge(xmlNames, lastPathSegment(row.XML, '/'), row.PII)
			}
			if row.JSON != "" {
				pii.Merge(jsonKeys, lastPathSegment(row.JSON, '.'), row.PII)
			}
		}
		if row.Fields != nil {
			row.Fields.PersonalData(xmlNames, jsonKeys)
		}
	}
}

func lastPathSegment(p string, sep byte) string {
	return p[strings.LastIndexByte(p, sep)+1:]
}

// Row is one compiled mapping row. The exported fields describe it; the rest
// is the precompiled form the executors use.
type Row struct {
	Line     int    // line of the row in its file
	XML      string // element path as written ("" when the row has no XML side)
	JSON     string // JSON path as written ("" when the row has no JSON side)
	Var      string // runtime variable read instead of the source ("" if none)
	Type     Type   // "" for a repeated row with fields
	Required bool
	PII      PII    // kind of personal data ("" if none)
	Min, Max int    // repeat: bounds on the item count (Max 0: not repeated)
	Fields   *Rules // sub-rows of each repeated item (nil: scalar items)

	dir       direction
	src       []string // source path segments (xml or json side)
	tgt       []string // target path segments (json or xml side)
	aliases   []string // alternative spellings of the last source segment
	srcPath   string   // source path as reported in errors
	maxLength int      // runes; 0 = unlimited
	scale     int      // -1 = unlimited
	precision int      // 0 = unlimited
	asString  bool     // json_as: string
	enum      *enumMap
	pattern   *regexp.Regexp // anchored; nil = any
	xmlFmt    *dtLayout      // canonical xml_format (the first): what rows producing XML write
	xmlAlts   []*dtLayout    // further accepted xml_format entries (input only)
	jsonFmt   *dtLayout
	zone      *time.Location
	omitEmpty bool
	noTrim    bool // trim: false — keep white space around the value
	noEmpty   bool // allow_empty: false — an element present but blank is refused

	// required_if: the row is required when the row at reqIf (index in the
	// same Rules) produced one of reqVals, or (reqPresence) when it
	// produced a value (reqPresent) or none (!reqPresent).
	reqIf       int
	reqIfPath   string
	reqVals     []string
	reqPresence bool
	reqPresent  bool

	hasConst   bool
	constOut   string // const already converted to the target form
	hasDefault bool
	defaultOut string // default already converted to the target form
}

func (r *Row) repeated() bool { return r.Max > 0 }

// Aliases returns the other accepted spellings of the last source path
// segment (nil if none). The slice must not be modified.
func (r *Row) Aliases() []string { return r.aliases }

// outNode is one member of an output JSON object or one output element.
type outNode struct {
	name string
	key  []byte // JSON only: `"name":`, escaped once at load
	row  int    // index of the row producing the value; -1 for an object/container
	kids []*outNode
	line int
}
