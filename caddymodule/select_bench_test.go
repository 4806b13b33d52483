package caddymodule

import (
	"fmt"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"

	"github.com/edgetier/edgetier/edgeagent"
)

// BenchmarkSelect compares Select with Caddy's least_conn and
// random_choose 2 on the same pools: every upstream with the same number of
// requests in flight (least_conn's worst case: it keeps a reservoir) and
// with distinct numbers. Every tiered upstream reports once a second, as
// its poller would, so the reports stay fresh and each one rebuilds the
// plan, as in a running proxy.
func BenchmarkSelect(b *testing.B) {
	for _, n := range []int{3, 10, 100} {
		for _, inflight := range []string{"equal", "distinct"} {
			s := newTestSetup(b, n, nil)
			for i := range s.pool {
				s.report(i, float64(10+i%50), edgeagent.StateReady, 2)
				count := 5
				if inflight == "distinct" {
					count = i
				}
				setInFlight(b, s.pool[i], count)
			}
			// Warm the pool cache, as the first requests of a config do,
			// and let the board's clock keep its plan, as Provision does.
			s.p.Select(s.pool, nil, nil)
			s.p.Select(s.pool, nil, nil)
			s.p.board.addPlanner(s.p)
			stop := s.keepReporting(time.Second)
			arms := []struct {
				name string
				sel  reverseproxy.Selector
			}{
				{"tiered", s.p},
				{"least_conn", reverseproxy.LeastConnSelection{}},
				{"random_choose_2", &reverseproxy.RandomChoiceSelection{Choose: 2}},
			}
			for _, arm := range arms {
				b.Run(fmt.Sprintf("n=%d/inflight=%s/%s", n, inflight, arm.name), func(b *testing.B) {
					b.ReportAllocs()
					for b.Loop() {
						if arm.sel.Select(s.pool, nil, nil) == nil {
							b.Fatal("no upstream")
						}
					}
				})
			}
			stop()
		}
	}
}

// keepReporting hands every upstream its last report again once per
// interval, spread over the interval as the pollers' are, until stop is
// called.
func (s *testSetup) keepReporting(interval time.Duration) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		ticker := time.NewTicker(interval / time.Duration(len(s.pool)))
		defer ticker.Stop()
		for k := 0; ; k = (k + 1) % len(s.pool) {
			select {
			case <-done:
				return
			case <-ticker.C:
				e := s.entry(k)
				e.accept(s.cfg, e.view.Load().report)
			}
		}
	}()
	return func() { close(done); <-finished }
}
