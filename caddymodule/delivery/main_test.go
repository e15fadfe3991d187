package delivery

import (
	"flag"
	"testing"
)

// TestMain raises the default test parallelism (GOMAXPROCS, i.e. 2 on CI)
// to 4 unless -test.parallel is given: most conformance tests spend their
// time waiting on scaled schedule time or on SQLite's single connection,
// not on the CPU, and would otherwise queue behind each other.
func TestMain(m *testing.M) {
	flag.Parse()
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" })
	if !set {
		flag.Set("test.parallel", "4") //nolint:errcheck // a known flag
	}
	defer removeSQLiteTemplate()
	m.Run() // its status is the test binary's
}
