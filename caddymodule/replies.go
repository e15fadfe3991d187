package caddymodule

import (
	"errors"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-gongbao/gongbao/caddymodule/gateway"
	"github.com/caddy-gongbao/gongbao/caddymodule/mapping"
)

// writeXML sends a reply. Every protocol reply is HTTP 200: the outcome is
// in resultFlag, as the platform expects.
func writeXML(w http.ResponseWriter, reply []byte) error {
	hdr := w.Header()
	hdr.Set("Content-Type", "application/xml; charset=UTF-8")
	hdr.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_, err := w.Write(reply)
	return err
}

func (h *Handler) logExchange(x *gateway.Exchange) {
	if ce := h.logger.Check(zap.InfoLevel, "exchange"); ce != nil {
		ce.Write(h.exchangeFields(x, x.Outcome)...)
	}
}

func (h *Handler) logFailure(x *gateway.Exchange, f gateway.Failure, err error) {
	ce := h.logger.Check(zap.WarnLevel, "exchange refused")
	if ce == nil {
		return
	}
	fields := h.exchangeFields(x, f.Outcome)
	if f.Field != "" {
		fields = append(fields, zap.String("field", f.Field))
	}
	// The error text names reasons and statuses only; field values (which
	// may be personal data) are never part of it.
	var fe *mapping.FieldError
	if !errors.As(err, &fe) {
		fields = append(fields, zap.String("error", err.Error()))
	}
	if el := gateway.UnknownElement(err); el != "" {
		fields = append(fields, zap.String("element", el))
	}
	ce.Write(fields...)
}

func (h *Handler) exchangeFields(x *gateway.Exchange, outcome string) []zap.Field {
	fields := []zap.Field{
		zap.String("request_uuid", x.RequestUUID),
		zap.String("message", x.Root),
		zap.String("outcome", outcome),
		zap.Duration("duration", time.Since(x.Start)),
	}
	if x.CoreStatus != 0 {
		fields = append(fields, zap.Int("core_status", x.CoreStatus), zap.Duration("core_duration", x.CoreTime))
	}
	if len(x.Unmapped) > 0 {
		fields = append(fields, zap.Strings("unmapped", x.Unmapped))
	}
	return fields
}
