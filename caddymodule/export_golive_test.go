package caddymodule

import "github.com/caddy-gongbao/gongbao/caddymodule/delivery"

// SetDeliveryClockForTest makes stores opened from now on deliver on
// clock (a scaled clock runs the 10 s retry schedule in milliseconds);
// the returned func restores the wall clock.
func SetDeliveryClockForTest(clock delivery.Clock) (restore func()) {
	saved := deliveryClock
	deliveryClock = clock
	return func() { deliveryClock = saved }
}

// DoctorCommandForTest hands the unexported doctor command to the
// end-to-end tests.
var DoctorCommandForTest = doctorCommand
