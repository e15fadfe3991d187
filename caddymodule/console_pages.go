package caddymodule

import (
	"cmp"
	"context"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddy-gongbao/gongbao/caddymodule/delivery"
	"github.com/caddy-gongbao/gongbao/caddymodule/protocol"
	"github.com/caddy-gongbao/gongbao/caddymodule/store"
)

// overviewWindow is the period the overview counts.
const overviewWindow = 24 * time.Hour

// overviewView is the content of the overview page.
type overviewView struct {
	Since          time.Time
	RequestsTotal  int64
	Requests       barChart
	CallbacksTotal int64
	Callbacks      barChart
	Pending, Dead  int64
	OldestPending  string // age of the oldest pending callback, "" when none
	JournalOff     bool
}

// overview: GET / — the last day at a glance, from the store.
func (c *Console) overview(w http.ResponseWriter, r *http.Request, route consoleRoute) error {
	now := time.Now()
	v := overviewView{Since: now.Add(-overviewWindow)}
	if j := c.app.journal(); j != nil {
		outcomes, err := j.journal.CountOutcomes(r.Context(), v.Since)
		if err != nil {
			return c.storeFailed(w, route, err)
		}
		var rows []chartRowData
		for _, o := range outcomes {
			v.RequestsTotal += o.Count
			rows = append(rows, chartRowData{Label: o.Outcome, Count: o.Count, Class: stateClass(o.Outcome)})
		}
		v.Requests = newBarChart(rows)
	} else {
		v.JournalOff = true
	}
	engine := c.app.store.deliveries.engine
	recent, err := engine.CountCreatedSince(r.Context(), v.Since)
	if err != nil {
		return c.storeFailed(w, route, err)
	}
	var rows []chartRowData
	for _, s := range []delivery.State{delivery.StateDelivered, delivery.StatePending, delivery.StateDead} {
		v.CallbacksTotal += recent[s]
		rows = append(rows, chartRowData{Label: string(s), Count: recent[s], Class: stateClass(string(s))})
	}
	v.Callbacks = newBarChart(rows)
	stats, err := engine.Stats(r.Context())
	if err != nil {
		return c.storeFailed(w, route, err)
	}
	v.Pending, v.Dead = stats.Pending, stats.Dead
	if stats.OldestPendingSince != nil {
		v.OldestPending = humanDuration(stats.OldestPendingAge)
	}
	return c.render(w, http.StatusOK, "overview", pageData{Base: route.base, Title: "Overview", Nav: "overview",
		Operator: operator(r), Content: v})
}

// search: GET /search?q= — one box for a requestUUID, a policy number or
// a proposal number. A requestUUID leads to the timeline of its policy
// (or to its callback); anything else is taken for a policy or proposal
// number.
func (c *Console) search(w http.ResponseWriter, r *http.Request, route consoleRoute) error {
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	if q == "" {
		return redirect(w, r, route, "/")
	}
	target, found, err := c.findByRequestUUID(r.Context(), q)
	if err != nil {
		return c.storeFailed(w, route, err)
	}
	if found {
		return redirect(w, r, route, target)
	}
	return redirect(w, r, route, "/policy/"+url.PathEscape(q))
}

// findByRequestUUID is the console path of what carries requestUUID: the
// timeline of the exchange's policy (at the exchange), the callback, or a
// timeline of the requestUUID alone when the exchange names no policy
// (a refused, unverified request).
func (c *Console) findByRequestUUID(ctx context.Context, uuid string) (string, bool, error) {
	if j := c.app.journal(); j != nil {
		entries, err := j.journal.Find(ctx, store.JournalQuery{RequestUUID: uuid})
		if err != nil {
			return "", false, err
		}
		if len(entries) > 0 {
			e := entries[0]
			number := cmp.Or(e.PolicyNo, e.ProposalNo, uuid)
			return "/policy/" + url.PathEscape(number) + "#x" + strconv.FormatInt(e.ID, 10), true, nil
		}
	}
	callbacks, err := c.app.store.deliveries.engine.Find(ctx, delivery.FindOptions{RequestUUID: uuid, Limit: 1})
	if err != nil {
		return "", false, err
	}
	if len(callbacks) > 0 {
		return "/callbacks/" + strconv.FormatInt(callbacks[0].ID, 10), true, nil
	}
	return "", false, nil
}

// timelineView is the content of the timeline page.
type timelineView struct {
	Number      string // what was looked up
	PolicyNo    string
	ProposalNos []string
	Steps       []timelineStep
	Exchanges   int
	Callbacks   int
}

// timelineStep is one platform exchange or one callback.
type timelineStep struct {
	Anchor      string
	At          time.Time
	Root        string
	Callback    bool
	Outcome     string
	Duration    time.Duration
	RequestUUID string
	CoreStatus  int
	Error       string
	Bodies      []bodyView
	Delivery    *callbackView // callbacks only
}

// timeline: GET /policy/<number> — every exchange and callback of a
// policy in time order. A proposal number that has become a policy
// redirects to the policy; one that has not shows its own exchanges. A
// requestUUID whose exchange names no policy shows that exchange.
func (c *Console) timeline(w http.ResponseWriter, r *http.Request, route consoleRoute, number string) error {
	if c.app.journal() == nil {
		return c.fail(w, route, http.StatusConflict, "The journal is off", "Turn the gongbao journal on to see exchanges.")
	}
	ctx := r.Context()
	j := c.app.store.journal.journal
	entries, err := j.Find(ctx, store.JournalQuery{PolicyNo: number, Limit: 1000})
	if err != nil {
		return c.storeFailed(w, route, err)
	}
	policy := number
	if len(entries) == 0 {
		linked, err := j.LinkedPolicy(ctx, number)
		if err != nil {
			return c.storeFailed(w, route, err)
		}
		if linked != "" {
			return redirect(w, r, route, "/policy/"+url.PathEscape(linked))
		}
		if entries, err = c.byProposalOrUUID(ctx, number); err != nil {
			return c.storeFailed(w, route, err)
		}
		policy = ""
	}
	var callbacks []delivery.Delivery
	if policy != "" {
		if callbacks, err = c.app.store.deliveries.engine.Find(ctx, delivery.FindOptions{OrderKey: policy, Limit: 1000}); err != nil {
			return c.storeFailed(w, route, err)
		}
	}
	if len(entries) == 0 && len(callbacks) == 0 {
		return c.render(w, http.StatusNotFound, "search", pageData{Base: route.base, Title: "Nothing found", Query: number,
			Operator: operator(r), Content: number})
	}
	v := c.timelineOf(number, entries, callbacks)
	if len(callbacks) > 0 || policyKnown(entries, number) {
		v.PolicyNo = number
	}
	return c.render(w, http.StatusOK, "timeline", pageData{Base: route.base, Title: "Policy " + number, Query: number,
		Operator: operator(r), Content: v})
}

// byProposalOrUUID finds the exchanges of a proposal that has not become
// a policy yet, or else of a requestUUID.
func (c *Console) byProposalOrUUID(ctx context.Context, number string) ([]store.JournalEntry, error) {
	j := c.app.store.journal.journal
	entries, err := j.Find(ctx, store.JournalQuery{ProposalNo: number, Limit: 1000})
	if err != nil || len(entries) > 0 {
		return entries, err
	}
	return j.Find(ctx, store.JournalQuery{RequestUUID: number, Limit: 1000})
}

// policyKnown tells whether an exchange names number as its policy.
func policyKnown(entries []store.JournalEntry, number string) bool {
	return slices.ContainsFunc(entries, func(e store.JournalEntry) bool { return e.PolicyNo == number })
}

// timelineOf merges exchanges and callbacks into one time line: an
// exchange at its arrival, a callback when the core asked for it.
func (c *Console) timelineOf(number string, entries []store.JournalEntry, callbacks []delivery.Delivery) timelineView {
	v := timelineView{Number: number, Exchanges: len(entries), Callbacks: len(callbacks)}
	for _, e := range entries {
		if e.ProposalNo != "" && !slices.Contains(v.ProposalNos, e.ProposalNo) {
			v.ProposalNos = append(v.ProposalNos, e.ProposalNo)
		}
		e = c.masked(e)
		v.Steps = append(v.Steps, timelineStep{
			Anchor: "x" + strconv.FormatInt(e.ID, 10), At: e.At, Root: e.Message, Outcome: e.Outcome,
			Duration: e.Duration, RequestUUID: e.RequestUUID, CoreStatus: e.CoreStatus, Error: e.Error,
			Bodies: bodies("Platform request", e.RequestXML, "Sent to the core", e.CoreRequest,
				"The core's answer", e.CoreReply, "Our reply", e.ReplyXML),
		})
	}
	for _, d := range callbacks {
		cv := newCallbackView(d)
		v.Steps = append(v.Steps, timelineStep{
			Anchor: "c" + strconv.FormatInt(d.ID, 10), At: d.CreatedAt, Root: d.Callback, Callback: true,
			Outcome: string(d.State), Duration: cv.TotalDuration, RequestUUID: d.RequestUUID, Error: d.LastError,
			Bodies: bodies("Signed callback", d.Body), Delivery: &cv,
		})
	}
	slices.SortStableFunc(v.Steps, func(a, b timelineStep) int { return a.At.Compare(b.At) })
	v.Steps = c.withPayments(v.Steps)
	return v
}

// paymentStep is the timeline's step for the premium being paid at the
// core. The sidecar does not see the payment itself; the payment callback
// reports when it happened (payTime).
const paymentStep = "payment"

// withPayments puts a payment step before each payment callback, at the
// payTime the callback reports. It goes right before the callback, not
// where its time sorts: payTime has whole seconds, and would sort a
// payment made in the same second as the insure exchange before it.
func (c *Console) withPayments(steps []timelineStep) []timelineStep {
	out := make([]timelineStep, 0, len(steps)+1)
	for _, s := range steps {
		if s.Callback && s.Root == "queryPolicyRequest" && s.Delivery != nil {
			if paid, ok := c.payTime(s.Delivery.Body); ok {
				out = append(out, timelineStep{Anchor: s.Anchor + "-paid", At: paid, Root: paymentStep, Outcome: "paid"})
			}
		}
		out = append(out, s)
	}
	return out
}

// payTime reads the payment time out of a signed payment callback.
func (c *Console) payTime(body []byte) (time.Time, bool) {
	env, err := protocol.Parse(body, c.app.limits)
	if err != nil {
		return time.Time{}, false
	}
	text, ok := env.Text("payTime")
	if !ok {
		return time.Time{}, false
	}
	t, err := time.ParseInLocation("2006-01-02 15:04:05", text, shanghai)
	return t, err == nil
}
