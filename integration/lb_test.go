package integration

import (
	"fmt"
	"testing"
	"time"

	"github.com/edgetier/edgetier/internal/cluster"
)

// TestTieredKeepsViewersOffABusyEdge: three real edges, one made busy for
// real (a busy loop in its cgroup held to 20 % of a CPU, so its agent
// reports 100 % CPU); its share of new requests falls well below the
// others' while every request succeeds with correct bytes; idle again, its
// share recovers; killed, requests keep succeeding and it gets none.
func TestTieredKeepsViewersOffABusyEdge(t *testing.T) {
	want := readLibrary(t, "big.bin")
	edges := startCgroupEdges(t, 3)
	lbPort := freePort(t)
	lb := startCaddy(t, "lb", lbConfig(lbPort, edgeAddrs(edges), ""), cluster.Options{})
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
