package caddymodule

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddy-gongbao/gongbao/caddymodule/protocol"
)

// benchKey is the platform's published test key (DESIGN §1.2).
const benchKey = "MeTKJnC3fIAxeer8erADRTlJ"

// benchUUIDPlaceholder is the requestUUID of the prepared message; each
// iteration overwrites it in place, so every request is new to the
// idempotency store. The head is not signed, so the signature stays valid.
const benchUUIDPlaceholder = "00000000-0000-4000-8000-000000000000"

// BenchmarkHandler is the whole platform-facing path of one insureRequest
// without a network: Handler.ServeHTTP reads, parses, verifies, claims the
// requestUUID (when idempotency is on), maps to JSON, calls the next
// handler (which answers the reference core's JSON from memory, in place
// of reverse_proxy), maps back, signs, records the outcome, counts the
// metrics, logs the exchange (JSON encoding to io.Discard) and writes the
// reply into an httptest.ResponseRecorder.
//
// Sub-benchmarks:
//   - idempotency_off: idempotency and journal off (the store is opened for
//     callbacks but not touched on the request path);
//   - sqlite: idempotency records in an SQLite file (WAL, synchronous=FULL,
//     so two fsyncs per request: claim and complete), journal off;
//   - sqlite_journal: the default configuration, idempotency and the
//     asynchronous, batched journal.
//
// Each iteration also pays for its own request: a copy of the 2 KB
// message with a fresh requestUUID, an *http.Request and a recorder (about
// ten allocations); BenchmarkHandlerHarness measures that part alone.
func BenchmarkHandler(b *testing.B) {
	for _, tc := range []struct {
		name                   string
		idempotency, journaled bool
	}{
		{"idempotency_off", false, false},
		{"sqlite", true, false},
		{"sqlite_journal", true, true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			h, cleanup := newBenchHandler(b, tc.idempotency, tc.journaled)
			defer cleanup()
			msg, offset := benchMessage(b)
			next := coreFromMemory(b)
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				n++
				rec := httptest.NewRecorder()
				if err := h.ServeHTTP(rec, benchRequest(msg, offset, n), next); err != nil {
					b.Fatal(err)
				}
				if !bytes.Contains(rec.Body.Bytes(), []byte("<resultFlag>true</resultFlag>")) {
					b.Fatalf("reply is not resultFlag=true:\n%s", rec.Body.Bytes())
				}
			}
		})
	}
}

// BenchmarkHandlerHarness is what BenchmarkHandler spends outside the
// handler: building the request and the recorder. Subtract it to read the
// handler's own cost.
func BenchmarkHandlerHarness(b *testing.B) {
	msg, offset := benchMessage(b)
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		n++
		rec := httptest.NewRecorder()
		r := benchRequest(msg, offset, n)
		if _, err := io.Copy(rec, r.Body); err != nil {
			b.Fatal(err)
		}
	}
}

// newBenchHandler provisions a gongbao app by hand (no Caddy config is
// loaded: the handler's Provision would look the app up in one) over the
// shipped mappings and a store in a temporary folder.
func newBenchHandler(b *testing.B, idempotency, journaled bool) (*Handler, func()) {
	b.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	app := &App{
		SignKey:     benchKey,
		Mappings:    filepath.Join("..", "mappings"),
		Store:       &StoreConfig{Driver: "sqlite", Path: filepath.Join(b.TempDir(), "gongbao.db")},
		Idempotency: &IdempotencyConfig{Disabled: !idempotency},
		Journal:     &JournalConfig{Disabled: !journaled},
	}
	if err := app.Provision(ctx); err != nil {
		cancel()
		b.Fatal(err)
	}
	if err := app.Validate(); err != nil {
		cancel()
		b.Fatal(err)
	}
	// Production logs every exchange at info level as JSON; keep the
	// encoding cost, drop the output.
	logger := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()),
		zapcore.AddSync(io.Discard), zap.InfoLevel))
	h := &Handler{app: app, logger: logger, MaxCoreReplySize: defaultMaxCoreReplySize}
	return h, func() {
		if err := app.Cleanup(); err != nil {
			b.Error(err)
		}
		cancel()
	}
}

// benchMessage is the ~2 KB insureRequest sample signed with the test key
// under the placeholder requestUUID, and the placeholder's offset.
func benchMessage(b *testing.B) ([]byte, int) {
	b.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "testdata", "messages", "insureRequest.xml"))
	if err != nil {
		b.Fatal(err)
	}
	msg, err := protocol.Resign(raw, benchKey, benchUUIDPlaceholder)
	if err != nil {
		b.Fatal(err)
	}
	offset := bytes.Index(msg, []byte(benchUUIDPlaceholder))
	if offset < 0 {
		b.Fatal("placeholder requestUUID not found in the signed message")
	}
	return msg, offset
}

// benchRequest is a platform POST of msg whose requestUUID ends in n.
// The body is a fresh copy: the handler keeps it for the journal.
func benchRequest(msg []byte, offset, n int) *http.Request {
	body := bytes.Clone(msg)
	var digits [12]byte
	s := strconv.AppendInt(digits[:0], int64(n), 10)
	copy(body[offset+len(benchUUIDPlaceholder)-len(s):], s)
	r := httptest.NewRequest(http.MethodPost, "/gongbao", bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/xml; charset=UTF-8")
	return r
}

// coreFromMemory stands in for reverse_proxy and the core: it reads the
// JSON request and answers the reference core's reply to insureRequest.
func coreFromMemory(b *testing.B) caddyhttp.Handler {
	b.Helper()
	answer, err := os.ReadFile(filepath.Join("..", "testdata", "messages", "insureRequest.reply.json"))
	if err != nil {
		b.Fatal(err)
	}
	length := strconv.Itoa(len(answer))
	return caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			return fmt.Errorf("reading the core request: %w", err)
		}
		h := w.Header()
		h.Set("Content-Type", "application/json; charset=utf-8")
		h.Set("Content-Length", length)
		w.WriteHeader(http.StatusCreated)
		_, err := w.Write(answer)
		return err
	})
}
