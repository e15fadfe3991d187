package caddymodule

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode"

	"github.com/caddy-gongbao/gongbao/caddymodule/protocol"
)

// Exit statuses of `caddy gongbao verify --explain`, as for verify.
const (
	explainVerified = 0 // the sign verifies (possibly with a note)
	explainUnusable = 1 // not a message, or no key to check with
	explainFailed   = 2 // the sign does not verify
)

// explainVerify prints why data's sign verifies or not under keys — a
// verdict line, then the explanation in English and in Chinese — and
// returns the exit status. It never prints a key: the diagnosis names
// keys by position and near-misses by kind only.
//
//	FAIL insureRequest b98ec45e-…: field_missing applicantInfo/ProjectType
//	en: The sign does not verify. Likely cause: …
//	zh: 验签失败。可能的原因：…
func explainVerify(out io.Writer, data []byte, keys []string) int {
	d := protocol.Explain(data, keys)
	fmt.Fprintln(out, verdictLine(d))
	fmt.Fprintln(out, "en:", d.English)
	fmt.Fprintln(out, "zh:", d.Chinese)
	switch {
	case !d.Usable():
		return explainUnusable
	case d.Verified():
		return explainVerified
	}
	return explainFailed
}

// verdictLine is the first, greppable line: OK / FAIL / ERROR, the
// message, and the stable cause code with its refinements.
func verdictLine(d protocol.Diagnosis) string {
	word := "FAIL"
	switch {
	case !d.Usable():
		word = "ERROR"
	case d.Verified():
		word = "OK"
	}
	var b strings.Builder
	b.WriteString(word)
	if d.Root != "" {
		b.WriteString(" " + printable(d.Root))
		if d.RequestUUID != "" {
			b.WriteString(" " + printable(d.RequestUUID))
		}
	}
	b.WriteString(": " + string(d.Cause))
	if d.Variant != "" {
		b.WriteString("/" + d.Variant)
	}
	if d.Element != "" {
		b.WriteString(" " + printable(d.Element))
	}
	return b.String()
}

// printable quotes message-supplied text that would break the one-line
// verdict (line ends, control or invisible characters).
func printable(s string) string {
	if strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
		return strconv.Quote(s)
	}
	return s
}
