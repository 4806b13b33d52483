package caddymodule

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
)

// BenchmarkSelect compares Select with Caddy's least_conn and
// random_choose 2 on the same pools: every upstream with the same number of
// requests in flight (least_conn's worst case: it keeps a reservoir) and
// with distinct numbers. Every tiered upstream reports once a second, as
// its poller would, so the reports stay fresh and each one rebuilds the
// plan, as in a running proxy.
func BenchmarkSelect(b *testing.B) {
	for _, n := range []int{3, 10, 100, 1000} {
		for _, inflight := range []string{"equal", "distinct"} {
			b.Run(fmt.Sprintf("n=%d/inflight=%s", n, inflight), func(b *testing.B) {
				p, dials, r := newTestPolicy(b, n)
				counts := make([]int, n)
				for i, d := range dials {
					r.load[d].Store(int64(10 + i%50))
					counts[i] = 5
					if inflight == "distinct" {
						counts[i] = i % 100 // at 1,000 upstreams ten for each count: 50,000 requests held
					}
				}
				pool, release := holdInFlight(b, dials, counts)
				defer release()
				trust(b, p, pool, r)
				stop := r.keepReporting(pool, time.Second)
				defer stop()
				arms := []struct {
					name string
					sel  reverseproxy.Selector
				}{
					{"tiered", p},
					{"least_conn", reverseproxy.LeastConnSelection{}},
					{"random_choose_2", &reverseproxy.RandomChoiceSelection{Choose: 2}},
				}
				for _, arm := range arms {
					b.Run(arm.name, func(b *testing.B) {
						b.ReportAllocs()
						for b.Loop() {
							if arm.sel.Select(pool, nil, nil) == nil {
								b.Fatal("no upstream")
							}
						}
					})
				}
			})
		}
	}
}

// BenchmarkSelectRequest is Select at 3 upstreams (distinct in-flight
// counts) with the request as Caddy's server hands it on, its variables in
// its context, rather than none: a request that failed no try.
func BenchmarkSelectRequest(b *testing.B) {
	p, dials, r := newTestPolicy(b, 3)
	for i, d := range dials {
		r.load[d].Store(int64(10 + i))
	}
	pool, release := holdInFlight(b, dials, []int{0, 1, 2})
	defer release()
	trust(b, p, pool, r)
	req := caddyhttp.PrepareRequest(httptest.NewRequest(http.MethodGet, "http://lb/video.mp4", nil), caddy.NewReplacer(), nil, &caddyhttp.Server{})
	b.ReportAllocs()
	for b.Loop() {
		if p.Select(pool, req, nil) == nil {
			b.Fatal("no upstream")
		}
	}
}

// keepReporting hands every upstream a new report once per interval,
// spread over the interval as the pollers' are, until stop is called.
func (r *testReports) keepReporting(pool reverseproxy.UpstreamPool, interval time.Duration) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		ticker := time.NewTicker(interval / time.Duration(len(pool)))
		defer ticker.Stop()
		for k := 0; ; k = (k + 1) % len(pool) {
			select {
			case <-done:
				return
			case <-ticker.C:
				r.send(pool[k].Dial)
			}
		}
	}()
	return func() { close(done); <-finished }
}
