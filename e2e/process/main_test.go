package process

import (
	"flag"
	"os"
	"runtime"
	"strconv"
	"testing"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	// The modules cmd/caddy links: the test binary is the sidecar.
	_ "github.com/caddy-gongbao/gongbao"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

// envRunCaddy makes the test binary behave as the sidecar itself: it links
// exactly the modules cmd/caddy/main.go links (the standard ones and
// github.com/caddy-gongbao/gongbao), so the tests can start it as a child
// process, kill it with SIGKILL and start it again, as an operator's
// process manager would. The test binary is built once, with -race when
// the tests are, and every sidecar of every test runs it: there is no
// separate build of Caddy, and the race detector watches the sidecars too.
const envRunCaddy = "GONGBAO_TEST_RUN_CADDY"

// Every test calls t.Parallel: each has its own sidecars on ports chosen
// at run time (freePort), its own core, folders and PostgreSQL schema, and
// most of a test's time is spent waiting (for a restart, for a callback's
// 10 s retry gap). go test runs GOMAXPROCS parallel tests at once by
// default; these wait so much that running defaultParallel of them on a
// two-CPU machine more than halves the package's wall time. -parallel on
// the command line still decides.
const defaultParallel = 4

// TestMain runs Caddy's command line instead of the tests when the binary
// was started as a sidecar. Testing flags are not parsed yet at this
// point, so os.Args reaches Caddy untouched.
func TestMain(m *testing.M) {
	if os.Getenv(envRunCaddy) == "1" {
		caddycmd.Main()
		os.Exit(0)
	}
	flag.Parse()
	if !flagGiven("test.parallel") {
		flag.Set("test.parallel", strconv.Itoa(max(defaultParallel, runtime.GOMAXPROCS(0))))
	}
	os.Exit(m.Run())
}

// flagGiven tells whether the named flag was set on the command line.
func flagGiven(name string) bool {
	given := false
	flag.Visit(func(f *flag.Flag) { given = given || f.Name == name })
	return given
}
