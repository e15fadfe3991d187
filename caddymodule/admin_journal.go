package caddymodule

import (
	"net/http"

	"github.com/caddy-gongbao/gongbao/caddymodule/delivery"
	"github.com/caddy-gongbao/gongbao/caddymodule/store"
)

// journalEntryJSON is a journal entry with its bodies as text.
type journalEntryJSON struct {
	store.JournalEntry
	RequestXML  string `json:"request_xml,omitempty"`
	CoreRequest string `json:"core_request,omitempty"`
	CoreReply   string `json:"core_reply,omitempty"`
	ReplyXML    string `json:"reply_xml,omitempty"`
}

// findJournal: GET /gongbao/journal?request_uuid=…|policy_no=…|proposal_no=…
// returns the platform exchanges that match and the callbacks that match
// (by their requestUUID, or the policy number; a proposal number stands for
// the policy it became), each with every body and
// attempt, oldest first: the evidence of what was exchanged when.
func (a *App) findJournal(w http.ResponseWriter, r *http.Request) error {
	if a.store == nil || a.Journal.Disabled {
		return adminError(http.StatusConflict, "the journal is off")
	}
	q, err := parseAdminQuery(r, "request_uuid", "policy_no", "proposal_no", "limit")
	if err != nil {
		return err
	}
	query := store.JournalQuery{RequestUUID: q.text("request_uuid"), PolicyNo: q.text("policy_no"), ProposalNo: q.text("proposal_no")}
	if query.Limit, err = q.limit(); err != nil {
		return err
	}
	if query.RequestUUID == "" && query.PolicyNo == "" && query.ProposalNo == "" {
		return adminError(http.StatusBadRequest, "give request_uuid, policy_no or proposal_no")
	}
	entries, err := a.store.journal.journal.Find(r.Context(), query)
	if err != nil {
		return adminError(http.StatusServiceUnavailable, "reading the journal: %v", err)
	}
	out := struct {
		Exchanges []journalEntryJSON `json:"exchanges"`
		Callbacks []deliveryJSON     `json:"callbacks"`
	}{Exchanges: make([]journalEntryJSON, 0, len(entries)), Callbacks: []deliveryJSON{}}
	for _, e := range entries {
		out.Exchanges = append(out.Exchanges, journalEntryJSON{JournalEntry: e,
			RequestXML: string(e.RequestXML), CoreRequest: string(e.CoreRequest),
			CoreReply: string(e.CoreReply), ReplyXML: string(e.ReplyXML)})
	}
	policy, err := a.linkedPolicy(r.Context(), query)
	if err != nil {
		return adminError(http.StatusServiceUnavailable, "reading the journal: %v", err)
	}
	if query.RequestUUID != "" || policy != "" {
		callbacks, err := a.store.deliveries.engine.Find(r.Context(),
			delivery.FindOptions{RequestUUID: query.RequestUUID, OrderKey: policy, Limit: query.Limit})
		if err != nil {
			return deliveryAdminError(err)
		}
		for _, d := range callbacks {
			out.Callbacks = append(out.Callbacks, toDeliveryJSON(d))
		}
	}
	return writeJSON(w, http.StatusOK, out)
}
