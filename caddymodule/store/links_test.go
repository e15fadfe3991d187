package store

import (
	"context"
	"testing"
	"time"
)

// TestPolicyLinksConformance runs the link cases on both backends.
func TestPolicyLinksConformance(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Run("FindThroughLinks", func(t *testing.T) { testFindThroughLinks(t, b.fresh(t)) })
			t.Run("CountOutcomes", func(t *testing.T) { testCountOutcomes(t, b.fresh(t)) })
		})
	}
}

// testFindThroughLinks: the insure exchange knows only the proposal
// number, later exchanges only the policy number; once linked, each
// number finds both, and another policy's exchanges stay out.
func testFindThroughLinks(t *testing.T, open func() *DB) {
	ctx := context.Background()
	j := newJournal(t, open)
	t0 := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	if err := j.Append(ctx, []JournalEntry{
		{At: t0, Message: "insureRequest", RequestUUID: "u1", ProposalNo: "TB1", Outcome: "ok"},
		{At: t0.Add(time.Hour), Message: "claimRequest", RequestUUID: "u2", PolicyNo: "BD1", Outcome: "ok"},
		{At: t0.Add(time.Hour), Message: "claimRequest", RequestUUID: "u3", PolicyNo: "BD2", Outcome: "ok"},
	}); err != nil {
		t.Fatal(err)
	}
	if got, _ := j.Find(ctx, JournalQuery{PolicyNo: "BD1"}); len(got) != 1 {
		t.Fatalf("before linking, by policy: %+v", got)
	}
	if err := j.Link(ctx, []PolicyLink{{ProposalNo: "TB1", PolicyNo: "BD1", At: t0}, {ProposalNo: "", PolicyNo: "X"}}); err != nil {
		t.Fatal(err)
	}
	// Learning the same link again (a resent event) is harmless.
	if err := j.Link(ctx, []PolicyLink{{ProposalNo: "TB1", PolicyNo: "BD1", At: t0}}); err != nil {
		t.Fatal(err)
	}
	for _, q := range []JournalQuery{{PolicyNo: "BD1"}, {ProposalNo: "TB1"}} {
		got, err := j.Find(ctx, q)
		if err != nil || len(got) != 2 || got[0].RequestUUID != "u1" || got[1].RequestUUID != "u2" {
			t.Errorf("%+v: %v %+v", q, err, got)
		}
	}
	if p, err := j.LinkedPolicy(ctx, "TB1"); err != nil || p != "BD1" {
		t.Errorf("LinkedPolicy(TB1) = %q, %v", p, err)
	}
	if p, err := j.LinkedPolicy(ctx, "TB9"); err != nil || p != "" {
		t.Errorf("LinkedPolicy(TB9) = %q, %v; want none", p, err)
	}
	if _, err := j.Purge(ctx, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if p, _ := j.LinkedPolicy(ctx, "TB1"); p != "" {
		t.Errorf("a link past retention survived the purge: %q", p)
	}
}

func testCountOutcomes(t *testing.T, open func() *DB) {
	ctx := context.Background()
	j := newJournal(t, open)
	now := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	var entries []JournalEntry
	for i, outcome := range []string{"ok", "ok", "bad_signature", "ok", "core_unavailable"} {
		entries = append(entries, JournalEntry{At: now.Add(-time.Duration(i) * time.Hour), Message: "claimRequest", RequestUUID: "u", Outcome: outcome})
	}
	entries = append(entries, JournalEntry{At: now.Add(-30 * time.Hour), Message: "claimRequest", RequestUUID: "old", Outcome: "ok"})
	if err := j.Append(ctx, entries); err != nil {
		t.Fatal(err)
	}
	got, err := j.CountOutcomes(ctx, now.Add(-24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	want := []OutcomeCount{{"ok", 3}, {"bad_signature", 1}, {"core_unavailable", 1}}
	if len(got) != len(want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("row %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
}
