package simulator

import (
	"regexp"
	"strings"
	"unicode/utf8"
)

// The transcript is meant to be pasted into tickets, so personal data in
// it is masked: the values the simulator chooses to show are masked by
// kind, and every free text (the core's messages, error details) goes
// through maskTextExcept, which catches what can be recognised by shape.

// maskName keeps the first and last characters of a person's or a
// company's name: 王*红, 浙江****公司.
func maskName(s string) string {
	r := []rune(s)
	switch n := len(r); {
	case n == 0:
		return ""
	case n == 1:
		return "*"
	case n == 2:
		return string(r[:1]) + "*"
	case n <= 4:
		return string(r[:1]) + strings.Repeat("*", n-2) + string(r[n-1:])
	default:
		return string(r[:2]) + "****" + string(r[n-2:])
	}
}

// maskMobile keeps the operator prefix and the last four digits:
// 138****2345.
func maskMobile(s string) string {
	if utf8.RuneCountInString(s) < 8 {
		return maskAll(s)
	}
	r := []rune(s)
	return string(r[:3]) + "****" + string(r[len(r)-4:])
}

// maskID keeps four characters at each end of an ID card number or a
// unified social credit code: 9133****XK3X.
func maskID(s string) string {
	r := []rune(s)
	if len(r) < 12 {
		return maskAll(s)
	}
	return string(r[:4]) + "****" + string(r[len(r)-4:])
}

// maskAccount keeps the last four digits of a bank account: ****2345.
func maskAccount(s string) string {
	r := []rune(s)
	if len(r) < 8 {
		return maskAll(s)
	}
	return "****" + string(r[len(r)-4:])
}

// maskEmail keeps the first character of the mailbox and the domain:
// f***@example.com.
func maskEmail(s string) string {
	local, domain, ok := strings.Cut(s, "@")
	if !ok || local == "" {
		return maskAll(s)
	}
	r := []rune(local)
	return string(r[:1]) + "***@" + domain
}

func maskAll(s string) string {
	if s == "" {
		return ""
	}
	return "****"
}

var (
	alnumRun  = regexp.MustCompile(`[0-9A-Za-z]+`)
	emailLike = regexp.MustCompile(`[^\s@<>"'()（），,;；:：]+@[^\s@<>"'()（），,;；:：]+`)
	// A unified social credit code: 2 registration characters, a 6-digit
	// region, 10 characters (GB 32100-2015 alphabet).
	creditCode = regexp.MustCompile(`^[0-9A-HJ-NPQRTUWXY]{2}[0-9]{6}[0-9A-HJ-NPQRTUWXY]{10}$`)
)

// maskTextExcept masks what looks like personal data in free text:
// mobile numbers, ID card numbers, credit codes, bank accounts and e-mail
// addresses, sparing the identifiers in keep (the run's own proposal and
// policy numbers, which may be all digits). Names cannot be recognised by
// shape; the simulator never puts a raw name into text it produces.
func maskTextExcept(s string, keep map[string]bool) string {
	s = emailLike.ReplaceAllStringFunc(s, maskEmail)
	return alnumRun.ReplaceAllStringFunc(s, func(run string) string {
		if keep[run] {
			return run
		}
		digits := len(run) - countNonDigits(run) // run is ASCII
		switch {
		case len(run) == 11 && digits == 11 && run[0] == '1':
			return maskMobile(run)
		case len(run) == 18 && (creditCode.MatchString(run) || digits >= 17):
			return maskID(run)
		case digits == len(run) && len(run) >= 12 && len(run) <= 19:
			return maskAccount(run) // includes 15-digit ID cards
		}
		return run
	})
}

func countNonDigits(s string) int {
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			n++
		}
	}
	return n
}
