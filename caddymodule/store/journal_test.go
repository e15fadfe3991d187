package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// TestJournalConformance runs the journal cases on both backends.
func TestJournalConformance(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Run("AppendFindPurge", func(t *testing.T) { testJournalAppendFindPurge(t, b.fresh(t)) })
			t.Run("AppendIsAtomic", func(t *testing.T) { testJournalAppendIsAtomic(t, b.fresh(t)) })
			t.Run("Unmapped", func(t *testing.T) { testJournalUnmapped(t, b.fresh(t)) })
		})
	}
}

func newJournal(t *testing.T, open func() *DB) *Journal {
	t.Helper()
	j, err := NewJournal(context.Background(), open())
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func testJournalAppendFindPurge(t *testing.T, open func() *DB) {
	ctx := context.Background()
	j := newJournal(t, open)
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC)
	entries := []JournalEntry{
		{At: t0, Message: "insureRequest", RequestUUID: "u1", ProposalNo: "TB1", Outcome: "ok", Duration: 1500 * time.Microsecond,
			CoreStatus: 201, RequestXML: []byte("<insureRequest/>"), CoreRequest: []byte(`{"a":1}`), CoreReply: []byte(`{"b":2}`), ReplyXML: []byte("<insureResponse/>")},
		{At: t0.Add(time.Hour), Message: "claimRequest", RequestUUID: "u2", PolicyNo: "BD1", Outcome: "bad_signature", Error: "signature mismatch", RequestXML: []byte("<claimRequest/>")},
		{At: t0.Add(2 * time.Hour), Message: "claimRequest", RequestUUID: "u2", PolicyNo: "BD1", Outcome: "ok", RequestXML: []byte("<claimRequest/>")},
	}
	if err := j.Append(ctx, entries); err != nil {
		t.Fatal(err)
	}
	got, err := j.Find(ctx, JournalQuery{RequestUUID: "u1"})
	if err != nil || len(got) != 1 {
		t.Fatalf("by uuid: %v %+v", err, got)
	}
	e := got[0]
	if !e.At.Equal(t0.Truncate(time.Microsecond)) || e.Duration != 1500*time.Microsecond || e.CoreStatus != 201 ||
		e.ProposalNo != "TB1" || !bytes.Equal(e.CoreReply, []byte(`{"b":2}`)) || !bytes.Equal(e.ReplyXML, []byte("<insureResponse/>")) {
		t.Errorf("entry read back differs: %+v", e)
	}
	if got, _ := j.Find(ctx, JournalQuery{PolicyNo: "BD1"}); len(got) != 2 || got[0].Outcome != "bad_signature" {
		t.Errorf("by policy: %+v", got)
	}
	if got, _ := j.Find(ctx, JournalQuery{ProposalNo: "TB1"}); len(got) != 1 {
		t.Errorf("by proposal: %+v", got)
	}
	if _, err := j.Find(ctx, JournalQuery{}); err == nil {
		t.Error("an empty query must be refused")
	}

	if n, err := j.PurgeBodies(ctx, t0.Add(90*time.Minute)); err != nil || n != 2 {
		t.Fatalf("PurgeBodies = %d, %v; want 2", n, err)
	}
	got, _ = j.Find(ctx, JournalQuery{PolicyNo: "BD1"})
	if got[0].RequestXML != nil || got[1].RequestXML == nil || got[0].Outcome != "bad_signature" {
		t.Errorf("after PurgeBodies: %+v", got)
	}
	if n, err := j.Purge(ctx, t0.Add(90*time.Minute)); err != nil || n != 2 {
		t.Fatalf("Purge = %d, %v; want 2", n, err)
	}
	if got, _ := j.Find(ctx, JournalQuery{PolicyNo: "BD1"}); len(got) != 1 || got[0].Outcome != "ok" {
		t.Errorf("after Purge: %+v", got)
	}
}

func testJournalAppendIsAtomic(t *testing.T, open func() *DB) {
	ctx := context.Background()
	db := open()
	j, err := NewJournal(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Append(ctx, []JournalEntry{{At: time.Now(), Message: "m", RequestUUID: "a", Outcome: "ok"}}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	err = j.Append(ctx, []JournalEntry{{At: time.Now(), Message: "m", RequestUUID: "b", Outcome: "ok"}})
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("append on a closed store: %v, want ErrUnavailable", err)
	}
}

// testJournalUnmapped: the names of unread elements are stored and read
// back, bounded in number and length; none stays nil.
func testJournalUnmapped(t *testing.T, open func() *DB) {
	ctx := context.Background()
	j := newJournal(t, open)
	many := make([]string, 0, 40)
	for i := range 40 {
		many = append(many, fmt.Sprintf("x%d", i))
	}
	many[1] = strings.Repeat("长", 100) // 300 bytes
	entries := []JournalEntry{
		{At: time.Now(), Message: "insureRequest", RequestUUID: "u1", Outcome: "ok", Unmapped: []string{"ProjectType", "dateInfo/startDate"}},
		{At: time.Now(), Message: "insureRequest", RequestUUID: "u2", Outcome: "ok", Unmapped: many},
		{At: time.Now(), Message: "insureRequest", RequestUUID: "u3", Outcome: "ok"},
	}
	if err := j.Append(ctx, entries); err != nil {
		t.Fatal(err)
	}
	got, err := j.Find(ctx, JournalQuery{RequestUUID: "u1"})
	if err != nil || len(got) != 1 || !slices.Equal(got[0].Unmapped, []string{"ProjectType", "dateInfo/startDate"}) {
		t.Errorf("u1: %v %+v", err, got)
	}
	got, _ = j.Find(ctx, JournalQuery{RequestUUID: "u2"})
	if u := got[0].Unmapped; len(u) != MaxUnmappedNames || len(u[1]) > MaxUnmappedName || !utf8.ValidString(u[1]) || u[31] != "x31" {
		t.Errorf("u2 not bounded: %d names, second %d bytes", len(u), len(u[1]))
	}
	got, _ = j.Find(ctx, JournalQuery{RequestUUID: "u3"})
	if got[0].Unmapped != nil {
		t.Errorf("u3: %q, want nil", got[0].Unmapped)
	}
}
