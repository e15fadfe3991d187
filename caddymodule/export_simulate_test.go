package caddymodule

import "reflect"

// SimulateCommandForTest hands the unexported simulate command to the
// end-to-end tests in package caddymodule_test.
var SimulateCommandForTest = simulateCommand

// ExitStatusForTest is the status caddycmd.Main exits with when a
// subcommand's Execute returns err: the status caddycmd's (unexported)
// exit error carries, else 1 for an error and 0 for none.
func ExitStatusForTest(err error) int {
	if err == nil {
		return 0
	}
	v := reflect.ValueOf(err)
	if v.Kind() == reflect.Pointer && v.Elem().Kind() == reflect.Struct {
		if code := v.Elem().FieldByName("ExitCode"); code.IsValid() && code.CanInt() {
			return int(code.Int())
		}
	}
	return 1
}
