package caddymodule

// SimulateCommandForTest hands the unexported simulate command to the
// end-to-end tests in package caddymodule_test.
var SimulateCommandForTest = simulateCommand

// SetExitForTest replaces the process exit that run calls for an
// exitError; the returned func restores it.
func SetExitForTest(f func(int)) (restore func()) {
	saved := exit
	exit = f
	return func() { exit = saved }
}
