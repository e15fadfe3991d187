package caddymodule

import (
	"context"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddy-gongbao/gongbao/caddymodule/gateway"
	"github.com/caddy-gongbao/gongbao/caddymodule/mapping"
	"github.com/caddy-gongbao/gongbao/caddymodule/store"
	"github.com/caddy-gongbao/gongbao/internal/pii"
)

// JournalConfig sets the message journal: every platform exchange with its
// bodies, kept so an operator can prove what was sent and answered when.
// Callback attempts are kept with their deliveries.
type JournalConfig struct {
	// Disabled turns the journal off.
	Disabled bool `json:"disabled,omitempty"`

	// Retention is how long entries are kept. Default: 2160h (90 days).
	Retention caddy.Duration `json:"retention,omitempty"`

	// BodyRetention is how long the bodies of entries are kept; past it
	// only who, what, when and the outcome remain. Default: 720h (30 days).
	BodyRetention caddy.Duration `json:"body_retention,omitempty"`

	// MaskPersonalData masks names, mobiles, ID numbers, bank accounts,
	// e-mails and addresses (the mapping rows tagged pii) in stored bodies,
	// each by its kind's rule (陈**, 138****2345; see internal/pii).
	MaskPersonalData bool `json:"mask_personal_data,omitempty"`
}

func (c *JournalConfig) withDefaults() {
	if c.Retention == 0 {
		c.Retention = caddy.Duration(90 * 24 * time.Hour)
	}
	if c.BodyRetention == 0 {
		c.BodyRetention = caddy.Duration(30 * 24 * time.Hour)
	}
}

// journalWriter appends entries in batches from a bounded queue, so the
// request path never waits for the journal's fsync.
type journalWriter struct {
	journal *store.Journal
	log     *zap.Logger
	queue   chan store.JournalEntry
	links   chan store.PolicyLink // see journal_links.go
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
}

const (
	journalQueueSize = 8192
	journalBatchMax  = 256
	// journalEnqueueWait is how long a request waits for room in a full
	// queue before its entry is dropped (and counted, and logged).
	journalEnqueueWait = time.Second
)

func newJournalWriter(j *store.Journal, log *zap.Logger) *journalWriter {
	w := &journalWriter{journal: j, log: log, queue: make(chan store.JournalEntry, journalQueueSize),
		links: make(chan store.PolicyLink, linkQueueSize), stop: make(chan struct{}), done: make(chan struct{})}
	go w.run()
	return w
}

// add queues an entry; it waits briefly when the queue is full.
func (w *journalWriter) add(e store.JournalEntry) {
	select {
	case w.queue <- e:
		return
	default:
	}
	timer := time.NewTimer(journalEnqueueWait)
	defer timer.Stop()
	select {
	case w.queue <- e:
	case <-timer.C:
		metricJournalDropped.Inc()
		w.log.Error("journal queue full: entry dropped", zap.String("request_uuid", e.RequestUUID), zap.String("message", e.Message))
	}
}

func (w *journalWriter) run() {
	defer close(w.done)
	batch := make([]store.JournalEntry, 0, journalBatchMax)
	for {
		select {
		case e := <-w.queue:
			batch = append(batch[:0], e)
			batch = w.fill(batch)
			w.write(batch)
		case l := <-w.links:
			w.writeLinks(l)
		case <-w.stop:
			w.drain(batch)
			w.drainLinks()
			return
		}
	}
}

// fill takes what is already queued, up to a batch.
func (w *journalWriter) fill(batch []store.JournalEntry) []store.JournalEntry {
	for len(batch) < journalBatchMax {
		select {
		case e := <-w.queue:
			batch = append(batch, e)
		default:
			return batch
		}
	}
	return batch
}

func (w *journalWriter) drain(batch []store.JournalEntry) {
	for {
		batch = w.fill(batch[:0])
		if len(batch) == 0 {
			return
		}
		w.write(batch)
	}
}

func (w *journalWriter) write(batch []store.JournalEntry) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.journal.Append(ctx, batch); err != nil {
		metricJournalDropped.Add(float64(len(batch)))
		w.log.Error("writing the journal", zap.Int("entries", len(batch)), zap.Error(err))
	}
}

// close writes what is queued and stops.
func (w *journalWriter) close() {
	w.once.Do(func() { close(w.stop) })
	<-w.done
}

// journalEntry builds the entry of a finished exchange.
func (h *Handler) journalEntry(x *gateway.Exchange, reply []byte) store.JournalEntry {
	e := store.JournalEntry{
		At: x.Start, Message: x.Root, RequestUUID: x.RequestUUID, Outcome: x.Outcome,
		Duration: time.Since(x.Start), CoreStatus: x.CoreStatus,
		PolicyNo: x.PolicyNo, ProposalNo: x.ProposalNo,
		RequestXML: x.RequestXML, CoreRequest: x.CoreRequest, CoreReply: x.CoreReply, ReplyXML: reply,
		Error: x.ErrText, ReplayOf: x.ReplayOf, Instance: h.app.instance, Unmapped: x.Unmapped,
	}
	switch {
	case !x.Verified:
		// Anyone who can reach the public endpoint can send unsigned
		// bodies: keep a bounded prefix of those, not whole bodies that
		// could fill the disk, and no policy number from them.
		e.RequestXML, e.PolicyNo = clipBody(e.RequestXML), ""
	case x.ReplayOf != "":
		// A resend verifies but adds nothing: the original entry holds the
		// exchange. Keeping it whole again would let anyone with one
		// captured message fill the disk (padding it with a comment keeps
		// its signature).
		e.RequestXML, e.CoreRequest = clipBody(e.RequestXML), nil
	}
	if cfg := h.app.Journal; cfg.MaskPersonalData && x.Mapping != nil {
		m := h.app.maskers[x.Root]
		e.RequestXML, e.CoreRequest = m.XML(e.RequestXML), m.JSON(e.CoreRequest)
	}
	return e
}

// unverifiedBodyMax bounds what the journal keeps of a request whose
// signature did not verify, or that repeats an earlier one.
const unverifiedBodyMax = 2 << 10

func clipBody(b []byte) []byte {
	if len(b) <= unverifiedBodyMax {
		return b
	}
	return b[:unverifiedBodyMax:unverifiedBodyMax]
}

// newMasker compiles the personal-data masks of one inbound mapping: the
// values of elements and JSON keys whose rows are tagged pii, each masked
// by its kind (internal/pii, the project's one policy).
func newMasker(m *mapping.Inbound) pii.BodyMasker {
	xmlNames, jsonKeys := map[string]pii.Kind{}, map[string]pii.Kind{}
	m.Request.PersonalData(xmlNames, jsonKeys)
	return pii.NewBodyMasker(xmlNames, jsonKeys)
}
