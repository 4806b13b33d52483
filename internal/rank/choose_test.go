package rank

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/edgetier/edgetier/edgeagent"
)

// testPool is a pool of upstreams as plain values: views from reports,
// the proxy's in-flight counts and availability.
type testPool struct {
	in  []Input
	s   Scoring
	now int64
	seq uint64
}

func newTestPool(n int, configure func(*Scoring)) *testPool {
	p := &testPool{in: make([]Input, n), now: time.Now().UnixNano(), s: Scoring{
		Weights: DefaultWeights, Thresholds: DefaultThresholds, Hysteresis: 5,
		Capacity: DefaultCapacity, Warmup: 2, StaleAfter: 3 * time.Second,
	}}
	for i := range p.in {
		p.in[i].Available = true
	}
	if configure != nil {
		configure(&p.s)
	}
	return p
}

// report gives upstream i a load where every component equals load (so its
// score is load), times times (2 makes it trusted).
func (p *testPool) report(i int, load float64, state edgeagent.State, times int) {
	for k := 0; k < times; k++ {
		p.seq++
		rep := edgeagent.Report{
			Schema: edgeagent.SchemaVersion, Edge: fmt.Sprintf("edge-%d", i), Seq: p.seq, State: state,
			CPUPercent: load, MemoryPercent: load,
			RequestsPerSecond: load / 100 * DefaultCapacity.Requests, Streams: load / 100 * DefaultCapacity.Streams,
			ResponseTimeSeconds: load / 100 * DefaultCapacity.ResponseTime,
		}
		p.in[i].View = Accept(p.in[i].View, rep, p.now, p.in[i].InFlight, Capacity{}, &p.s)
	}
}

// serving gives upstream i two reports of serving rps at cpu per cent,
// without streams: what its capacity is estimated from.
func (p *testPool) serving(i int, cpu, rps float64) {
	for range 2 {
		p.seq++
		rep := edgeagent.Report{Schema: edgeagent.SchemaVersion, Edge: fmt.Sprintf("edge-%d", i), Seq: p.seq,
			State: edgeagent.StateReady, CPUPercent: cpu, RequestsPerSecond: rps}
		p.in[i].View = Accept(p.in[i].View, rep, p.now, p.in[i].InFlight, Capacity{}, &p.s)
	}
}

// linked gives upstream i two reports of load (as report) that advertise
// a link of link bytes per second.
func (p *testPool) linked(i int, load, link float64) {
	for range 2 {
		p.seq++
		rep := edgeagent.Report{Schema: edgeagent.SchemaVersion, Edge: fmt.Sprintf("edge-%d", i), Seq: p.seq,
			State: edgeagent.StateReady, CPUPercent: load, MemoryPercent: load,
			Capacity: &edgeagent.Capacity{LinkBytesPerSecond: link}}
		p.in[i].View = Accept(p.in[i].View, rep, p.now, p.in[i].InFlight, Capacity{}, &p.s)
	}
}

func (p *testPool) age(i int, by time.Duration) {
	v := *p.in[i].View
	v.ReceivedAt -= int64(by)
	v.PolledAt -= int64(by)
	p.in[i].View = &v
}

func (p *testPool) judge() *Judge {
	views := make([]*View, len(p.in))
	for i := range p.in {
		views[i] = p.in[i].View
	}
	avg, _ := Average(views, p.now, int64(p.s.StaleAfter))
	return &Judge{Now: p.now, StaleAfter: int64(p.s.StaleAfter), Average: avg,
		PerStream: p.s.Weights[Streams] * 100 / p.s.Capacity.Streams, Thresholds: p.s.Thresholds, Hysteresis: p.s.Hysteresis, Headroom: DefaultHeadroom}
}

// choose decides from plan pl as a request would, planning again from the
// pool as it is now when pl no longer fits; -1 for none.
func (p *testPool) choose(pl *Plan) (int, Kind) {
	for attempt := 0; ; attempt++ {
		var l Least
		for k := range pl.Candidates {
			c := &pl.Candidates[k]
			if u := &p.in[c.Index]; u.Available {
				l.Offer(pl, c, k, u.InFlight)
			}
		}
		k, kind, ok := pl.Decide(&l)
		if ok || attempt == 1 {
			if k < 0 {
				return -1, 0
			}
			return pl.Candidates[k].Index, kind
		}
		pl = Build(p.in, p.judge())
	}
}

// shares chooses n times and returns each upstream's share.
func (p *testPool) shares(n int, single bool) []float64 {
	j := p.judge()
	j.Single = single
	pl := Build(p.in, j)
	counts := make([]float64, len(p.in))
	for k := 0; k < n; k++ {
		if i, _ := p.choose(pl); i >= 0 {
			counts[i]++
		}
	}
	for i := range counts {
		counts[i] /= float64(n)
	}
	return counts
}

func TestChoose(t *testing.T) {
	const ready = edgeagent.StateReady
	type check func(t *testing.T, shares []float64)
	near := func(i int, want, tol float64) check {
		return func(t *testing.T, s []float64) {
			if s[i] < want-tol || s[i] > want+tol {
				t.Errorf("upstream %d share = %.3f, want %.2f±%.2f (shares %.3f)", i, s[i], want, tol, s)
			}
		}
	}
	none := func(i int) check { return near(i, 0, 0) }
	some := func(i int, min float64) check {
		return func(t *testing.T, s []float64) {
			if s[i] < min {
				t.Errorf("upstream %d share = %.3f, want at least %.2f (shares %.3f)", i, s[i], min, s)
			}
		}
	}
	below := func(i int, max float64) check {
		return func(t *testing.T, s []float64) {
			if s[i] > max {
				t.Errorf("upstream %d share = %.3f, want at most %.2f (shares %.3f)", i, s[i], max, s)
			}
		}
	}
	streamsOnly := func(s *Scoring) { s.Weights = Weights{Streams: 1} }
	tests := []struct {
		name      string
		n         int
		configure func(*Scoring)
		single    bool
		setup     func(p *testPool)
		checks    []check
	}{
		{"equal loads spread evenly", 3, nil, false, func(p *testPool) {
			for i := 0; i < 3; i++ {
				p.report(i, 10, ready, 2)
			}
		}, []check{near(0, 1.0/3, 0.05), near(1, 1.0/3, 0.05), near(2, 1.0/3, 0.05)}},
		{"tier 4 gets nothing while lower tiers serve", 3, nil, false, func(p *testPool) {
			p.report(0, 90, ready, 2)
			p.report(1, 10, ready, 2)
			p.report(2, 12, ready, 2)
		}, []check{none(0), some(1, 0.4), some(2, 0.4)}},
		{"a single best upstream shares with the next tier", 3, nil, false, func(p *testPool) {
			p.report(0, 5, ready, 2)
			p.report(1, 30, ready, 2)
			p.report(2, 35, ready, 2)
		}, []check{near(0, 2.0/3, 0.05), some(1, 0.12), some(2, 0.12)}},
		{"choices 1 always takes the single best", 3, nil, true, func(p *testPool) {
			p.report(0, 5, ready, 2)
			p.report(1, 30, ready, 2)
			p.report(2, 35, ready, 2)
		}, []check{near(0, 1, 0)}},
		{"a stale report counts as average, not as its old load", 3, nil, false, func(p *testPool) {
			p.report(0, 90, ready, 2)
			p.age(0, 10*time.Second)
			p.report(1, 10, ready, 2)
			p.report(2, 10, ready, 2)
		}, []check{some(0, 0.2), some(1, 0.2), some(2, 0.2)}},
		{"an upstream never reported counts as average", 3, nil, false, func(p *testPool) {
			p.report(1, 60, ready, 2)
			p.report(2, 60, ready, 2)
		}, []check{some(0, 0.2), some(1, 0.2), some(2, 0.2)}},
		{"warm-up: one idle report does not attract everything", 3, nil, false, func(p *testPool) {
			p.report(0, 0, ready, 1)
			p.report(1, 60, ready, 2)
			p.report(2, 60, ready, 2)
		}, []check{below(0, 0.5), some(1, 0.2), some(2, 0.2)}},
		{"warm-up done: two reports make it trusted", 3, nil, false, func(p *testPool) {
			p.report(0, 0, ready, 2)
			p.report(1, 60, ready, 2)
			p.report(2, 60, ready, 2)
		}, []check{near(0, 2.0/3, 0.05)}},
		{"within a tier, fewer in flight wins", 2, nil, false, func(p *testPool) {
			p.report(0, 5, ready, 2)
			p.report(1, 20, ready, 2)
			p.in[0].InFlight = 3
		}, []check{none(0), near(1, 1, 0)}},
		// As least_conn among the candidates: two random choices would
		// leave the least busy out of the pair a third of the time.
		{"within a tier, the fewest in flight of all wins", 3, nil, false, func(p *testPool) {
			for i := 0; i < 3; i++ {
				p.report(i, 10, ready, 2)
			}
			p.in[0].InFlight, p.in[1].InFlight, p.in[2].InFlight = 3, 1, 2
		}, []check{none(0), near(1, 1, 0), none(2)}},
		{"within a tier, ties for the fewest in flight share", 3, nil, false, func(p *testPool) {
			for i := 0; i < 3; i++ {
				p.report(i, 10, ready, 2)
			}
			p.in[0].InFlight = 1
		}, []check{none(0), near(1, 0.5, 0.05), near(2, 0.5, 0.05)}},
		{"a single best upstream shares with the least busy of the next tier", 3, nil, false, func(p *testPool) {
			p.report(0, 5, ready, 2)
			p.report(1, 30, ready, 2)
			p.report(2, 35, ready, 2)
			p.in[1].InFlight = 2
		}, []check{near(0, 2.0/3, 0.05), none(1), near(2, 1.0/3, 0.05)}},
		// A report that calls an upstream idle is not believed against the
		// proxy's own count: a lone best upstream with many more of our
		// requests on it than the least busy other (a lying agent, or an
		// edge whose answers take long) does not win its draw.
		{"a lone best upstream busier than its lead allows loses its draw", 3, nil, false, func(p *testPool) {
			p.report(0, 5, ready, 2)
			p.report(1, 30, ready, 2)
			p.report(2, 35, ready, 2)
			p.in[0].InFlight, p.in[1].InFlight, p.in[2].InFlight = 8, 1, 2
		}, []check{none(0), near(1, 1, 0), none(2)}},
		{"a lone best upstream within its lead wins its draw", 3, nil, false, func(p *testPool) {
			p.report(0, 5, ready, 2)
			p.report(1, 30, ready, 2)
			p.report(2, 35, ready, 2)
			p.in[0].InFlight, p.in[1].InFlight, p.in[2].InFlight = 3, 1, 2
		}, []check{near(0, 2.0/3, 0.05), near(1, 1.0/3, 0.05), none(2)}},
		// A lone best upstream's lead is believed for LoneLead after its
		// report; after that, what it has drawn since is not in it.
		{"a lone best upstream's old lead is not believed", 3, nil, false, func(p *testPool) {
			p.report(0, 5, ready, 2)
			p.age(0, 2*time.Second)
			p.report(1, 30, ready, 2)
			p.report(2, 35, ready, 2)
			p.in[0].InFlight, p.in[2].InFlight = 1, 1 // within the lead LoneLoad allows
		}, []check{none(0), near(1, 1, 0), none(2)}},
		{"within a tier and equal in flight, the lower score wins", 2, nil, false, func(p *testPool) {
			p.report(0, 5, ready, 2)
			p.report(1, 20, ready, 2)
		}, []check{near(0, 1, 0)}},
		{"a lower tier wins despite more in flight", 2, nil, false, func(p *testPool) {
			p.report(0, 5, ready, 2)
			p.report(1, 60, ready, 2)
			p.in[0].InFlight = 2
		}, []check{near(0, 1, 0)}},
		{"a lower tier clearly apart wins despite more in flight", 2, nil, false, func(p *testPool) {
			p.report(0, 18, ready, 2)
			p.report(1, 27, ready, 2)
			p.in[0].InFlight = 2
		}, []check{near(0, 1, 0)}},
		// A tier boundary between scores closer than the hysteresis is
		// noise: strict tiers would send every request to one side of it
		// until the next report, and every balancer sharing the reports
		// would do the same (herding).
		{"near-equal scores across a tier boundary share", 3, nil, false, func(p *testPool) {
			p.report(0, 23, ready, 2)
			p.report(1, 24, ready, 2)
			p.report(2, 27, ready, 2)
		}, []check{some(0, 0.25), some(1, 0.25), some(2, 0.25)}},
		{"near-equal scores across a tier boundary: fewer in flight wins", 2, nil, false, func(p *testPool) {
			p.report(0, 24, ready, 2)
			p.report(1, 27, ready, 2)
			p.in[0].InFlight = 3
		}, []check{none(0), near(1, 1, 0)}},
		{"near-equal scores across a tier boundary: the fewest in flight of all wins", 3, nil, false, func(p *testPool) {
			p.report(0, 23, ready, 2)
			p.report(1, 24, ready, 2)
			p.report(2, 27, ready, 2)
			p.in[0].InFlight, p.in[1].InFlight, p.in[2].InFlight = 2, 2, 1
		}, []check{none(0), none(1), near(2, 1, 0)}},
		{"a tier kept by hysteresis does not outrank a near-equal score", 2, nil, false, func(p *testPool) {
			p.report(0, 20, ready, 2)
			p.report(0, 28, ready, 1) // stays in tier 1 (its band reaches 30)
			p.report(1, 29, ready, 2) // tier 2
		}, []check{near(0, 0.5, 0.05), near(1, 0.5, 0.05)}},
		{"down gets nothing while others serve", 3, nil, false, func(p *testPool) {
			p.report(0, 0, ready, 2)
			p.in[0].View = MarkDown(p.in[0].View)
			p.report(1, 50, ready, 2)
			p.report(2, 50, ready, 2)
		}, []check{none(0), near(1, 0.5, 0.06), near(2, 0.5, 0.06)}},
		{"all down: the least busy is tried", 2, nil, false, func(p *testPool) {
			p.in[0].View, p.in[1].View = MarkDown(nil), MarkDown(nil)
			p.in[0].InFlight = 3
		}, []check{none(0), near(1, 1, 0)}},
		{"drain gets nothing while another can serve", 3, nil, false, func(p *testPool) {
			p.report(0, 0, edgeagent.StateDrain, 2)
			p.report(1, 80, ready, 2)
			p.report(2, 80, ready, 2)
		}, []check{none(0)}},
		{"all draining: drain serves", 2, nil, false, func(p *testPool) {
			p.report(0, 10, edgeagent.StateDrain, 2)
			p.report(1, 10, edgeagent.StateDrain, 2)
			p.in[1].InFlight = 1
		}, []check{near(0, 1, 0)}},
		{"maint gets nothing, even untrusted", 3, nil, false, func(p *testPool) {
			p.report(0, 0, edgeagent.StateMaint, 1)
			p.report(1, 80, ready, 2)
			p.report(2, 80, ready, 2)
		}, []check{none(0)}},
		{"all in tier 4 still serve, spread", 3, nil, false, func(p *testPool) {
			for i := 0; i < 3; i++ {
				p.report(i, 95, ready, 2)
			}
		}, []check{some(0, 0.25), some(1, 0.25), some(2, 0.25)}},
		{"no fresh report: least in flight", 3, nil, false, func(p *testPool) {
			p.in[0].InFlight, p.in[1].InFlight, p.in[2].InFlight = 10, 0, 20
		}, []check{none(0), near(1, 1, 0), none(2)}},
		{"no fresh report, equal in flight: spread", 3, nil, false, func(p *testPool) {
			p.in[2].InFlight = 1
		}, []check{near(0, 0.5, 0.05), near(1, 0.5, 0.05), none(2)}},
		{"in-flight correction: an idle claim with our streams on it is not believed", 2, streamsOnly, false, func(p *testPool) {
			p.report(0, 0, ready, 2)
			p.report(1, 50, ready, 2)
			p.in[0].InFlight = 80
		}, []check{none(0), near(1, 1, 0)}},
		// Weighted least request: in one tier, an edge estimated to take a
		// twentieth of the others' requests weighs each of its requests in
		// flight (with the one being placed) twenty times.
		{"in flight weighs by capacity: the idle edge that can take little loses", 3, streamsOnly, false, func(p *testPool) {
			p.serving(0, 100, 20)
			p.serving(1, 50, 200)
			p.serving(2, 50, 200)
			p.in[1].InFlight, p.in[2].InFlight = 3, 4
		}, []check{none(0), near(1, 1, 0), none(2)}},
		{"in flight weighs by capacity: an edge that can take little but reports idle has room now", 3, streamsOnly, false, func(p *testPool) {
			p.serving(0, 100, 20)
			p.serving(0, 5, 1)
			p.serving(1, 50, 200)
			p.serving(2, 50, 200)
			p.in[1].InFlight, p.in[2].InFlight = 3, 4
		}, []check{near(0, 1, 0)}},
		{"in flight weighs by capacity: past its weight the edge that can take little serves", 3, streamsOnly, false, func(p *testPool) {
			p.serving(0, 100, 20)
			p.serving(1, 50, 200)
			p.serving(2, 50, 200)
			p.in[1].InFlight, p.in[2].InFlight = 25, 30
		}, []check{near(0, 1, 0)}},
		// Where every candidate advertises its link, an edge with three
		// times the others' link takes three times their requests in
		// flight.
		{"links weigh: the larger link takes more in flight", 3, nil, false, func(p *testPool) {
			p.linked(0, 10, 3e8)
			p.linked(1, 10, 1e8)
			p.linked(2, 10, 1e8)
			p.in[0].InFlight, p.in[1].InFlight, p.in[2].InFlight = 5, 2, 2 // loads 6, 9, 9
		}, []check{near(0, 1, 0)}},
		{"links weigh: past three times the others' in flight, the smaller links serve", 3, nil, false, func(p *testPool) {
			p.linked(0, 10, 3e8)
			p.linked(1, 10, 1e8)
			p.linked(2, 10, 1e8)
			p.in[0].InFlight, p.in[1].InFlight, p.in[2].InFlight = 9, 2, 2 // loads 10, 9, 9
		}, []check{none(0), near(1, 0.5, 0.05), near(2, 0.5, 0.05)}},
		{"links weigh only where every candidate advertises one", 2, nil, false, func(p *testPool) {
			p.linked(0, 10, 3e8)
			p.report(1, 10, ready, 2)
			p.in[0].InFlight, p.in[1].InFlight = 2, 5
		}, []check{near(0, 1, 0)}},
		{"unavailable upstreams are skipped", 2, nil, false, func(p *testPool) {
			p.report(0, 0, ready, 2)
			p.report(1, 60, ready, 2)
			p.in[0].Available = false
		}, []check{none(0), near(1, 1, 0)}},
		{"a slow upstream gets nothing while another can serve", 3, nil, false, func(p *testPool) {
			p.report(0, 0, ready, 2) // alone in the best tier by its report
			p.report(1, 40, ready, 2)
			p.report(2, 40, ready, 2)
			p.in[0].Slow = true
		}, []check{none(0), near(1, 0.5, 0.05), near(2, 0.5, 0.05)}},
		{"only slow upstreams left: they serve", 2, nil, false, func(p *testPool) {
			p.report(0, 10, ready, 2)
			p.report(1, 10, ready, 2)
			p.in[0].Slow, p.in[1].Slow = true, true
		}, []check{near(0, 0.5, 0.05), near(1, 0.5, 0.05)}},
		{"on probation: nothing while one of ours is on it", 2, nil, false, func(p *testPool) {
			p.report(0, 10, ready, 2)
			p.report(1, 40, ready, 2)
			p.in[0].Probation, p.in[0].InFlight = 1, 1
		}, []check{none(0), near(1, 1, 0)}},
		{"on probation: one request at a time", 2, nil, false, func(p *testPool) {
			p.report(0, 10, ready, 2)
			p.report(1, 10, ready, 2)
			p.in[0].Probation = 1
		}, []check{some(0, 0.3)}},
		{"on probation of four: nothing while four of ours are on it", 2, nil, false, func(p *testPool) {
			p.report(0, 10, ready, 2)
			p.report(1, 40, ready, 2)
			p.in[0].Probation, p.in[0].InFlight = 4, 4
		}, []check{none(0), near(1, 1, 0)}},
		{"on probation of four: served while three are", 2, nil, false, func(p *testPool) {
			p.report(0, 10, ready, 2)
			p.report(1, 10, ready, 2)
			p.in[0].Probation, p.in[0].InFlight = 4, 3
			p.in[1].InFlight = 5
		}, []check{some(0, 0.3)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newTestPool(tt.n, tt.configure)
			tt.setup(p)
			shares := p.shares(6000, tt.single)
			for _, c := range tt.checks {
				c(t, shares)
			}
		})
	}
}

func TestChooseNone(t *testing.T) {
	p := newTestPool(2, nil)
	if i, _ := p.choose(Build(nil, p.judge())); i != -1 {
		t.Fatalf("an empty pool chose %d", i)
	}
	p.report(0, 10, edgeagent.StateMaint, 2)
	p.report(1, 10, edgeagent.StateMaint, 2)
	if i, _ := p.choose(Build(p.in, p.judge())); i != -1 {
		t.Fatalf("chose upstream %d in maintenance", i)
	}
}

func TestChooseKinds(t *testing.T) {
	p := newTestPool(3, nil)
	p.report(0, 10, edgeagent.StateReady, 2)
	p.report(1, 60, edgeagent.StateReady, 2)
	if _, kind := p.choose(Build(p.in, p.judge())); kind != KindTier1 {
		t.Errorf("kind = %s, want tier 1", KindLabels[kind])
	}
	q := newTestPool(2, nil)
	if _, kind := q.choose(Build(q.in, q.judge())); kind != KindFallback {
		t.Errorf("no report anywhere: kind = %s, want fallback", KindLabels[kind])
	}
}

// TestChooseFromAnOldPlan: a plan is a moment old, but what changed since
// (the proxy's own requests, Caddy's health marks) is never missed: what no
// longer fits the plan is chosen from a new one.
func TestChooseFromAnOldPlan(t *testing.T) {
	const ready = edgeagent.StateReady
	tests := []struct {
		name   string
		change func(p *testPool)
		want   []int // the upstreams that may be chosen after the change
	}{
		{"our requests pushed the planned ones past the plan's tier", func(p *testPool) {
			p.in[0].InFlight, p.in[1].InFlight = 90, 90
		}, []int{2, 3}},
		{"our requests pushed the least busy planned one past the plan's tier", func(p *testPool) {
			p.in[0].InFlight, p.in[1].InFlight = 90, 91
		}, []int{2, 3}},
		{"a planned upstream became unavailable", func(p *testPool) {
			p.in[0].Available = false
		}, []int{1}},
		{"every planned upstream became unavailable", func(p *testPool) {
			p.in[0].Available, p.in[1].Available = false, false
		}, []int{2, 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newTestPool(4, func(s *Scoring) { s.Weights = Weights{Streams: 1} })
			p.report(0, 10, ready, 2)
			p.report(1, 10, ready, 2)
			p.report(2, 40, ready, 2)
			p.report(3, 40, ready, 2)
			pl := Build(p.in, p.judge())
			if len(pl.Candidates) != 2 || pl.Top != 1 {
				t.Fatalf("plan before the change = %+v, want upstreams 0 and 1 of tier 1", pl)
			}
			tt.change(p)
			for k := 0; k < 200; k++ {
				if i, _ := p.choose(pl); !slices.Contains(tt.want, i) {
					t.Fatalf("chose upstream %d, want one of %v", i, tt.want)
				}
			}
		})
	}
}

// TestCandidateSpan: a candidate keeps its tier with up to sameTierUpTo of
// the proxy's requests in flight, and not one more.
func TestCandidateSpan(t *testing.T) {
	for _, load := range []float64{0, 10, 24, 26, 49, 60, 74.5, 80, 100} {
		t.Run(fmt.Sprint(load), func(t *testing.T) {
			p := newTestPool(1, func(s *Scoring) { s.Weights = Weights{Streams: 1} })
			p.report(0, load, edgeagent.StateReady, 2)
			pl := Build(p.in, p.judge())
			if len(pl.Candidates) != 1 {
				t.Fatalf("plan = %+v, want one candidate", pl)
			}
			c := pl.Candidates[0]
			upTo := int(c.sameTierUpTo)
			if _, tier := c.judge(pl.th, 0); tier != c.tier {
				t.Errorf("tier with none in flight = %d, planned %d", tier, c.tier)
			}
			if _, tier := c.judge(pl.th, upTo); tier != c.tier {
				t.Errorf("tier with %d in flight = %d, want %d", upTo, tier, c.tier)
			}
			if upTo < 1<<20 {
				if _, tier := c.judge(pl.th, upTo+1); tier == c.tier {
					t.Errorf("tier with %d in flight is still %d: the span ends too early", upTo+1, tier)
				}
			}
		})
	}
}

// TestSettledIsTheRule: the shortcut of Settled chooses what the rule
// (decide) chooses, in plans of every mode, with and without weighed
// requests in flight.
func TestSettledIsTheRule(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	settled := 0
	for round := 0; round < 3000; round++ {
		p := newTestPool(1+rng.IntN(8), nil)
		for i := range p.in {
			switch rng.IntN(6) {
			case 0: // no report
			case 1:
				p.serving(i, 20+rng.Float64()*80, rng.Float64()*300) // an estimate: weighed
			case 2:
				p.report(i, rng.Float64()*100, edgeagent.StateDrain, 2)
			default:
				p.report(i, rng.Float64()*100, edgeagent.StateReady, 2)
			}
			p.in[i].InFlight = rng.IntN(40)
			p.in[i].Available = rng.IntN(8) > 0
		}
		pl := Build(p.in, p.judge())
		for range 5 {
			var l Least
			for k := range pl.Candidates {
				c := &pl.Candidates[k]
				if u := &p.in[c.Index]; u.Available {
					l.Offer(pl, c, k, max(0, u.InFlight+rng.IntN(200)-100))
				}
			}
			k, kind := pl.Settled(&l)
			if k < 0 {
				continue
			}
			settled++
			if wk, wkind, ok := pl.decide(&l); wk != k || wkind != kind || !ok {
				t.Fatalf("round %d: Settled chose %d (%s), the rule %d (%s, fits %t); plan %+v, least %+v",
					round, k, KindLabels[kind], wk, KindLabels[wkind], ok, pl, l)
			}
		}
	}
	if settled < 1000 {
		t.Errorf("Settled decided %d times: the test no longer exercises it", settled)
	}
}

// TestEvenLoadIsTheRule: while the least load is within a plan's evenLoad,
// the rule's third step would go to chance for any two tied candidates
// (neither outranks the other, and their scores are within the
// hysteresis), so the shortcut in decide that skips judging them chooses
// as the rule does.
func TestEvenLoadIsTheRule(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	even, judged := 0, 0
	for round := 0; round < 3000; round++ {
		p := newTestPool(2+rng.IntN(7), nil)
		spread := 1 + rng.Float64()*20 // scores close enough to be even, often
		base := rng.Float64() * 80
		for i := range p.in {
			if rng.IntN(5) == 0 {
				p.serving(i, 20+rng.Float64()*80, rng.Float64()*300)
			} else {
				p.report(i, base+rng.Float64()*spread, edgeagent.StateReady, 2)
			}
			p.in[i].InFlight = rng.IntN(4)
		}
		pl := Build(p.in, p.judge())
		if !pl.settles {
			if pl.evenLoad != 0 {
				t.Fatalf("round %d: evenLoad %d in a plan that does not settle: %+v", round, pl.evenLoad, pl)
			}
			continue
		}
		for range 5 {
			var l Least
			for k := range pl.Candidates {
				l.Offer(pl, &pl.Candidates[k], k, rng.IntN(6))
			}
			if l.ties < 2 {
				continue
			}
			a, b := &pl.Candidates[l.pair[0]], &pl.Candidates[l.pair[1]]
			as, at := a.judge(pl.th, a.inFlightAt(l.least))
			bs, bt := b.judge(pl.th, b.inFlightAt(l.least))
			chance := at == a.tier && bt == b.tier && !Outranks(at, as, bt, bs, pl.Hysteresis) &&
				!Outranks(bt, bs, at, as, pl.Hysteresis) && math.Abs(as-bs) <= pl.Hysteresis
			if l.least > pl.evenLoad {
				judged++
				continue
			}
			even++
			if !chance {
				t.Fatalf("round %d: least load %d within evenLoad %d, but the rule judges: %.2f (tier %d) against %.2f (tier %d), hysteresis %g",
					round, l.least, pl.evenLoad, as, at, bs, bt, pl.Hysteresis)
			}
		}
	}
	if even < 1000 || judged < 1000 {
		t.Errorf("%d choices within evenLoad, %d past it: the test no longer exercises both", even, judged)
	}
}
