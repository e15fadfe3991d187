package protocol

import (
	"bytes"
	"errors"
	"testing"
)

// TestReadReplyFlag: resultFlag reads exactly true or false after XML
// white space is trimmed; anything else is invalid, absence is missing.
func TestReadReplyFlag(t *testing.T) {
	const key = "k"
	for _, c := range []struct {
		name     string
		body     []Element
		flag     Flag
		flagText string
		message  string
	}{
		{"true", []Element{{Name: "resultFlag", Text: "true"}, {Name: "resultMessage", Text: "成功"}}, FlagTrue, "true", "成功"},
		{"false", []Element{{Name: "resultFlag", Text: "false"}, {Name: "resultMessage", Text: " 保单不存在\n"}}, FlagFalse, "false", "保单不存在"},
		{"padded", []Element{{Name: "resultFlag", Text: "\n  true\t"}}, FlagTrue, "true", ""},
		{"CDATA", []Element{{Name: "resultFlag", Text: "false"}}, FlagFalse, "false", ""},
		{"missing", []Element{{Name: "resultMessage", Text: "x"}}, FlagMissing, "", "x"},
		{"empty", []Element{{Name: "resultFlag", Text: ""}}, FlagInvalid, "", ""},
		{"capitalised", []Element{{Name: "resultFlag", Text: "True"}}, FlagInvalid, "True", ""},
		{"yes", []Element{{Name: "resultFlag", Text: "yes"}}, FlagInvalid, "yes", ""},
		{"full-width space", []Element{{Name: "resultFlag", Text: "true\u3000"}}, FlagInvalid, "true\u3000", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			raw := BuildResponse("queryPolicyResponse", "u-1", c.body, key)
			// The sign covers the value, not its markup: a CDATA section verifies alike.
			if c.name == "CDATA" {
				raw = bytes.Replace(raw, []byte("<resultFlag>false<"), []byte("<resultFlag><![CDATA[false]]><"), 1)
			}
			r, err := ReadReply(raw, Limits{}, []string{key})
			if err != nil {
				t.Fatal(err)
			}
			if r.Flag != c.flag || r.FlagText != c.flagText || r.Message != c.message {
				t.Errorf("got flag %s %q message %q, want %s %q %q", r.Flag, r.FlagText, r.Message, c.flag, c.flagText, c.message)
			}
			if r.Root != "queryPolicyResponse" || r.RequestUUID != "u-1" || r.Signature != SignatureVerified || r.Envelope == nil {
				t.Errorf("got root %q uuid %q signature %s", r.Root, r.RequestUUID, r.Signature)
			}
		})
	}
}

// TestReadReplySignature: verified with one of the keys, unsigned when
// the sign is empty, a mismatch otherwise (also with no key to check).
func TestReadReplySignature(t *testing.T) {
	body := []Element{{Name: "resultFlag", Text: "true"}}
	signed := BuildResponse("queryPolicyResponse", "u-1", body, "new")
	unsigned := BuildUnsignedResponse("queryPolicyResponse", "u-1", body)
	for _, c := range []struct {
		name string
		raw  []byte
		keys []string
		want ReplySignature
	}{
		{"verified", signed, []string{"old", "new"}, SignatureVerified},
		{"other key", signed, []string{"old"}, SignatureMismatch},
		{"no keys", signed, nil, SignatureMismatch},
		{"unsigned", unsigned, []string{"new"}, SignatureUnsigned},
	} {
		r, err := ReadReply(c.raw, Limits{}, c.keys)
		if err != nil || r.Signature != c.want {
			t.Errorf("%s: signature %q, err %v; want %q", c.name, r.Signature, err, c.want)
		}
	}
}

// TestReadReplyNotAMessage: bytes that are no protocol message are an
// error, not a reply with no flag.
func TestReadReplyNotAMessage(t *testing.T) {
	var pe *Error
	if _, err := ReadReply([]byte("<html>busy</html>"), Limits{}, []string{"k"}); !errors.As(err, &pe) {
		t.Fatalf("an HTML page: got %v, want a protocol *Error", err)
	}
}
