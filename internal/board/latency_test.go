package board

import (
	"fmt"
	"testing"
	"time"

	"github.com/edgetier/edgetier/edgeagent"
)

func TestLatencyBaseIsWindowedMinimum(t *testing.T) {
	ms := func(n float64) time.Duration { return time.Duration(n * float64(time.Millisecond)) }
	var l latency
	l.observe(ms(30), 1)
	l.observe(ms(4), 1)
	if got := l.refresh().Base; got != 0 {
		t.Fatalf("base after 2 samples = %v, want unknown (0) until %d", time.Duration(got), latencySamples)
	}
	l.observe(ms(55), 1) // a slow answer now and then does not move the base
	if got := l.refresh().Base; got != int64(ms(4)) {
		t.Fatalf("base = %v, want the fastest answer, 4ms", time.Duration(got))
	}
	l.rotate()
	if got := l.refresh().Base; got != int64(ms(4)) {
		t.Fatalf("base one window later = %v, want 4ms still (two windows)", time.Duration(got))
	}
	l.rotate()
	if m := l.refresh(); m.Base != 0 || m.Typical != 0 || l.average.Load() != 0 {
		t.Fatalf("two windows without samples: %+v, average %v; want all forgotten", m, time.Duration(l.average.Load()))
	}
}

// unpolledPool is a pool of n upstreams on a board whose agents never
// answer: the test hands reports to the edges itself.
func unpolledPool(t *testing.T, n int) (*Board, *Pool, []Upstream) {
	b := newPolledBoard(t, func(c *Config) {
		c.ReportURL = "http://127.0.0.1:9/_edgetier/load?for={upstream}"
		c.Scoring.StaleAfter = time.Minute
	})
	dials := make([]string, n)
	for i := range dials {
		dials[i] = fmt.Sprintf("127.0.0.%d:1", i+1)
	}
	pool, ups := poolOf(b, dials...)
	return b, pool, ups
}

// oneAndTwoFast is an unpolled pool of three equally loaded upstreams:
// the one whose answers a test judges, and the two fast others.
func oneAndTwoFast(t *testing.T) (*Board, *Pool, []Upstream, *Edge, []*Edge) {
	b, pool, ups := unpolledPool(t, 3)
	for i := range ups {
		report(b, fmt.Sprintf("127.0.0.%d:1", i+1), 10)
	}
	return b, pool, ups, b.edge("127.0.0.1:1"), []*Edge{b.edge("127.0.0.2:1"), b.edge("127.0.0.3:1")}
}

// report hands upstream i a report whose every component is load, twice.
func report(b *Board, dial string, load float64) {
	e := b.edge(dial)
	for k := 0; k < 2; k++ {
		rep := edgeagent.Report{Schema: edgeagent.SchemaVersion, State: edgeagent.StateReady, CPUPercent: load, MemoryPercent: load,
			RequestsPerSecond: load * 2, Streams: load, ResponseTimeSeconds: load / 200}
		e.accept(b.Config(), rep)
	}
}

// judgeConfirmed judges the latencies twice, slowConfirm apart (ahead of
// the janitor's clock, which then changes nothing): what is clearly slower
// both times is judged slow.
func judgeConfirmed(b *Board) {
	now := b.clock() + int64(time.Hour)
	b.judgeLatencies(now, false)
	b.judgeLatencies(now+int64(slowConfirm), false)
	b.changed(b.clock())
}

func shares(p *Pool, ups []Upstream, n int) []float64 {
	s := make([]float64, len(ups))
	for k := 0; k < n; k++ {
		if i := p.Choose(); i >= 0 {
			s[i] += 1 / float64(n)
		}
	}
	return s
}

// TestSlowUpstreamKeptOff: an upstream whose fastest answers are much
// slower than the pool's gets nothing while others can serve, even when its
// report puts it alone in the best tier (its agent cannot see the delay);
// differences of load and noise change nothing; when it is all that is
// left, it serves.
func TestSlowUpstreamKeptOff(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name    string
		loads   []float64
		fastest []time.Duration // of each upstream's answers; nil: starved
		check   func(s []float64) bool
	}{
		{"slow and alone in the best tier", []float64{5, 30, 35}, []time.Duration{53 * ms, 3 * ms, 3 * ms},
			func(s []float64) bool { return s[0] == 0 && s[1] > 0.4 && s[2] > 0.4 }},
		{"slow in one tier with the others", []float64{10, 10, 10}, []time.Duration{53 * ms, 3 * ms, 3 * ms},
			func(s []float64) bool { return s[0] == 0 }},
		{"starved: fast now and then, mostly slow", []float64{10, 10, 10}, nil,
			func(s []float64) bool { return s[0] == 0 }},
		{"differences below the bar change nothing", []float64{10, 10, 10}, []time.Duration{9 * ms, 3 * ms, 2 * ms},
			func(s []float64) bool {
				for _, v := range s {
					if v < 0.28 || v > 0.39 {
						return false
					}
				}
				return true
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, pool, ups := unpolledPool(t, len(tt.loads))
			for i, load := range tt.loads {
				e := b.edge(fmt.Sprintf("127.0.0.%d:1", i+1))
				report(b, e.dial, load)
				if tt.fastest == nil { // starved: upstream 0 answers in 2 ms once, then in 300 ms
					answers := []time.Duration{3 * ms, 4 * ms, 3 * ms, 5 * ms, 4 * ms}
					if i == 0 {
						answers = []time.Duration{2 * ms, 300 * ms, 300 * ms, 300 * ms, 300 * ms}
					}
					for _, d := range answers {
						e.latency.observe(d, 1)
					}
					continue
				}
				for k := 0; k < latencySamples; k++ {
					e.latency.observe(tt.fastest[i]+time.Duration(k)*ms, 1)
				}
			}
			judgeConfirmed(b)
			if s := shares(pool, ups, 6000); !tt.check(s) {
				t.Errorf("shares %.3f", s)
			}
		})
	}
	t.Run("only slow upstreams left", func(t *testing.T) {
		b, pool, ups := unpolledPool(t, 2)
		for i := range ups {
			report(b, fmt.Sprintf("127.0.0.%d:1", i+1), 10)
		}
		for k := 0; k < latencySamples; k++ {
			b.edge("127.0.0.1:1").latency.observe(53*ms, 1)
			b.edge("127.0.0.2:1").latency.observe(3*ms, 1)
		}
		judgeConfirmed(b)
		ups[1].(*fakeUpstream).unavailable.Store(true) // the fast one is full
		for k := 0; k < 100; k++ {
			if i := pool.Choose(); i != 0 {
				t.Fatalf("chose %d, want the slow upstream, the only one available", i)
			}
		}
	})
}

// TestHeldSlowEdgeHelpsTheLoaded: an edge held slow for its slow link
// takes viewers again, within its hold, once the others are loaded past
// its fastest answer, and is kept off again when they are not; a starved
// edge, slow in its service time, never is.
func TestHeldSlowEdgeHelpsTheLoaded(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name    string
		answers []time.Duration // the slow edge's
		helps   bool
	}{
		{"slow link", []time.Duration{53 * ms, 54 * ms, 53 * ms}, true},
		{"starved", []time.Duration{2 * ms, 300 * ms, 300 * ms, 300 * ms}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, pool, ups, slow, fast := oneAndTwoFast(t)
			for _, d := range tt.answers {
				slow.latency.observe(d, 1)
			}
			// loaded: the fast edges answer in d with inflight requests in
			// flight, n times.
			loaded := func(d time.Duration, inflight, n int) {
				for range n {
					for _, e := range fast {
						e.latency.observe(d, inflight)
					}
				}
			}
			loaded(3*ms, 1, latencySamples)
			judgeConfirmed(b)
			if s := shares(pool, ups, 300); !slow.latency.slow.Load() || s[0] != 0 {
				t.Fatalf("slow %v, shares %.2f: want it judged slow and kept off", slow.latency.slow.Load(), s)
			}
			// Two windows go by within its hold, without answers of its own.
			for range 2 {
				b.judgeLatencies(b.clock()+int64(time.Hour)+int64(slowConfirm), true)
				loaded(3*ms, 1, latencySamples)
			}
			loaded(90*ms, 30, 60) // their moving averages follow the load
			judgeConfirmed(b)
			if s := shares(pool, ups, 3000); (s[0] > 0.1) != tt.helps {
				t.Fatalf("the others loaded past it: shares %.2f, want it to help: %v", s, tt.helps)
			}
			loaded(3*ms, 1, 60)
			judgeConfirmed(b)
			if s := shares(pool, ups, 300); s[0] != 0 {
				t.Fatalf("the others quick again: shares %.2f, want it kept off", s)
			}
		})
	}
}

// TestSlowAgentPollsKeepItsEdgeOff: without any proxied answer (the policy
// alone, no transport), an edge whose agent answers polls clearly later
// than the others' (a CPU-starved edge) is judged slow from the polls'
// round trips, and kept off while the others serve; while the proxy has
// answers of the edge's own, those judge it instead.
func TestSlowAgentPollsKeepItsEdgeOff(t *testing.T) {
	b := newPolledBoard(t, nil)
	agents := []*fakeAgent{newFakeAgent(t, ""), newFakeAgent(t, ""), newFakeAgent(t, "")}
	agents[0].delay.Store(int64(40 * time.Millisecond))
	dials := []string{agents[0].dial(), agents[1].dial(), agents[2].dial()}
	pool, ups := poolOf(b, dials...)
	waitUntil(t, "the slow agent's edge judged slow", func() bool {
		return b.edge(dials[0]).latency.slow.Load()
	})
	for _, d := range dials[1:] {
		if b.edge(d).latency.slow.Load() {
			t.Fatalf("%s judged slow: its agent answers at once", d)
		}
	}
	if s := shares(pool, ups, 300); s[0] != 0 {
		t.Fatalf("shares %v: want none for the slow edge", s)
	}
	// With answers of its own to judge by (the transport), the proxy
	// believes those: a busy edge's polls wait behind its viewers'.
	for k := 0; k < latencySamples; k++ {
		for _, d := range dials {
			b.edge(d).latency.observe(3*time.Millisecond, 1)
		}
	}
	judgeConfirmed(b)
	if b.edge(dials[0]).latency.slow.Load() {
		t.Fatal("judged slow by its polls while its answers are in time")
	}
	for _, d := range dials {
		b.edge(d).latency.forget()
	}
	judgeConfirmed(b)
	if !b.edge(dials[0]).latency.slow.Load() {
		t.Fatal("its answers forgotten, its polls no longer judge it")
	}
	agents[0].delay.Store(0)
	waitUntil(t, "the edge no longer slow once its agent answers in time", func() bool {
		return !b.edge(dials[0]).latency.slow.Load()
	})
}

// TestSlowJudgementHoldsThenTriesAgain: answers clearly slower for
// slowConfirm are judged slow, and keep an edge off for a hold that doubles with each judgement in a row; when it ends
// the edge's answers are forgotten and it is tried one request at a time,
// so an edge caught in a passing stall has its share back at once, one
// still slow is held again, longer, and so is one slow again soon after
// answering its tries in time (a starved edge answers one request well).
func TestSlowJudgementHoldsThenTriesAgain(t *testing.T) {
	ms := time.Millisecond
	slowTries, fastTries := []time.Duration{53 * ms, 54 * ms, 53 * ms}, []time.Duration{3 * ms, 4 * ms, 3 * ms}
	type step struct {
		hold  time.Duration   // the judgement's hold
		tries []time.Duration // the edge's answers once it ends
		// again: with tries in time, how long after them its answers are
		// slow again (the last step's never are)
		again time.Duration
		// idle: meanwhile it has no answers at all (no viewers came)
		idle bool
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"a passing stall", []step{{slowHold, fastTries, 0, false}}},
		{"slow again, then recovered", []step{{slowHold, slowTries, 0, false}, {2 * slowHold, fastTries, 0, false}}},
		{"slow throughout: the hold grows to its bound", []step{{slowHold, slowTries, 0, false}, {2 * slowHold, slowTries, 0, false},
			{4 * slowHold, slowTries, 0, false}, {8 * slowHold, slowTries, 0, false}, {maxSlowHold, slowTries, 0, false}, {maxSlowHold, fastTries, 0, false}}},
		{"tries in time, slow again as soon as a crowd follows", []step{{slowHold, fastTries, 100 * ms, false},
			{2 * slowHold, fastTries, 100 * ms, false}, {4 * slowHold, fastTries, 0, false}}},
		{"in time for longer than the longest hold: the next hold is short again", []step{{slowHold, slowTries, 0, false},
			{2 * slowHold, fastTries, maxSlowHold + ms, false}, {slowHold, fastTries, 0, false}}},
		{"idle for longer than the longest hold: the row goes on", []step{{slowHold, slowTries, 0, false},
			{2 * slowHold, fastTries, maxSlowHold + ms, true}, {4 * slowHold, fastTries, 0, false}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, pool, ups, slow, fast := oneAndTwoFast(t)
			answer := func(ds ...time.Duration) {
				for _, d := range ds {
					slow.latency.observe(d, 1)
					for _, e := range fast {
						e.latency.observe(3*ms, 1)
					}
				}
			}
			// Ahead of the janitor's clock, so its ticks never end a hold.
			now := b.clock() + int64(time.Hour)
			judge := func(at int64) {
				b.judgeLatencies(at, false)
				b.changed(b.clock())
			}
			answer(slowTries...)
			judge(now)
			if slow.latency.slow.Load() {
				t.Fatal("judged slow at once: want it to stay so for a while first")
			}
			now += int64(slowConfirm)
			judge(now)
			for k, st := range tt.steps {
				if !slow.latency.slow.Load() {
					t.Fatalf("judgement %d: not slow", k+1)
				}
				judge(now + int64(st.hold) - 1)
				if s := shares(pool, ups, 300); s[0] != 0 {
					t.Fatalf("judgement %d: shares %.2f before its hold of %v ended", k+1, s, st.hold)
				}
				now += int64(st.hold)
				judge(now)
				if slow.latency.slow.Load() || slow.latency.probation.Load() != 1 {
					t.Fatalf("hold %d ended: slow %v, probation %v; want tried again one request at a time",
						k+1, slow.latency.slow.Load(), slow.latency.probation.Load())
				}
				answer(st.tries...)
				judge(now)
				if st.again > 0 {
					if slow.latency.slow.Load() {
						t.Fatalf("tries %d in time, yet slow", k+1)
					}
					if st.idle {
						slow.latency.forget()
						judge(now + 1)
					}
					now += int64(st.again)
					answer(300*ms, 300*ms, 300*ms)
					judge(now)
					if inRow := st.again <= maxSlowHold || st.idle; !inRow {
						// A new row: judged once it stays slower.
						if slow.latency.slow.Load() {
							t.Fatalf("slow again %v after its tries: judged at once, as in a row", st.again)
						}
						now += int64(slowConfirm)
						judge(now)
					}
				}
			}
			// Its ramp: as many requests in flight as it has answered since
			// its hold, up to rampAnswers.
			for n := len(fastTries); n < rampAnswers; n++ {
				if slow.latency.slow.Load() || slow.latency.probation.Load() != int32(n) {
					t.Fatalf("%d answers in time since its hold: slow %v, probation %d; want %d in flight allowed",
						n, slow.latency.slow.Load(), slow.latency.probation.Load(), n)
				}
				answer(3 * ms)
				judge(now)
			}
			if slow.latency.slow.Load() || slow.latency.probation.Load() != 0 {
				t.Fatal("answers in time again, yet still slow or on probation")
			}
			if s := shares(pool, ups, 3000); s[0] < 0.28 {
				t.Fatalf("shares %.2f: want its third back", s)
			}
		})
	}
}
