package delivery

import (
	"fmt"

	"github.com/caddy-gongbao/gongbao/caddymodule/protocol"
)

// Policy is what the running configuration says about delivering. The
// engine reads it once at the start of every attempt (Config.Policy), so a
// configuration reload takes effect at the next attempt of every delivery,
// pending or retried by an operator, and one attempt never sees half of
// one configuration and half of another.
type Policy struct {
	// Keys are the keys a platform reply may be signed with.
	Keys []string
	// ReplySignature says whether a reply must carry a sign that verifies.
	// Default SignatureOptional.
	ReplySignature SignatureMode
	// Refusal says what a reply with resultFlag=false does. Default
	// RefusalRetry.
	Refusal RefusalMode
	// URLs maps an event name or a callback root element to the address
	// the configuration gives it now; the event name is looked up first.
	// A delivery that neither names goes to the URL it was queued with.
	URLs map[string]string
}

// SignatureMode is how a platform reply's sign is treated.
type SignatureMode string

// Signature modes. Nothing public shows that the platform signs its
// query*Response replies (DESIGN §4), so by default a reply is judged by
// its resultFlag and its sign is only checked and recorded.
const (
	// SignatureOptional accepts a reply without a sign, or with one that
	// does not verify (recorded as such on the attempt).
	SignatureOptional SignatureMode = "optional"
	// SignatureRequired retries every reply whose sign is missing or does
	// not verify.
	SignatureRequired SignatureMode = "required"
)

// RefusalMode is what a platform refusal (resultFlag=false) does.
type RefusalMode string

// Refusal modes. The spec (§3.1) asks both sides to resend after a
// failure, so by default a refusal is retried like any failed attempt.
const (
	// RefusalRetry retries a refusal on the normal schedule until the
	// deadline, then dead-letters it with the platform's last message.
	RefusalRetry RefusalMode = "retry"
	// RefusalDeadLetter dead-letters a refused delivery at once.
	RefusalDeadLetter RefusalMode = "dead_letter"
)

// ReplySignature is what was found about a reply's sign (protocol.ReadReply
// reads it); "" when the reply was not read that far (no answer, non-2xx,
// malformed, wrong root).
type ReplySignature = protocol.ReplySignature

// Reply signature results.
const (
	SignatureVerified = protocol.SignatureVerified // the sign verifies with a platform key
	SignatureUnsigned = protocol.SignatureUnsigned // no sign, or an empty one
	SignatureMismatch = protocol.SignatureMismatch // a sign that does not verify
)

// ParseSignatureMode reads a reply_signature setting; "" is the default.
func ParseSignatureMode(s string) (SignatureMode, error) {
	switch m := SignatureMode(s); m {
	case "":
		return SignatureOptional, nil
	case SignatureOptional, SignatureRequired:
		return m, nil
	}
	return "", fmt.Errorf("%w: reply_signature must be %q or %q, not %q", ErrInvalid, SignatureOptional, SignatureRequired, s)
}

// ParseRefusalMode reads a refusal setting; "" is the default.
func ParseRefusalMode(s string) (RefusalMode, error) {
	switch m := RefusalMode(s); m {
	case "":
		return RefusalRetry, nil
	case RefusalRetry, RefusalDeadLetter:
		return m, nil
	}
	return "", fmt.Errorf("%w: refusal must be %q or %q, not %q", ErrInvalid, RefusalRetry, RefusalDeadLetter, s)
}

// urlFor is where d goes under this policy.
func (p *Policy) urlFor(d *Delivery) string {
	for _, key := range []string{d.Event, d.Callback} {
		if u, ok := p.URLs[key]; ok && key != "" && u != "" {
			return u
		}
	}
	return d.URL
}

// verdict is the judgement of one reply.
type verdict struct {
	outcome   Outcome
	err       string // why it is not an acceptance ("" when accepted)
	signature ReplySignature
}

// judgeReply decides what a reply means under the policy. A reply is
// judged by its resultFlag: true is acceptance, false a refusal (what
// follows is the policy's Refusal). Its sign is checked and recorded;
// under SignatureRequired a missing or wrong sign makes the attempt a
// failure (retried). Whatever the mode, a reply that is not 2xx, not a
// protocol message, has the wrong root or no resultFlag is a failure.
func judgeReply(status int, reply []byte, replyRoot string, p *Policy, lim protocol.Limits) verdict {
	if status < 200 || status > 299 {
		return verdict{outcome: OutcomeFailed, err: fmt.Sprintf("platform answered HTTP %d", status)}
	}
	r, err := protocol.ReadReply(reply, lim, p.Keys)
	if err != nil {
		return verdict{outcome: OutcomeFailed, err: fmt.Sprintf("malformed reply: %v", err)}
	}
	if replyRoot != "" && r.Root != replyRoot {
		return verdict{outcome: OutcomeFailed, err: fmt.Sprintf("reply root is %s, want %s", clip(r.Root), replyRoot)}
	}
	v := verdict{signature: r.Signature}
	if p.ReplySignature == SignatureRequired && r.Signature != SignatureVerified {
		v.outcome, v.err = OutcomeFailed, signatureProblem(r.Signature, len(p.Keys) > 0)
		return v
	}
	switch r.Flag {
	case protocol.FlagMissing:
		v.outcome, v.err = OutcomeFailed, "reply has no resultFlag"
	case protocol.FlagTrue:
		v.outcome = OutcomeAccepted
	case protocol.FlagFalse:
		msg := clip(r.Message)
		if msg == "" {
			msg = "(no resultMessage)"
		}
		v.outcome, v.err = OutcomeRefused, "platform refused: "+msg
	default:
		v.outcome, v.err = OutcomeFailed, fmt.Sprintf("reply has resultFlag %q, neither true nor false", clip(r.FlagText))
	}
	return v
}

// signatureProblem says why a reply's sign is not good enough where one
// is required.
func signatureProblem(s ReplySignature, haveKeys bool) string {
	switch {
	case !haveKeys:
		return "no platform key configured to verify the reply"
	case s == SignatureUnsigned:
		return "reply is unsigned and reply_signature is required"
	default:
		return "reply signature does not verify"
	}
}
