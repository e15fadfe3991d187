package protocol

// Platform replies. ReadReply is the one reader of a platform's reply (or
// of any message that carries resultFlag/resultMessage): the callback
// delivery engine, `caddy gongbao send`, the simulator and the benchmark
// judge replies with it, so they cannot disagree on what a reply says.

// ReplySignature is what a reply's sign is worth against the keys given
// to ReadReply.
type ReplySignature string

// Reply signature results.
const (
	SignatureVerified ReplySignature = "verified" // the sign verifies with one of the keys
	SignatureUnsigned ReplySignature = "unsigned" // no sign, or an empty one
	SignatureMismatch ReplySignature = "mismatch" // a sign that does not verify (or no key to verify it)
)

// Flag is what a resultFlag says.
type Flag int

// resultFlag readings. The spec (处理状态: "true 成功 false 失败") allows
// two values; the reading is exact after trimming XML white space, so
// "True", "1" or "是" are FlagInvalid, never taken for an answer.
const (
	FlagMissing Flag = iota // no resultFlag element
	FlagTrue                // "true"
	FlagFalse               // "false"
	FlagInvalid             // present, but neither "true" nor "false"
)

// String names the reading: "true", "false", "missing" or "invalid".
func (f Flag) String() string {
	switch f {
	case FlagTrue:
		return "true"
	case FlagFalse:
		return "false"
	case FlagMissing:
		return "missing"
	}
	return "invalid"
}

// Reply is a platform reply as read: its root, what its sign is worth and
// what it says.
type Reply struct {
	Root        string
	RequestUUID string // head requestUUID, trimmed ("" if absent)
	Signature   ReplySignature
	Flag        Flag
	// FlagText is the resultFlag as sent, XML white space trimmed ("" when
	// missing): for saying what an invalid flag was.
	FlagText string
	// Message is resultMessage, XML white space trimmed ("" if absent).
	Message string
	// Envelope is the parsed message, for callers that read further fields.
	Envelope *Envelope
}

// ReadReply parses a reply within lim and checks its sign against keys
// (with no keys, a sign is a mismatch). An error means the bytes are not
// a protocol message at all; the caller decides whether Root is the one
// it expected and what the signature and flag mean under its policy.
func ReadReply(raw []byte, lim Limits, keys []string) (Reply, error) {
	env, err := Parse(raw, lim)
	if err != nil {
		return Reply{}, err
	}
	r := Reply{Root: env.Root, RequestUUID: env.RequestUUID, Signature: replySignature(env, keys), Envelope: env}
	r.Flag, r.FlagText = ReadFlag(env)
	msg, _ := env.Text("resultMessage")
	r.Message = trimXMLSpace(msg)
	return r, nil
}

// ReadFlag reads the resultFlag of a message's body: the rule of every
// reply, also used for callbacks that carry one (surrenderCallback). text
// is the value, XML white space trimmed.
func ReadFlag(env *Envelope) (flag Flag, text string) {
	raw, ok := env.Text("resultFlag")
	if !ok {
		return FlagMissing, ""
	}
	switch text = trimXMLSpace(raw); text {
	case "true":
		return FlagTrue, text
	case "false":
		return FlagFalse, text
	}
	return FlagInvalid, text
}

func replySignature(env *Envelope, keys []string) ReplySignature {
	if env.Sign == "" { // Sign is already trimmed of XML white space
		return SignatureUnsigned
	}
	if _, ok := VerifyAny(env.SignedValue(), env.Sign, keys); ok {
		return SignatureVerified
	}
	return SignatureMismatch
}
