package simulator

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/caddy-gongbao/gongbao/caddymodule/protocol"
	"github.com/caddy-gongbao/gongbao/internal/pii"
)

// session is one run in progress.
type session struct {
	cfg  Config
	msgs *messages
	rcv  *receiver
	res  *Result
	out  *printer

	backlog  []*callback     // received, not yet looked at by the lifecycle
	consumed map[string]bool // callback roots already awaited
	trigger  time.Time       // when the last request or payment started: a callback's time counts from it
	keep     map[string]bool // the run's identifiers, never masked
}

// mask masks personal data in free text, sparing the run's identifiers.
func (s *session) mask(text string) string { return pii.MaskText(text, s.keep) }

func (s *session) record(e Entry) {
	s.res.Entries = append(s.res.Entries, e)
	s.out.line(e)
}

// lifecycle runs the steps in the order the platform does. Each step
// returns at the first deviation.
func (s *session) lifecycle(ctx context.Context) error {
	s.consumed = map[string]bool{}
	policyNo, err := s.insureAndPay(ctx)
	if err != nil {
		return err
	}
	for _, st := range []struct {
		step   string
		msg    message
		values func(body []protocol.Element, reply *protocol.Envelope) []KV
	}{
		{"correct", s.msgs.correct, correctValues},
		{"claim", s.msgs.claim, claimValues},
		{"invoice", s.msgs.invoice, invoiceValues},
	} {
		if _, err := s.request(ctx, st.step, st.msg, policyNo, st.values); err != nil {
			return err
		}
	}
	if err := s.invoiceCallback(ctx); err != nil {
		return err
	}
	if _, err := s.request(ctx, "surrender", s.msgs.surrender, policyNo, surrenderValues); err != nil {
		return err
	}
	if err := s.surrenderCallback(ctx); err != nil {
		return err
	}
	return s.checkCallbacks()
}

// insureAndPay creates the proposal, pays it and returns the policy number
// the payment callback announces.
func (s *session) insureAndPay(ctx context.Context) (string, error) {
	const step = "insure"
	ex, entry, err := s.send(ctx, step, s.msgs.insure)
	if err != nil {
		s.record(entry)
		return "", err
	}
	entry.Values = insureValues(s.msgs.insure.body, ex.reply)
	proposalNo, payURL := text(ex.reply, "proposalNo"), text(ex.reply, "yeepayurl")
	if proposalNo == "" || payURL == "" {
		entry.Result = resultFail
		s.record(entry)
		return "", s.deviation(step, ErrProtocol, "the insure reply says resultFlag=true but lacks proposalNo or yeepayurl (payment link): proposalNo=%q yeepayurl=%q", proposalNo, payURL)
	}
	// The receiver must know the proposal before anyone can see the link.
	s.res.ProposalNo = proposalNo
	s.keep[proposalNo] = true
	s.rcv.expectProposal(proposalNo)
	s.record(entry)

	var paid payment
	s.trigger = s.cfg.Clock.Now()
	if s.cfg.NoPay {
		s.record(Entry{Step: "pay", Direction: "·", Message: "yeepayurl", Result: resultSkipped,
			Text:   fmt.Sprintf("open the link to pay; waiting up to %s for the payment callback", s.cfg.Timeout),
			Values: []KV{{"yeepayurl", payURL}}})
	} else {
		var entry Entry
		paid, entry, err = s.openPaymentLink(ctx, "pay", payURL)
		s.record(entry)
		if err != nil {
			return "", err
		}
	}

	const cbStep = "payment callback"
	cb, entry, err := s.await(ctx, rootPaymentCallback, "proposal "+proposalNo)
	if err != nil {
		return "", err
	}
	policyNo := text(cb.env, "policyNo")
	s.keep[policyNo] = true
	if paid.PolicyNo != "" && paid.PolicyNo != policyNo {
		return "", s.failed(entry, "not the policy the payment page issued", s.deviation(cbStep, ErrWrongPolicy,
			"the payment page issued policy %s but the payment callback announces policy %s", paid.PolicyNo, policyNo))
	}
	s.record(entry)
	s.res.PolicyNo = policyNo
	return policyNo, nil
}

// invoiceCallback waits for the invoice callback and checks it carries
// what the requested invoice type needs: a download address for an
// electronic invoice, a tracking number for a posted one.
func (s *session) invoiceCallback(ctx context.Context) error {
	const step = "invoice callback"
	cb, entry, err := s.await(ctx, rootInvoiceCallback, "policy "+s.res.PolicyNo)
	if err != nil {
		return err
	}
	if s.cfg.InvoiceType == "1" && text(cb.env, "downLoadUrl") == "" {
		return s.failed(entry, "no downLoadUrl", s.deviation(step, ErrProtocol,
			"the invoice callback for an electronic invoice (InvoiceType 1) has no downLoadUrl"))
	}
	if s.cfg.InvoiceType != "1" && text(cb.env, "expressNo") == "" {
		return s.failed(entry, "no expressNo", s.deviation(step, ErrProtocol,
			"the invoice callback for a paper invoice (InvoiceType %s) has no expressNo", s.cfg.InvoiceType))
	}
	s.record(entry)
	return nil
}

// surrenderCallback waits for the surrender callback; the core reporting
// the refund as failed ends the run as a refusal.
func (s *session) surrenderCallback(ctx context.Context) error {
	const step = "surrender callback"
	cb, entry, err := s.await(ctx, rootSurrenderCallback, "policy "+s.res.PolicyNo)
	if err != nil {
		return err
	}
	if flag := text(cb.env, "resultFlag"); flag != "true" {
		entry.Result = resultFail
		s.record(entry)
		return s.deviation(step, ErrRefused, "the core reports the surrender as not settled (resultFlag=%s): %s", flag, text(cb.env, "resultMessage"))
	}
	s.record(entry)
	return nil
}

// request sends one message (with the policy number set, unless policyNo
// is "") and records it; values picks what the transcript shows.
func (s *session) request(ctx context.Context, step string, msg message, policyNo string,
	values func([]protocol.Element, *protocol.Envelope) []KV) (*exchange, error) {
	if err := s.checkCallbacks(); err != nil {
		return nil, err
	}
	if policyNo != "" {
		msg.body = withPolicy(msg.body, policyNo)
	}
	s.trigger = s.cfg.Clock.Now()
	ex, entry, err := s.send(ctx, step, msg)
	if ex != nil {
		entry.Values = values(msg.body, ex.reply)
	}
	s.record(entry)
	return ex, err
}

// checkCallbacks fails the run as soon as a callback the receiver had to
// refuse is seen, rather than at the next wait.
func (s *session) checkCallbacks() error {
	s.backlog = append(s.backlog, s.rcv.take()...)
	for _, cb := range s.backlog {
		if cb.kind != nil {
			return s.refused(cb)
		}
	}
	return nil
}

// await waits (up to Timeout) for the callback root concerning whom. A
// resend of a callback already seen is noted and skipped; a refused one
// ends the run; another callback first means they came out of order.
// Failures are recorded here; the entry of the callback awaited is
// returned for the caller to check the contents and record.
func (s *session) await(ctx context.Context, root, whom string) (*callback, Entry, error) {
	step := callbackStep(root)
	start := s.cfg.Clock.Now()
	timeout := s.cfg.Clock.After(s.cfg.Timeout)
	s.backlog = append(s.backlog, s.rcv.take()...)
	for {
		for len(s.backlog) > 0 {
			cb := s.backlog[0]
			s.backlog = s.backlog[1:]
			switch {
			case cb.kind != nil:
				return nil, Entry{}, s.refused(cb)
			case cb.dup || s.consumed[cb.root]:
				s.record(callbackEntry(cb, resultAgain, 0))
				continue
			case cb.root != root:
				s.record(callbackEntry(cb, resultFail, 0))
				return nil, Entry{}, s.deviation(step, ErrProtocol, "received %s (requestUUID %s) while waiting for %s: callbacks out of order", cb.root, cb.uuid, root)
			}
			s.consumed[root] = true
			return cb, callbackEntry(cb, resultOK, max(cb.at.Sub(s.trigger), 0)), nil
		}
		select {
		case <-s.rcv.notify:
			s.backlog = append(s.backlog, s.rcv.take()...)
		case <-timeout:
			s.record(Entry{Step: step, Direction: "←", Message: root, Result: resultFail, Duration: s.cfg.Clock.Now().Sub(start),
				Text: "no callback within " + s.cfg.Timeout.String()})
			return nil, Entry{}, s.deviation(step, ErrNoCallback, "no %s for %s within %s; check that the sidecar's callbacks base points at this receiver and look at `caddy gongbao deliveries list`",
				root, whom, s.cfg.Timeout)
		case <-ctx.Done():
			return nil, Entry{}, fmt.Errorf("step %s: %w", step, ctx.Err())
		}
	}
}

// failed records entry as failed, saying why, and returns the deviation.
func (s *session) failed(e Entry, why string, dev *Deviation) error {
	e.Result = resultFail
	e.Text = why
	s.record(e)
	return dev
}

// refused records a callback the receiver refused and turns it into the
// run's deviation.
func (s *session) refused(cb *callback) error {
	e := callbackEntry(cb, resultFail, 0)
	e.Text = "answered resultFlag=false: " + cb.answer
	s.record(e)
	return s.deviation(callbackStep(cb.root), cb.kind, "%s", cb.detail)
}

func callbackStep(root string) string {
	switch root {
	case rootPaymentCallback:
		return "payment callback"
	case rootInvoiceCallback:
		return "invoice callback"
	case rootSurrenderCallback:
		return "surrender callback"
	}
	return "callback"
}

// callbackEntry shows a received callback: its key values, none of them
// personal data (spec 3.4.6), so shown as they are.
func callbackEntry(cb *callback, result string, took time.Duration) Entry {
	e := Entry{Step: callbackStep(cb.root), Direction: "←", Message: cb.root, RequestUUID: cb.uuid, Result: result, Duration: took}
	if cb.env == nil {
		return e
	}
	var keys []string
	switch cb.root {
	case rootPaymentCallback:
		keys = []string{"policyNo", "proposalNo", "payType", "payTime", "insuranceCode", "downLoadUrl"}
	case rootInvoiceCallback:
		keys = []string{"policyNo", "downLoadUrl", "expressName", "expressNo"}
	case rootSurrenderCallback:
		keys = []string{"policyNo", "resultFlag"}
		e.Text = text(cb.env, "resultMessage")
	default:
		keys = []string{"policyNo"}
	}
	for _, k := range keys {
		e.Values = append(e.Values, KV{k, text(cb.env, k)})
	}
	return e
}

func text(env *protocol.Envelope, path ...string) string {
	if env == nil {
		return ""
	}
	v, _ := env.Text(path...)
	return strings.TrimSpace(v)
}

// What each request's transcript line shows: the reply's key values and,
// masked, who the request was about.

func insureValues(body []protocol.Element, reply *protocol.Envelope) []KV {
	return []KV{
		{"proposalNo", text(reply, "proposalNo")},
		{"yeepayurl", text(reply, "yeepayurl")},
		{"applicant", pii.Name.Mask(leaf(body, "applicantInfo", "name"))},
		{"mobile", pii.Mobile.Mask(leaf(body, "applicantInfo", "mobile"))},
		{"idNumber", pii.ID.Mask(leaf(body, "applicantInfo", "idNumber"))},
		{"sumPremium", leaf(body, "policyInfo", "sumPremium")},
	}
}

func correctValues(body []protocol.Element, reply *protocol.Envelope) []KV {
	return []KV{
		{"policyNo", policyOf(body)},
		{"insured", pii.Name.Mask(leaf(body, "correctInfo", "insuredInfo", "name"))},
		{"InsurancePhone", text(reply, "InsurancePhone")},
		{"InsuranceTime", text(reply, "InsuranceTime")},
		{"downLoadUrl", text(reply, "downLoadUrl")},
	}
}

func claimValues(body []protocol.Element, _ *protocol.Envelope) []KV {
	return []KV{
		{"policyNo", policyOf(body)},
		{"claimant", pii.Name.Mask(leaf(body, "claimName"))},
		{"claimPhone", pii.Mobile.Mask(leaf(body, "claimPhone"))},
	}
}

func invoiceValues(body []protocol.Element, _ *protocol.Envelope) []KV {
	return []KV{
		{"policyNo", policyOf(body)},
		{"InvoiceType", leaf(body, "InvoiceType")},
		{"InvoiceHead", pii.Name.Mask(leaf(body, "InvoiceHead"))},
	}
}

func surrenderValues(body []protocol.Element, _ *protocol.Envelope) []KV {
	return []KV{
		{"policyNo", policyOf(body)},
		{"account", pii.Bank.Mask(leaf(body, "bankNo"))},
	}
}

func policyOf(body []protocol.Element) string {
	for _, el := range body {
		if isPolicyField(el.Name) && len(el.Children) == 0 {
			return el.Text
		}
	}
	return ""
}
