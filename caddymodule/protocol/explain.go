package protocol

import (
	"bytes"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"slices"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/encoding/simplifiedchinese"
)

// Cause is a stable code saying why a sign does (or does not) verify. The
// codes are part of the command-line output and may be matched by scripts:
// never rename one.
type Cause string

// Causes reported by Explain.
const (
	CauseValid          Cause = "valid"           // verifies as the protocol says
	CauseValidLowercase Cause = "valid_lowercase" // verifies; hex written in lower (or mixed) case, accepted
	CauseUnparsable     Cause = "unparsable"      // not a protocol message: nothing to check
	CauseNoKey          Cause = "no_key"          // no usable key configured: nothing to check against
	CauseNoSign         Cause = "no_sign"         // the head has no sign, or an empty one
	CauseMalformedSign  Cause = "malformed_sign"  // the sign is not 32 hex characters
	CauseSignEncoding   Cause = "sign_encoding"   // right digest, base64 instead of hex
	CauseWrongHash      Cause = "wrong_hash"      // SHA-1 or SHA-256 instead of MD5
	CauseUnkeyed        Cause = "unkeyed"         // MD5 of the values alone, no key
	CauseKeyPlacement   Cause = "key_placement"   // key before the values, or joined with a separator
	CauseKeyVariant     Cause = "key_variant"     // a near-miss of a configured key (glyphs, white space, case)
	CauseValuesTrimmed  Cause = "values_trimmed"  // values trimmed before hashing
	CauseWhitespace     Cause = "whitespace_included"
	CauseLineEndings    Cause = "line_endings"   // LF hashed as CR LF
	CauseUndecodedText  Cause = "undecoded_text" // entity references or CDATA markup hashed
	CauseEmptyAsNull    Cause = "empty_as_null"  // empty elements hashed as "null"
	CauseHeadHashed     Cause = "head_hashed"    // requestUUID hashed with the values
	CauseMarkupHashed   Cause = "markup_hashed"  // serialised XML (tags) hashed instead of the values
	CauseFieldOrder     Cause = "field_order"    // values hashed in another order
	CauseFieldMissing   Cause = "field_missing"  // one or two elements left out of the hash
	CauseSeparator      Cause = "separator"      // values joined with a separator or as name=value pairs
	CauseTextEncoding   Cause = "text_encoding"  // values encoded as GBK/GB18030, not UTF-8
	CauseMismatch       Cause = "mismatch"       // nothing reproduces it: another key, or the body changed
)

// Diagnosis says why a message's sign verifies or not. It never holds a
// key or anything derived from one: key near-misses are described by kind
// only ("a trailing line feed"), never spelled out.
type Diagnosis struct {
	Cause Cause
	// Variant refines Cause with a stable sub-code, e.g. "alphabetical"
	// for field_order or "glyph_confusion" for key_variant; "" when none.
	Variant string
	// Element names what field_missing left out: the path under the body,
	// e.g. "applicantInfo/ProjectType"; two paths are joined by ", ".
	Element string
	// KeyIndex is the index in the configured keys of the key that
	// verifies, or the one the sender's mistake was applied to; -1 when
	// none is involved.
	KeyIndex int
	// Root and RequestUUID identify the message ("" if it did not parse).
	Root, RequestUUID string
	// English and Chinese are the explanation, one paragraph each.
	English, Chinese string
	// Tried counts the candidate signatures computed.
	Tried int
	// Incomplete is set when the search stopped at its budget before
	// trying every candidate (only for very large messages).
	Incomplete bool
}

// Verified reports whether the sign verifies under the protocol's rule.
func (d Diagnosis) Verified() bool {
	return d.Cause == CauseValid || d.Cause == CauseValidLowercase
}

// Usable reports whether there was something to check: false when the
// message does not parse or no key is configured.
func (d Diagnosis) Usable() bool {
	return d.Cause != CauseUnparsable && d.Cause != CauseNoKey
}

// explainBudget bounds the bytes Explain hashes (well under a second of
// MD5), so a large message cannot make a diagnosis slow. A variable so
// tests can reach the limit.
var explainBudget = 64 << 20

// Explain checks data's sign against keys (any of them may verify, as in
// VerifyAny) and, when it does not verify, searches for the sender's
// mistake by recomputing the sign the ways peers are known to get it wrong
// (DESIGN §1.2–1.4): a near-miss of a configured key, the key misplaced,
// values trimmed or white space included, another order, an element left
// out, markup or undecoded text hashed, a separator, another encoding or
// digest. Each is tried with every configured key; the first that
// reproduces the sign is reported. The search is bounded: fixed variants,
// one element left out at a time (O(n) digests), pairs of elements only
// for small bodies, and a byte budget overall.
func Explain(data []byte, keys []string) Diagnosis {
	d := Diagnosis{KeyIndex: -1}
	if !slices.ContainsFunc(keys, func(k string) bool { return k != "" }) {
		d.Cause = CauseNoKey
		d.English = "No usable verification key is configured (no key, or only empty ones), so there is nothing to check the sign against."
		d.Chinese = "未配置可用的验签密钥（没有密钥或密钥为空），无法校验签名。"
		return d
	}
	env, err := Parse(data, Limits{})
	if err != nil {
		d.Cause = CauseUnparsable
		d.English = "The input is not a protocol message, so its sign cannot be checked: " + err.Error() + "."
		d.Chinese = "输入不是合法的协议报文，无法校验签名：" + chineseMessage(err) + "。"
		return d
	}
	d.Root, d.RequestUUID = env.Root, env.RequestUUID
	v := env.SignedValue()
	if env.Sign == "" {
		d.Cause = CauseNoSign
		d.English = "The sign does not verify: the head has no sign (or an empty one). Every message must carry sign = upper-case hex MD5(body values + key)."
		d.Chinese = "验签失败：报文头缺少 sign 或其内容为空。每条报文都必须携带 sign = 大写十六进制 MD5(报文体各字段值 + 密钥)。"
		return d
	}
	if i, ok := VerifyAny(v, env.Sign, keys); ok {
		return verified(d, env.Sign, i, len(keys))
	}
	x := &explainer{env: env, data: bytes.TrimPrefix(data, utf8BOM), v: v, keys: keys}
	return x.failure(d)
}

func chineseMessage(err error) string {
	var pe *Error
	if errors.As(err, &pe) {
		return pe.Message()
	}
	return "报文无法解析"
}

func verified(d Diagnosis, sign string, key, nkeys int) Diagnosis {
	d.KeyIndex = key
	en, zh := keyName(key, nkeys)
	if strings.ToUpper(sign) == sign {
		d.Cause = CauseValid
		d.English = "The sign verifies with " + en + "."
		d.Chinese = "验签通过（" + zh + "）。"
		return d
	}
	d.Cause = CauseValidLowercase
	d.English = "The sign verifies with " + en + ". It is written in lower-case (or mixed-case) hex; the protocol's form is upper-case, and lower case is accepted because peers send it."
	d.Chinese = "验签通过（" + zh + "）。签名为小写（或大小写混合）的十六进制；协议规定为大写，因对方常发送小写，予以接受。"
	return d
}

// keyName names a configured key without revealing anything about it.
func keyName(i, n int) (en, zh string) {
	if n == 1 {
		return "the configured key", "所配置的密钥"
	}
	return fmt.Sprintf("configured key %d of %d", i+1, n), fmt.Sprintf("所配置的第 %d 个密钥（共 %d 个）", i+1, n)
}

// finding is a sender mistake that reproduces the sign.
type finding struct {
	cause   Cause
	variant string
	element string
	key     int
	en, zh  string // what the sender does, as a clause
}

// explainer holds one diagnosis in progress.
type explainer struct {
	env  *Envelope
	data []byte // the message, without a byte-order mark (as Parse read it)
	v    []byte // V as the protocol defines it
	keys []string
	s    searcher
	f    *flat // the body flattened, built on first use
}

// failure diagnoses a sign that does not verify.
func (x *explainer) failure(d Diagnosis) Diagnosis {
	digest, kind := decodeSign(x.env.Sign)
	x.s = searcher{newHash: md5.New, target: digest, keys: x.keys, budget: explainBudget}
	var f *finding
	switch kind {
	case signHexMD5:
		f = x.search()
	case signBase64MD5:
		if i := x.s.anyKey(x.v, keyForm{}); i >= 0 {
			f = &finding{cause: CauseSignEncoding, variant: "base64", key: i,
				en: "the sender encodes the right MD5 digest in base64 instead of 32 upper-case hex characters",
				zh: "对方算出的 MD5 摘要正确，但用 Base64 编码，而不是 32 位大写十六进制"}
		} else if f = x.search(); f != nil {
			f.en += " (and it encodes the digest in base64 instead of hex)"
			f.zh += "（并且摘要用 Base64 编码，而不是十六进制）"
		}
	case signHexSHA1, signHexSHA256:
		if f = x.wrongHash(kind); f == nil {
			return malformedSign(d, x.env.Sign)
		}
	default:
		return malformedSign(d, x.env.Sign)
	}
	d.Tried, d.Incomplete = x.s.tried, x.s.exhausted
	if f == nil {
		return mismatch(d, kind)
	}
	d.Cause, d.Variant, d.Element, d.KeyIndex = f.cause, f.variant, f.element, f.key
	d.English, d.Chinese = describe(f, len(x.keys))
	return d
}

// describe words a finding: the mistake, how it was confirmed, what to do.
func describe(f *finding, nkeys int) (en, zh string) {
	var how, howZH string
	switch ken, kzh := keyName(max(f.key, 0), nkeys); {
	case f.key < 0:
		how, howZH = "computed that way, it reproduces the sign", "按此方式计算，可以得到报文中的签名"
	case f.cause == CauseKeyVariant:
		how, howZH = "hashing with that spelling instead of "+ken+" reproduces the sign", "用这种写法代替"+kzh+"计算，可以得到报文中的签名"
	default:
		how, howZH = "computed that way with "+ken+", it reproduces the sign", "按此方式并使用"+kzh+"计算，可以得到报文中的签名"
	}
	aen, azh := advice(f.cause)
	return "The sign does not verify. Likely cause: " + f.en + " — " + how + ". " + aen,
		"验签失败。可能的原因：" + f.zh + "——" + howZH + "。" + azh
}

func advice(c Cause) (en, zh string) {
	switch c {
	case CauseKeyVariant:
		return "Make the keys byte-for-byte identical on both sides (the key is not shown here).",
			"请使双方的密钥逐字节一致（此处不显示密钥）。"
	case CauseUnkeyed:
		return "Such a sign proves nothing (anyone can compute it); the sender must append the shared key.",
			"这样的签名不能证明任何事（任何人都能算出）；对方必须拼接双方约定的密钥。"
	case CauseSignEncoding, CauseWrongHash:
		return "The protocol's sign is the MD5 digest written as 32 upper-case hex characters.",
			"协议的签名是 MD5 摘要，写成 32 位大写十六进制字符。"
	}
	return "The protocol hashes the decoded value of every element under the body, in document order, with no separator, followed directly by the key; the sender should fix its signing.",
		"协议要求：报文体下每个元素解码后的值按文档顺序直接拼接（无分隔符），其后直接拼接密钥，再计算 MD5；请对方修正签名算法。"
}

func mismatch(d Diagnosis, kind signKind) Diagnosis {
	d.Cause = CauseMismatch
	d.English = fmt.Sprintf("The sign does not verify: no configured key reproduces it, and none of the %d variants tried (known sender mistakes and near-misses of the configured keys) does either. Either the sender signs with a key that is not configured here (ask which key it uses; after a key rotation, add the new key), or the body was changed after signing; which of the two cannot be told from the message.", d.Tried)
	d.Chinese = fmt.Sprintf("验签失败：所配置的密钥均无法验证该签名，已尝试的 %d 种变体（常见的签名错误及所配置密钥的近似写法）也都无法复现。可能是对方使用了此处未配置的密钥（请向对方确认所用密钥；如刚轮换密钥，请加入新密钥），也可能是报文体在签名后被改动；仅凭报文无法判断是哪一种。", d.Tried)
	if kind == signBase64MD5 {
		d.English += " The sign is also base64-encoded; the protocol's form is 32 upper-case hex characters."
		d.Chinese += "另外，签名采用了 Base64 编码；协议规定为 32 位大写十六进制字符。"
	}
	if d.Incomplete {
		d.English += " (The search stopped at its limit before trying every variant.)"
		d.Chinese += "（搜索达到上限，未尝试全部变体。）"
	}
	return d
}

// signKind is what the sign looks like.
type signKind int

const (
	signInvalid signKind = iota
	signHexMD5
	signBase64MD5
	signHexSHA1
	signHexSHA256
)

// decodeSign returns the digest a sign carries and its form.
func decodeSign(sign string) ([]byte, signKind) {
	if b, err := hex.DecodeString(sign); err == nil {
		switch len(b) {
		case md5.Size:
			return b, signHexMD5
		case sha1.Size:
			return b, signHexSHA1
		case sha256.Size:
			return b, signHexSHA256
		}
		return nil, signInvalid
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(sign); err == nil && len(b) == md5.Size {
			return b, signBase64MD5
		}
	}
	return nil, signInvalid
}

func malformedSign(d Diagnosis, sign string) Diagnosis {
	d.Cause = CauseMalformedSign
	var en, zh string
	n := utf8.RuneCountInString(sign)
	_, kind := decodeSign(sign)
	switch {
	case kind == signHexSHA1 || kind == signHexSHA256:
		name := map[signKind]string{signHexSHA1: "SHA-1", signHexSHA256: "SHA-256"}[kind]
		en = fmt.Sprintf("it has %d hex characters, the length of a %s digest, but %s over the body values and a configured key does not reproduce it either", n, name, name)
		zh = fmt.Sprintf("它是 %d 位十六进制，长度与 %s 摘要相同，但用所配置的密钥对报文体各字段值计算 %s 也无法复现", n, name, name)
	case n != 32:
		en, zh = fmt.Sprintf("it has %d characters", n), fmt.Sprintf("长度为 %d 个字符", n)
	default:
		for i, r := range []rune(sign) {
			if !strings.ContainsRune("0123456789abcdefABCDEF", r) {
				en, zh = fmt.Sprintf("character %d, %q, is not a hex digit", i+1, r), fmt.Sprintf("第 %d 个字符 %q 不是十六进制数字", i+1, r)
				break
			}
		}
	}
	d.English = "The sign does not verify: it is not 32 hex characters (" + en + "). The protocol's sign is the MD5 digest written as 32 upper-case hex characters."
	d.Chinese = "验签失败：sign 不是 32 位十六进制字符（" + zh + "）。协议的签名是 MD5 摘要，写成 32 位大写十六进制字符。"
	return d
}

// wrongHash checks a 40- or 64-hex-character sign against SHA-1/SHA-256.
func (x *explainer) wrongHash(kind signKind) *finding {
	name := "SHA-1"
	x.s.newHash = sha1.New
	if kind == signHexSHA256 {
		name, x.s.newHash = "SHA-256", sha256.New
	}
	for _, form := range []keyForm{{}, {first: true}} {
		if i := x.s.anyKey(x.v, form); i >= 0 {
			return &finding{cause: CauseWrongHash, variant: strings.ToLower(strings.ReplaceAll(name, "-", "")), key: i,
				en: "the sender computes " + name + " instead of MD5",
				zh: "对方使用 " + name + " 而不是 MD5 计算签名"}
		}
	}
	return nil
}

// search runs the stages, cheapest and likeliest first, and returns the
// first mistake that reproduces the sign.
func (x *explainer) search() *finding {
	stages := []func() *finding{
		x.keyPlacement, x.bodyVariants, x.orders, x.separators,
		x.textEncoding, x.keyVariants, x.missingElements,
	}
	for _, stage := range stages {
		if f := stage(); f != nil || x.s.exhausted {
			return f
		}
	}
	return nil
}

// keyForm says how the key is combined with the values.
type keyForm struct {
	first bool   // key before the values
	join  string // between the values and the key
}

// searcher computes candidate signs and compares them with the target.
type searcher struct {
	newHash   func() hash.Hash
	target    []byte
	keys      []string
	budget    int // bytes that may still be hashed
	tried     int
	exhausted bool
	h         hash.Hash
}

// sum reports whether hash(v, key, form) is the target digest.
func (s *searcher) sum(v []byte, key string, f keyForm) bool {
	n := len(v) + len(key) + len(f.join)
	if s.exhausted || n > s.budget {
		s.exhausted = true
		return false
	}
	s.budget -= n
	s.tried++
	if s.h == nil {
		s.h = s.newHash()
	}
	s.h.Reset()
	if f.first {
		io.WriteString(s.h, key)
		io.WriteString(s.h, f.join)
		s.h.Write(v)
	} else {
		s.h.Write(v)
		io.WriteString(s.h, f.join)
		io.WriteString(s.h, key)
	}
	var buf [sha256.Size]byte
	return bytes.Equal(s.h.Sum(buf[:0]), s.target)
}

// anyKey returns the index of the configured key under which v (combined
// per f) reproduces the sign, or -1.
func (s *searcher) anyKey(v []byte, f keyForm) int {
	for i, k := range s.keys {
		if k != "" && s.sum(v, k, f) {
			return i
		}
	}
	return -1
}

// try checks one body variant under every configured key. A variant equal
// to V is skipped: V is known not to verify.
func (x *explainer) try(cause Cause, variant string, v []byte, en, zh string) *finding {
	return x.tryForm(cause, variant, v, keyForm{}, en, zh)
}

func (x *explainer) tryForm(cause Cause, variant string, v []byte, f keyForm, en, zh string) *finding {
	if f == (keyForm{}) && bytes.Equal(v, x.v) {
		return nil
	}
	if i := x.s.anyKey(v, f); i >= 0 {
		return &finding{cause: cause, variant: variant, key: i, en: en, zh: zh}
	}
	return nil
}

// keyPlacement: no key at all, or the key in the wrong place.
func (x *explainer) keyPlacement() *finding {
	if x.s.sum(x.v, "", keyForm{}) {
		return &finding{cause: CauseUnkeyed, key: -1,
			en: "the sender hashes the body values alone, without appending any key",
			zh: "对方只对报文体各字段值计算 MD5，没有拼接密钥"}
	}
	forms := []struct {
		variant string
		form    keyForm
		en, zh  string
	}{
		{"key_first", keyForm{first: true}, "the sender puts the key before the values instead of after them", "对方把密钥放在字段值之前，而不是之后"},
		{"key_param", keyForm{join: "&key="}, `the sender appends the key as "&key=<key>"`, `对方以 "&key=<密钥>" 的形式拼接密钥`},
		{"key_param_bare", keyForm{join: "key="}, `the sender appends the key as "key=<key>"`, `对方以 "key=<密钥>" 的形式拼接密钥`},
	}
	for _, sep := range separators {
		forms = append(forms, struct {
			variant string
			form    keyForm
			en, zh  string
		}{"key_joined_" + sep.code, keyForm{join: sep.s},
			"the sender joins the key to the values with " + sep.en,
			"对方用" + sep.zh + " 连接字段值与密钥"})
	}
	for _, c := range forms {
		if f := x.tryForm(CauseKeyPlacement, c.variant, x.v, c.form, c.en, c.zh); f != nil {
			return f
		}
	}
	return nil
}

// separators are the ones peers put between values (or before the key).
var separators = []struct{ s, code, en, zh string }{
	{",", "comma", `a comma ","`, `逗号 ","`},
	{"|", "pipe", `a vertical bar "|"`, `竖线 "|"`},
	{"&", "ampersand", `an ampersand "&"`, `"&" 符号`},
	{";", "semicolon", `a semicolon ";"`, `分号 ";"`},
	{" ", "space", "a space", "空格"},
	{"\n", "newline", "a line feed", "换行符"},
	{"\t", "tab", "a tab", "制表符"},
	{"#", "hash", `a hash sign "#"`, `井号 "#"`},
}

// flatBody returns the body flattened, built once.
func (x *explainer) flatBody() *flat {
	if x.f == nil {
		x.f = flatten(x.env, scanSource(x.data, x.env.Type))
	}
	return x.f
}

// bodyVariants: white space, line ends, undecoded text, null for empty,
// head values and markup.
func (x *explainer) bodyVariants() *finding {
	f := x.flatBody()
	type variant struct {
		cause         Cause
		code          string
		v             func() []byte
		en, zh        string
		needSourceMap bool
	}
	bodyName := x.env.Type.bodyName()
	uuid := x.env.RequestUUID
	variants := []variant{
		{CauseValuesTrimmed, "leaf_trim", func() []byte { return f.join(signed, textVia(trimXMLSpace)) },
			"the sender trims leading and trailing white space from every value before hashing", "对方在计算签名前去掉了每个字段值首尾的空白", false},
		{CauseValuesTrimmed, "leaf_trim_unicode", func() []byte { return f.join(signed, textVia(strings.TrimSpace)) },
			"the sender trims leading and trailing white space, full-width spaces included, from every value before hashing", "对方在计算签名前去掉了每个字段值首尾的空白（包括全角空格）", false},
		{CauseValuesTrimmed, "whole_trim", func() []byte { return []byte(trimXMLSpace(string(x.v))) },
			"the sender trims the concatenated values as a whole before hashing", "对方在计算签名前对拼接后的整串值去掉了首尾空白", false},
		{CauseWhitespace, "indentation", func() []byte { return f.join(everything, pieceText) },
			"the sender hashes the white space between elements (line breaks and indentation) with the values — it took the text content of every node instead of the element values", "对方把元素之间的空白（换行和缩进）也算进了签名——取的是所有文本节点，而不是各元素的值", false},
		{CauseWhitespace, "indentation_trimmed", func() []byte { return []byte(strings.TrimSpace(string(f.join(everything, pieceText)))) },
			"the sender hashes the body's text content, white space between elements included (trimmed at both ends)", "对方对报文体的全部文本内容（包括元素之间的空白，仅去掉首尾空白）计算签名", false},
		{CauseLineEndings, "crlf", func() []byte { return bytes.ReplaceAll(x.v, []byte("\n"), []byte("\r\n")) },
			"the sender hashes line ends inside values as CR LF, while an XML parser delivers them as LF (a CR must be sent as &#xD; to survive)", "对方按 CR LF 计算字段值中的换行，而 XML 解析后的换行是 LF（CR 需写成 &#xD; 才能保留）", false},
		{CauseUndecodedText, "entities", func() []byte { return f.join(signed, pieceEnt) },
			"the sender hashes values with their entity references undecoded, as written in the XML (e.g. &amp; instead of &)", "对方按 XML 原文计算签名，实体引用未解码（例如用 &amp; 而不是 &）", true},
		{CauseUndecodedText, "cdata_markup", func() []byte { return f.join(signed, pieceCDATA) },
			"the sender hashes CDATA sections with their <![CDATA[ … ]]> markup", "对方把 CDATA 段连同 <![CDATA[ … ]]> 标记一起计算签名", true},
		{CauseUndecodedText, "as_written", func() []byte { return f.join(signed, pieceRaw) },
			"the sender hashes values exactly as written in the XML source: entity references undecoded and CDATA markup kept", "对方按 XML 原文计算签名：实体引用未解码，CDATA 标记也保留", true},
		{CauseUndecodedText, "escaped", func() []byte { return f.join(signed, textVia(escapeMarkup)) },
			"the sender hashes XML-escaped values (& < > as &amp; &lt; &gt;) instead of the values", "对方对转义后的值（& < > 写作 &amp; &lt; &gt;）计算签名，而不是对原值", false},
		{CauseUndecodedText, "escaped_quotes", func() []byte { return f.join(signed, textVia(escapeAll)) },
			`the sender hashes XML-escaped values (& < > " ' as entity references) instead of the values`, `对方对转义后的值（& < > " ' 写作实体引用）计算签名，而不是对原值`, false},
		{CauseEmptyAsNull, "null", func() []byte { return f.join(signed, textVia(nullIfEmpty)) },
			`the sender hashes empty elements as the text "null" (a null field concatenated as a string)`, `对方把空元素按字符串 "null" 计算签名（把空字段当作字符串拼接）`, false},
		{CauseHeadHashed, "uuid_first", func() []byte { return append([]byte(uuid), x.v...) },
			"the sender hashes the head's requestUUID before the body values", "对方把报文头的 requestUUID 放在报文体各值之前一起计算签名", false},
		{CauseHeadHashed, "uuid_last", func() []byte { return append(slices.Clip(x.v), uuid...) },
			"the sender hashes the head's requestUUID after the body values", "对方把报文头的 requestUUID 放在报文体各值之后一起计算签名", false},
		{CauseMarkupHashed, "body_xml", func() []byte { return f.src.span(x.data, f.src.body) },
			"the sender hashes the serialised <" + bodyName + "> XML, tags included, instead of the values", "对方对序列化后的 <" + bodyName + "> XML（含标签）计算签名，而不是对各字段值", true},
		{CauseMarkupHashed, "body_inner_xml", func() []byte { return f.src.span(x.data, f.src.inner) },
			"the sender hashes the XML inside <" + bodyName + ">, tags included, instead of the values", "对方对 <" + bodyName + "> 内部的 XML（含标签）计算签名，而不是对各字段值", true},
		{CauseMarkupHashed, "body_inner_xml_trimmed", func() []byte { return bytes.TrimSpace(f.src.span(x.data, f.src.inner)) },
			"the sender hashes the XML inside <" + bodyName + "> (tags included, trimmed) instead of the values", "对方对 <" + bodyName + "> 内部的 XML（含标签，去掉首尾空白）计算签名，而不是对各字段值", true},
		{CauseMarkupHashed, "message_xml", func() []byte { return f.src.withoutSign(x.data) },
			"the sender hashes the whole message XML (with an empty sign) instead of the body values", "对方对整条报文的 XML（sign 为空）计算签名，而不是对报文体各字段值", true},
		{CauseMarkupHashed, "compact_body_xml", func() []byte { return appendCompact(nil, x.env.Body, false) },
			"the sender hashes its own compact serialisation of <" + bodyName + "> (tags, no white space) instead of the values", "对方对自己紧凑序列化的 <" + bodyName + ">（含标签、无空白）计算签名，而不是对各字段值", false},
		{CauseMarkupHashed, "compact_body_xml_self_closing", func() []byte { return appendCompact(nil, x.env.Body, true) },
			"the sender hashes its own compact serialisation of <" + bodyName + "> (tags, empty elements as <x/>) instead of the values", "对方对自己紧凑序列化的 <" + bodyName + ">（含标签，空元素写作 <x/>）计算签名，而不是对各字段值", false},
		{CauseMarkupHashed, "compact_body_inner_xml", func() []byte { return compactInner(x.env.Body) },
			"the sender hashes its own compact serialisation of the elements inside <" + bodyName + "> (tags included) instead of the values", "对方对自己紧凑序列化的 <" + bodyName + "> 内部元素（含标签）计算签名，而不是对各字段值", false},
	}
	for _, c := range variants {
		if c.needSourceMap && !f.src.ok {
			continue
		}
		if c.cause == CauseHeadHashed && uuid == "" {
			continue
		}
		v := c.v()
		if v == nil {
			continue // not available for this message, or empty
		}
		if found := x.try(c.cause, c.code, v, c.en, c.zh); found != nil || x.s.exhausted {
			return found
		}
	}
	return nil
}

// orders: the values in another order.
func (x *explainer) orders() *finding {
	f := x.flatBody()
	orders := []struct {
		code   string
		less   func(a, b *piece) int
		en, zh string
	}{
		{"alphabetical", byName(false), "alphabetical order of element names", "元素名的字母顺序"},
		{"alphabetical_ci", byName(true), "alphabetical order of element names, ignoring case", "元素名的字母顺序（不区分大小写）"},
		{"alphabetical_per_level", byLevel(false), "alphabetical order of element names within each parent (a sorted map)", "每层内元素名的字母顺序（有序 Map）"},
		{"alphabetical_per_level_ci", byLevel(true), "alphabetical order of element names within each parent, ignoring case", "每层内元素名的字母顺序（不区分大小写）"},
		{"reverse", nil, "reverse document order", "与文档相反的顺序"},
	}
	for _, o := range orders {
		ps := f.signedPieces()
		if o.less == nil {
			slices.Reverse(ps)
		} else {
			slices.SortStableFunc(ps, o.less)
		}
		if found := x.try(CauseFieldOrder, o.code, joinPieces(ps, "", pieceText),
			"the sender hashes the values in "+o.en+" instead of document order",
			"对方按"+o.zh+"而不是文档顺序拼接字段值"); found != nil || x.s.exhausted {
			return found
		}
	}
	return nil
}

// separators: values joined with a separator, or as name=value pairs.
func (x *explainer) separators() *finding {
	f := x.flatBody()
	ps := f.signedPieces()
	for _, sep := range separators {
		v := joinPieces(ps, sep.s, pieceText)
		for _, form := range []keyForm{{}, {join: sep.s}} {
			code, en, zh := sep.code, "the sender joins the values with "+sep.en, "对方用"+sep.zh+" 分隔各字段值"
			if form.join != "" {
				code, en, zh = code+"_key", en+", the key too", zh+"，密钥之前也加了分隔符"
			}
			if found := x.tryForm(CauseSeparator, code, v, form, en, zh); found != nil || x.s.exhausted {
				return found
			}
		}
	}
	sorted := slices.Clone(ps)
	slices.SortStableFunc(sorted, byName(false))
	for _, order := range []struct {
		code, en, zh string
		ps           []*piece
	}{{"", "", "", ps}, {"_sorted", ", sorted by name", "（按名称排序）", sorted}} {
		for _, skipEmpty := range []bool{false, true} {
			var pairs []string
			for _, p := range order.ps {
				if !skipEmpty || p.text != "" {
					pairs = append(pairs, p.name+"="+p.text)
				}
			}
			v := []byte(strings.Join(pairs, "&"))
			for _, form := range []keyForm{{}, {join: "&key="}} {
				code, en, zh := "name_value"+order.code, "the sender hashes name=value pairs joined with &"+order.en, "对方按 name=value 形式以 & 连接各字段"+order.zh
				if skipEmpty {
					code, en, zh = code+"_nonempty", en+", empty values left out", zh+"，并略去空值"
				}
				if form.join != "" {
					code, en, zh = code+"_key", en+`, then "&key=<key>"`, zh+`，再拼接 "&key=<密钥>"`
				}
				if found := x.tryForm(CauseSeparator, code, v, form, en, zh); found != nil || x.s.exhausted {
					return found
				}
			}
		}
	}
	return nil
}

// textEncoding: the values hashed as GBK/GB18030 bytes, not UTF-8.
func (x *explainer) textEncoding() *finding {
	if isASCII(x.v) {
		return nil
	}
	gb, err := simplifiedchinese.GB18030.NewEncoder().Bytes(x.v)
	if err != nil {
		return nil
	}
	return x.try(CauseTextEncoding, "gbk", gb,
		"the sender hashes the values encoded as GBK/GB18030 instead of UTF-8 (e.g. Java getBytes() without a charset on a Chinese-locale system)",
		"对方按 GBK/GB18030 而不是 UTF-8 编码计算签名（例如 Java 在中文环境下调用 getBytes() 未指定字符集）")
}

func isASCII(b []byte) bool {
	for _, c := range b {
		if c >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// newerElements were added by later platform versions (DESIGN §1.2); an
// older sender implementation does not know, and so does not hash, them.
var newerElements = map[string]bool{"ProjectType": true, "dateInfo": true, "startDate": true, "endDate": true}

// maxPairElements bounds leaving out two elements (O(n²) digests) to small bodies.
const maxPairElements = 64

// missingElements: V with one element (then two) left out.
func (x *explainer) missingElements() *finding {
	f := x.flatBody()
	var buf []byte
	for _, e := range f.elems {
		if e.size == 0 {
			continue // an empty element adds nothing to V
		}
		buf = f.appendWithout(buf[:0], e, nil)
		if i := x.s.anyKey(buf, keyForm{}); i >= 0 {
			return missingFinding(i, e)
		}
		if x.s.exhausted {
			return nil
		}
	}
	if len(f.elems) > maxPairElements {
		return nil
	}
	for a := range f.elems {
		for b := a + 1; b < len(f.elems); b++ {
			ea, eb := &f.elems[a], &f.elems[b]
			if ea.size == 0 || eb.size == 0 || eb.first < ea.end {
				continue // empty, or b inside a: same as leaving out a alone
			}
			buf = f.appendWithout(buf[:0], *ea, eb)
			if i := x.s.anyKey(buf, keyForm{}); i >= 0 {
				return missingFinding(i, *ea, *eb)
			}
			if x.s.exhausted {
				return nil
			}
		}
	}
	return nil
}

func missingFinding(key int, es ...elem) *finding {
	paths := make([]string, len(es))
	newer := true
	for i, e := range es {
		paths[i] = e.path
		newer = newer && newerElements[e.name]
	}
	f := &finding{cause: CauseFieldMissing, variant: "one_element", key: key, element: strings.Join(paths, ", ")}
	if len(es) == 1 {
		f.en = "the sender leaves the element " + paths[0] + " out of the hash"
		f.zh = "对方计算签名时漏掉了元素 " + paths[0]
	} else {
		f.variant = "two_elements"
		f.en = "the sender leaves the elements " + paths[0] + " and " + paths[1] + " out of the hash"
		f.zh = "对方计算签名时漏掉了元素 " + paths[0] + " 和 " + paths[1]
	}
	if newer {
		it := "it"
		if len(es) > 1 {
			it = "them"
		}
		f.en += "; later platform versions added " + it + ", and the sender's implementation predates " + it + " (the protocol hashes every element present, known or not)"
		f.zh += "；这是平台后续版本新增的字段，对方的实现早于该版本（协议要求对报文中出现的每个元素都计算签名，无论是否认识）"
	} else {
		f.en += " (typically an element its implementation does not know, or one it skips; the protocol hashes every element present)"
		f.zh += "（通常是其实现不认识或跳过的元素；协议要求对报文中出现的每个元素都计算签名）"
	}
	return f
}
