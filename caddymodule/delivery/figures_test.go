package delivery

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"
)

// TestThroughputFigures measures, per backend, the enqueue rate (one
// caller, then 8 concurrent callers) with the engine stopped, and then the
// delivery throughput of a started engine draining the backlog to a fast
// local platform. Opt-in: GONGBAO_DELIVERY_FIGURES=<deliveries per phase>.
func TestThroughputFigures(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("GONGBAO_DELIVERY_FIGURES"))
	if n <= 0 {
		t.Skip("set GONGBAO_DELIVERY_FIGURES=2000 to measure enqueue rate and delivery throughput")
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { // not parallel: figures must not share the CPU
			// Production fetch settings: the default poll interval.
			env := newTestEnv(t, b, noStart, withWorkers(20), withConfig(func(c *Config) { c.PollInterval = DefaultPollInterval }))
			start := time.Now()
			for i := range n {
				env.enqueue(env.newDelivery(fmt.Sprint("seq", i), ""))
			}
			seq := time.Since(start)

			const callers = 8
			start = time.Now()
			var wg sync.WaitGroup
			for c := range callers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := c; i < n; i += callers {
						if _, _, err := env.e.Enqueue(context.Background(), env.newDelivery(fmt.Sprint("par", i), "")); err != nil {
							t.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			par := time.Since(start)

			start = time.Now()
			env.start(env.e)
			env.waitFor("backlog delivered", 5*time.Minute, func() bool { return env.stats().Delivered == int64(2*n) })
			drain := time.Since(start)
			t.Logf("%s: enqueue %.0f/s sequential, %.0f/s with %d callers; delivery %.0f/s (%d deliveries, 20 workers)",
				b.name, float64(n)/seq.Seconds(), float64(n)/par.Seconds(), callers, float64(2*n)/drain.Seconds(), 2*n)
		})
	}
}
