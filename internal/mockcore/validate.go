package mockcore

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"time"
)

// checker validates a decoded request field by field and keeps the first
// failure, so the 400 answer names exactly one field, the first in the
// order the request documents them.
type checker struct {
	failure *result
}

func (c *checker) fail(format string, args ...any) {
	if c.failure == nil {
		r := refuse(http.StatusBadRequest, format, args...)
		c.failure = &r
	}
}

func (c *checker) ok() bool { return c.failure == nil }

func (c *checker) required(path, v string) {
	if strings.TrimSpace(v) == "" {
		c.fail("缺少必填字段 %s", path)
	}
}

// moneyPattern accepts a positive amount with at most two decimals, the
// shape of every decimal(n,2) in the spec; exponents and signs are refused.
var moneyPattern = regexp.MustCompile(`^[0-9]{1,16}(\.[0-9]{1,2})?$`)

// money accepts an amount as a JSON number (the mappings' default, digits
// kept literally) or a JSON string, and returns its digits.
func (c *checker) money(path string, raw json.RawMessage) string {
	v := string(raw)
	if strings.HasPrefix(v, `"`) {
		if err := json.Unmarshal(raw, &v); err != nil {
			v = string(raw)
		}
	}
	switch {
	case len(raw) == 0 || v == "null" || v == "":
		c.fail("缺少必填字段 %s", path)
	case !moneyPattern.MatchString(v) || strings.Trim(v, "0.") == "":
		c.fail("字段 %s 不是有效的金额: %s", path, v)
	}
	return v
}

func (c *checker) datetime(path, v string) time.Time {
	if v == "" {
		c.fail("缺少必填字段 %s", path)
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		c.fail("字段 %s 不是 RFC3339 时间: %q", path, v)
		return time.Time{}
	}
	return t.In(CST)
}

func (c *checker) oneOf(path, v string, allowed ...string) {
	if v == "" {
		c.fail("缺少必填字段 %s", path)
		return
	}
	for _, a := range allowed {
		if v == a {
			return
		}
	}
	c.fail("字段 %s 取值无效: %q (可选 %s)", path, v, strings.Join(allowed, "/"))
}
