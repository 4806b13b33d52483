package integration

import (
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/edgetier/edgetier/edgeagent"
	"github.com/edgetier/edgetier/internal/cluster"
	"github.com/edgetier/edgetier/internal/testenv"
)

// reportStatus fetches an agent's report endpoint: the status (0 when
// nothing answers), the Retry-After header and, for a 200, the report.
func reportStatus(t *testing.T, url string) (int, string, edgeagent.Report) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return 0, "", edgeagent.Report{}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, resp.Header.Get("Retry-After"), edgeagent.Report{}
	}
	rep, err := edgeagent.Decode(resp.Body)
	if err != nil {
		t.Fatalf("report: %v", err)
	}
	return resp.StatusCode, "", rep
}

// checkRefusesWhileFailing: once sampling fails, the agent answers 503
// with Retry-After within a few intervals, and goes on doing so (never
// its last report again, with its old seq and timestamp) while the
// failure lasts; healed, it answers reports with a seq past the old one.
func checkRefusesWhileFailing(t *testing.T, url string, fail, heal func()) {
	t.Helper()
	eventually(t, 10*time.Second, "two reports", func() (bool, string) {
		code, _, rep := reportStatus(t, url)
		return code == http.StatusOK && rep.Seq >= 2, fmt.Sprint(code, " seq ", rep.Seq)
	})
	_, _, last := reportStatus(t, url)
	fail()
	eventually(t, 5*time.Second, "503 while sampling fails", func() (bool, string) {
		code, retry, rep := reportStatus(t, url)
		return code == http.StatusServiceUnavailable && retry != "", fmt.Sprintf("%d, Retry-After %q, seq %d (last good %d at %s)", code, retry, rep.Seq, last.Seq, last.Timestamp.Format(time.StampMilli))
	})
	for end := time.Now().Add(1500 * time.Millisecond); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if code, _, rep := reportStatus(t, url); code != http.StatusServiceUnavailable {
			t.Fatalf("while sampling fails: %d, seq %d: want 503 until it samples again", code, rep.Seq)
		}
	}
	if heal == nil {
		return
	}
	heal()
	eventually(t, 10*time.Second, "reports again after the source heals", func() (bool, string) {
		code, _, rep := reportStatus(t, url)
		return code == http.StatusOK && rep.Seq > last.Seq, fmt.Sprint(code, " seq ", rep.Seq)
	})
}

// TestStandaloneAgentRefusesStaleReport: the edgeagent command, reading a
// real edge's metrics, answers 503 once its Prometheus source answers 500
// (the edge reloaded to answer so), and reports again once it heals.
func TestStandaloneAgentRefusesStaleReport(t *testing.T) {
	lib := library(t)
	port, metricsPort := freePort(t), freePort(t)
	source := fmt.Sprintf("\nhttp://:%d {\n\tbind 127.0.0.1\n\tmetrics /metrics\n}\n", metricsPort)
	broken := fmt.Sprintf("\nhttp://:%d {\n\tbind 127.0.0.1\n\trespond /metrics \"scrape failed\" 500\n}\n", metricsPort)
	cfg := edgeConfig(port, "edge-s", lib, "")
	edge := startCaddy(t, "edge", cfg+source, cluster.Options{})
	getBody(t, "http://"+addr(port)+"/sample.mp4") // the edge's series exist
	agentPort := freePort(t)
	startProgram(t, "edgeagent", exec.Command(testenv.Agent(t), "-listen", addr(agentPort), "-name", "edge-s",
		"-source", fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort), "-interval", "250ms"))
	checkRefusesWhileFailing(t, "http://"+addr(agentPort)+edgeagent.DefaultReportPath,
		func() { reload(t, edge, cfg+broken) },
		func() { reload(t, edge, cfg+source) })
	if text := getBody(t, "http://"+addr(agentPort)+"/metrics"); !strings.Contains(text, "edgetier_agent_sample_failures_total") {
		t.Error("the agent's /metrics lacks its sample failures")
	}
}

// TestEdgeAgentRefusesStaleReport: the in-Caddy agent measuring another
// process (scope process, pid) answers 503 once that process is gone and
// its figures cannot be read: never a report of zero load.
func TestEdgeAgentRefusesStaleReport(t *testing.T) {
	measured := exec.Command("sleep", "600")
	if err := measured.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = measured.Process.Kill(); _ = measured.Wait() })
	port := freePort(t)
	startCaddy(t, "edge", edgeConfig(port, "edge-p", library(t), fmt.Sprintf("scope process\n\t\tpid %d", measured.Process.Pid)), cluster.Options{})
	checkRefusesWhileFailing(t, "http://"+addr(port)+edgeagent.DefaultReportPath, func() {
		_ = measured.Process.Kill()
		_ = measured.Wait()
	}, nil)
}
