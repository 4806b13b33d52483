package rank

import (
	"math"
	"testing"
	"time"

	"github.com/edgetier/edgetier/edgeagent"
)

func TestRamp(t *testing.T) {
	const s = int64(time.Second)
	tests := []struct {
		name               string
		since, now, window int64
		want               float64
	}{
		{"not ramping", 0, 100 * s, 10 * s, 1},
		{"slow start off", 95 * s, 100 * s, 0, 1},
		{"just available: the floor", 100 * s, 100 * s, 10 * s, MinRamp},
		{"half way", 95 * s, 100 * s, 10 * s, 0.5},
		{"done", 90 * s, 100 * s, 10 * s, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Ramp(tt.since, tt.now, tt.window); math.Abs(got-tt.want) > 1e-9 {
				t.Errorf("Ramp = %g, want %g", got, tt.want)
			}
		})
	}
}

// TestSlowStartShares: a ramping upstream among loaded ones (it has none of
// the proxy's requests in flight, so the rule would give it every request)
// gets about its ramp of its fair share, and all of it once ramped up.
func TestSlowStartShares(t *testing.T) {
	const window = 10 * time.Second
	tests := []struct {
		name     string
		elapsed  time.Duration // since it became available; -1: not ramping
		lo, hi   float64       // its share
		lone     bool          // the idle upstream alone in tier 1
		allRamp  bool          // every upstream ramps
		slowOff  bool
		inflight int // of the others
	}{
		{"just available: a tenth of its fair share", 0, 0.01, 0.05, false, false, false, 5},
		{"half way: half its fair share", window / 2, 0.09, 0.16, false, false, false, 5},
		{"ramped up: least in flight takes it all", window, 0.99, 1, false, false, false, 5},
		{"slow start off: it takes it all", 0, 0.99, 1, false, false, true, 5},
		{"lone best upstream ramps too", 0, 0.01, 0.05, true, false, false, 5},
		{"all ramping: still served evenly", 0, 0.2, 0.3, false, true, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newTestPool(4, nil)
			for i := 0; i < 4; i++ {
				load := 20.0
				if tt.lone && i > 0 {
					load = 35
				}
				p.report(i, load, edgeagent.StateReady, 2)
				if i > 0 {
					p.in[i].InFlight = tt.inflight
				}
				if tt.allRamp {
					p.in[i].RampSince = p.now
				}
			}
			p.in[0].RampSince = p.now - int64(tt.elapsed)
			j := p.judge()
			if !tt.slowOff {
				j.SlowStart = int64(window)
			}
			pl := Build(p.in, j)
			if tt.lone && !pl.Lone {
				t.Fatalf("plan not lone: %+v", pl)
			}
			const n = 20000
			got := 0
			for k := 0; k < n; k++ {
				i, _ := p.choose(pl)
				if i < 0 {
					t.Fatal("no upstream chosen")
				}
				if i == 0 {
					got++
				}
			}
			if share := float64(got) / n; share < tt.lo || share > tt.hi {
				t.Errorf("ramping upstream's share = %.3f, want %.2f to %.2f", share, tt.lo, tt.hi)
			}
		})
	}
}
