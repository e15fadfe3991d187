package protocol

// Near-miss spellings of the configured keys. They are hashed and dropped:
// a diagnosis names the kind of difference only, never a spelling.

import "strings"

// keyVariants: V under near-misses of each configured key. The derived
// keys are hashed and dropped; only the kind of difference is reported.
func (x *explainer) keyVariants() *finding {
	for i, key := range x.keys {
		if key == "" {
			continue
		}
		var found *finding
		nearKeys(key, func(nk keyNearMiss, derived string) bool {
			if derived == key || derived == "" {
				return true
			}
			if x.s.sum(x.v, derived, keyForm{}) {
				found = &finding{cause: CauseKeyVariant, variant: nk.code, key: i, en: nk.en, zh: nk.zh}
				return false
			}
			return !x.s.exhausted
		})
		if found != nil || x.s.exhausted {
			return found
		}
	}
	return nil
}

// keyNearMiss is one kind of near-miss spelling of a key.
type keyNearMiss struct{ code, en, zh string }

var (
	nearTrimmed  = keyNearMiss{"trimmed", "the sender's key lacks the white space at the start or end of the configured key (check the key file or variable for stray spaces)", "对方的密钥没有所配置密钥首尾的空白（请检查密钥文件或环境变量中多余的空格）"}
	nearNewline  = keyNearMiss{"trailing_newline", "the sender's key has a trailing line feed (a key read from a file with its final newline)", "对方的密钥末尾多了一个换行符（从文件读取密钥时未去掉末尾换行）"}
	nearCRLF     = keyNearMiss{"trailing_crlf", "the sender's key has a trailing CR LF (a key read from a Windows file with its final line end)", "对方的密钥末尾多了 CR LF（从 Windows 文件读取密钥时未去掉行尾）"}
	nearSpace    = keyNearMiss{"trailing_space", "the sender's key has a trailing space", "对方的密钥末尾多了一个空格"}
	nearBOM      = keyNearMiss{"byte_order_mark", "the sender's key starts with a UTF-8 byte-order mark (a key file saved by a Windows editor)", "对方的密钥开头带有 UTF-8 BOM（密钥文件由 Windows 编辑器保存）"}
	nearUpper    = keyNearMiss{"upper_case", "the sender's key is the configured key in upper case", "对方的密钥是所配置密钥的全大写形式"}
	nearLower    = keyNearMiss{"lower_case", "the sender's key is the configured key in lower case", "对方的密钥是所配置密钥的全小写形式"}
	nearGlyphs   = keyNearMiss{"glyph_confusion", "the sender's key differs from the configured one only in characters that look alike (I, l and 1; O and 0) — a key copied from a printed or PDF document, like the spec's test key, whose glyphs are ambiguous", "对方的密钥与所配置密钥仅在外形相似的字符上不同（I、l 与 1；O 与 0）——密钥抄自打印件或 PDF（如规范中的测试密钥），字形有歧义"}
	glyphClasses = []string{"Il1", "O0"}
)

// maxGlyphVariants bounds the look-alike spellings tried per key.
const maxGlyphVariants = 512

// nearKeys calls yield with near-miss spellings of key until it returns false.
func nearKeys(key string, yield func(keyNearMiss, string) bool) {
	simple := []struct {
		kind keyNearMiss
		k    string
	}{
		{nearTrimmed, strings.TrimSpace(key)},
		{nearNewline, key + "\n"},
		{nearCRLF, key + "\r\n"},
		{nearSpace, key + " "},
		{nearBOM, "\uFEFF" + key},
		{nearUpper, strings.ToUpper(key)},
		{nearLower, strings.ToLower(key)},
	}
	for _, s := range simple {
		if !yield(s.kind, s.k) {
			return
		}
	}
	glyphVariants(key, func(k string) bool { return yield(nearGlyphs, k) })
}

// glyphVariants yields every spelling of key obtained by replacing
// look-alike characters with each other (the test key printed in the spec
// mixes I, l and 1-like glyphs exactly so), all combinations when
// there are few, else one substitution at a time.
func glyphVariants(key string, yield func(string) bool) {
	b := []byte(key)
	var pos []int
	var class []string
	combos := 1
	for i, c := range b {
		for _, cl := range glyphClasses {
			if strings.IndexByte(cl, c) >= 0 {
				pos, class = append(pos, i), append(class, cl)
				if combos <= maxGlyphVariants {
					combos *= len(cl)
				}
			}
		}
	}
	if len(pos) == 0 {
		return
	}
	if combos > maxGlyphVariants {
		for j, p := range pos {
			orig := b[p]
			for k := 0; k < len(class[j]); k++ {
				if b[p] = class[j][k]; b[p] != orig && !yield(string(b)) {
					return
				}
			}
			b[p] = orig
		}
		return
	}
	digit := make([]int, len(pos)) // odometer over the classes
	for {
		for j, p := range pos {
			b[p] = class[j][digit[j]]
		}
		if string(b) != key && !yield(string(b)) {
			return
		}
		j := 0
		for ; j < len(digit); j++ {
			if digit[j]++; digit[j] < len(class[j]) {
				break
			}
			digit[j] = 0
		}
		if j == len(digit) {
			return
		}
	}
}
