package integration

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgetier/edgetier/internal/cluster"
)

// blackHole accepts connections and never answers.
func blackHole(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return l.Addr().String()
}

// refusingAddr is an address where nothing listens: a privileged port
// that no test can be handed by the kernel (a released ephemeral port
// could be taken by the next process a test starts).
const refusingAddr = "127.0.0.1:1"

// TestPassiveHealthTakesOutFailingEdge: an edge answering 5xx is taken out
// by passive health and gets traffic again once it recovers.
func TestPassiveHealthTakesOutFailingEdge(t *testing.T) {
	good := startEdge(t, "good", library(t), "", cluster.Options{})
	var failing atomic.Bool
	var hits atomic.Int64
	flaky := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/_edgetier/load" {
			// It claims to be idle, so the policy wants it: only passive
			// health can keep viewers off it.
			fmt.Fprintf(w, `{"schema":"1.1","edge":"flaky","timestamp":%q,"state":"ready"}`, time.Now().UTC().Format(time.RFC3339Nano))
			return
		}
		hits.Add(1)
		if failing.Load() {
			http.Error(w, "broken", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("X-Edge", "flaky")
		_, _ = w.Write([]byte("ok"))
	}))
	defer flaky.Close()
	lbPort := freePort(t)
	cfg := strings.Replace(lbConfig(lbPort, []string{addr(good.port), strings.TrimPrefix(flaky.URL, "http://")}, ""),
		"max_fails 1", "max_fails 1\n\t\tunhealthy_status 5xx", 1)
	lb := startCaddy(t, "lb", cfg, cluster.Options{})
	get := func() (int, string) {
		resp, err := http.Get("http://" + addr(lbPort) + "/sample.mp4")
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("X-Edge")
	}
	flakyAddr := strings.TrimPrefix(flaky.URL, "http://")
	eventually(t, 10*time.Second, "both upstreams trusted", func() (bool, string) {
		get()
		return upstreamMetric(t, lb, "edgetier_upstream_trusted", flakyAddr) == 1 && upstreamMetric(t, lb, "edgetier_upstream_trusted", addr(good.port)) == 1, ""
	})
	failing.Store(true)
	for i := 0; i < 3; i++ {
		get()
	}
	before := hits.Load()
	for i := 0; i < 20; i++ {
		if code, edge := get(); code != http.StatusOK || edge != "good" {
			t.Fatalf("with the flaky edge failing: %d from %q", code, edge)
		}
	}
	if hits.Load() > before+1 {
		t.Errorf("the failing edge got %d more requests inside fail_duration", hits.Load()-before)
	}
	failing.Store(false)
	eventually(t, 8*time.Second, "the recovered edge to get traffic again", func() (bool, string) {
		_, edge := get()
		return edge == "flaky", edge
	})
}

// TestAllEdgesDown: with every edge dead, requests get 502/503 within the
// try duration and the LB stays idle (no busy loop).
func TestAllEdgesDown(t *testing.T) {
	edges := startEdges(t, library(t), library(t))
	lb, lbURL := startResumeLB(t, edges, "2")
	resp, err := http.Get(lbURL + "/sample.mp4")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for _, e := range edges {
		e.caddy.Kill()
	}
	for i := 0; i < 3; i++ {
		start := time.Now()
		resp, err := http.Get(lbURL + "/sample.mp4")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if took := time.Since(start); (resp.StatusCode != http.StatusBadGateway && resp.StatusCode != http.StatusServiceUnavailable) || took > 3*time.Second+2*time.Second {
			t.Fatalf("with every edge down: %d after %s, want 502/503 within lb_try_duration (3s)", resp.StatusCode, took)
		}
	}
	before := cpuSeconds(t, lb.Pid())
	time.Sleep(2 * time.Second)
	if used := cpuSeconds(t, lb.Pid()) - before; used > 0.3 {
		t.Errorf("the LB used %.2f s of CPU in 2 s with every edge down: a busy loop", used)
	}
}

// TestReloadUnderLoad: `caddy reload` while streams are in flight drops
// none of them (every byte arrives), and goroutines return to where they
// were (no poller or hub leaked).
func TestReloadUnderLoad(t *testing.T) {
	want := readLibrary(t, "big.bin")
	edges := startEdges(t, library(t), library(t))
	lbPort := freePort(t)
	cfg := lbDashboardConfig(lbPort, edgeAddrs(edges), "interval 250ms")
	lb := startCaddy(t, "lb", cfg, cluster.Options{})
	lbURL := "http://" + addr(lbPort)
	traffic(t, lbURL, 2, 10, want)
	baseG, _ := caddyRuntime(t, lb)

	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := 0; i < 6; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Get(lbURL + "/big.bin")
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			var got bytes.Buffer
			buf := make([]byte, 256<<10)
			for {
				n, err := resp.Body.Read(buf)
				got.Write(buf[:n])
				time.Sleep(5 * time.Millisecond) // a viewer, not a download manager
				if err == io.EOF {
					break
				}
				if err != nil {
					errs <- fmt.Errorf("stream dropped after %d bytes: %w", got.Len(), err)
					return
				}
			}
			if !bytes.Equal(got.Bytes(), want) {
				errs <- fmt.Errorf("stream of %d bytes differs from the file", got.Len())
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	for i := 0; i < 3; i++ {
		reload(t, lb, strings.Replace(cfg, "interval 250ms", fmt.Sprintf("interval %dms", 300+100*i), 1))
		time.Sleep(200 * time.Millisecond)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	eventually(t, 10*time.Second, "goroutines back to where they were", func() (bool, string) {
		g, _ := caddyRuntime(t, lb)
		return g <= baseG+10, fmt.Sprintf("%d goroutines, %d before", g, baseG)
	})
	// Exactly one of each long-lived goroutine is left: one board janitor,
	// one poller per edge, one dashboard hub.
	eventually(t, 10*time.Second, "one hub, one janitor and one poller per edge", func() (bool, string) {
		dump := getBody(t, "http://"+lb.Admin+"/debug/pprof/goroutine?debug=2")
		hubs := strings.Count(dump, "caddymodule.(*hub).run(")
		janitors := strings.Count(dump, "board.(*Board).janitor(")
		pollers := strings.Count(dump, "board.(*Edge).poll(")
		return hubs == 1 && janitors == 1 && pollers == len(edges), fmt.Sprintf("%d hubs, %d janitors, %d pollers", hubs, janitors, pollers)
	})
	// Metrics continue after the reloads.
	if missing := scrapeAdmin(t, lb).missing("edgetier_upstream_score"); len(missing) > 0 {
		t.Error("metrics lost after the reloads")
	}
}

// TestBadReloadKeepsServing: a reload with a bad Caddyfile is refused with
// the line and the reason, and the old config keeps serving.
func TestBadReloadKeepsServing(t *testing.T) {
	edges := startEdges(t, library(t))
	lbPort := freePort(t)
	cfg := lbConfig(lbPort, edgeAddrs(edges), "")
	lb := startCaddy(t, "lb", cfg, cluster.Options{})
	bad := strings.Replace(cfg, "interval 250ms", "interval 250ms\n\t\t\tweights 0.5 0.5 0.5 0 0", 1)
	err := lb.Reload(strings.ReplaceAll(bad, "%ADMIN%", lb.Admin))
	if err == nil || !strings.Contains(err.Error(), "weights: must sum to 1") || !strings.Contains(err.Error(), "Caddyfile:") {
		t.Fatalf("bad reload: %v", err)
	}
	resp, err := http.Get("http://" + addr(lbPort) + "/sample.mp4")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("after a bad reload: %d", resp.StatusCode)
	}
}

// TestLyingAgentShareBounded: an edge whose agent always reports zero load
// while the edge itself is slow gets a bounded share, thanks to the
// proxy's own in-flight view.
func TestLyingAgentShareBounded(t *testing.T) {
	lib := library(t)
	edges := startEdges(t, lib, lib)
	var served atomic.Int64
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		time.Sleep(200 * time.Millisecond)
		http.ServeFile(w, r, filepath.Join(lib, "sample.mp4"))
	}))
	defer slow.Close()
	liar := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"schema":"1.1","edge":"liar","timestamp":%q,"state":"ready","cpu_percent":0,"memory_percent":0,"requests_per_second":0,"streams":0,"response_time_seconds":0}`,
			time.Now().UTC().Format(time.RFC3339Nano))
	}))
	defer liar.Close()
	slowAddr := strings.TrimPrefix(slow.URL, "http://")
	lbPort := freePort(t)
	policy := fmt.Sprintf("upstream %s {\n\t\t\t\treport_url %s/load\n\t\t\t}", slowAddr, liar.URL)
	lb := startCaddy(t, "lb", lbConfig(lbPort, append(edgeAddrs(edges), slowAddr), policy), cluster.Options{})
	lbURL := "http://" + addr(lbPort)
	// The board learns the upstreams from a first request, then trusts them.
	waitTrusted(t, lb, lbURL, append(edgeAddrs(edges), slowAddr)...)
	served.Store(0)
	var total atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; k < 25; k++ {
				resp, err := http.Get(lbURL + "/sample.mp4")
				if err != nil {
					t.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				total.Add(1)
			}
		}()
	}
	wg.Wait()
	share := float64(served.Load()) / float64(total.Load())
	t.Logf("the lying slow edge served %d of %d requests (%.0f %%)", served.Load(), total.Load(), 100*share)
	if share > 0.2 {
		t.Errorf("the lying slow edge got %.0f %% of the requests: want it bounded well below a third", 100*share)
	}
}

// TestRangeAbuseAndTraversal: abusive Range headers through the LB get
// 200, 206 or 416 with bounded responses; path traversal never reaches a
// file outside the library.
func TestRangeAbuseAndTraversal(t *testing.T) {
	lb, lbURL := startVideoSystem(t)
	_, heapBefore := caddyRuntime(t, lb)
	defer func() {
		// Memory stays flat after the abuse.
		_, heapAfter := caddyRuntime(t, lb)
		if heapAfter > heapBefore+16<<20 {
			t.Errorf("LB heap grew from %d to %d bytes", heapBefore, heapAfter)
		}
	}()
	size := int64(len(readLibrary(t, "sample.mp4")))
	many := make([]string, 300)
	for i := range many {
		many[i] = fmt.Sprintf("%d-%d", i, i+1000)
	}
	cases := []struct{ name, rng string }{
		{"hundreds of overlapping ranges", "bytes=" + strings.Join(many, ",")},
		{"reversed", "bytes=5-1"},
		{"suffix of zero", "bytes=-0"},
		{"20-digit numbers", "bytes=99999999999999999999-"},
		{"20-digit end", "bytes=0-99999999999999999999"},
		{"garbage", "bytes=a-b"},
		{"huge header", "bytes=0-1," + strings.Repeat("1-2,", 4000) + "3-4"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, lbURL+"/videos/sample.mp4", nil)
			req.Header.Set("Range", c.rng)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			n, _ := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			switch resp.StatusCode {
			case 200, 206, 416, 431:
			default:
				t.Fatalf("status %d", resp.StatusCode)
			}
			if n > 2*size+64<<10 {
				t.Fatalf("%d bytes answered for a file of %d", n, size)
			}
		})
	}
	for _, p := range []string{"/videos/../Caddyfile", "/videos/%2e%2e/%2e%2e/etc/passwd", "/videos/..%2f..%2fetc%2fpasswd", "/videos/sample.mp4%00.txt", "/videos/....//....//etc/passwd"} {
		resp, err := http.Get(lbURL + p)
		if err != nil {
			continue // the client refused to send it: fine
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 400 && resp.StatusCode != 404 {
			t.Errorf("%s: %d", p, resp.StatusCode)
		}
		if bytes.Contains(body, []byte("root:")) {
			t.Errorf("%s leaked a file outside the library", p)
		}
	}
}

// TestHungAgentsDoNotHurtProxying: every agent hangs (accepts, never
// answers). Over 1,000 polls the LB's goroutines stay bounded, proxying
// goes on, and the edges count as unknown: neither down nor trusted.
func TestHungAgentsDoNotHurtProxying(t *testing.T) {
	lib := library(t)
	edges := startEdges(t, lib, lib, lib)
	hung := blackHole(t)
	var policy strings.Builder
	policy.WriteString("interval 20ms\n")
	for _, e := range edges {
		fmt.Fprintf(&policy, "\t\t\tupstream %s {\n\t\t\t\treport_url http://%s/load\n\t\t\t}\n", addr(e.port), hung)
	}
	lbPort := freePort(t)
	cfg := strings.Replace(lbConfig(lbPort, edgeAddrs(edges), policy.String()), "interval 250ms\n", "", 1)
	lb := startCaddy(t, "lb", cfg, cluster.Options{})
	lbURL := "http://" + addr(lbPort)
	traffic(t, lbURL, 2, 6, readLibrary(t, "big.bin"))
	time.Sleep(500 * time.Millisecond)
	baseG, _ := caddyRuntime(t, lb)
	polls := func() float64 {
		var total float64
		for _, e := range edges {
			total += upstreamMetric(t, lb, "edgetier_upstream_polls_total", addr(e.port))
		}
		return total
	}
	start := polls()
	want := readLibrary(t, "big.bin")
	maxG := baseG
	// 150 polls a second: 1,000 within a minute, or polling has stalled.
	deadline := time.Now().Add(time.Minute)
	for polls()-start < 1000 {
		if time.Now().After(deadline) {
			t.Fatalf("only %.0f polls in a minute: polling stalled", polls()-start)
		}
		served := traffic(t, lbURL, 3, 15, want)
		if len(served) < 2 {
			t.Errorf("requests went to %v only: unknown edges must share the load", served)
		}
		g, _ := caddyRuntime(t, lb)
		maxG = max(maxG, g)
	}
	t.Logf("%.0f polls; goroutines %d at the start, at most %d", polls()-start, baseG, maxG)
	if maxG > baseG+30 {
		t.Errorf("goroutines grew from %d to %d over 1,000 hung polls", baseG, maxG)
	}
	for _, e := range edges {
		if d, tr := upstreamMetric(t, lb, "edgetier_upstream_down", addr(e.port)), upstreamMetric(t, lb, "edgetier_upstream_trusted", addr(e.port)); d != 0 || tr != 0 {
			t.Errorf("%s: down %g, trusted %g: want unknown", e.name, d, tr)
		}
	}
	if v := scrapeAdmin(t, lb).value("edgetier_upstream_report_errors_total", prometheus.Labels{"pool": "default", "reason": "timeout", "upstream": addr(edges[0].port)}); v < 100 {
		t.Errorf("timeouts counted: %g", v)
	}
}
