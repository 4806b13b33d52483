// Package agentfarm serves many edge agents on loopback for benchmarks
// that need a pool of hundreds of edges without hundreds of edges: each
// agent is edgeagent's own (sampling every interval, its report served by
// edgeagent.ServeReport) on a port of its own, as an edge's agent is, so
// a balancer polls each over its own connection. Only the figures are
// fixed (no edge is measured), so what is measured is serving reports and
// taking them in.
package agentfarm

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"time"

	"github.com/edgetier/edgetier/edgeagent"
)

// Farm is a set of running agents.
type Farm struct {
	// Dials are the agents' addresses (host:port), one per agent: an
	// upstream at such an address has its report at the default report
	// URL, http://{upstream}/_edgetier/load.
	Dials []string

	servers []*httptest.Server
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// Start serves n agents sampling every interval. Agent i is named
// edge-<i+1> and reports CPU and memory at 10 + i%50 percent, with no
// requests.
func Start(n int, interval time.Duration) (*Farm, error) {
	ctx, cancel := context.WithCancel(context.Background())
	f := &Farm{cancel: cancel}
	logger := slog.New(slog.DiscardHandler)
	guard := edgeagent.NewGuard("")
	for i := range n {
		load := float64(10 + i%50)
		a, err := edgeagent.NewAgent(edgeagent.Config{Name: fmt.Sprintf("edge-%d", i+1), Interval: interval},
			fixedResources{load}, new(edgeagent.Meter), logger)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("starting agent %d: %w", i+1, err)
		}
		f.wg.Go(func() { a.Run(ctx) })
		mux := http.NewServeMux()
		mux.HandleFunc(edgeagent.DefaultReportPath, func(w http.ResponseWriter, r *http.Request) { edgeagent.ServeReport(a, guard, w, r) })
		s := httptest.NewServer(mux)
		f.servers = append(f.servers, s)
		f.Dials = append(f.Dials, s.Listener.Addr().String())
	}
	return f, nil
}

// Close stops the agents and closes their servers and connections.
func (f *Farm) Close() {
	f.cancel()
	for _, s := range f.servers {
		s.Close()
	}
	f.wg.Wait()
}

// fixedResources is a host whose CPU and memory use stay at one figure.
type fixedResources struct{ percent float64 }

func (r fixedResources) Sample(context.Context) (edgeagent.Resources, error) {
	return edgeagent.Resources{Scope: edgeagent.ScopeHost, CPUPercent: r.percent, MemoryPercent: r.percent}, nil
}
