package mockcore

import (
	"fmt"
	"net/http"
	"strings"
)

// Stats counts, per operation, the calls received (replays included) and
// the effects they had (state changes), so a test can prove that a
// replayed or refused request changed nothing.
type Stats struct {
	Calls   map[string]int `json:"calls"`
	Effects map[string]int `json:"effects"`
	Events  EventStats     `json:"events"`
}

// Stats returns a snapshot of the counters.
func (c *Core) Stats() Stats {
	c.mu.Lock()
	s := Stats{Calls: make(map[string]int, len(c.calls)), Effects: make(map[string]int, len(c.effects))}
	for k, n := range c.calls {
		s.Calls[k] = n
	}
	for k, n := range c.effects {
		s.Effects[k] = n
	}
	c.mu.Unlock()
	if c.emitter != nil {
		s.Events = c.emitter.stats()
	}
	return s
}

func (c *Core) stats(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, c.Stats())
}

// policyDocument serves GET /policies/{policyNo}.pdf: a text placeholder
// standing in for the electronic policy, reflecting its current state.
func (c *Core) policyDocument(w http.ResponseWriter, r *http.Request) {
	no, ok := strings.CutSuffix(r.PathValue("file"), ".pdf")
	c.mu.Lock()
	p, found := c.policies[no]
	var text string
	if found {
		status := "有效"
		if p.surrendered {
			status = "已退保"
		}
		text = fmt.Sprintf("电子保单（占位文件）\n保单号: %s\n投保单号: %s\n保险期间: %s\n批改次数: %d\n状态: %s\n",
			p.no, p.proposalNo, p.period(), p.endorsed, status)
	}
	c.mu.Unlock()
	if !ok || !found {
		writeJSON(w, http.StatusNotFound, answer{Message: "保单 " + no + " 不存在"})
		return
	}
	writeText(w, no+".pdf", text)
}

// invoiceDocument serves GET /invoices/{invoiceNo}.pdf, the download URL
// of an electronic invoice.
func (c *Core) invoiceDocument(w http.ResponseWriter, r *http.Request) {
	no, ok := strings.CutSuffix(r.PathValue("file"), ".pdf")
	c.mu.Lock()
	policyNo, found := c.invoices[no]
	c.mu.Unlock()
	if !ok || !found {
		writeJSON(w, http.StatusNotFound, answer{Message: "发票 " + no + " 不存在"})
		return
	}
	writeText(w, no+".pdf", fmt.Sprintf("电子发票（占位文件）\n发票号: %s\n保单号: %s\n", no, policyNo))
}

func writeText(w http.ResponseWriter, filename, text string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Content-Disposition", `inline; filename="`+filename+`"`)
	_, _ = w.Write([]byte(text))
}
