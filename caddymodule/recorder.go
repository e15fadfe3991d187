package caddymodule

import (
	"bytes"
	"net/http"
	"strconv"
)

// coreRecorder captures the next handler's response (the core's answer via
// reverse_proxy) instead of sending it to the platform. It has its own
// header map, so none of the core's headers leak into our XML reply, and it
// stops keeping bytes past its limit.
type coreRecorder struct {
	header   http.Header
	code     int
	body     bytes.Buffer
	limit    int64
	overflow bool
}

func newCoreRecorder(limit int64) *coreRecorder {
	return &coreRecorder{header: make(http.Header), limit: limit}
}

func (c *coreRecorder) Header() http.Header { return c.header }

func (c *coreRecorder) WriteHeader(code int) {
	if c.code == 0 && code >= 200 {
		c.code = code
		c.presize()
	}
}

// presize makes room for the answer the core announced, within the limit,
// so the body is not copied as it grows.
func (c *coreRecorder) presize() {
	n, err := strconv.ParseInt(c.header.Get("Content-Length"), 10, 64)
	if err == nil && n > 0 && n <= c.limit {
		c.body.Grow(int(n))
	}
}

func (c *coreRecorder) Write(p []byte) (int, error) {
	if c.code == 0 {
		c.code = http.StatusOK
	}
	room := c.limit - int64(c.body.Len())
	if int64(len(p)) > room {
		c.overflow = true
		if room > 0 {
			c.body.Write(p[:room])
		}
		// Report success: failing the write would make reverse_proxy log
		// a client error; the overflow is judged after it returns.
		return len(p), nil
	}
	return c.body.Write(p)
}

// Flush lets reverse_proxy flush without effect.
func (c *coreRecorder) Flush() {}

func (c *coreRecorder) status() int { return c.code }
