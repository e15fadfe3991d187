package delivery

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"time"

	"github.com/riverqueue/river/rivertype"
)

// MinGap is the shortest time between two attempts of one delivery. The
// spec (§4) demands at least 10 s between resends; it is not configurable.
const MinGap = 10 * time.Second

// steps are the waits after the 1st, 2nd, … failure; after the last, hourly.
var steps = [...]time.Duration{
	10 * time.Second, 30 * time.Second, time.Minute, 2 * time.Minute,
	5 * time.Minute, 10 * time.Minute, 20 * time.Minute, 30 * time.Minute,
}

const (
	tailStep = time.Hour
	// jitterFraction is the most jitter adds to a step. Jitter only adds:
	// a step is a promise of "not before".
	jitterFraction = 0.1
)

// Backoff is the wait after the failures-th consecutive failure of a
// delivery: 10 s, 30 s, 1 m, 2 m, 5 m, 10 m, 20 m, 30 m, then hourly, plus
// jitter ∈ [0,1) times 10 % of the step. It is never below the step and
// never below MinGap, whatever the arguments.
func Backoff(failures int, jitter float64) time.Duration {
	step := tailStep
	if failures >= 1 && failures <= len(steps) {
		step = steps[failures-1]
	} else if failures < 1 {
		step = steps[0]
	}
	if math.IsNaN(jitter) || jitter < 0 {
		jitter = 0
	}
	if jitter >= 1 {
		jitter = math.Nextafter(1, 0)
	}
	d := step + time.Duration(float64(step)*jitterFraction*jitter)
	return max(d, step, MinGap)
}

func randomJitter() float64 { return rand.Float64() }

// Clock is the engine's schedule time. Production runs on the wall clock;
// tests run schedule time faster than the wall so hours of retries pass in
// seconds. River itself always runs on the wall clock: its scheduler wakes
// every 5 s of wall time, so stubbing River's time would cost seconds per
// retry; instead every wait the engine hands River goes through Wall.
type Clock interface {
	// Now is the current schedule time: attempt and state timestamps and
	// the deadline use it.
	Now() time.Time
	// Wall converts a wait in schedule time to the wall-clock wait River
	// observes. It never shortens a wait (rounding is upwards).
	Wall(d time.Duration) time.Duration
}

// SystemClock is the wall clock.
func SystemClock() Clock { return systemClock{} }

type systemClock struct{}

func (systemClock) Now() time.Time                     { return time.Now() }
func (systemClock) Wall(d time.Duration) time.Duration { return d }

// ScaledClock returns a clock whose schedule time starts at the current
// wall time and runs factor times faster than the wall clock (factor 3600:
// an hour per second). For tests and demos.
func ScaledClock(factor float64) Clock {
	if factor < 1 {
		factor = 1
	}
	now := time.Now()
	return &scaledClock{base: now, wallBase: now, factor: factor}
}

type scaledClock struct {
	base, wallBase time.Time
	factor         float64
}

func (c *scaledClock) Now() time.Time {
	// time.Since uses the monotonic reading: schedule time never runs back.
	return c.base.Add(time.Duration(float64(time.Since(c.wallBase)) * c.factor))
}

func (c *scaledClock) Wall(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return time.Duration(math.Ceil(float64(d) / c.factor))
}

// riverTimeMargin is added to every wait handed to River. River's SQLite
// driver stores times rounded to the millisecond and compares them with
// SQLite's own millisecond clock, so a job may become due up to ~1.5 ms
// early; the margin keeps "never under 10 s" literally true.
const riverTimeMargin = 2 * time.Millisecond

// riverWait is the wall-clock wait to hand River for a wait of d in
// schedule time.
func riverWait(c Clock, d time.Duration) time.Duration {
	return c.Wall(d) + riverTimeMargin
}

// retryPolicy is River's ClientRetryPolicy for delivery jobs. River's default
// retries after about a second, which the protocol forbids. Errors recorded
// on the job (failed attempts and crash rescues; snoozes are not errors)
// count the failures; the job made by an operator retry starts again at 10 s.
type retryPolicy struct {
	clock  Clock
	jitter func() float64
}

func (p retryPolicy) NextRetry(job *rivertype.JobRow) time.Time {
	// River calls this before appending the current failure to job.Errors.
	failures := len(job.Errors) + 1
	wait := Backoff(failures, p.jitter())
	var args deliveryArgs
	if json.Unmarshal(job.EncodedArgs, &args) == nil && !args.DeadlineAt.IsZero() {
		wait = capToDeadline(wait, args.DeadlineAt.Sub(p.clock.Now()))
	}
	return time.Now().Add(riverWait(p.clock, wait))
}

// capToDeadline shortens a wait that would overshoot the deadline, so the
// last attempt happens at the deadline rather up to an hour after it; the
// failure of that attempt is final. Never below MinGap.
func capToDeadline(wait, untilDeadline time.Duration) time.Duration {
	if untilDeadline < wait {
		wait = untilDeadline
	}
	return max(wait, MinGap)
}
