package integration

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgetier/edgetier/internal/cluster"
)

// shipped is the default Caddyfile (what `make run` starts) running as it
// ships: one Caddy with the LB and its three edges.
type shipped struct {
	lb    *cluster.Caddy
	url   string   // the LB, http://127.0.0.1:port
	edges []string // the edges' host:port, in the Caddyfile's order
	text  string   // the Caddyfile as run
	env   []string // its environment (LB_SITE, VIDEO_DIR, EDGETIER_ADMIN)
}

// startShipped runs ../Caddyfile moved onto free loopback ports: the LB's
// site (LB_SITE, an address with no host, as shipped), the edges' 9001,
// 9002 and 9003, the admin endpoint. replace pairs change the text further
// (each must be found, or the test fails: the Caddyfile changed under it);
// they and the port moves are one pass over the original text, so a
// replacement is never moved again. Nothing else of the file changes.
func startShipped(t *testing.T, replace ...string) *shipped {
	t.Helper()
	b, err := os.ReadFile("../Caddyfile")
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	for i := 0; i+1 < len(replace); i += 2 {
		if !strings.Contains(text, replace[i]) {
			t.Fatalf("the Caddyfile no longer contains %q: update the test", replace[i])
		}
	}
	s := &shipped{}
	pairs := append([]string(nil), replace...)
	for _, port := range []string{"9001", "9002", "9003"} {
		if !strings.Contains(text, port) {
			t.Fatalf("the Caddyfile no longer has an edge on %s: update the test", port)
		}
		moved := freePort(t)
		pairs = append(pairs, port, strconv.Itoa(moved))
		s.edges = append(s.edges, addr(moved))
	}
	s.text = strings.NewReplacer(pairs...).Replace(text)
	lbPort := freePort(t)
	s.env = []string{"EDGETIER_ADMIN=%ADMIN%", "LB_SITE=http://:" + strconv.Itoa(lbPort), "VIDEO_DIR=" + library(t)}
	s.lb = startCaddy(t, "default", s.text, cluster.Options{Env: s.env})
	s.url = "http://" + addr(lbPort)
	return s
}

// reload runs `caddy reload --force` on the Caddyfile as started (the CLI
// adapts it, so it gets the same environment): the same config loaded
// again, as an operator's reload that changed nothing does.
func (s *shipped) reload(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.lb.Bin, "reload", "--force", "--adapter", "caddyfile",
		"--config", filepath.Join(s.lb.Dir, "Caddyfile"), "--address", s.lb.Admin)
	cmd.Env = os.Environ()
	for _, e := range s.env {
		cmd.Env = append(cmd.Env, strings.ReplaceAll(e, "%ADMIN%", s.lb.Admin))
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("caddy reload: %v: %s", err, out)
	}
}
