package integration

import (
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/edgetier/edgetier/edgeagent"
	"github.com/edgetier/edgetier/internal/cluster"
	"github.com/edgetier/edgetier/internal/testenv"
)

// TestStandaloneAgentMatchesInCaddyAgent runs the edgeagent command against
// a real edge's Caddy metrics and compares its figures with those of the
// edge's own in-Caddy agent under the same traffic.
func TestStandaloneAgentMatchesInCaddyAgent(t *testing.T) {
	edge := startEdge(t, "edge-s", library(t), "", cluster.Options{})

	agentPort := freePort(t)
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("tok\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Caddy counts a request once per top-level handler it passes; every
	// request of this edge passes edge_agent first.
	startProgram(t, "edgeagent", exec.Command(testenv.Agent(t),
		"-listen", addr(agentPort), "-name", "edge-s",
		"-source", "http://"+edge.caddy.Admin+"/metrics", "-match", "handler=edge_agent",
		"-interval", "250ms", "-token-file", tokenFile, "-max-streams", "50"))
	standaloneURL := "http://" + addr(agentPort) + "/_edgetier/load"
	// Caddy exports its request series from the first request on; until
	// then the agent has no figures and answers 503.
	getBody(t, "http://"+addr(edge.port)+"/sample.mp4")
	eventually(t, 10*time.Second, "the standalone agent to answer", func() (bool, string) {
		req, _ := http.NewRequest(http.MethodGet, standaloneURL, nil)
		req.Header.Set("Authorization", "Bearer tok")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == 200, resp.Status
	})
	if resp, err := http.Get(standaloneURL); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("report without the token: %v %v", resp, err)
	}

	// Steady traffic from 4 clients, plus 3 streams held open.
	const held = 3
	for i := 0; i < held; i++ {
		c := slowStream(t, addr(edge.port), "/big.bin")
		readHead(t, c)
	}
	steadyTraffic(t, 4, "http://"+addr(edge.port)+"/sample.mp4", "", 10*time.Millisecond)

	var inCaddy, standalone []edgeagent.Report
	time.Sleep(time.Second)
	for i := 0; i < 8; i++ {
		inCaddy = append(inCaddy, getReport(t, "http://"+addr(edge.port)+"/_edgetier/load", ""))
		standalone = append(standalone, getReport(t, standaloneURL, "tok"))
		time.Sleep(300 * time.Millisecond)
	}
	mean := func(rs []edgeagent.Report, f func(edgeagent.Report) float64) float64 {
		var s float64
		for _, r := range rs {
			s += f(r)
		}
		return s / float64(len(rs))
	}
	rate := func(r edgeagent.Report) float64 { return r.RequestsPerSecond }
	streams := func(r edgeagent.Report) float64 { return r.Streams }
	ttfb := func(r edgeagent.Report) float64 { return r.ResponseTimeSeconds }
	t.Logf("in-Caddy: rate %.1f/s streams %.2f ttfb %.4fs; standalone: rate %.1f/s streams %.2f ttfb %.4fs",
		mean(inCaddy, rate), mean(inCaddy, streams), mean(inCaddy, ttfb), mean(standalone, rate), mean(standalone, streams), mean(standalone, ttfb))
	if a, b := mean(inCaddy, rate), mean(standalone, rate); a < 20 || math.Abs(a-b) > 0.25*a {
		t.Errorf("request rate: in-Caddy %.1f/s, standalone %.1f/s: want within 25%%", a, b)
	}
	// The standalone agent reads in-flight counts at sampling time; the
	// held streams are always there, the short requests sometimes.
	if b := mean(standalone, streams); b < held || b > held+4 {
		t.Errorf("standalone streams = %.2f, want about %d", b, held)
	}
	if b := mean(standalone, ttfb); b <= 0 || b > 0.5 {
		t.Errorf("standalone response time = %g s", b)
	}
	last := standalone[len(standalone)-1]
	if last.Capacity == nil || last.Capacity.MaxStreams != 50 || last.Edge != "edge-s" {
		t.Errorf("standalone report = %s", asJSON(last))
	}

	// Its own /metrics is Prometheus text.
	if missing := scrape(t, "http://"+addr(agentPort)+"/metrics").missing("edgetier_agent_streams", "edgetier_agent_cpu_ratio"); len(missing) > 0 {
		t.Errorf("standalone /metrics lacks %v", missing)
	}
}
