package rank

import (
	"testing"
	"time"

	"github.com/edgetier/edgetier/edgeagent"
)

func TestEjects(t *testing.T) {
	e := DefaultEjection
	off := e
	off.ErrorRatio = 0
	tests := []struct {
		name            string
		rule            Ejection
		answers, errors int64
		want            bool
	}{
		{"too few answers to judge", e, 4, 4, false},
		{"enough answers, all errors", e, 5, 5, true},
		{"half errors is enough", e, 10, 5, true},
		{"just under half", e, 11, 5, false},
		{"no errors", e, 100, 0, false},
		{"ejection off", off, 100, 100, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.rule.Ejects(tt.answers, tt.errors); got != tt.want {
				t.Errorf("Ejects(%d, %d) = %v, want %v", tt.answers, tt.errors, got, tt.want)
			}
		})
	}
}

func TestEjectionDuration(t *testing.T) {
	e := Ejection{BaseTime: 30 * time.Second, MaxTime: 100 * time.Second}
	for n, want := range map[int]time.Duration{0: 30 * time.Second, 1: 30 * time.Second, 2: 60 * time.Second, 3: 90 * time.Second, 4: 100 * time.Second, 1 << 40: 100 * time.Second} {
		if got := e.Duration(n); got != want {
			t.Errorf("Duration(%d) = %s, want %s", n, got, want)
		}
	}
}

func TestMaxEjectedOf(t *testing.T) {
	tests := []struct {
		n        int
		fraction float64
		want     int
	}{
		{1, 0.5, 0}, {2, 0.5, 1}, {3, 0.5, 1}, {4, 0.5, 2}, {10, 0.1, 1}, {3, 1, 2}, {3, 0, 0}, {100, 0.5, 50},
	}
	for _, tt := range tests {
		if got := MaxEjectedOf(tt.n, tt.fraction); got != tt.want {
			t.Errorf("MaxEjectedOf(%d, %g) = %d, want %d", tt.n, tt.fraction, got, tt.want)
		}
	}
}

// TestBuildLeavesEjectedOut: an ejected upstream is no candidate while the
// pool allows it out; past max_ejected every upstream is one again (panic),
// and ejected upstreams still serve when they are all that can.
func TestBuildLeavesEjectedOut(t *testing.T) {
	tests := []struct {
		name       string
		n          int
		ejected    []int
		available  []bool // nil: all
		maxEjected float64
		wantPanic  bool
		wantNone   []int // upstreams that must get nothing
		wantSome   []int
	}{
		{"one of three ejected gets nothing", 3, []int{0}, nil, 0.5, false, []int{0}, []int{1, 2}},
		{"two of three ejected past 50 %: panic, all serve", 3, []int{0, 1}, nil, 0.5, true, nil, []int{0, 1, 2}},
		{"two of four ejected within 50 %", 4, []int{0, 1}, nil, 0.5, false, []int{0, 1}, []int{2, 3}},
		{"max_ejected 0: ejection ignored", 3, []int{0}, nil, 0, true, nil, []int{0, 1, 2}},
		{"only the ejected upstream is available: it serves", 3, []int{0}, []bool{true, false, false}, 0.5, true, []int{1, 2}, []int{0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newTestPool(tt.n, nil)
			for i := 0; i < tt.n; i++ {
				p.report(i, 10, edgeagent.StateReady, 2)
				if tt.available != nil {
					p.in[i].Available = tt.available[i]
				}
			}
			for _, i := range tt.ejected {
				p.in[i].Ejected = true
			}
			j := p.judge()
			j.MaxEjected = tt.maxEjected
			pl := Build(p.in, j)
			if pl.Panic != tt.wantPanic {
				t.Errorf("Panic = %v, want %v", pl.Panic, tt.wantPanic)
			}
			counts := make([]int, tt.n)
			for k := 0; k < 3000; k++ {
				if i, _ := p.choose(pl); i >= 0 {
					counts[i]++
				}
			}
			for _, i := range tt.wantNone {
				if counts[i] != 0 {
					t.Errorf("upstream %d chosen %d times, want none (counts %v)", i, counts[i], counts)
				}
			}
			for _, i := range tt.wantSome {
				if counts[i] < 300 {
					t.Errorf("upstream %d chosen %d times, want some (counts %v)", i, counts[i], counts)
				}
			}
		})
	}
}
