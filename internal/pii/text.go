package pii

import "regexp"

var (
	alnumRun  = regexp.MustCompile(`[0-9A-Za-z]+`)
	emailLike = regexp.MustCompile(`[^\s@<>"'()（），,;；:：]+@[^\s@<>"'()（），,;；:：]+`)
	// A unified social credit code: 2 registration characters, a 6-digit
	// region, 10 characters (GB 32100-2015 alphabet).
	creditCode = regexp.MustCompile(`^[0-9A-HJ-NPQRTUWXY]{2}[0-9]{6}[0-9A-HJ-NPQRTUWXY]{10}$`)
)

// MaskText masks what has the shape of personal data in free text: mobile
// numbers, ID card numbers, credit codes, bank accounts and e-mail
// addresses, each by its kind's rule. The identifiers in keep are spared
// (a caller's own proposal and policy numbers, which may be all digits and
// look like an account). Names cannot be recognised by shape.
func MaskText(s string, keep map[string]bool) string {
	s = emailLike.ReplaceAllStringFunc(s, Email.Mask)
	return alnumRun.ReplaceAllStringFunc(s, func(run string) string {
		if keep[run] {
			return run
		}
		if k := shapeOf(run); k != "" {
			return k.Mask(run)
		}
		return run
	})
}

// shapeOf tells the kind of personal data an ASCII letter-and-digit run
// looks like, or "".
func shapeOf(run string) Kind {
	digits := len(run) - countNonDigits(run)
	switch {
	case len(run) == 11 && digits == 11 && run[0] == '1':
		return Mobile
	case len(run) == 18 && (creditCode.MatchString(run) || digits >= 17):
		return ID
	case digits == len(run) && len(run) >= 12 && len(run) <= 19:
		return Bank // includes 15-digit ID cards, masked alike
	}
	return ""
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
