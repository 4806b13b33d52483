package integration

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/edgetier/edgetier/internal/testenv"
)

// TestBuiltCaddyListsModules: the xcaddy build (make build) has every
// edgetier module: the agent, the dashboard, the tiered policy and the
// edgetier transport.
func TestBuiltCaddyListsModules(t *testing.T) {
	out, err := exec.Command(testenv.Caddy(t), "list-modules").CombinedOutput()
	if err != nil {
		t.Fatalf("caddy list-modules: %v\n%s", err, out)
	}
	for _, id := range []string{
		"http.handlers.edge_agent",
		"http.handlers.cdn_dashboard",
		"http.reverse_proxy.selection_policies.tiered",
		"http.reverse_proxy.transport.edgetier",
	} {
		if !strings.Contains(string(out), id+"\n") {
			t.Errorf("caddy list-modules lacks %s", id)
		}
	}
}
