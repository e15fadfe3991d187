// Package pii is the project's one policy for masking personal data: the
// journal (mask_personal_data), the console, the mapping dry run and lineage
// (rows tagged pii:), and the simulator's transcript all mask with it, so a
// value looks the same wherever an operator meets it.
//
// The policy, one rule per kind. A hidden character becomes one '*', except
// where said otherwise:
//
//	name     the first character: 陈**, 浙*********** (a person or a company;
//	         the surname alone is what Chinese insurers print)
//	mobile   the first 3 and the last 4 characters: 138****2345;
//	         fewer than 11 characters: all hidden
//	id       an ID card number or unified social credit code, like mobile:
//	         330***********1234, 913***********XK3X
//	bank     the last 4 characters: ***************2345;
//	         fewer than 8 characters: all hidden
//	email    the first character of the mailbox and the domain:
//	         f***@example.com; no mailbox: like other
//	address  the first 6 characters, then "***": 浙江省杭州市***;
//	         6 characters or fewer: the first half
//	other    everything: one '*' per character
//
// Free text (a core's messages, error details) cannot be masked by kind:
// MaskText finds what has the shape of a mobile, an ID number, a credit code,
// a bank account or an e-mail address and masks it as that kind. Names have
// no shape; callers never put a raw name into free text.
//
// MaskedBody masks whole stored bodies (the platform's XML, the core's JSON)
// by element or key name.
//
// pii is a leaf: it imports only the standard library, and must not import
// any package of this module or Caddy.
package pii

import (
	"strings"
	"unicode/utf8"
)

// Kind is a kind of personal data. The mapping files name it in a row's
// pii: tag.
type Kind string

// The kinds of personal data.
const (
	Name    Kind = "name"
	Mobile  Kind = "mobile"
	ID      Kind = "id"
	Bank    Kind = "bank"
	Email   Kind = "email"
	Address Kind = "address"
	// Other is personal data of no known kind: all of it is hidden. A
	// value tagged with conflicting kinds is masked as Other.
	Other Kind = "other"
)

// KindNames lists the kinds a mapping may name, for error messages.
const KindNames = "name, mobile, id, bank, email or address"

// Valid reports whether k is a kind a mapping may name.
func (k Kind) Valid() bool {
	switch k {
	case Name, Mobile, ID, Bank, Email, Address:
		return true
	}
	return false
}

// Mask hides most of v by the policy of k (see the package comment). The
// empty kind means "not personal data": v is returned unchanged.
func (k Kind) Mask(v string) string {
	if v == "" || k == "" {
		return v
	}
	switch k {
	case Name:
		return keep(v, 1, 0, 1)
	case Mobile, ID:
		return keep(v, 3, 4, 11)
	case Bank:
		return keep(v, 0, 4, 8)
	case Email:
		return maskEmail(v)
	case Address:
		return maskAddress(v)
	}
	return hideAll(v)
}

// keep shows the first head and the last tail characters of v and hides
// the rest; a value shorter than min characters is hidden whole.
func keep(v string, head, tail, min int) string {
	r := []rune(v)
	if len(r) < min || head+tail >= len(r) {
		return hideAll(v)
	}
	return string(r[:head]) + strings.Repeat("*", len(r)-head-tail) + string(r[len(r)-tail:])
}

func hideAll(v string) string { return strings.Repeat("*", utf8.RuneCountInString(v)) }

func maskEmail(v string) string {
	at := strings.LastIndexByte(v, '@')
	if at <= 0 {
		return hideAll(v)
	}
	first, _ := utf8.DecodeRuneInString(v)
	return string(first) + "***" + v[at:]
}

func maskAddress(v string) string {
	r := []rune(v)
	if len(r) <= 6 {
		return keep(v, len(r)/2, 0, 0)
	}
	return string(r[:6]) + "***"
}
