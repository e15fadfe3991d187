package caddymodule

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// The command line's text view of the admin API's answers, for people:
// bodies indented, durations as 1.2s, times in China Standard Time. The
// admin API's JSON stays available with --json, for machines.

// textView renders one admin API answer (JSON) as text.
type textView func(out io.Writer, data []byte) error

// bodyIndent is how far a body is indented under its heading.
const bodyIndent = "      "

// journalText renders GET /gongbao/journal: exchanges and callbacks in
// one time line.
func journalText(out io.Writer, data []byte) error {
	var answer struct {
		Exchanges []journalEntryJSON `json:"exchanges"`
		Callbacks []deliveryJSON     `json:"callbacks"`
	}
	if err := json.Unmarshal(data, &answer); err != nil {
		return fmt.Errorf("reading the journal answer: %w", err)
	}
	type item struct {
		at    time.Time
		write func()
	}
	var items []item
	for _, e := range answer.Exchanges {
		items = append(items, item{e.At, func() { writeExchange(out, e) }})
	}
	for _, d := range answer.Callbacks {
		items = append(items, item{d.CreatedAt, func() { writeDelivery(out, d) }})
	}
	if len(items) == 0 {
		_, err := fmt.Fprintln(out, "nothing recorded")
		return err
	}
	slices.SortStableFunc(items, func(a, b item) int { return a.at.Compare(b.at) })
	for i, it := range items {
		if i > 0 {
			fmt.Fprintln(out)
		}
		it.write()
	}
	return nil
}

// writeExchange prints one platform exchange with its bodies.
func writeExchange(out io.Writer, e journalEntryJSON) {
	fmt.Fprintf(out, "%s  %s  %s  %s  %s", displayTime(e.At), e.Message, messageLabel(e.Message), e.Outcome, humanDuration(e.Duration))
	if e.CoreStatus != 0 {
		fmt.Fprintf(out, "  core HTTP %d", e.CoreStatus)
	}
	fmt.Fprintf(out, "\n  requestUUID %s", e.RequestUUID)
	if e.ProposalNo != "" {
		fmt.Fprintf(out, "  proposal %s", e.ProposalNo)
	}
	if e.PolicyNo != "" {
		fmt.Fprintf(out, "  policy %s", e.PolicyNo)
	}
	fmt.Fprintln(out)
	if e.Error != "" {
		fmt.Fprintf(out, "  error: %s\n", e.Error)
	}
	writeBody(out, "platform request", e.RequestXML)
	writeBody(out, "sent to the core", e.CoreRequest)
	writeBody(out, "the core's answer", e.CoreReply)
	writeBody(out, "our reply", e.ReplyXML)
}

// writeDelivery prints one callback with its body and every attempt.
func writeDelivery(out io.Writer, d deliveryJSON) {
	fmt.Fprintf(out, "%s  %s  %s  callback #%d  %s  %d attempt(s)\n", displayTime(d.CreatedAt), d.Callback,
		messageLabel(d.Callback), d.ID, d.State, d.AttemptCount)
	fmt.Fprintf(out, "  requestUUID %s  policy %s  event %s\n  url %s\n", d.RequestUUID, cmp.Or(d.OrderKey, "-"), d.Event, d.URL)
	if d.LastError != "" {
		fmt.Fprintf(out, "  last error: %s\n", d.LastError)
	}
	writeBody(out, "signed callback", d.Body)
	for _, a := range d.Attempts {
		status := "no answer"
		if a.HTTPStatus != 0 {
			status = fmt.Sprintf("HTTP %d", a.HTTPStatus)
		}
		fmt.Fprintf(out, "  attempt %d  %s  %s  %s  %s\n", a.N, displayTime(a.StartedAt), status, a.Outcome, humanDuration(a.Duration))
		if a.Error != "" {
			fmt.Fprintf(out, "    error: %s\n", a.Error)
		}
		writeBody(out, "  platform's reply", a.Reply)
	}
}

// writeBody prints a body under a heading, indented; nothing when empty.
func writeBody(out io.Writer, title, body string) {
	text := prettyBody([]byte(body))
	if text == "" {
		return
	}
	fmt.Fprintf(out, "  %s:\n", title)
	for line := range strings.SplitSeq(text, "\n") {
		fmt.Fprintln(out, bodyIndent+line)
	}
}

// deliveryText renders one delivery (deliveries show, deliveries retry).
func deliveryText(out io.Writer, data []byte) error {
	var d deliveryJSON
	if err := json.Unmarshal(data, &d); err != nil {
		return fmt.Errorf("reading the delivery: %w", err)
	}
	writeDelivery(out, d)
	return nil
}

// deliveryListText renders GET /gongbao/deliveries as a table.
func deliveryListText(out io.Writer, data []byte) error {
	var answer struct {
		Deliveries []deliveryJSON `json:"deliveries"`
		Next       int64          `json:"next"`
	}
	if err := json.Unmarshal(data, &answer); err != nil {
		return fmt.Errorf("reading the deliveries: %w", err)
	}
	if len(answer.Deliveries) == 0 {
		_, err := fmt.Fprintln(out, "no delivery")
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tCALLBACK\tPOLICY\tATTEMPTS\tCREATED\tLAST ERROR")
	for _, d := range answer.Deliveries {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\t%s\n", d.ID, d.State, d.Callback, cmp.Or(d.OrderKey, "-"),
			d.AttemptCount, displayTime(d.CreatedAt), clipText(d.LastError, 60))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if answer.Next > 0 {
		fmt.Fprintf(out, "more: --after %d\n", answer.Next)
	}
	return nil
}

// deliveryStatsText renders GET /gongbao/deliveries/stats.
func deliveryStatsText(out io.Writer, data []byte) error {
	var s deliveryStatsJSON
	if err := json.Unmarshal(data, &s); err != nil {
		return fmt.Errorf("reading the statistics: %w", err)
	}
	fmt.Fprintf(out, "pending    %d\ndelivered  %d\ndead       %d\n", s.Pending, s.Delivered, s.Dead)
	if s.OldestPendingSince != nil {
		age := time.Duration(s.OldestPendingAge * float64(time.Second))
		fmt.Fprintf(out, "oldest pending: %s (since %s)\n", humanDuration(age), displayTime(*s.OldestPendingSince))
	}
	return nil
}

// clipText shortens s to n characters for a table cell.
func clipText(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
