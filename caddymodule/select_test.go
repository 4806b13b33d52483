package caddymodule

import (
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"go.uber.org/zap"

	"github.com/edgetier/edgetier/edgeagent"
	"github.com/edgetier/edgetier/internal/board"
	"github.com/edgetier/edgetier/internal/rank"
)

// testReports hands the policy's board reports of a load the test sets per
// upstream, as its poller would: every component at that load, so the
// score is the load.
type testReports struct {
	b    *board.Board
	load map[string]*atomic.Int64 // by upstream
	seq  atomic.Uint64
}

// send gives upstream dial a report of its load.
func (r *testReports) send(dial string) {
	l := float64(r.load[dial].Load())
	r.b.Report(dial, edgeagent.Report{Schema: edgeagent.SchemaVersion, Edge: "test", Timestamp: time.Now(), Seq: r.seq.Add(1),
		State: edgeagent.StateReady, IntervalSeconds: 1, CPUPercent: l, MemoryPercent: l,
		RequestsPerSecond: l / 100 * rank.DefaultCapacity.Requests, Streams: l / 100 * rank.DefaultCapacity.Streams,
		ResponseTimeSeconds: l / 100 * rank.DefaultCapacity.ResponseTime})
}

// newTestPolicy provisions a tiered policy on its own board for n
// upstreams (their addresses: dials), whose reports the test hands in:
// their agents refuse the polls, which come every ten minutes.
func newTestPolicy(t testing.TB, n int) (*TieredSelection, []string, *testReports) {
	t.Helper()
	dials := make([]string, n)
	base := int(testPorts.Add(int64(n))) - n
	for i := range dials {
		dials[i] = "127.0.1." + strconv.Itoa((base+i)/50000+1) + ":" + strconv.Itoa(1000+(base+i)%50000)
	}
	p := &TieredSelection{Pool: fmt.Sprintf("test-%s-%d", t.Name(), n), Interval: caddy.Duration(10 * time.Minute), ForgetAfter: caddy.Duration(time.Hour),
		ReportURL: "http://127.0.0.1:9/_edgetier/load?for={upstream}"}
	p.setDefaults()
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	p.board = board.New(p.Pool, zap.NewNop())
	t.Cleanup(func() { p.unsubscribe(); _ = p.board.Destruct() })
	p.board.Configure(p.boardConfig())
	p.unsubscribe = p.board.Subscribe(p.replan)
	r := &testReports{b: p.board, load: map[string]*atomic.Int64{}}
	for _, d := range dials {
		r.load[d] = new(atomic.Int64)
	}
	return p, dials, r
}

// trust has the policy see pool (making it its cached pool) and gives
// every upstream the two reports of its warm-up.
func trust(t testing.TB, p *TieredSelection, pool reverseproxy.UpstreamPool, r *testReports) {
	t.Helper()
	p.Select(pool, nil, nil)
	p.Select(pool, nil, nil)
	for k := 0; k < 2; k++ {
		for _, u := range pool {
			r.send(u.Dial)
		}
	}
	for _, e := range p.board.Edges() {
		if v := e.View(); v == nil || !v.Trusted {
			t.Fatalf("%s not trusted after two reports", e.Dial())
		}
	}
}

// testPorts hands out upstream addresses no other test of the process uses.
var testPorts atomic.Int64

// plainPool is a pool of upstreams at dials with nothing in flight.
func plainPool(dials []string) reverseproxy.UpstreamPool {
	var pool reverseproxy.UpstreamPool
	for _, d := range dials {
		pool = append(pool, &reverseproxy.Upstream{Host: new(reverseproxy.Host), Dial: d})
	}
	return pool
}

// TestSelect: the policy in Caddy's shape chooses by the tier rule from the
// plan the board keeps, counts each choice by the tier it was made from,
// and never chooses in maintenance (the rule itself is rank's TestChoose).
func TestSelect(t *testing.T) {
	p, dials, r := newTestPolicy(t, 3)
	pool := plainPool(dials)
	r.load[pool[0].Dial].Store(90)
	r.load[pool[1].Dial].Store(10)
	r.load[pool[2].Dial].Store(12)
	trust(t, p, pool, r)
	counts := map[*reverseproxy.Upstream]int{}
	for k := 0; k < 3000; k++ {
		counts[p.Select(pool, nil, nil)]++
	}
	if counts[pool[0]] != 0 || counts[pool[1]] < 1000 || counts[pool[2]] < 1000 {
		t.Fatalf("choices %d %d %d: want none for the tier-4 upstream, half each for the others", counts[pool[0]], counts[pool[1]], counts[pool[2]])
	}
	var tier1 uint64
	for _, e := range p.board.Edges() {
		st := e.Status(time.Now())
		tier1 += st.Selections[rank.KindTier1]
	}
	if tier1 != 3000 {
		t.Errorf("%d selections counted from tier 1, want all 3000", tier1)
	}
	if u := p.Select(nil, nil, nil); u != nil {
		t.Fatal("Select on an empty pool returned an upstream")
	}
}

// TestStaticUpstreamsTrackedBeforeTraffic: the policy learns the static
// upstreams of its reverse_proxy from the running config, so the board
// polls them before any request.
func TestStaticUpstreamsTrackedBeforeTraffic(t *testing.T) {
	p, dials, _ := newTestPolicy(t, 3)
	h := &reverseproxy.Handler{Upstreams: plainPool(dials), LoadBalancing: &reverseproxy.LoadBalancing{SelectionPolicy: p}}
	p.inspect([]*reverseproxy.Handler{h}, zap.NewNop())
	if got := len(p.board.Edges()); got != 3 {
		t.Fatalf("the board tracks %d upstreams before any request, want the 3 static ones", got)
	}
	if c := p.cache.Load(); c == nil || &c.pool[0] != &h.Upstreams[0] {
		t.Fatal("the handler's pool is not the policy's cached pool")
	}
}

// TestSelectPassesOverUnavailable: an upstream that Caddy calls
// unavailable after the plan was made (here it reached its max_requests)
// is never chosen, though it has the fewest requests in flight, or as few
// as the others.
func TestSelectPassesOverUnavailable(t *testing.T) {
	for _, tc := range []struct {
		name   string
		counts []int
		want   int // the upstream chosen every time; -1: either of 0 and 2
	}{
		{"fewest", []int{2, 1, 3}, 0},
		{"tied", []int{1, 1, 1}, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, dials, r := newTestPolicy(t, 3)
			pool, release := holdInFlight(t, dials, tc.counts)
			defer release()
			for _, d := range dials {
				r.load[d].Store(10)
			}
			trust(t, p, pool, r)
			pool[1].MaxRequests = 1 // full now: no report, so the plan stands
			counts := make([]int, 3)
			for range 300 {
				u := p.Select(pool, nil, nil)
				for i := range pool {
					if u == pool[i] {
						counts[i]++
					}
				}
			}
			switch {
			case counts[1] != 0:
				t.Fatalf("choices %v: the full upstream was chosen", counts)
			case tc.want >= 0 && counts[tc.want] != 300:
				t.Fatalf("choices %v: want all for upstream %d, the least busy available", counts, tc.want)
			case tc.want < 0 && (counts[0] < 100 || counts[2] < 100):
				t.Fatalf("choices %v: want about half each for upstreams 0 and 2", counts)
			}
		})
	}
}
