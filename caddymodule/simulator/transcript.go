package simulator

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// Entry is one line of the transcript.
type Entry struct {
	Step        string        // "insure", "pay", "payment callback", …
	Direction   string        // "→" we sent, "←" we received, "·" a note
	Message     string        // request/callback root, or "GET yeepayurl"
	RequestUUID string        // the message's requestUUID ("" for the payment page)
	Result      string        // "ok", "FAIL", "again", "skipped"
	Text        string        // resultMessage or what went wrong, masked
	Values      []KV          // key values, personal data masked
	Duration    time.Duration // request to reply, or wait for a callback
}

// KV is a key value shown on a transcript line.
type KV struct{ Key, Value string }

// Result values.
const (
	resultOK      = "ok"
	resultFail    = "FAIL"
	resultAgain   = "again" // a callback delivered once more (at least once)
	resultSkipped = "skipped"
)

// printer writes the transcript as it happens, so a human paying by hand
// (NoPay) sees the link at once. It is safe for concurrent use.
type printer struct {
	mu   sync.Mutex
	w    io.Writer
	mask func(string) string // masks free text
	n    int
}

func newPrinter(w io.Writer, mask func(string) string) *printer {
	if w == nil {
		w = io.Discard
	}
	return &printer{w: w, mask: mask}
}

func (p *printer) header(platformURL, callbackBase string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "simulating 工保网 against %s\n", platformURL)
	fmt.Fprintf(p.w, "callbacks received on %s/<root> (the sidecar's callbacks base)\n\n", callbackBase)
	fmt.Fprintf(p.w, "%2s  %-18s   %-20s %-36s  %-7s %8s  %s\n", "#", "STEP", "MESSAGE", "REQUEST UUID", "RESULT", "TIME", "DETAILS")
}

// line formats one entry. Values are masked by the caller; Text, which
// may quote the core, is masked here.
func (p *printer) line(e Entry) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n++
	var details []string
	if e.Text != "" {
		details = append(details, p.mask(e.Text))
	}
	for _, kv := range e.Values {
		if kv.Value != "" {
			details = append(details, kv.Key+"="+kv.Value)
		}
	}
	uuid := e.RequestUUID
	if uuid == "" {
		uuid = "-"
	}
	dur := "-"
	if e.Duration > 0 {
		dur = formatDuration(e.Duration)
	}
	fmt.Fprintf(p.w, "%2d  %-18s %s %-20s %-36s  %-7s %8s  %s\n",
		p.n, e.Step, e.Direction, e.Message, uuid, e.Result, dur, strings.Join(details, "  "))
}

func (p *printer) summary(res *Result, err error, took time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		fmt.Fprintf(p.w, "\nFAIL after %s: %s\n", formatDuration(took), p.mask(err.Error()))
		return
	}
	fmt.Fprintf(p.w, "\nok: lifecycle complete for proposal %s, policy %s in %s\n", res.ProposalNo, res.PolicyNo, formatDuration(took))
}

func formatDuration(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	default:
		return d.Round(100 * time.Millisecond).String()
	}
}
