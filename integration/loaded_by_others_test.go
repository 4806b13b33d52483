package integration

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/edgetier/edgetier/internal/cluster"
)

// TestTieredKeepsViewersOffAnEdgeLoadedByOthers: one edge holds streams
// opened directly by other clients, not through the balancers. It answers
// as fast as the others, so in-flight counts (least_conn's whole view)
// cannot tell it apart: a least_conn balancer over the same edges gives it
// its third. Its agent's reports do: the tiered policy (weights of an
// operator whose edges are bound by streams) sends it well below the
// others' share.
func TestTieredKeepsViewersOffAnEdgeLoadedByOthers(t *testing.T) {
	want := readLibrary(t, "big.bin")
	edges := startCgroupEdges(t, 3)
	tieredPort, leastConnPort := freePort(t), freePort(t)
	lb := startCaddy(t, "lb", lbConfig(tieredPort, edgeAddrs(edges), `weights 0.1 0.1 0.1 0.6 0.1
			capacity {
				streams 10
			}`), cluster.Options{})
	startCaddy(t, "least_conn", globalOptions+fmt.Sprintf(`
http://127.0.0.1:%d {
	reverse_proxy %s {
		lb_policy least_conn
	}
}
`, leastConnPort, strings.Join(edgeAddrs(edges), " ")), cluster.Options{})
	tieredURL, leastConnURL := "http://"+addr(tieredPort), "http://"+addr(leastConnPort)
	loaded := edges[0]

	// The board learns the upstreams from the first requests.
	traffic(t, tieredURL, 2, 20, want)
	for range 12 {
		slowStream(t, addr(loaded.port), "/big.bin")
	}
	eventually(t, 10*time.Second, "the loaded edge to leave tier 1", func() (bool, string) {
		tier := upstreamMetric(t, lb, "edgetier_upstream_tier", addr(loaded.port))
		return tier >= 2, fmt.Sprintf("tier %g", tier)
	})

	served := traffic(t, leastConnURL, 4, 300, want)
	t.Logf("least_conn: %v", served)
	if others := float64(served["edge-2"]+served["edge-3"]) / 2; float64(served["edge-1"]) < 0.5*others {
		t.Fatalf("least_conn kept off the loaded edge too (%v): the test cannot tell load reports from in-flight counts", served)
	}

	before := selectionsOf(t, lb, edges)
	served = traffic(t, tieredURL, 4, 300, want)
	chosen := selectionsOf(t, lb, edges)
	for i := range chosen {
		chosen[i] -= before[i]
	}
	t.Logf("tiered: served %v, chosen %v", served, chosen)
	if others := (chosen[1] + chosen[2]) / 2; chosen[0] > 0.25*others {
		t.Errorf("the policy chose the loaded edge %.0f times, the others %.0f and %.0f: want well below theirs", chosen[0], chosen[1], chosen[2])
	}
}
