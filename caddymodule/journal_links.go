package caddymodule

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-gongbao/gongbao/caddymodule/protocol"
	"github.com/caddy-gongbao/gongbao/caddymodule/store"
)

// linkQueueSize bounds the proposal→policy links waiting to be written.
// One link is learnt per issued policy, far fewer than journal entries.
const linkQueueSize = 1024

// link queues a proposal→policy link for the journal. It never waits: the
// event intake that learns links must not slow down for a convenience of
// look-ups. A link lost to a full queue is counted and logged.
func (w *journalWriter) link(l store.PolicyLink) {
	select {
	case w.links <- l:
	default:
		metricJournalDropped.Inc()
		w.log.Error("journal queue full: policy link dropped", zap.String("policy_no", l.PolicyNo))
	}
}

// writeLinks writes first and whatever links are already queued.
func (w *journalWriter) writeLinks(first store.PolicyLink) {
	batch := []store.PolicyLink{first}
fill:
	for len(batch) < journalBatchMax {
		select {
		case l := <-w.links:
			batch = append(batch, l)
		default:
			break fill
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.journal.Link(ctx, batch); err != nil {
		metricJournalDropped.Add(float64(len(batch)))
		w.log.Error("writing policy links", zap.Int("links", len(batch)), zap.Error(err))
	}
}

// drainLinks writes the links still queued, on close.
func (w *journalWriter) drainLinks() {
	for {
		select {
		case l := <-w.links:
			w.writeLinks(l)
		default:
			return
		}
	}
}

// notePolicyLink learns, from a callback the core asked for, which policy
// a proposal became: the payment callback (queryPolicyRequest) carries
// both the proposalNo and the policy number it is ordered by. Callbacks
// without a proposalNo teach nothing.
func (a *App) notePolicyLink(body []protocol.Element, policyNo string) {
	w := a.journal()
	if w == nil || policyNo == "" {
		return
	}
	for _, e := range body {
		if e.Name == "proposalNo" && e.Text != "" {
			w.link(store.PolicyLink{ProposalNo: e.Text, PolicyNo: policyNo, At: time.Now()})
			return
		}
	}
}

// linkedPolicy is the policy a journal query is about: its policy number,
// or the policy its proposal number became (once the payment callback has
// linked them), or "" for neither.
func (a *App) linkedPolicy(ctx context.Context, q store.JournalQuery) (string, error) {
	if q.PolicyNo != "" || q.ProposalNo == "" {
		return q.PolicyNo, nil
	}
	return a.store.journal.journal.LinkedPolicy(ctx, q.ProposalNo)
}
