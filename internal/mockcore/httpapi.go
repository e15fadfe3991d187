package mockcore

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// maxBody bounds a request body; the largest real message is a few KB.
const maxBody = 1 << 20

// answer is the common part of every JSON answer.
type answer struct {
	Accepted bool   `json:"accepted"`
	Message  string `json:"message"`
}

// result is what an operation produces: the HTTP status and the JSON body.
type result struct {
	status int
	body   any
}

func refuse(status int, format string, args ...any) result {
	return result{status: status, body: answer{Message: fmt.Sprintf(format, args...)}}
}

// idemRecord is a stored answer for an Idempotency-Key.
type idemRecord struct {
	hash   [32]byte
	status int
	body   []byte
}

// operation wraps a state-changing handler with the behaviour every POST
// shares: bounded body, call counting, and Idempotency-Key replay. The whole
// operation runs under c.mu so a concurrent duplicate cannot slip between
// the idempotency check and the effect.
func (c *Core) operation(name string, fn func(body []byte) result) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
		if err != nil {
			writeJSON(w, http.StatusRequestEntityTooLarge, answer{Message: "请求体过大或读取失败"})
			return
		}
		key := r.Header.Get("Idempotency-Key")
		hash := requestHash(r, body)

		c.mu.Lock()
		defer c.mu.Unlock()
		c.calls[name]++
		if key != "" {
			if rec, ok := c.idem[key]; ok {
				if rec.hash != hash {
					writeJSON(w, http.StatusConflict, answer{Message: "Idempotency-Key " + key + " 已用于不同的请求"})
					return
				}
				w.Header().Set("Idempotent-Replayed", "true")
				writeRaw(w, rec.status, rec.body)
				return
			}
		}
		res := fn(body)
		data := encode(res.body)
		// Server faults are not remembered, so a retry with the same key
		// gets a fresh attempt; answers (including refusals) are final.
		if key != "" && res.status < 500 {
			c.idem[key] = idemRecord{hash: hash, status: res.status, body: data}
		}
		writeRaw(w, res.status, data)
	}
}

// requestHash identifies a request by route and exact body bytes.
func requestHash(r *http.Request, body []byte) [32]byte {
	h := sha256.New()
	h.Write([]byte(r.Method + " " + r.URL.Path + "\n"))
	h.Write(body)
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum
}

// decode reads body strictly into v: unknown fields are refused so a
// mapping that targets a misspelled field fails loudly instead of silently
// losing data. Failures come back as a 400 result naming the field.
func decode(body []byte, v any) (result, bool) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	err := dec.Decode(v)
	if err == nil && dec.More() {
		err = errors.New("trailing data")
	}
	if err == nil {
		return result{}, true
	}
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.As(err, &typeErr):
		return refuse(http.StatusBadRequest, "字段 %s 类型错误", typeErr.Field), false
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return refuse(http.StatusBadRequest, "未知字段 %s", field), false
	default:
		return refuse(http.StatusBadRequest, "请求体不是有效的 JSON"), false
	}
}

func encode(v any) []byte {
	data, err := json.Marshal(v)
	if err != nil {
		// Only our own answer types are encoded; failure is a bug.
		panic(fmt.Sprintf("encoding answer: %v", err))
	}
	return data
}

func writeJSON(w http.ResponseWriter, status int, v any) { writeRaw(w, status, encode(v)) }

func writeRaw(w http.ResponseWriter, status int, data []byte) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(data)
}
