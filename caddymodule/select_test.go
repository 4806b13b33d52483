package caddymodule

import (
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"go.uber.org/zap"

	"github.com/edgetier/edgetier/edgeagent"
)

// setInFlight sets an upstream's in-flight count, which Caddy only changes
// from inside its proxy loop. Host's first field is that counter; the check
// below fails loudly if Caddy ever changes the layout.
func setInFlight(t testing.TB, u *reverseproxy.Upstream, n int) {
	t.Helper()
	(*atomic.Int64)(unsafe.Pointer(u.Host)).Store(int64(n))
	if u.NumRequests() != n {
		t.Fatalf("cannot set in-flight count: Caddy's Host layout changed")
	}
}

// testSetup builds a policy on a board whose entries are not polled: the
// tests hand them reports through the same accept path the poller uses.
type testSetup struct {
	p    *TieredSelection
	pool reverseproxy.UpstreamPool
	cfg  *boardConfig
}

func newTestSetup(t testing.TB, n int, configure func(*TieredSelection)) *testSetup {
	t.Helper()
	p := new(TieredSelection)
	if configure != nil {
		configure(p)
	}
	p.setDefaults()
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	cfg := p.boardConfig()
	b := newBoard(fmt.Sprintf("test-%s-%p", t.Name(), p), zap.NewNop())
	t.Cleanup(func() { _ = b.Destruct() })
	b.configure(cfg)
	p.board = b
	s := &testSetup{p: p, cfg: cfg}
	byDial := map[string]*entry{}
	for i := 0; i < n; i++ {
		u := &reverseproxy.Upstream{Host: new(reverseproxy.Host), Dial: fmt.Sprintf("127.0.0.%d:1", i+1)}
		s.pool = append(s.pool, u)
		e := &entry{dial: u.Dial, board: b, errors: map[string]*atomic.Uint64{}}
		for _, r := range reportErrorReasons {
			e.errors[r] = new(atomic.Uint64)
		}
		e.upstream.Store(u)
		byDial[u.Dial] = e
	}
	b.entries.Store(&entries{byDial: byDial, gen: 1})
	return s
}

func (s *testSetup) entry(i int) *entry { return s.p.board.entries.Load().byDial[s.pool[i].Dial] }

// report gives upstream i a load where every component equals load (so its
// score is load), reports times (2 makes it trusted), and refreshes the
// board's average.
func (s *testSetup) report(i int, load float64, state edgeagent.State, times int) {
	rep := edgeagent.Report{
		Schema: edgeagent.SchemaVersion, Edge: fmt.Sprintf("edge-%d", i), Timestamp: time.Now(), State: state,
		CPUPercent: load, MemoryPercent: load,
		RequestsPerSecond: load / 100 * DefaultCapacity.Requests, Streams: load / 100 * DefaultCapacity.Streams,
		ResponseTimeSeconds: load / 100 * DefaultCapacity.ResponseTime,
	}
	for k := 0; k < times; k++ {
		s.entry(i).accept(s.cfg, rep)
	}
	s.p.board.updateAverage(time.Now())
}

func (s *testSetup) age(i int, by time.Duration) {
	e := s.entry(i)
	v := *e.view.Load()
	v.receivedAt -= int64(by)
	e.setView(&v)
	s.p.board.updateAverage(time.Now())
}

func (s *testSetup) down(i int) {
	e := s.entry(i)
	e.ownAddress = true
	e.fail(&pollError{reasonRefused, fmt.Errorf("connection refused")})
}

// shares runs Select n times and returns each upstream's share. With
// planned, the pool's plan is rebuilt before each call, as the board's
// clock does every tick, and most choices must come from it.
func (s *testSetup) shares(t *testing.T, n int, planned bool) []float64 {
	t.Helper()
	counts := make([]float64, len(s.pool))
	// Two calls make the pool a cached one, as in a real config.
	s.p.Select(s.pool, nil, nil)
	s.p.Select(s.pool, nil, nil)
	cache := s.p.cache.Load()
	if cache == nil {
		t.Fatal("the pool was not cached after two calls")
	}
	fromPlan, withPlan := 0, 0
	for k := 0; k < n; k++ {
		var u *reverseproxy.Upstream
		if planned {
			s.p.replan()
			if cache.plan.Load() != nil {
				withPlan++
			}
			if chosen, tier, ok := s.p.fromPlan(s.pool, cache); ok {
				fromPlan++
				u = s.p.count(s.pool, cache, chosen, tier)
			}
		}
		if u == nil {
			u = s.p.Select(s.pool, nil, nil)
		}
		if u == nil {
			t.Fatalf("Select returned nil with %d upstreams", len(s.pool))
		}
		for i := range s.pool {
			if s.pool[i] == u {
				counts[i]++
			}
		}
	}
	if withPlan > 0 && fromPlan < withPlan/2 {
		t.Errorf("only %d of %d choices came from the plan", fromPlan, withPlan)
	}
	for i := range counts {
		counts[i] /= float64(n)
	}
	return counts
}

// bothPaths runs f as two subtests: Select scoring every upstream, and
// Select drawing from the pool's plan.
func bothPaths(t *testing.T, name string, f func(t *testing.T, planned bool)) {
	for _, planned := range []bool{false, true} {
		path := "scan"
		if planned {
			path = "planned"
		}
		t.Run(name+"/"+path, func(t *testing.T) { f(t, planned) })
	}
}

func TestSelect(t *testing.T) {
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
	tests := []struct {
		name      string
		n         int
		configure func(*TieredSelection)
		setup     func(s *testSetup, t *testing.T)
		checks    []check
	}{
		{"equal loads spread evenly", 3, nil, func(s *testSetup, t *testing.T) {
			for i := 0; i < 3; i++ {
				s.report(i, 10, ready, 2)
			}
		}, []check{near(0, 1.0/3, 0.05), near(1, 1.0/3, 0.05), near(2, 1.0/3, 0.05)}},
		{"tier 4 gets nothing while lower tiers serve", 3, nil, func(s *testSetup, t *testing.T) {
			s.report(0, 90, ready, 2)
			s.report(1, 10, ready, 2)
			s.report(2, 12, ready, 2)
		}, []check{none(0), some(1, 0.4), some(2, 0.4)}},
		{"a single best upstream shares with the next tier", 3, nil, func(s *testSetup, t *testing.T) {
			s.report(0, 5, ready, 2)
			s.report(1, 30, ready, 2)
			s.report(2, 35, ready, 2)
		}, []check{near(0, 2.0/3, 0.05), some(1, 0.12), some(2, 0.12)}},
		{"choices 1 always takes the single best", 3, func(p *TieredSelection) { p.Choices = 1 }, func(s *testSetup, t *testing.T) {
			s.report(0, 5, ready, 2)
			s.report(1, 30, ready, 2)
			s.report(2, 35, ready, 2)
		}, []check{near(0, 1, 0)}},
		{"a stale report counts as average, not as its old load", 3, nil, func(s *testSetup, t *testing.T) {
			s.report(0, 90, ready, 2)
			s.age(0, 10*time.Second)
			s.report(1, 10, ready, 2)
			s.report(2, 10, ready, 2)
		}, []check{some(0, 0.2), some(1, 0.2), some(2, 0.2)}},
		{"an upstream never reported counts as average", 3, nil, func(s *testSetup, t *testing.T) {
			s.report(1, 60, ready, 2)
			s.report(2, 60, ready, 2)
		}, []check{some(0, 0.2), some(1, 0.2), some(2, 0.2)}},
		{"warm-up: one idle report does not attract everything", 3, nil, func(s *testSetup, t *testing.T) {
			s.report(0, 0, ready, 1)
			s.report(1, 60, ready, 2)
			s.report(2, 60, ready, 2)
		}, []check{below(0, 0.5), some(1, 0.2), some(2, 0.2)}},
		{"warm-up done: two reports make it trusted", 3, nil, func(s *testSetup, t *testing.T) {
			s.report(0, 0, ready, 2)
			s.report(1, 60, ready, 2)
			s.report(2, 60, ready, 2)
		}, []check{near(0, 2.0/3, 0.05)}},
		{"within a tier, fewer in flight wins", 2, nil, func(s *testSetup, t *testing.T) {
			s.report(0, 5, ready, 2)
			s.report(1, 20, ready, 2)
			setInFlight(t, s.pool[0], 3)
		}, []check{none(0), near(1, 1, 0)}},
		// As least_conn among the candidates: two random choices would
		// leave the least busy out of the pair a third of the time.
		{"within a tier, the fewest in flight of all wins", 3, nil, func(s *testSetup, t *testing.T) {
			for i := 0; i < 3; i++ {
				s.report(i, 10, ready, 2)
			}
			setInFlight(t, s.pool[0], 3)
			setInFlight(t, s.pool[1], 1)
			setInFlight(t, s.pool[2], 2)
		}, []check{none(0), near(1, 1, 0), none(2)}},
		{"within a tier, ties for the fewest in flight share", 3, nil, func(s *testSetup, t *testing.T) {
			for i := 0; i < 3; i++ {
				s.report(i, 10, ready, 2)
			}
			setInFlight(t, s.pool[0], 1)
		}, []check{none(0), near(1, 0.5, 0.05), near(2, 0.5, 0.05)}},
		{"a single best upstream shares with the least busy of the next tier", 3, nil, func(s *testSetup, t *testing.T) {
			s.report(0, 5, ready, 2)
			s.report(1, 30, ready, 2)
			s.report(2, 35, ready, 2)
			setInFlight(t, s.pool[1], 2)
		}, []check{near(0, 2.0/3, 0.05), none(1), near(2, 1.0/3, 0.05)}},
		// A lone best upstream's lead is believed for loneLead after its
		// report; after that, what it has drawn since is not in it.
		{"a lone best upstream's old lead is not believed", 3, nil, func(s *testSetup, t *testing.T) {
			s.report(0, 5, ready, 2)
			s.age(0, 2*time.Second)
			s.report(1, 30, ready, 2)
			s.report(2, 35, ready, 2)
			setInFlight(t, s.pool[0], 3)
			setInFlight(t, s.pool[2], 1)
		}, []check{none(0), near(1, 1, 0), none(2)}},
		{"within a tier and equal in flight, the lower score wins", 2, nil, func(s *testSetup, t *testing.T) {
			s.report(0, 5, ready, 2)
			s.report(1, 20, ready, 2)
		}, []check{near(0, 1, 0)}},
		{"a lower tier wins despite more in flight", 2, nil, func(s *testSetup, t *testing.T) {
			s.report(0, 5, ready, 2)
			s.report(1, 60, ready, 2)
			setInFlight(t, s.pool[0], 3)
		}, []check{near(0, 1, 0)}},
		{"a lower tier clearly apart wins despite more in flight", 2, nil, func(s *testSetup, t *testing.T) {
			s.report(0, 18, ready, 2)
			s.report(1, 27, ready, 2)
			setInFlight(t, s.pool[0], 3)
		}, []check{near(0, 1, 0)}},
		// A tier boundary between scores closer than the hysteresis is
		// noise: strict tiers would send every request to one side of it
		// until the next report, and every balancer sharing the reports
		// would do the same (herding).
		{"near-equal scores across a tier boundary share", 3, nil, func(s *testSetup, t *testing.T) {
			s.report(0, 23, ready, 2)
			s.report(1, 24, ready, 2)
			s.report(2, 27, ready, 2)
		}, []check{some(0, 0.25), some(1, 0.25), some(2, 0.25)}},
		{"near-equal scores across a tier boundary: fewer in flight wins", 2, nil, func(s *testSetup, t *testing.T) {
			s.report(0, 24, ready, 2)
			s.report(1, 27, ready, 2)
			setInFlight(t, s.pool[0], 3)
		}, []check{none(0), near(1, 1, 0)}},
		{"near-equal scores across a tier boundary: the fewest in flight of all wins", 3, nil, func(s *testSetup, t *testing.T) {
			s.report(0, 23, ready, 2)
			s.report(1, 24, ready, 2)
			s.report(2, 27, ready, 2)
			setInFlight(t, s.pool[0], 2)
			setInFlight(t, s.pool[1], 2)
			setInFlight(t, s.pool[2], 1)
		}, []check{none(0), none(1), near(2, 1, 0)}},
		{"a tier kept by hysteresis does not outrank a near-equal score", 2, nil, func(s *testSetup, t *testing.T) {
			s.report(0, 20, ready, 2)
			s.report(0, 28, ready, 1) // stays in tier 1 (its band reaches 30)
			s.report(1, 29, ready, 2) // tier 2
		}, []check{near(0, 0.5, 0.05), near(1, 0.5, 0.05)}},
		{"down gets nothing while others serve", 3, nil, func(s *testSetup, t *testing.T) {
			s.report(0, 0, ready, 2)
			s.down(0)
			s.report(1, 50, ready, 2)
			s.report(2, 50, ready, 2)
		}, []check{none(0), near(1, 0.5, 0.06), near(2, 0.5, 0.06)}},
		{"all down: the least busy is tried", 2, nil, func(s *testSetup, t *testing.T) {
			s.down(0)
			s.down(1)
			setInFlight(t, s.pool[0], 3)
		}, []check{none(0), near(1, 1, 0)}},
		{"drain gets nothing while another can serve", 3, nil, func(s *testSetup, t *testing.T) {
			s.report(0, 0, edgeagent.StateDrain, 2)
			s.report(1, 80, ready, 2)
			s.report(2, 80, ready, 2)
		}, []check{none(0)}},
		{"all draining: drain serves", 2, nil, func(s *testSetup, t *testing.T) {
			s.report(0, 10, edgeagent.StateDrain, 2)
			s.report(1, 10, edgeagent.StateDrain, 2)
			setInFlight(t, s.pool[1], 1)
		}, []check{near(0, 1, 0)}},
		{"maint gets nothing, even untrusted", 3, nil, func(s *testSetup, t *testing.T) {
			s.report(0, 0, edgeagent.StateMaint, 1)
			s.report(1, 80, ready, 2)
			s.report(2, 80, ready, 2)
		}, []check{none(0)}},
		{"all in tier 4 still serve, spread", 3, nil, func(s *testSetup, t *testing.T) {
			for i := 0; i < 3; i++ {
				s.report(i, 95, ready, 2)
			}
		}, []check{some(0, 0.25), some(1, 0.25), some(2, 0.25)}},
		{"no fresh report: least in flight", 3, nil, func(s *testSetup, t *testing.T) {
			setInFlight(t, s.pool[0], 10)
			setInFlight(t, s.pool[1], 0)
			setInFlight(t, s.pool[2], 20)
		}, []check{none(0), near(1, 1, 0), none(2)}},
		{"no fresh report, equal in flight: spread", 3, nil, func(s *testSetup, t *testing.T) {
			setInFlight(t, s.pool[2], 1)
		}, []check{near(0, 0.5, 0.05), near(1, 0.5, 0.05), none(2)}},
		{"in-flight correction: an idle claim with our streams on it is not believed", 2,
			func(p *TieredSelection) { p.Weights = &WeightsConfig{Streams: 1} }, func(s *testSetup, t *testing.T) {
				s.report(0, 0, ready, 2)
				s.report(1, 50, ready, 2)
				setInFlight(t, s.pool[0], 80)
			}, []check{none(0), near(1, 1, 0)}},
		{"unavailable upstreams are skipped", 2, nil, func(s *testSetup, t *testing.T) {
			s.report(0, 0, ready, 2)
			s.report(1, 60, ready, 2)
			s.pool[0].MaxRequests = 1
			setInFlight(t, s.pool[0], 1)
		}, []check{none(0), near(1, 1, 0)}},
	}
	for _, tt := range tests {
		bothPaths(t, tt.name, func(t *testing.T, planned bool) {
			s := newTestSetup(t, tt.n, tt.configure)
			tt.setup(s, t)
			shares := s.shares(t, 6000, planned)
			for _, c := range tt.checks {
				c(t, shares)
			}
		})
	}
}

func TestSelectNil(t *testing.T) {
	s := newTestSetup(t, 2, nil)
	if u := s.p.Select(nil, nil, nil); u != nil {
		t.Fatal("Select on an empty pool returned an upstream")
	}
	s.report(0, 10, edgeagent.StateMaint, 2)
	s.report(1, 10, edgeagent.StateMaint, 2)
	if u := s.p.Select(s.pool, nil, nil); u != nil {
		t.Fatal("Select chose an upstream in maintenance")
	}
}

func TestSelectCountsByTier(t *testing.T) {
	s := newTestSetup(t, 2, nil)
	s.report(0, 10, edgeagent.StateReady, 2)
	s.report(1, 60, edgeagent.StateReady, 2)
	for k := 0; k < 10; k++ {
		s.p.Select(s.pool, nil, nil)
	}
	if got := s.entry(0).selections[1].Load(); got != 10 {
		t.Fatalf("tier-1 selections of upstream 0 = %d, want 10", got)
	}
}

// TestScorePeakHold: a score that falls is believed only gradually, so an
// edge saturated when busy does not win the next burst as soon as it is
// idle; it comes back once the hold has faded.
func TestScorePeakHold(t *testing.T) {
	s := newTestSetup(t, 1, nil)
	s.report(0, 90, edgeagent.StateReady, 2)
	s.report(0, 10, edgeagent.StateReady, 1)
	if v := s.entry(0).view.Load(); v.tier != 4 || v.correctedScore(0) < 85 {
		t.Fatalf("right after a fall from 90 to 10: tier %d, score %.1f; want still tier 4", v.tier, v.correctedScore(0))
	}
	s.age(0, 30*time.Second)
	s.report(0, 10, edgeagent.StateReady, 2)
	if v := s.entry(0).view.Load(); v.tier != 1 {
		t.Fatalf("30 s later: tier %d, score %.1f; want tier 1", v.tier, v.correctedScore(0))
	}
}

// TestSelectPlanOutOfDate: the plan is a tick old at most, but what
// changed since (our own requests, Caddy's health marks, a new report) is
// never missed: Select scores every upstream when the plan could be wrong.
func TestSelectPlanOutOfDate(t *testing.T) {
	const ready = edgeagent.StateReady
	streamsOnly := func(p *TieredSelection) { p.Weights = &WeightsConfig{Streams: 1} }
	tests := []struct {
		name   string
		change func(s *testSetup, t *testing.T)
		want   []int // the upstreams Select may choose after the change
	}{
		{"our requests pushed the planned ones past the plan's tier", func(s *testSetup, t *testing.T) {
			setInFlight(t, s.pool[0], 90)
			setInFlight(t, s.pool[1], 90)
		}, []int{2, 3}},
		{"our requests pushed the least busy planned one past the plan's tier", func(s *testSetup, t *testing.T) {
			setInFlight(t, s.pool[0], 90)
			setInFlight(t, s.pool[1], 91)
		}, []int{2, 3}},
		{"a planned upstream became unavailable", func(s *testSetup, t *testing.T) {
			s.pool[0].MaxRequests = 1
			setInFlight(t, s.pool[0], 1)
		}, []int{1, 2, 3}},
		{"a new report put a planned upstream in maintenance", func(s *testSetup, t *testing.T) {
			s.report(1, 10, edgeagent.StateMaint, 1)
		}, []int{0, 2, 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestSetup(t, 4, streamsOnly)
			s.report(0, 10, ready, 2)
			s.report(1, 10, ready, 2)
			s.report(2, 40, ready, 2)
			s.report(3, 40, ready, 2)
			s.p.Select(s.pool, nil, nil)
			s.p.Select(s.pool, nil, nil)
			s.p.replan()
			pl := s.p.cache.Load().plan.Load()
			if pl == nil || len(pl.candidates) != 2 || pl.top != 1 {
				t.Fatalf("plan before the change = %+v, want upstreams 0 and 1 of tier 1", pl)
			}
			tt.change(s, t)
			for k := 0; k < 200; k++ {
				u := s.p.Select(s.pool, nil, nil)
				if !slices.ContainsFunc(tt.want, func(i int) bool { return s.pool[i] == u }) {
					t.Fatalf("Select chose %s, want one of upstreams %v", u.Dial, tt.want)
				}
			}
		})
	}
}

// TestSelectConcurrentWithReports: Select on several goroutines while
// reports arrive and the board's clock rebuilds the plan; run with -race.
// Every call returns an upstream, and the loaded one gets the least.
func TestSelectConcurrentWithReports(t *testing.T) {
	s := newTestSetup(t, 4, nil)
	for i := 0; i < 4; i++ {
		s.report(i, 10, edgeagent.StateReady, 2)
	}
	s.report(3, 90, edgeagent.StateReady, 1)
	s.p.Select(s.pool, nil, nil)
	s.p.Select(s.pool, nil, nil)
	s.p.board.addPlanner(s.p)
	stop := s.keepReporting(40 * time.Millisecond)
	defer stop()
	var loaded, total atomic.Int64
	done := make(chan struct{})
	for g := 0; g < 4; g++ {
		go func() {
			defer func() { done <- struct{}{} }()
			deadline := time.Now().Add(300 * time.Millisecond)
			for time.Now().Before(deadline) {
				u := s.p.Select(s.pool, nil, nil)
				if u == nil {
					t.Error("Select returned nil")
					return
				}
				total.Add(1)
				if u == s.pool[3] {
					loaded.Add(1)
				}
			}
		}()
	}
	for g := 0; g < 4; g++ {
		<-done
	}
	if s.p.cache.Load().plan.Load() == nil {
		t.Error("no plan was built")
	}
	if loaded.Load() != 0 {
		t.Errorf("the upstream in tier 4 got %d of %d selections", loaded.Load(), total.Load())
	}
}

// TestCandidateTierSpan: a planned candidate keeps its tier with up to
// sameTierUpTo of our requests in flight, and not one more.
func TestCandidateTierSpan(t *testing.T) {
	streamsOnly := func(p *TieredSelection) { p.Weights = &WeightsConfig{Streams: 1} }
	for _, load := range []float64{0, 10, 24, 26, 49, 60, 74.5, 80, 100} {
		t.Run(fmt.Sprint(load), func(t *testing.T) {
			s := newTestSetup(t, 1, streamsOnly)
			s.report(0, load, edgeagent.StateReady, 2)
			s.p.Select(s.pool, nil, nil)
			s.p.Select(s.pool, nil, nil)
			s.p.replan()
			pl := s.p.cache.Load().plan.Load()
			if pl == nil || len(pl.candidates) != 1 {
				t.Fatalf("plan = %+v, want one candidate", pl)
			}
			c := pl.candidates[0]
			if _, tier := c.judge(0); tier != c.tier {
				t.Errorf("tier with none in flight = %d, planned %d", tier, c.tier)
			}
			if _, tier := c.judge(c.sameTierUpTo); tier != c.tier {
				t.Errorf("tier with %d in flight = %d, want %d", c.sameTierUpTo, tier, c.tier)
			}
			if c.sameTierUpTo < 1<<20 {
				if _, tier := c.judge(c.sameTierUpTo + 1); tier == c.tier {
					t.Errorf("tier with %d in flight is still %d: the span ends too early", c.sameTierUpTo+1, tier)
				}
			}
		})
	}
}
