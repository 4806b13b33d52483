package caddymodule

import (
	"testing"
	"time"

	"github.com/edgetier/edgetier/edgeagent"
)

func TestLatencyBaseIsWindowedMinimum(t *testing.T) {
	ms := func(n float64) time.Duration { return time.Duration(n * float64(time.Millisecond)) }
	var l latency
	l.observe(ms(30), 1)
	l.observe(ms(4), 1)
	if got, _, _ := l.refresh(); got != 0 {
		t.Fatalf("base after 2 samples = %v, want unknown (0) until %d", time.Duration(got), latencySamples)
	}
	l.observe(ms(55), 1) // a slow answer now and then does not move the base
	if got, _, _ := l.refresh(); got != int64(ms(4)) {
		t.Fatalf("base = %v, want the fastest answer, 4ms", time.Duration(got))
	}
	l.rotate()
	if got, _, _ := l.refresh(); got != int64(ms(4)) {
		t.Fatalf("base one window later = %v, want 4ms still (two windows)", time.Duration(got))
	}
	l.rotate()
	if got, typical, _ := l.refresh(); got != 0 || typical != 0 || l.average.Load() != 0 {
		t.Fatalf("two windows without samples: base %v, typical %v, average %v; want all forgotten",
			time.Duration(got), time.Duration(typical), time.Duration(l.average.Load()))
	}
}

func TestClearlySlower(t *testing.T) {
	ms := func(n int64) int64 { return n * int64(time.Millisecond) }
	tests := []struct {
		a, b int64
		want bool
	}{
		{ms(53), ms(3), true},
		{ms(30), ms(10), true},
		{ms(8), ms(2), false},   // 4× but only 6 ms: noise at this scale
		{ms(25), ms(10), false}, // 15 ms more but 2.5×
		{ms(53), 0, false},      // no best known
		{0, ms(3), false},       // not known
	}
	for _, tt := range tests {
		if got := clearlySlower(tt.a, tt.b); got != tt.want {
			t.Errorf("clearlySlower(%v, %v) = %v, want %v", time.Duration(tt.a), time.Duration(tt.b), got, tt.want)
		}
	}
}

// TestSelectAvoidsClearlySlowerUpstream: an upstream whose fastest answers
// are much slower than the pool's gets nothing while others can serve,
// even when its report puts it alone in the best tier (its agent cannot
// see the delay); differences of load and noise change nothing; and when
// it is all that is left, it serves.
func TestSelectAvoidsClearlySlowerUpstream(t *testing.T) {
	const ready = edgeagent.StateReady
	ms := time.Millisecond
	tests := []struct {
		name    string
		loads   []float64
		fastest []time.Duration // of each upstream's answers
		checks  func(t *testing.T, shares []float64)
	}{
		{"slow and alone in the best tier", []float64{5, 30, 35}, []time.Duration{53 * ms, 3 * ms, 3 * ms},
			func(t *testing.T, s []float64) {
				if s[0] != 0 || s[1] < 0.4 || s[2] < 0.4 {
					t.Errorf("shares %.3f: want nothing for the slow upstream, half each for the others", s)
				}
			}},
		{"slow in one tier with the others", []float64{10, 10, 10}, []time.Duration{53 * ms, 3 * ms, 3 * ms},
			func(t *testing.T, s []float64) {
				if s[0] != 0 {
					t.Errorf("the clearly slower upstream got %.3f (shares %.3f)", s[0], s)
				}
			}},
		{"starved: fast now and then, mostly slow", []float64{10, 10, 10}, nil,
			func(t *testing.T, s []float64) {
				if s[0] != 0 {
					t.Errorf("the starved upstream got %.3f (shares %.3f)", s[0], s)
				}
			}},
		{"differences below the bar change nothing", []float64{10, 10, 10}, []time.Duration{9 * ms, 3 * ms, 2 * ms},
			func(t *testing.T, s []float64) {
				for i := range s {
					if s[i] < 0.28 || s[i] > 0.39 {
						t.Errorf("upstream %d got %.3f, want about a third (shares %.3f)", i, s[i], s)
					}
				}
			}},
	}
	for _, tt := range tests {
		bothPaths(t, tt.name, func(t *testing.T, planned bool) {
			s := newTestSetup(t, len(tt.loads), nil)
			for i, load := range tt.loads {
				s.report(i, load, ready, 2)
				if tt.fastest == nil { // starved: upstream 0 answers in 2 ms once, then in 300 ms
					answers := []time.Duration{3 * ms, 4 * ms, 3 * ms, 5 * ms, 4 * ms}
					if i == 0 {
						answers = []time.Duration{2 * ms, 300 * ms, 300 * ms, 300 * ms, 300 * ms}
					}
					for _, d := range answers {
						s.entry(i).latency.observe(d, 1)
					}
					continue
				}
				for k := 0; k < latencySamples; k++ {
					s.entry(i).latency.observe(tt.fastest[i]+time.Duration(k)*ms, 1)
				}
			}
			s.p.board.judgeLatencies(false)
			tt.checks(t, s.shares(t, 6000, planned))
		})
	}
	t.Run("only slow upstreams left", func(t *testing.T) {
		s := newTestSetup(t, 2, nil)
		s.report(0, 10, ready, 2)
		s.report(1, 10, ready, 2)
		for k := 0; k < latencySamples; k++ {
			s.entry(0).latency.observe(53*ms, 1)
			s.entry(1).latency.observe(3*ms, 1)
		}
		s.p.board.judgeLatencies(false)
		s.pool[1].MaxRequests = 1
		setInFlight(t, s.pool[1], 1) // the fast one is full
		for k := 0; k < 100; k++ {
			if u := s.p.Select(s.pool, nil, nil); u != s.pool[0] {
				t.Fatalf("Select = %v, want the slow upstream, the only one available", u)
			}
		}
	})
}
