package caddymodule

import (
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// Validation rules shared by the config structs. Each message names one
// setting, the rule it breaks and the value it has, as River's config
// validation does, so an operator with several mistakes sees each on its
// own line (errors.Join). Never use them for keys: their values are secrets.

// notNegative is the error of a count below zero (zero means the default).
func notNegative[N int | int64](section, field string, v N) error {
	if v >= 0 {
		return nil
	}
	return fmt.Errorf("%s: %s must not be negative (got %d)", section, field, v)
}

// notNegativeDuration is the error of a duration below zero (zero means
// the default).
func notNegativeDuration(section, field string, v caddy.Duration) error {
	if v >= 0 {
		return nil
	}
	return fmt.Errorf("%s: %s must not be negative (got %s)", section, field, time.Duration(v))
}

// positiveDuration is the error of a duration that must be above zero
// once defaults are applied.
func positiveDuration(section, field string, v caddy.Duration) error {
	if v > 0 {
		return nil
	}
	return fmt.Errorf("%s: %s must be positive (got %s)", section, field, time.Duration(v))
}
