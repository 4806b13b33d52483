package rank

import (
	"math"
	"testing"

	"github.com/edgetier/edgetier/edgeagent"
)

func TestTierOf(t *testing.T) {
	tests := []struct {
		score float64
		th    Thresholds
		want  Tier
	}{
		{0, DefaultThresholds, 1}, {24.99, DefaultThresholds, 1}, {25, DefaultThresholds, 2},
		{49.9, DefaultThresholds, 2}, {50, DefaultThresholds, 3}, {74.9, DefaultThresholds, 3},
		{75, DefaultThresholds, 4}, {100, DefaultThresholds, 4},
		{15, Thresholds{10, 20, 30}, 2}, {35, Thresholds{10, 20, 30}, 4},
	}
	for _, tt := range tests {
		if got := TierOf(tt.score, tt.th); got != tt.want {
			t.Errorf("TierOf(%g, %v) = %d, want %d", tt.score, tt.th, got, tt.want)
		}
	}
}

func TestKeepHysteresis(t *testing.T) {
	tests := []struct {
		name  string
		score float64
		prev  Tier
		want  Tier
	}{
		{"new upstream takes raw tier", 26, 0, 2},
		{"just over the bound stays in tier 1", 27, 1, 1},
		{"past the bound by hysteresis moves up", 30, 1, 2},
		{"just under the bound stays in tier 2", 23, 2, 2},
		{"past the lower bound by hysteresis moves down", 19.9, 2, 1},
		{"big jump goes straight to tier 4", 90, 1, 4},
		{"tier 4 has no upper bound", 100, 4, 4},
		{"tier 4 leaves when far enough below 75", 69, 4, 3},
		{"tier 4 stays near 75", 71, 4, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Keep(tt.score, tt.prev, DefaultThresholds, 5); got != tt.want {
				t.Fatalf("Keep(%g, prev %d) = %d, want %d", tt.score, tt.prev, got, tt.want)
			}
		})
	}
	if got := Keep(27, 1, DefaultThresholds, 0); got != 2 {
		t.Fatalf("without hysteresis Keep(27, 1) = %d, want 2", got)
	}
}

func TestNormaliseAndScore(t *testing.T) {
	rep := &edgeagent.Report{Schema: "1.2", CPUPercent: 50, MemoryPercent: 40, RequestsPerSecond: 100, Streams: 50, ResponseTimeSeconds: 0.25, LinkUtilisation: 0.95}
	tests := []struct {
		name      string
		capacity  Capacity
		weights   Weights
		wantComp  Components
		wantScore float64
	}{
		{"defaults, link unknown: the original formula", DefaultCapacity, DefaultWeights.For(false), Components{50, 40, 50, 50, 50, 95}, 0.30*50 + 0.25*40 + 0.20*50 + 0.15*50 + 0.10*50},
		{"defaults, link known: bandwidth a quarter, the rest in the original proportions", DefaultCapacity, DefaultWeights.For(true), Components{50, 40, 50, 50, 50, 95},
			0.75*(0.30*50+0.25*40+0.20*50+0.15*50+0.10*50) + 0.25*95},
		{"five weights: the original formula, link known or not", DefaultCapacity, OriginalWeights.For(true), Components{50, 40, 50, 50, 50, 95}, 0.30*50 + 0.25*40 + 0.20*50 + 0.15*50 + 0.10*50},
		{"clamped to capacity", Capacity{Streams: 10, Requests: 10, ResponseTime: 0.1}, DefaultWeights.For(false), Components{50, 40, 100, 100, 100, 95}, 0.30*50 + 0.25*40 + 0.45*100},
		{"cpu only", DefaultCapacity, Weights{1, 0, 0, 0, 0}, Components{50, 40, 50, 50, 50, 95}, 50},
		{"bandwidth weighed", DefaultCapacity, Weights{0.25, 0.20, 0.15, 0.10, 0.10, 0.20}, Components{50, 40, 50, 50, 50, 95}, 0.25*50 + 0.20*40 + 0.15*50 + 0.10*50 + 0.10*50 + 0.20*95},
		{"bandwidth weighed, link unknown: its weight goes to the rest", DefaultCapacity, Weights{0.25, 0.20, 0.15, 0.10, 0.10, 0.20}.For(false), Components{50, 40, 50, 50, 50, 95}, (0.25*50 + 0.20*40 + 0.15*50 + 0.10*50 + 0.10*50) / 0.8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			comp := Normalise(rep, tt.capacity)
			if comp != tt.wantComp {
				t.Fatalf("components = %v, want %v", comp, tt.wantComp)
			}
			if got := Score(comp, tt.weights); math.Abs(got-tt.wantScore) > 1e-9 {
				t.Fatalf("score = %g, want %g", got, tt.wantScore)
			}
		})
	}
}

func TestCapacityPrecedence(t *testing.T) {
	advertised := &edgeagent.Report{Capacity: &edgeagent.Capacity{MaxStreams: 1000}}
	fromCaddyfile := Capacity{Streams: 10, Requests: 20}
	got := Advertised(advertised).Merge(fromCaddyfile).Merge(DefaultCapacity)
	if want := (Capacity{Streams: 1000, Requests: 20, ResponseTime: 0.5}); got != want {
		t.Fatalf("capacity = %+v, want %+v (agent, then Caddyfile, then defaults)", got, want)
	}
}

func TestCorrectedStreams(t *testing.T) {
	tests := []struct {
		name          string
		reported      float64
		atReport, now int
		want          float64
	}{
		{"no change since the report", 10, 4, 4, 10},
		{"burst since the report counts at once", 10, 4, 14, 20},
		{"streams we closed since count too", 10, 4, 1, 7},
		{"an edge claiming zero while holding ours is not believed", 0, 0, 30, 30},
		{"a lying edge: never below what we hold", 0, 30, 30, 30},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := CorrectedStreams(tt.reported, tt.atReport, tt.now); got != tt.want {
				t.Fatalf("CorrectedStreams = %g, want %g", got, tt.want)
			}
		})
	}
}

func TestCheckWeightsAndThresholds(t *testing.T) {
	nan := math.NaN()
	for _, w := range []Weights{{0.5, 0.5, 0, 0, 0.1}, {nan, 0, 0, 0, 1}, {-0.1, 0.1, 0, 0, 1}, {math.Inf(1), 0, 0, 0, 0}, {0.3, 0.25, 0.2, 0.15, 0.1, 0.1}, {0.3, 0.25, 0.2, 0.15, 0.1, -0.1}} {
		if CheckWeights(w) == nil {
			t.Errorf("CheckWeights(%v) accepted", w)
		}
	}
	if err := CheckWeights(DefaultWeights); err != nil {
		t.Errorf("CheckWeights(defaults) = %v", err)
	}
	for _, th := range [][]float64{{25, 50}, {50, 25, 75}, {25, 50, 100}, {nan, 50, 75}, {25, 50, math.Inf(1)}} {
		if CheckThresholds(th) == nil {
			t.Errorf("CheckThresholds(%v) accepted", th)
		}
	}
}
