package integration

import (
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgetier/edgetier/internal/cluster"
	"github.com/edgetier/edgetier/internal/testenv"
)

// lbTwoBlocks has two reverse_proxy blocks on one pool and serves
// Prometheus text at /prometheus.
func lbTwoBlocks(port int, edge string) string {
	return globalOptions + fmt.Sprintf(`
http://127.0.0.1:%d {
	handle /prometheus {
		metrics
	}
	handle_path /a/* {
		reverse_proxy %s {
			lb_policy tiered {
				interval 200ms
			}
		}
	}
	handle {
		reverse_proxy %s {
			lb_policy tiered {
				interval 200ms
			}
		}
	}
}
`, port, edge, edge)
}

func lbOneBlock(port int, edge string) string {
	return globalOptions + fmt.Sprintf(`
http://127.0.0.1:%d {
	handle /prometheus {
		metrics
	}
	handle {
		reverse_proxy %s {
			lb_policy tiered {
				interval 200ms
			}
		}
	}
}
`, port, edge)
}

// TestReloadKeepsPollers: a reload with the same pool keeps one poller per
// agent and the warm-up done; /prometheus answers with two reverse_proxy
// blocks on one pool; promtool accepts the LB's and the edge's metrics.
func TestReloadKeepsPollers(t *testing.T) {
	edge := startEdge(t, "edge-r", library(t), "", cluster.Options{})
	upstream := addr(edge.port)
	lbPort := freePort(t)
	lb := startCaddy(t, "lb", lbOneBlock(lbPort, upstream), cluster.Options{})
	lbURL := "http://" + addr(lbPort)

	get := func(path string) {
		resp, err := http.Get(lbURL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %s", path, resp.Status)
		}
	}
	get("/sample.mp4")
	eventually(t, 5*time.Second, "the upstream to be trusted", func() (bool, string) {
		v := upstreamMetric(t, lb, "edgetier_upstream_trusted", upstream)
		return v == 1, fmt.Sprint(v)
	})
	reportsServed := func() float64 {
		return scrapeAdmin(t, edge.caddy).value("edgetier_agent_reports_served_total", prometheus.Labels{"edge": "edge-r"})
	}
	rate := func() float64 {
		before := reportsServed()
		time.Sleep(2 * time.Second)
		return (reportsServed() - before) / 2
	}
	r1 := rate()

	reload(t, lb, lbTwoBlocks(lbPort, upstream))
	// No new warm-up: the first requests after the reload are scored.
	get("/sample.mp4")
	get("/a/sample.mp4")
	m := scrape(t, lbURL+"/prometheus")
	if v := m.value("edgetier_upstream_selections_total", prometheus.Labels{"pool": "default", "tier": "unknown", "upstream": upstream}); v != 0 {
		t.Errorf("%g selections of an unknown upstream right after the reload: the warm-up restarted", v)
	}
	// Chosen by its tier (which one depends on how busy this host is).
	var byTier float64
	for tier := 1; tier <= 4; tier++ {
		byTier += m.value("edgetier_upstream_selections_total", prometheus.Labels{"pool": "default", "tier": fmt.Sprint(tier), "upstream": upstream})
	}
	if byTier < 2 {
		t.Errorf("selections by tier = %g, want the 2 requests made after the reload", byTier)
	}
	r2 := rate()
	t.Logf("report requests per second: %.1f before the reload, %.1f after", r1, r2)
	if r1 < 3 || r2 > 1.5*r1 {
		t.Errorf("report requests per second went from %.1f to %.1f: want one poller per agent", r1, r2)
	}

	// promtool accepts what the LB and the edge serve.
	promtool := testenv.Program(t, "promtool")
	for name, url := range map[string]string{"lb /prometheus": lbURL + "/prometheus", "edge": "http://" + edge.caddy.Admin + "/metrics"} {
		cmd := exec.Command(promtool, "check", "metrics")
		cmd.Stdin = strings.NewReader(getBody(t, url))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool check metrics on the %s: %v\n%s", name, err, out)
		}
	}
}
