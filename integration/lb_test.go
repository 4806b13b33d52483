package integration

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgetier/edgetier/internal/cluster"
	"github.com/edgetier/edgetier/internal/testenv"
)

// retryOptions are the default Caddyfile's retries: GET and HEAD go to
// another edge within bounded tries and time.
const retryOptions = `lb_retries 2
		lb_try_duration 3s
		lb_retry_match {
			method GET HEAD
		}`

// lbConfig is a load balancer over the edges with the tiered policy, set
// up as the default Caddyfile is (retries, passive health).
func lbConfig(port int, edges []string, policyOptions string) string {
	return globalOptions + fmt.Sprintf(`
http://127.0.0.1:%d {
	reverse_proxy %s {
		lb_policy tiered {
			interval 250ms
			%s
		}
		`+retryOptions+`
		fail_duration 2s
		max_fails 1
		transport http {
			dial_timeout 1s
			response_header_timeout 5s
		}
	}
}
`, port, strings.Join(edges, " "), policyOptions)
}

type edgeProc struct {
	name  string
	port  int
	caddy *cluster.Caddy
	group *cluster.CgroupV1
}

// startEdges starts n edges, each a separate Caddy in its own cgroup.
func startEdges(t *testing.T, n int, agentOptions string) []*edgeProc {
	t.Helper()
	lib := library(t)
	var edges []*edgeProc
	for i := 0; i < n; i++ {
		e := &edgeProc{name: fmt.Sprintf("edge-%d", i+1), port: freePort(t)}
		g, err := cluster.NewCgroupV1(fmt.Sprintf("edgetier-it-%d-%s", os.Getpid(), e.name))
		if err != nil {
			testenv.Missing(t, "%v", err)
		}
		e.group = g
		t.Cleanup(func() { _ = g.Remove() })
		e.caddy = startCaddy(t, e.name, edgeConfig(e.port, e.name, lib, "scope cgroup\n"+agentOptions), cluster.Options{Wrap: g.Wrap()})
		edges = append(edges, e)
	}
	return edges
}

func edgeAddrs(edges []*edgeProc) []string {
	var out []string
	for _, e := range edges {
		out = append(out, addr(e.port))
	}
	return out
}

// burnCPU runs a busy loop inside the edge's cgroup until the test ends
// or the returned stop is called.
func burnCPU(t *testing.T, e *edgeProc) (stop func()) {
	t.Helper()
	cmd := exec.Command("sh", "-c", "while :; do :; done")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if err := e.group.Join(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop = func() { once.Do(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }) }
	t.Cleanup(stop)
	return stop
}

// traffic sends n Range requests for random 256 KiB chunks of big.bin
// through the LB from workers clients, checks every byte, and returns how
// many each edge served (by X-Edge).
func traffic(t testing.TB, lbURL string, workers, n int, want []byte) map[string]int {
	t.Helper()
	var mu sync.Mutex
	served := map[string]int{}
	var wg sync.WaitGroup
	jobs := make(chan int)
	client := &http.Client{Timeout: 20 * time.Second}
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range jobs {
				const chunk = 256 << 10
				start := (k * 7919 * chunk) % (len(want) - chunk)
				req, _ := http.NewRequest(http.MethodGet, lbURL+"/big.bin", nil)
				req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", start, start+chunk-1))
				resp, err := client.Do(req)
				if err != nil {
					t.Errorf("request %d: %v", k, err)
					continue
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, want[start:start+chunk]) {
					t.Errorf("request %d: status %d, %d bytes, err %v: wrong response", k, resp.StatusCode, len(body), err)
					continue
				}
				mu.Lock()
				served[resp.Header.Get("X-Edge")]++
				mu.Unlock()
			}
		}()
	}
	for k := 0; k < n; k++ {
		jobs <- k
	}
	close(jobs)
	wg.Wait()
	return served
}

func readBig(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(library(t), "big.bin"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// selectionsOf is how many times the LB's policy chose each edge, over
// every tier.
func selectionsOf(t testing.TB, lb *cluster.Caddy, edges []*edgeProc) []float64 {
	t.Helper()
	text := scrape(t, "http://"+lb.Admin+"/metrics")
	counts := make([]float64, len(edges))
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, "edgetier_upstream_selections_total{") {
			continue
		}
		for i, e := range edges {
			if strings.Contains(line, `upstream="`+addr(e.port)+`"`) {
				fields := strings.Fields(line)
				v, _ := strconv.ParseFloat(fields[len(fields)-1], 64)
				counts[i] += v
			}
		}
	}
	return counts
}

// upstreamMetric reads one of the LB's per-upstream series.
func upstreamMetric(t testing.TB, lb *cluster.Caddy, name, upstream string) float64 {
	t.Helper()
	v, _ := metricValue(scrape(t, "http://"+lb.Admin+"/metrics"), fmt.Sprintf(`%s{pool="default",upstream="%s"}`, name, upstream))
	return v
}

// TestTieredKeepsViewersOffABusyEdge: three real edges, one made busy for
// real (a busy loop in its cgroup held to 20 % of a CPU, so its agent
// reports 100 % CPU); its share of new requests falls well below the
// others' while every request succeeds with correct bytes; idle again, its
// share recovers; killed, requests keep succeeding and it gets none.
func TestTieredKeepsViewersOffABusyEdge(t *testing.T) {
	want := readBig(t)
	edges := startEdges(t, 3, "")
	lbPort := freePort(t)
	lb := startCaddy(t, "lb", lbConfig(lbPort, edgeAddrs(edges), ""), optsNone)
	lbURL := "http://" + addr(lbPort)
	busy := edges[0]

	// The board learns the upstreams from the first requests.
	traffic(t, lbURL, 2, 20, want)
	if err := busy.group.SetQuota(0.2); err != nil {
		t.Fatal(err)
	}
	stopBurn := burnCPU(t, busy)
	eventually(t, 10*time.Second, "the busy edge to leave tier 1", func() (bool, string) {
		tier := upstreamMetric(t, lb, "edgetier_upstream_tier", addr(busy.port))
		return tier >= 2, fmt.Sprintf("tier %g", tier)
	})
	before := selectionsOf(t, lb, edges)
	served := traffic(t, lbURL, 8, 300, want)
	chosen := selectionsOf(t, lb, edges)
	for i := range chosen {
		chosen[i] -= before[i]
	}
	t.Logf("busy edge-1: served %v, chosen %v", served, chosen)
	if others := float64(served["edge-2"]+served["edge-3"]) / 2; float64(served["edge-1"]) > 0.25*others {
		t.Errorf("busy edge got %d requests, the others %d and %d: want well below theirs", served["edge-1"], served["edge-2"], served["edge-3"])
	}
	// The policy itself keeps viewers off it: not only Caddy's passive
	// health and retries after the busy edge failed to answer in time.
	if others := (chosen[1] + chosen[2]) / 2; chosen[0] > 0.25*others {
		t.Errorf("the policy chose the busy edge %.0f times, the others %.0f and %.0f: want well below theirs", chosen[0], chosen[1], chosen[2])
	}

	stopBurn()
	if err := busy.group.SetQuota(0); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the edge to return to tier 1", func() (bool, string) {
		tier := upstreamMetric(t, lb, "edgetier_upstream_tier", addr(busy.port))
		return tier == 1, fmt.Sprintf("tier %g", tier)
	})
	served = traffic(t, lbURL, 8, 300, want)
	t.Logf("idle again: %v", served)
	if others := float64(served["edge-2"]+served["edge-3"]) / 2; float64(served["edge-1"]) < 0.5*others {
		t.Errorf("recovered edge got %d requests, the others %d and %d: want its share back", served["edge-1"], served["edge-2"], served["edge-3"])
	}

	// Kill one edge: requests keep succeeding; once the board sees it
	// down, it gets none.
	dead := edges[1]
	dead.caddy.Kill()
	served = traffic(t, lbURL, 4, 60, want)
	t.Logf("right after the kill: %v", served)
	eventually(t, 5*time.Second, "the board to see the dead edge down", func() (bool, string) {
		down := upstreamMetric(t, lb, "edgetier_upstream_down", addr(dead.port))
		return down == 1, fmt.Sprintf("down %g", down)
	})
	served = traffic(t, lbURL, 8, 200, want)
	t.Logf("dead edge-2: %v", served)
	if served["edge-2"] != 0 {
		t.Errorf("dead edge served %d requests", served["edge-2"])
	}
	if served["edge-1"]+served["edge-3"] != 200 {
		t.Errorf("served %v, want all 200 by the live edges", served)
	}
}
