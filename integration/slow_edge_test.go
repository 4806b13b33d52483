package integration

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/edgetier/edgetier/internal/cluster"
)

// slowFront is a proxy in front of an edge that holds every response for
// delay: a slow link or middlebox, which the edge's agent cannot see.
func slowFront(t *testing.T, edge string, delay time.Duration) string {
	t.Helper()
	target, _ := url.Parse("http://" + edge)
	rp := httputil.NewSingleHostReverseProxy(target)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(delay)
		rp.ServeHTTP(w, r)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// TestSlowEdgeAvoided: one of three edges sits behind a link that adds
// 50 ms to every answer; its agent reports it idle, since it is. With the
// edgetier transport the LB sees the delay in its own requests and sends
// the slow edge (almost) nothing, while every request succeeds.
func TestSlowEdgeAvoided(t *testing.T) {
	want := readLibrary(t, "big.bin")
	edges := startEdges(t, library(t), library(t), library(t))
	slow := slowFront(t, addr(edges[0].port), 50*time.Millisecond)
	var policy strings.Builder
	fmt.Fprintf(&policy, "upstream %s {\n\t\t\t\treport_url http://%s/_edgetier/load\n\t\t\t}", slow, addr(edges[0].port))
	ups := []string{slow, addr(edges[1].port), addr(edges[2].port)}
	port := freePort(t)
	lb := startCaddy(t, "lb", globalOptions+fmt.Sprintf(`
http://:%d {
	bind 127.0.0.1
	reverse_proxy %s {
		lb_policy tiered {
			interval 250ms
			%s
		}
		transport edgetier
	}
}
`, port, strings.Join(ups, " "), policy.String()), cluster.Options{})
	lbURL := "http://" + addr(port)
	eventually(t, 10*time.Second, "every edge trusted", func() (bool, string) {
		traffic(t, lbURL, 2, 6, want)
		var n float64
		for _, u := range ups {
			n += upstreamMetric(t, lb, "edgetier_upstream_trusted", u)
		}
		return n == 3, fmt.Sprintf("%g trusted", n)
	})
	served := traffic(t, lbURL, 24, 2400, want)
	t.Logf("served %v; latency slow %.1f ms, others %.1f and %.1f ms", served,
		1000*upstreamMetric(t, lb, "edgetier_upstream_latency_seconds", ups[0]),
		1000*upstreamMetric(t, lb, "edgetier_upstream_latency_seconds", ups[1]),
		1000*upstreamMetric(t, lb, "edgetier_upstream_latency_seconds", ups[2]))
	if served["edge-1"] > 2400/50 {
		t.Errorf("the edge behind the slow link served %d of 2400 requests: want at most 2 %%", served["edge-1"])
	}
}
