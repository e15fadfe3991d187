// Package mapping loads the declarative mapping files (mappings/*.yaml) and
// translates with them: platform XML → core JSON for requests, core JSON →
// platform XML for replies and callbacks. It knows nothing of Caddy or of the
// business; every rule is in the files. It must not import Caddy, the store
// or the delivery engine; of this project it imports only protocol (the
// element trees it builds) and internal/pii (the masking policy).
//
// # Files
//
// One YAML file per message. An inbound file (platform → core) has
//
//	message: insureRequest     # request root: the dispatch key
//	reply_root: insureResponse # reply root
//	core: {method: POST, path: /v1/proposals}
//	timezone: Asia/Shanghai    # optional, default +08:00 (for datetime rows)
//	ignore: [ProjectType, dateInfo/startDate]  # optional: extra elements, signed, never sent
//	unknown_elements: refuse   # optional: refuse (default) or ignore
//	request: [rows]            # XML (paths under requestBody) → JSON
//	reply: [rows]              # JSON → reply XML; row order = element order
//
// The old form, reply: twice (the root as a name, then the rows), is still
// read with a deprecation warning (File.Warnings, Set.Warnings): YAML
// forbids a key twice. An outbound file (core event → platform callback)
// has event: (lower-case words joined by -, the route /events/<name>),
// callback: (request root), reply_root: (platform reply root), optional
// order_key: and event_id: (JSON paths) and body: [rows] (JSON → XML).
//
// # Rows
//
//	request:
//	  - xml: policyInfo/sumPremium  # element path, '/'-separated, under the body
//	    json: policy.sumPremium     # JSON path, '.'-separated; objects created as needed
//	    type: decimal               # string | decimal | integer | boolean | datetime | enum
//	    required: true
//
// A row has one target (json: for request rows, xml: for reply/body rows)
// and exactly one source: the path of the other side, const: (a fixed value)
// or var: (a runtime variable the caller passes, e.g. now, insurance_code).
// const:, default: and var: values stand in for the source value and pass the
// same checks and conversions; const: and default: are converted once, at
// load.
//
// Keys:
//   - required: an absent value is refused. Absent means: element missing,
//     empty or whitespace-only (<x/>), JSON member missing, null or a blank
//     string.
//   - default: the value used when the source is absent ("" makes a JSON
//     string member or an empty element appear). Not with required.
//   - aliases: [polycyno] other spellings of the last source segment. If
//     several are present the canonical spelling wins, then aliases in order.
//   - required_if: {xml: resultFlag, equals: true} (rows producing XML
//     only): the row is required when the named row of the same list
//     produced one of the values (equals: a value or a list; compared with
//     the element text, e.g. true for a boolean, the code for an enum).
//     Breaking it is a FieldError (ReasonMissing) naming the field and the
//     condition: a reply is then untranslatable, an event refused.
//   - max_length: characters (runes), not bytes, of the value as sent
//     (after trimming). Type string only.
//   - trim: false (type string) keeps white space around the value; by
//     default it is trimmed.
//   - pii: name | mobile | id | bank | email | address. Values of such rows are
//     never quoted in messages; PII.Mask masks them for logs.
//   - omit_empty: true (XML output only) leaves an absent element out; by
//     default an absent value gives an empty element. Absent values are
//     always left out of JSON output, and objects or elements all of whose
//     members are left out are left out too.
//   - repeat: {min: 0, max: 20} a repeated element ↔ a JSON array; max is
//     required. xml: items/item means <items> holding <item>…; with fields:
//     [rows] each item is an object whose rows use paths relative to the item,
//     without fields: each item is a scalar of the row's type. Empty items
//     and JSON nulls are skipped and not counted; no items means absent.
//
// Rows whose targets share a prefix (correctInfo/dateInfo/stratDate,
// correctInfo/dateInfo/endDate) produce one parent, placed where its first
// row is. Two rows with the same target are a load error.
//
// # Structure of a request body
//
// The signature covers the concatenated text of the body, not its markup
// (DESIGN §1.2), so a genuine signed message can be rearranged without
// breaking it: a value split by a child element, text moved into an
// element no row reads or left loose in a container. XMLToJSON therefore
// also checks the body against the structure the file declares, compiled
// at load, and refuses:
//   - an element the file does not know (ReasonUnknown, "未知字段: X 下含有
//     本接口未定义的元素"; Path and the message name the known parent X,
//     "requestBody" for the body; the element's own name, which the sender
//     chose, is only in FieldError.Element and Error(), never in the signed
//     reply);
//   - a value element (a row with a type) holding elements (ReasonNested);
//   - non-blank text directly inside a container: the body, a wrapper such
//     as correctInfo/dateInfo, a repeated item with fields: (ReasonLooseText);
//   - a field given twice, also under two spellings (canonical and alias;
//     ReasonDuplicate). Repeated items may occur many times, in one spelling.
//
// Names are case-sensitive; an alias counts as known; a prefixed element
// (p:name) is never known. Comments and processing instructions are
// allowed anywhere (they are neither signed nor read). Elements the file
// does not map but real traffic carries are listed under ignore:, as
// paths under the body; each is a value whose text is signed and never
// sent to the core, and its containers, if not mapped, hold only what
// ignore: lists. unknown_elements: ignore lets every unknown element
// through instead (their text is still signed, never sent).
// XMLToJSONUnmapped also returns the paths of the elements no row read
// that the file let through (at most MaxUnmapped; nil, without allocating,
// when none), for the journal and a counter; Rules.Unmapped lists them all,
// refused ones included, for the dry run. Optional rows whose path is a
// near spelling of an ignore: entry (or of another row but for letter case)
// are load warnings; Inbound.CheckSamples looks for near spellings in
// sample messages (mapping check).
// An ignore: entry may also be {xml: path, pattern: regexp}: the element's
// whole text, empty included, must then match. Give one where the shape is
// known: no row reads an ignored element, so without one text can move
// into or out of it unnoticed.
//
// # Types
//
//   - string: passed through byte for byte (ciphertext, leading zeros,
//     trailing X) once trimmed of surrounding XML white space (trim: false
//     keeps it). On the JSON side numbers and booleans are accepted as
//     their literal text.
//   - decimal: -?digits(.digits)? only (no exponent, plus sign, ".5" or
//     spaces inside). scale: N refuses more than N fraction digits (never
//     rounds) and pads output to exactly N: 20.00 stays 20.00, 20.5 becomes
//     20.50. precision: P bounds the total digits (decimal(10,2) allows 8
//     integer digits). JSON output is the literal digits, as a number
//     (json_as: number, default) or a string (json_as: string). JSON input may
//     be a number (exponents such as 1e3 are expanded exactly) or a string.
//     Values never pass through float64.
//   - integer: -?digits within int64; json_as as for decimal.
//   - boolean: true or false, any letter case; output true/false. "1"/"0"
//     are not booleans: map such codes with an enum.
//   - datetime: xml_format: (required) and json_format: (default RFC3339) are
//     Java-style patterns of yyyy MM dd HH mm ss SSS with any other
//     non-letter characters and 'quoted' text literal ("yyyy-MM-dd HH:mm:ss",
//     "yyyyMMdd", "yyyy-MM-dd HH:mm:ss:SSS"), or the keyword RFC3339.
//     xml_format: may be a list: every entry is accepted on input, the
//     first is the canonical one written on output.
//     Patterns carry no offset: they are read and written in timezone: (row,
//     else file, else +08:00). Fields are fixed width and dates are checked
//     (no 2019-02-30).
//   - enum: values: {"1": electronic, "2": paper} maps XML codes to JSON
//     values; a JSON value keeps its YAML kind ({"1": true} gives a JSON
//     boolean). Unknown values are refused listing the allowed ones. Rows
//     producing XML need a one-to-one map.
//
// Surrounding XML white space (space, tab, CR, LF) is trimmed from every
// value before it is checked and sent (strings keep it with trim: false).
// The signature is not affected: it is computed over the text as parsed.
//
// pattern: (types string, decimal, integer, datetime) is a regular
// expression (RE2) the whole value must match, anchored whether or not it
// is written with ^ and $, compiled at load. It is matched after the
// type's own checks: on request rows against the trimmed text (a string
// exactly as sent to the core, other types before canonical formatting, so "(0|[1-9][0-9]*)[.][0-9]{2}" refuses 20.0 and 020.00 that
// the decimal type would write as 20.00); on reply and body rows against
// the element text produced. A mismatch is ReasonPattern, "字段 X 格式不正确",
// which never quotes the value. Shapes fixed by the spec (mobile numbers,
// credit codes, money) make text shifted across a field boundary of a
// signed message fail.
//
// # Errors
//
// Load errors read "file:line: what is wrong" (*LoadError, wrapping
// ErrInvalidMapping); all problems are reported. Execution returns the first
// failing row in row order as *FieldError: Path names the XML path (1-based
// [n] in repeats) or, for JSON input, the JSON path (0-based [n]); Message()
// is the Chinese text for resultMessage ("缺少必填字段 applicantInfo/name",
// "核心系统应答缺少字段 accepted"). A path segment that occurs twice in the
// XML is refused (ReasonDuplicate). When every row passes, the body's
// structure is checked (see above).
//
// # Output
//
// XMLToJSON writes compact JSON with members in row order, <, > and &
// unescaped; it allocates little beyond the result (pooled scratch). JSONToXML
// returns protocol.Element trees for protocol.BuildResponse/BuildRequest.
package mapping
