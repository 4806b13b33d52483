package integration

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgetier/edgetier/internal/cluster"
	"github.com/edgetier/edgetier/internal/testenv"
	"github.com/prometheus/client_golang/prometheus"
)

// paddedMetrics is a real edge's Prometheus page made size bytes long with
// series of the families the agent reads (as a Caddy with per-host
// metrics, or many servers, has) and of others, so both the parsing of
// wanted families and the skipping of the rest are exercised.
func paddedMetrics(real []byte, size int) []byte {
	const family = "# TYPE caddy_http_requests_total counter\n"
	at := bytes.Index(real, []byte(family))
	if at < 0 {
		panic("the edge's page has no caddy_http_requests_total")
	}
	at += len(family)
	var b bytes.Buffer
	b.Grow(size + 4096)
	b.Write(real[:at])
	// More series of the counter the agent sums (0, and not matching its
	// -match: the total stays the edge's own).
	for i := 0; b.Len() < size/2; i++ {
		fmt.Fprintf(&b, "caddy_http_requests_total{handler=\"padding\",server=\"srv-%07d\"} 0\n", i)
	}
	b.Write(real[at:])
	b.WriteString("# HELP padding_series_total Series the agent does not read.\n# TYPE padding_series_total counter\n")
	for i := 0; b.Len() < size; i++ {
		fmt.Fprintf(&b, "padding_series_total{host=\"site-%07d.example.com\",code=\"200\"} %d\n", i, i)
	}
	return b.Bytes()
}

// peakRSS is a process's peak resident memory (VmHWM), in bytes.
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	t.Fatalf("no VmHWM in /proc/%d/status", pid)
	return 0
}

// TestStandaloneAgentBoundedScrape: the standalone agent reads a 6 MB
// Prometheus page (below its 8 MiB cap) right, and refuses a 16 MB one;
// either way its peak memory stays small (it streams the page and never
// holds it, nor the families it skips).
func TestStandaloneAgentBoundedScrape(t *testing.T) {
	lib := library(t)
	port := freePort(t)
	edge := startCaddy(t, "edge", edgeConfig(port, "edge-s", lib, ""), cluster.Options{})
	for i := 0; i < 5; i++ {
		getBody(t, "http://"+addr(port)+"/sample.mp4")
	}
	real := []byte(getBody(t, "http://"+edge.Admin+"/metrics"))
	pages := map[string][]byte{"6MB": paddedMetrics(real, 6<<20), "16MB": paddedMetrics(real, 16<<20)}
	var page atomic.Value
	page.Store(pages["6MB"])
	var scrapes atomic.Int64
	source := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scrapes.Add(1)
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		_, _ = w.Write(page.Load().([]byte))
	}))
	defer source.Close()

	agentPort := freePort(t)
	cmd := exec.Command(testenv.Agent(t), "-listen", addr(agentPort), "-name", "edge-s",
		"-source", source.URL, "-match", "handler=edge_agent", "-interval", "2s", "-scope", "process")
	startProgram(t, "edgeagent", cmd)
	agentURL := "http://" + addr(agentPort)

	// Below the cap: the figures are the edge's own (the padding series
	// of the summed counter are 0, and do not match -match anyway).
	eventually(t, 20*time.Second, "three scrapes of the 6 MB page", func() (bool, string) {
		return scrapes.Load() >= 3, fmt.Sprint(scrapes.Load(), " scrapes")
	})
	rep := getReport(t, agentURL+"/_edgetier/load", "")
	peak := peakRSS(t, cmd.Process.Pid)
	t.Logf("6 MB page: seq %d, peak RSS %d MB", rep.Seq, peak>>20)
	if rep.Seq < 2 {
		t.Errorf("report seq %d after %d scrapes of a page below the cap: want them read", rep.Seq, scrapes.Load())
	}
	failures := func() float64 {
		return scrape(t, agentURL+"/metrics").value("edgetier_agent_sample_failures_total", prometheus.Labels{"edge": "edge-s"})
	}
	if f := failures(); f != 0 {
		t.Errorf("%g sample failures reading a page below the cap", f)
	}

	// Above the cap: refused, counted as failed samples.
	page.Store(pages["16MB"])
	before := scrapes.Load()
	eventually(t, 20*time.Second, "three scrapes of the 16 MB page", func() (bool, string) {
		return scrapes.Load() >= before+3, fmt.Sprint(scrapes.Load()-before, " scrapes")
	})
	if f := failures(); f < 2 {
		t.Errorf("%g sample failures after 3 scrapes of a 16 MB page: want it refused (above the cap)", f)
	}
	// Refused for its size (the agent says why it answers 503), not for
	// taking too long.
	eventually(t, 10*time.Second, "the report to say the page is above the cap", func() (bool, string) {
		resp, err := http.Get(agentURL + "/_edgetier/load")
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return resp.StatusCode == http.StatusServiceUnavailable && strings.Contains(string(body), "larger than"),
			fmt.Sprintf("%d %q: want it refused (above the cap)", resp.StatusCode, truncate(string(body), 200))
	})
	peak = peakRSS(t, cmd.Process.Pid)
	t.Logf("16 MB page: peak RSS %d MB", peak>>20)
	const bound = 48 << 20
	if peak > bound {
		t.Errorf("the agent's peak RSS is %d MB reading 6 and 16 MB pages: want below %d MB", peak>>20, bound>>20)
	}
}
