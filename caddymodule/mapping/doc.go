// Package mapping loads the declarative mapping files (mappings/*.yaml) and
// translates with them: platform XML → core JSON for requests, core JSON →
// platform XML for replies and callbacks. It knows nothing of Caddy or of the
// business; every rule is in the files.
//
// # Files
//
// One YAML file per message. An inbound file (platform → core) has
//
//	message: insureRequest     # request root: the dispatch key
//	reply: insureResponse      # reply root
//	core: {method: POST, path: /v1/proposals}
//	timezone: Asia/Shanghai    # optional, default +08:00 (for datetime rows)
//	request: [rows]            # XML (paths under requestBody) → JSON
//	reply: [rows]              # JSON → reply XML; row order = element order
//
// (reply: appears twice, once as a name and once as a list.) An outbound
// file (core event → platform callback) has event: (lower-case words joined
// by -, the route /events/<name>), callback: (request root), reply:
// (platform reply root), optional order_key: and event_id: (JSON paths) and
// body: [rows] (JSON → XML).
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
//   - max_length: characters (runes), not bytes. Type string only.
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
// # Types
//
//   - string: passed through byte for byte (ciphertext, leading zeros,
//     trailing X). On the JSON side numbers and booleans are accepted as
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
//     Patterns carry no offset: they are read and written in timezone: (row,
//     else file, else +08:00). Fields are fixed width and dates are checked
//     (no 2019-02-30).
//   - enum: values: {"1": electronic, "2": paper} maps XML codes to JSON
//     values; a JSON value keeps its YAML kind ({"1": true} gives a JSON
//     boolean). Unknown values are refused listing the allowed ones. Rows
//     producing XML need a one-to-one map.
//
// Surrounding whitespace is trimmed for every type except string.
//
// # Errors
//
// Load errors read "file:line: what is wrong" (*LoadError, wrapping
// ErrInvalidMapping); all problems are reported. Execution returns the first
// failing row in row order as *FieldError: Path names the XML path (1-based
// [n] in repeats) or, for JSON input, the JSON path (0-based [n]); Message()
// is the Chinese text for resultMessage ("缺少必填字段 applicantInfo/name",
// "核心系统应答缺少字段 accepted"). A path segment that occurs twice in the
// XML is refused (ReasonDuplicate); unknown elements are ignored.
//
// # Output
//
// XMLToJSON writes compact JSON with members in row order, <, > and &
// unescaped; it allocates little beyond the result (pooled scratch). JSONToXML
// returns protocol.Element trees for protocol.BuildResponse/BuildRequest.
package mapping
