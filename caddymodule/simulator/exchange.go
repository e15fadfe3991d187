package simulator

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/caddy-gongbao/gongbao/caddymodule/protocol"
)

// exchange is one request sent and its reply.
type exchange struct {
	uuid  string
	reply *protocol.Envelope // verified, resultFlag=true
	took  time.Duration
}

// send signs msg with a fresh requestUUID, posts it to the sidecar and
// checks the reply: HTTP 200, a well-formed <root-as-Response>, a sign
// that verifies and resultFlag=true. The returned entry is filled in for
// the transcript either way.
func (s *session) send(ctx context.Context, step string, msg message) (*exchange, Entry, error) {
	ex := &exchange{uuid: protocol.NewUUID()}
	entry := Entry{Step: step, Direction: "→", Message: msg.root, RequestUUID: ex.uuid, Result: resultFail}
	data := protocol.BuildRequest(msg.root, ex.uuid, msg.body, s.cfg.Key)

	start := s.cfg.Clock.Now()
	status, raw, err := s.post(ctx, data)
	ex.took = s.cfg.Clock.Now().Sub(start)
	entry.Duration = ex.took
	if err != nil {
		entry.Text = err.Error()
		return nil, entry, s.deviation(step, ErrProtocol, "posting %s to %s: %v", msg.root, s.cfg.URL, err)
	}
	r, perr := protocol.ReadReply(raw, protocol.Limits{}, []string{s.cfg.Key})
	if status != http.StatusOK {
		detail := fmt.Sprintf("HTTP %d from the sidecar", status)
		if perr == nil {
			detail += ": " + r.Message
		}
		entry.Text = detail
		return nil, entry, s.deviation(step, ErrProtocol, "%s: %s", msg.root, detail)
	}
	if perr != nil {
		entry.Text = "malformed reply"
		return nil, entry, s.deviation(step, ErrProtocol, "the reply to %s is not a valid message: %v", msg.root, perr)
	}
	if want := replyRoot(msg.root); r.Root != want {
		entry.Text = "reply root " + r.Root
		return nil, entry, s.deviation(step, ErrProtocol, "the reply to %s is a %s, want %s", msg.root, r.Root, want)
	}
	if r.Signature != protocol.SignatureVerified {
		entry.Text = "the reply's sign does not verify"
		return nil, entry, s.deviation(step, ErrBadSignature, "the %s to %s (reply requestUUID %s) is not signed with the agreed key", r.Root, msg.root, r.RequestUUID)
	}
	entry.Text = r.Message
	if r.Flag != protocol.FlagTrue {
		return nil, entry, s.deviation(step, ErrRefused, "%s answered resultFlag=%s: %s", msg.root, r.FlagText, r.Message)
	}
	entry.Result = resultOK
	ex.reply = r.Envelope
	return ex, entry, nil
}

// post sends one message within the timeout and returns status and body.
func (s *session) post(ctx context.Context, data []byte) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cfg.URL, bytes.NewReader(data))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/xml; charset=UTF-8")
	return s.do(ctx, req)
}

func (s *session) do(ctx context.Context, req *http.Request) (int, []byte, error) {
	resp, err := s.cfg.Client.Do(req)
	if err != nil {
		return 0, nil, s.describe(ctx, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxMessageBytes+1))
	if err != nil {
		return resp.StatusCode, nil, s.describe(ctx, err)
	}
	if len(body) > maxMessageBytes {
		return resp.StatusCode, nil, fmt.Errorf("answer larger than %d bytes", maxMessageBytes)
	}
	return resp.StatusCode, body, nil
}

// describe shortens a transport error; a timeout names the limit.
func (s *session) describe(ctx context.Context, err error) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("no answer within %s", s.cfg.Timeout)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return err
}

// payment is what the payment page said, when it speaks JSON (the
// reference core does; a real payment page need not).
type payment struct {
	PolicyNo string `json:"policyNo"`
	Message  string `json:"message"`
}

// openPaymentLink GETs the yeepayurl as the applicant's browser would.
func (s *session) openPaymentLink(ctx context.Context, step, link string) (payment, Entry, error) {
	entry := Entry{Step: step, Direction: "→", Message: "GET yeepayurl", Result: resultFail}
	var p payment
	u, err := url.Parse(link)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		entry.Text = "yeepayurl is not an http(s) URL"
		return p, entry, s.deviation(step, ErrProtocol, "the insure reply's yeepayurl %q is not an http(s) URL", link)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, link, nil)
	if err != nil {
		return p, entry, s.deviation(step, ErrProtocol, "opening the payment link: %v", err)
	}
	start := s.cfg.Clock.Now()
	status, body, err := s.do(ctx, req)
	entry.Duration = s.cfg.Clock.Now().Sub(start)
	if err != nil {
		entry.Text = err.Error()
		return p, entry, s.deviation(step, ErrProtocol, "opening the payment link %s: %v", link, err)
	}
	_ = json.Unmarshal(body, &p) // optional: only a JSON page says more
	if status < 200 || status > 299 {
		entry.Text = fmt.Sprintf("HTTP %d %s", status, p.Message)
		return p, entry, s.deviation(step, ErrProtocol, "the payment link %s answered HTTP %d %s", link, status, p.Message)
	}
	entry.Result, entry.Text = resultOK, fmt.Sprintf("HTTP %d %s", status, p.Message)
	entry.Values = []KV{{"policyNo", p.PolicyNo}}
	return p, entry, nil
}
