package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgetier/edgetier/internal/board"
	"github.com/edgetier/edgetier/internal/cluster"
)

// failingEdge starts an edge whose agent reports it idle (it is) and which
// answers every other request with 503 at once: to a balancer that judged
// by time to first byte alone, the fastest edge of all.
func failingEdge(t *testing.T, name string) *edgeProc {
	t.Helper()
	e := &edgeProc{name: name, port: freePort(t)}
	e.caddy = startCaddy(t, name, globalOptions+fmt.Sprintf(`
http://:%d {
	bind 127.0.0.1
	edge_agent %s {
		interval 250ms
	}
	respond "failing" 503
}
`, e.port, name), cluster.Options{})
	return e
}

// startErrorsLB starts a load balancer with the dashboard over upstreams,
// the tiered policy with its default ejection (and policyOptions), the
// edgetier transport, Caddy's passive health off (no unhealthy_status), and
// lbOptions in its reverse_proxy block. It returns the LB and its URL once
// it trusts every upstream, before any viewer's request.
func startErrorsLB(t *testing.T, upstreams []string, policyOptions, lbOptions string) (*cluster.Caddy, string) {
	t.Helper()
	port := freePort(t)
	lb := startCaddy(t, "lb", globalOptions+fmt.Sprintf(`
http://:%d {
	bind 127.0.0.1
	cdn_dashboard
	reverse_proxy %s {
		lb_policy tiered {
			interval 250ms
			%s
		}
		%s
		transport edgetier
	}
}
`, port, strings.Join(upstreams, " "), policyOptions, lbOptions), cluster.Options{})
	eventually(t, 20*time.Second, "every upstream trusted (no viewer yet)", func() (bool, string) {
		m := scrapeAdmin(t, lb)
		for _, u := range upstreams {
			if m.value("edgetier_upstream_trusted", prometheus.Labels{"pool": "default", "upstream": u}) != 1 {
				return false, u
			}
		}
		return true, ""
	})
	return lb, "http://" + addr(port)
}

// viewerRun is what viewers saw: their answers' statuses and, of the
// successful ones, the edge (X-Edge) that served each.
type viewerRun struct {
	mu       sync.Mutex
	statuses map[int]int
	served   map[string]int
	failures []string // the first few failed answers
}

// viewers sends n requests for the first 64 KiB of the sample video
// through lbURL from workers clients, each after the other's answer.
func viewers(t *testing.T, lbURL string, workers, n int) *viewerRun {
	t.Helper()
	run := &viewerRun{statuses: map[int]int{}, served: map[string]int{}}
	client := &http.Client{Timeout: 20 * time.Second}
	jobs := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range jobs {
				req, _ := http.NewRequest(http.MethodGet, lbURL+"/sample.mp4", nil)
				req.Header.Set("Range", "bytes=0-65535")
				status, edge := 0, ""
				resp, err := client.Do(req)
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					status, edge = resp.StatusCode, resp.Header.Get("X-Edge")
				}
				run.mu.Lock()
				run.statuses[status]++
				if status == http.StatusPartialContent && err == nil {
					run.served[edge]++
				} else if len(run.failures) < 5 {
					run.failures = append(run.failures, fmt.Sprintf("request %d: status %d, edge %q, err %v", k, status, edge, err))
				}
				run.mu.Unlock()
			}
		}()
	}
	for k := 0; k < n; k++ {
		jobs <- k
	}
	close(jobs)
	wg.Wait()
	return run
}

// failed is how many answers were not the 206 asked for.
func (r *viewerRun) failed() int {
	n := 0
	for status, count := range r.statuses {
		if status != http.StatusPartialContent {
			n += count
		}
	}
	return n
}

// lbFrame is the dashboard's frame, from the LB's /metrics.
func lbFrame(t *testing.T, lbURL string) board.Frame {
	t.Helper()
	var f board.Frame
	if err := json.Unmarshal([]byte(getBody(t, lbURL+"/metrics")), &f); err != nil {
		t.Fatalf("decoding the frame: %v", err)
	}
	return f
}

// frameEvent reports whether the frame has an event of kind about upstream
// whose message contains text.
func frameEvent(f board.Frame, kind, upstream, text string) bool {
	for _, ev := range f.Events {
		if ev.Kind == kind && ev.Upstream == upstream && strings.Contains(ev.Message, text) {
			return true
		}
	}
	return false
}

// TestFailingEdgeEjected: one of three edges answers every request with
// 503 in a millisecond and its agent reports it idle. The balancer counts
// the 503s as errors, not as fast answers, and ejects the edge itself (no
// unhealthy_status): without retries, at most 2 % of the viewers' requests
// see a 503; with lb_retries 2, none do. The ejection shows on
// /prometheus, in the dashboard's frame and in its events.
func TestFailingEdgeEjected(t *testing.T) {
	lib := library(t)
	for _, tt := range []struct {
		name, lbOptions string
		maxFailed       int
	}{
		{"no_retries", "", 600 / 50},
		{"lb_retries_2", "lb_retries 2", 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			good := startEdges(t, lib, lib)
			bad := failingEdge(t, "edge-bad")
			ups := []string{addr(good[0].port), addr(good[1].port), addr(bad.port)}
			lb, lbURL := startErrorsLB(t, ups, "", tt.lbOptions)
			run := viewers(t, lbURL, 4, 600)
			t.Logf("statuses %v, served %v", run.statuses, run.served)
			if n := run.failed(); n > tt.maxFailed {
				t.Errorf("%d of 600 viewer requests failed (statuses %v; %v): want at most %d", n, run.statuses, run.failures, tt.maxFailed)
			}
			m := scrapeAdmin(t, lb)
			labels := prometheus.Labels{"pool": "default", "upstream": addr(bad.port)}
			if v := m.value("edgetier_upstream_ejected", labels); v != 1 {
				t.Errorf("edgetier_upstream_ejected of the failing edge = %g, want 1", v)
			}
			if v := m.value("edgetier_upstream_ejections_total", labels); !(v >= 1) {
				t.Errorf("edgetier_upstream_ejections_total of the failing edge = %g, want at least 1", v)
			}
			if v := m.value("edgetier_upstream_latency_seconds", labels); v == v {
				t.Errorf("the failing edge has a latency of %g s: its 503s counted as answers", v)
			}
			for _, u := range ups[:2] {
				if v := m.value("edgetier_upstream_ejected", prometheus.Labels{"pool": "default", "upstream": u}); v != 0 {
					t.Errorf("healthy edge %s: edgetier_upstream_ejected = %g, want 0", u, v)
				}
			}
			// The dashboard's frame is built once a second.
			eventually(t, 5*time.Second, "the frame showing the ejection", func() (bool, string) {
				f := lbFrame(t, lbURL)
				shown := false
				for _, e := range f.Edges {
					if e.Upstream == addr(bad.port) {
						shown = e.Ejected && e.Health == "ejected" && e.Ejections >= 1
					}
				}
				return shown && frameEvent(f, "eject", addr(bad.port), "recent answers were errors"), asJSON(f)
			})
		})
	}
}

// TestTwoFailingEdgesMaxEjected: two of three edges fail every request.
// max_ejected (default 50 %: one of three) keeps the second in the pool,
// and says so; with lb_retries 2, whose retries leave out the edges that
// failed the request, every viewer is served through the third edge.
func TestTwoFailingEdgesMaxEjected(t *testing.T) {
	lib := library(t)
	good := startEdges(t, lib)
	bad1, bad2 := failingEdge(t, "edge-bad-1"), failingEdge(t, "edge-bad-2")
	ups := []string{addr(good[0].port), addr(bad1.port), addr(bad2.port)}
	lb, lbURL := startErrorsLB(t, ups, "", "lb_retries 2")
	stop := make(chan struct{})
	var most float64
	var watch sync.WaitGroup
	watch.Add(1)
	go func() { // the most ejected at once while viewers watch
		defer watch.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			most = max(most, scrapeAdmin(t, lb).sum("edgetier_upstream_ejected", prometheus.Labels{"pool": "default"}))
		}
	}()
	run := viewers(t, lbURL, 4, 600)
	close(stop)
	watch.Wait()
	t.Logf("statuses %v, served %v", run.statuses, run.served)
	if n := run.failed(); n > 0 {
		t.Errorf("%d of 600 viewer requests failed (statuses %v; %v): want none", n, run.statuses, run.failures)
	}
	if run.served["edge-1"] != 600-run.failed() {
		t.Errorf("served %v: want every success from edge-1", run.served)
	}
	m := scrapeAdmin(t, lb)
	now := m.sum("edgetier_upstream_ejected", prometheus.Labels{"pool": "default"})
	if most = max(most, now); most != 1 {
		t.Errorf("at most %g upstreams ejected at once (now %g), want 1: max_ejected 50 %% of 3", most, now)
	}
	if v := m.value("edgetier_upstream_ejected", prometheus.Labels{"pool": "default", "upstream": addr(good[0].port)}); v != 0 {
		t.Errorf("the healthy edge is ejected")
	}
	eventually(t, 5*time.Second, "an event saying max_ejected kept a failing edge in", func() (bool, string) {
		f := lbFrame(t, lbURL)
		return frameEvent(f, "eject", addr(bad1.port), "max_ejected keeps it in") || frameEvent(f, "eject", addr(bad2.port), "max_ejected keeps it in"), asJSON(f.Events)
	})
}

// TestDashboardShowsEjection: the dashboard page in headless Chromium
// shows a failing edge ejected (its health, the time left, its error
// ratio) and the eject event.
func TestDashboardShowsEjection(t *testing.T) {
	lib := library(t)
	good := startEdges(t, lib, lib)
	bad := failingEdge(t, "edge-bad")
	ups := []string{addr(good[0].port), addr(good[1].port), addr(bad.port)}
	_, lbURL := startErrorsLB(t, ups, "", "lb_retries 2")
	viewers(t, lbURL, 2, 100)
	ctx := browser(t)
	if err := chromedp.Do(ctx, chromedp.Navigate(lbURL+"/dashboard")); err != nil {
		t.Fatal(err)
	}
	row := fmt.Sprintf(`document.querySelector('tr[data-upstream="%s"]')`, addr(bad.port))
	evalUntil(t, ctx, 15*time.Second, "the failing edge shown ejected",
		row+` && `+row+`.classList.contains('ejected') && `+row+`.querySelector('.h-ejected') !== null && `+row+`.querySelector('.eject-mark') !== null`)
	evalUntil(t, ctx, 5*time.Second, "an eject event in the list",
		`[...document.querySelectorAll('#events li')].some(li => li.querySelector('.k-eject') && li.textContent.includes('`+addr(bad.port)+`') && li.textContent.includes('errors'))`)
	screenshot(t, ctx, "dashboard-ejected.png")
}
