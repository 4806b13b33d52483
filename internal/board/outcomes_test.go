package board

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/edgetier/edgetier/internal/rank"
)

// answer has upstream dial answer n times with status in d.
func answer(b *Board, dial string, status, n int, d time.Duration) {
	for k := 0; k < n; k++ {
		b.ObserveAnswer(dial, status, d, 1)
	}
}

func dialOf(i int) string { return fmt.Sprintf("127.0.0.%d:1", i+1) }

// TestErrorsEject: answers of status 500 and above and transport errors
// never count as fast; an upstream whose recent answers are mostly errors
// is ejected (gets nothing), within max_ejected of the pool.
func TestErrorsEject(t *testing.T) {
	ms := time.Millisecond
	type answers struct {
		status, n int
	}
	tests := []struct {
		name        string
		n           int
		given       map[int][]answers // by upstream
		wantEjected []int
		wantEvent   string // in some event's message
	}{
		{"503 in a millisecond: ejected, not fast", 3, map[int][]answers{0: {{503, 5}}, 1: {{200, 5}}, 2: {{206, 5}}}, []int{0}, "5 of 5 recent answers were errors"},
		{"transport errors eject too", 3, map[int][]answers{0: {{0, 5}}}, []int{0}, "the last a transport error"},
		{"too few answers to judge", 3, map[int][]answers{0: {{503, 4}}}, nil, ""},
		{"mostly successes: kept", 3, map[int][]answers{0: {{200, 6}, {503, 5}}}, nil, ""},
		{"4xx is the viewer's error, not the edge's", 3, map[int][]answers{0: {{404, 20}}}, nil, ""},
		{"half errors: ejected", 3, map[int][]answers{0: {{200, 5}, {500, 5}}}, []int{0}, "5 of 10"},
		{"two failing of three: max_ejected keeps one in", 3, map[int][]answers{0: {{503, 5}}, 1: {{503, 5}}}, []int{0}, "max_ejected keeps it in"},
		{"two failing of four: both out", 4, map[int][]answers{0: {{503, 5}}, 1: {{503, 5}}}, []int{0, 1}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, pool, ups := unpolledPool(t, tt.n)
			for i := range ups {
				report(b, dialOf(i), 10)
			}
			for i := 0; i < tt.n; i++ {
				for _, a := range tt.given[i] {
					answer(b, dialOf(i), a.status, a.n, ms)
				}
			}
			b.judgeLatencies(b.clock(), false)
			var ejected []int
			for i := range ups {
				st := b.edge(dialOf(i)).Status(time.Now())
				if st.Ejected {
					ejected = append(ejected, i)
				}
				if errs := st.Errors; errs > 0 && st.Latency.Base > 0 && len(tt.given[i]) == 1 {
					t.Errorf("upstream %d answered only errors, yet has a latency %v", i, st.Latency)
				}
			}
			if fmt.Sprint(ejected) != fmt.Sprint(tt.wantEjected) {
				t.Errorf("ejected %v, want %v", ejected, tt.wantEjected)
			}
			s := shares(pool, ups, 3000)
			for _, i := range tt.wantEjected {
				if s[i] != 0 {
					t.Errorf("ejected upstream %d got %.3f of the requests", i, s[i])
				}
			}
			if tt.wantEvent != "" && !hasEvent(b, "eject", tt.wantEvent) {
				t.Errorf("no eject event with %q: %+v", tt.wantEvent, b.Events(0))
			}
		})
	}
}

func hasEvent(b *Board, kind, text string) bool {
	for _, ev := range b.Events(0) {
		if ev.Kind == kind && strings.Contains(ev.Message, text) {
			return true
		}
	}
	return false
}

// TestEjectionGrowsAndDecays: each ejection lasts the base time times the
// number of ejections, capped; an upstream returns when its time is up, is
// judged afresh, and the count decays by one per base time in the pool.
func TestEjectionGrowsAndDecays(t *testing.T) {
	b, _, _ := unpolledPool(t, 3)
	cfg := *b.Config()
	cfg.Ejection = rank.Ejection{ErrorRatio: 0.5, MinAnswers: 5, BaseTime: 10 * time.Second, MaxTime: 25 * time.Second, MaxEjected: 0.5}
	b.Configure(&cfg)
	dial := dialOf(0)
	o := &b.edge(dial).outcomes
	streak := func() int {
		b.ejectMu.Lock()
		defer b.ejectMu.Unlock()
		return o.streak
	}
	var returned int64
	for k, want := range []time.Duration{10 * time.Second, 20 * time.Second, 25 * time.Second} {
		answer(b, dial, 503, 5, time.Millisecond)
		until := o.ejectedUntil.Load()
		if until == 0 {
			t.Fatalf("ejection %d: not ejected", k+1)
		}
		if got := time.Duration(until - b.clock()); got < want-time.Second || got > want {
			t.Errorf("ejection %d lasts %s, want %s", k+1, got, want)
		}
		b.updateOutcomes(b.Edges(), until-1, false)
		if o.ejectedUntil.Load() == 0 {
			t.Fatalf("ejection %d ended early", k+1)
		}
		returned = until
		b.updateOutcomes(b.Edges(), returned, false)
		if o.ejectedUntil.Load() != 0 {
			t.Fatalf("ejection %d did not end", k+1)
		}
		if a, _ := o.recent(); a != 0 {
			t.Errorf("after ejection %d, %d old answers still judged", k+1, a)
		}
	}
	if !hasEvent(b, "return", "back after an ejection") {
		t.Errorf("no return event: %+v", b.Events(0))
	}
	for want := 2; want >= 0; want-- {
		returned += int64(10 * time.Second)
		b.updateOutcomes(b.Edges(), returned, false)
		if got := streak(); got != want {
			t.Errorf("after a clean base time, the count is %d, want %d", got, want)
		}
	}
}

// TestSlowStartRamps: upstreams tracked together do not ramp; one that
// joins the serving pool later, or comes back after being down or
// ejected, ramps up from its floor and gets a small share meanwhile.
func TestSlowStartRamps(t *testing.T) {
	b := newPolledBoard(t, func(c *Config) {
		c.ReportURL = "http://127.0.0.1:9/_edgetier/load?for={upstream}"
		c.Scoring.StaleAfter = time.Minute
		c.SlowStart = time.Minute
	})
	dials := []string{dialOf(0), dialOf(1), dialOf(2)}
	pool, ups := poolOf(b, dials...)
	for _, d := range dials {
		report(b, d, 10)
	}
	ramp := func(dial string) float64 { return b.edge(dial).Status(time.Now()).Ramp }
	time.Sleep(3 * tick)
	for _, d := range dials {
		if r := ramp(d); r != 1 {
			t.Errorf("%s tracked with the others ramps (%g)", d, r)
		}
	}
	for _, u := range ups {
		u.(*fakeUpstream).inflight.Store(5)
	}

	t.Run("a new upstream joining a serving pool", func(t *testing.T) {
		dials4 := append(dials, dialOf(3))
		ups4 := append(ups, new(fakeUpstream))
		pool4 := b.Pool(dials4, ups4)
		report(b, dialOf(3), 10)
		waitUntil(t, "the new upstream ramping", func() bool { return ramp(dialOf(3)) < 1 })
		if r := ramp(dialOf(3)); r > 0.2 {
			t.Errorf("new upstream's ramp %g, want near %g", r, rank.MinRamp)
		}
		// Idle among loaded ones, it would take every request; ramping, it
		// takes about a tenth of its fair share (1/4).
		if s := shares(pool4, ups4, 4000); s[3] > 0.08 {
			t.Errorf("ramping upstream's share %.3f, want at most 0.08", s[3])
		}
		if !hasEvent(b, "ramp", "ramps up from 10 %") {
			t.Errorf("no ramp event: %+v", b.Events(0))
		}
	})
	t.Run("back after being down", func(t *testing.T) {
		e := b.edge(dialOf(1))
		e.setView(rank.MarkDown(e.view.Load()))
		waitUntil(t, "the down upstream noted", func() bool { return !e.outcomes.avail.Load() })
		report(b, dialOf(1), 10)
		waitUntil(t, "the returning upstream ramping", func() bool { return ramp(dialOf(1)) < 1 })
		if s := shares(pool, ups, 4000); s[1] > 0.12 {
			t.Errorf("returning upstream's share %.3f, want at most 0.12", s[1])
		}
	})
	t.Run("back after an ejection", func(t *testing.T) {
		e := b.edge(dialOf(2))
		answer(b, dialOf(2), 503, 5, time.Millisecond)
		if e.outcomes.ejectedUntil.Load() == 0 {
			t.Fatal("not ejected")
		}
		waitUntil(t, "the ejected upstream noted", func() bool { return !e.outcomes.avail.Load() })
		b.updateOutcomes(b.Edges(), e.outcomes.ejectedUntil.Load(), false)
		waitUntil(t, "the returning upstream ramping", func() bool { return ramp(dialOf(2)) < 1 })
	})
	t.Run("slow start off", func(t *testing.T) {
		cfg := *b.Config()
		cfg.SlowStart = 0
		b.Configure(&cfg)
		for _, d := range dials {
			if r := ramp(d); r != 1 {
				t.Errorf("%s ramps (%g) with slow start off", d, r)
			}
		}
	})
}
