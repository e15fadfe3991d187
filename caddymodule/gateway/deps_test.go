package gateway_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestGatewayImportsNoCaddy keeps the engine Caddy-free: the dry run, the
// simulator and the benchmark call it without a Caddy, and its failure
// table is tested without one. It asks the go command, as a maintainer
// would (`go list -deps ./caddymodule/gateway`).
func TestGatewayImportsNoCaddy(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for dep := range strings.SplitSeq(string(out), "\n") {
		if strings.Contains(dep, "github.com/caddyserver/") || strings.Contains(dep, "go.uber.org/zap") {
			t.Errorf("the gateway engine depends on %s", dep)
		}
	}
}
