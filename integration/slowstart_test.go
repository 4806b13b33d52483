package integration

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgetier/edgetier/internal/cluster"
)

// slowStartLB is a load balancer over upstreams with the tiered policy's
// slow_start set to slowStart, as the shipped Caddyfiles have it.
func slowStartLB(port int, upstreams []string, slowStart time.Duration) string {
	return globalOptions + fmt.Sprintf(`
http://:%d {
	bind 127.0.0.1
	reverse_proxy %s {
		lb_policy tiered {
			interval 250ms
			slow_start %s
		}
		lb_retries 2
		transport edgetier
	}
}
`, port, strings.Join(upstreams, " "), slowStart)
}

// started is one viewer request: when it was sent and which edge served it.
type started struct {
	at   time.Time
	edge string
}

// streamingViewers has workers viewers fetch 1 MiB ranges of big.bin
// through lbURL over and over, each reading at about 4 MiB/s, so the pool
// always has streams in flight, until stop is closed. It returns every
// request's start and edge.
func streamingViewers(t *testing.T, lbURL string, workers int, stop <-chan struct{}) func() []started {
	t.Helper()
	var mu sync.Mutex
	var log []started
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Timeout: 20 * time.Second}
			buf := make([]byte, 16<<10)
			for k := 0; ; k++ {
				select {
				case <-stop:
					return
				default:
				}
				const size = 1 << 20
				first := ((w*7919 + k*104729) % 40) * size
				req, _ := http.NewRequest(http.MethodGet, lbURL+"/big.bin", nil)
				req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", first, first+size-1))
				at := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					continue
				}
				for {
					if _, err := resp.Body.Read(buf); err != nil {
						break
					}
					time.Sleep(4 * time.Millisecond)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				mu.Lock()
				log = append(log, started{at, resp.Header.Get("X-Edge")})
				mu.Unlock()
			}
		}()
	}
	return func() []started {
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		return log
	}
}

// shareOf is edge's share of the requests started in [from, to), and how
// many started then.
func shareOf(log []started, edge string, from, to time.Time) (float64, int) {
	n, of := 0, 0
	for _, s := range log {
		if !s.at.Before(from) && s.at.Before(to) {
			n++
			if s.edge == edge {
				of++
			}
		}
	}
	if n == 0 {
		return 0, 0
	}
	return float64(of) / float64(n), n
}

// TestSlowStartNewEdge: viewers stream continuously from three edges; the
// pool grows to four (a reload adds the edge). The new edge is idle, so
// the fewest-in-flight rule would hand it nearly every new request; with
// slow_start 10s it takes at most half its fair share (1/4) in its first
// 5 s, and its fair share (70 % of it at least: shares of a few hundred
// requests are noisy) in the 8 s after slow start.
func TestSlowStartNewEdge(t *testing.T) {
	const slowStart = 10 * time.Second
	lib := library(t)
	edges := startEdges(t, lib, lib, lib, lib)
	ups := edgeAddrs(edges)
	port := freePort(t)
	lb := startCaddy(t, "lb", slowStartLB(port, ups[:3], slowStart), cluster.Options{})
	lbURL := "http://" + addr(port)
	eventually(t, 20*time.Second, "three edges trusted", func() (bool, string) {
		m := scrapeAdmin(t, lb)
		for _, u := range ups[:3] {
			if m.value("edgetier_upstream_trusted", prometheus.Labels{"pool": "default", "upstream": u}) != 1 {
				return false, u
			}
		}
		return true, ""
	})
	stop := make(chan struct{})
	finish := streamingViewers(t, lbURL, 12, stop)
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
			finish()
		}
	}()
	time.Sleep(3 * time.Second) // the pool loaded
	// Judged from before the reload for the first 5 s, from after it for
	// the end of slow start: a slow reload makes neither look better.
	grown := time.Now()
	reload(t, lb, slowStartLB(port, ups, slowStart))
	joined := time.Now()
	time.Sleep(time.Until(joined.Add(slowStart + 8*time.Second)))
	close(stop)
	log := finish()

	newEdge := edges[3].name
	before, nBefore := shareOf(log, newEdge, grown.Add(-3*time.Second), grown)
	early, nEarly := shareOf(log, newEdge, grown, grown.Add(5*time.Second))
	late, nLate := shareOf(log, newEdge, joined.Add(slowStart), joined.Add(slowStart+8*time.Second))
	t.Logf("new edge's share: %.3f of %d requests before, %.3f of %d in its first 5 s, %.3f of %d after slow start",
		before, nBefore, early, nEarly, late, nLate)
	if nBefore > 0 && before != 0 {
		t.Errorf("the new edge served %.3f of the requests before it joined", before)
	}
	if nEarly < 40 || nLate < 40 {
		t.Fatalf("too few requests to judge shares (%d, %d): the viewers did not stream", nEarly, nLate)
	}
	const fair = 0.25
	if early > fair/2 {
		t.Errorf("in its first 5 s the new edge took %.3f of the new requests: want at most half its fair share (%.3f)", early, fair/2)
	}
	if late < 0.7*fair {
		t.Errorf("after slow start the new edge took %.3f of the new requests: want about its fair share (%.2f)", late, fair)
	}
}
