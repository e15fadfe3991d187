package caddymodule

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/caddy-gongbao/gongbao/caddymodule/delivery"
)

// TestDeliveryStatsInSeconds: /gongbao/deliveries/stats reports the age
// of the oldest pending callback in seconds (as the logs and the metrics
// do), and the CLI shows it to a person.
func TestDeliveryStatsInSeconds(t *testing.T) {
	since := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	raw, err := json.Marshal(toStatsJSON(delivery.Stats{Pending: 2, OldestPendingSince: &since, OldestPendingAge: 150*time.Second + 500*time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	if got["oldest_pending_age"] != 150.5 {
		t.Errorf("oldest_pending_age = %v, want 150.5 (seconds): %s", got["oldest_pending_age"], raw)
	}
	var out bytes.Buffer
	if err := deliveryStatsText(&out, raw); err != nil {
		t.Fatal(err)
	}
	if want := "oldest pending: " + humanDuration(150*time.Second+500*time.Millisecond); !strings.Contains(out.String(), want) {
		t.Errorf("CLI text lacks %q:\n%s", want, out.String())
	}
	t.Logf("%s\n%s", raw, out.String())
}
