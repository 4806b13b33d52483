package rank

import (
	"math"
	"testing"

	"github.com/edgetier/edgetier/edgeagent"
)

func TestCalibrate(t *testing.T) {
	tests := []struct {
		name    string
		prev    Estimate
		cpu     float64
		rps     float64
		streams float64
		want    Estimate
	}{
		{"healthy busy edge: twice what it serves", Estimate{}, 50, 700, 20, Estimate{1400, 40}},
		{"starved edge: what it serves", Estimate{}, 100, 69, 27, Estimate{69, 27}},
		{"past 100 % counts as full", Estimate{}, 130, 69, 27, Estimate{69, 27}},
		{"idle edge keeps the estimate", Estimate{1400, 40}, 5, 10, 1, Estimate{1400, 40}},
		{"NaN CPU keeps the estimate", Estimate{1400, 40}, math.NaN(), 10, 1, Estimate{1400, 40}},
		{"no streams keeps the streams estimate", Estimate{1400, 40}, 50, 700, 0, Estimate{1400, 40}},
		{"smoothed", Estimate{1000, 40}, 50, 1000, 20, Estimate{1000 + CalibrationWeight*1000, 40}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := edgeagent.Report{CPUPercent: tt.cpu, RequestsPerSecond: tt.rps, Streams: tt.streams}
			if got := Calibrate(tt.prev, &r); math.Abs(got.Requests-tt.want.Requests) > 1e-9 || math.Abs(got.Streams-tt.want.Streams) > 1e-9 {
				t.Fatalf("Calibrate = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestEstimateWithin(t *testing.T) {
	tests := []struct {
		name  string
		e     Estimate
		bound Capacity
		want  Capacity
	}{
		{"no estimate: the bound", Estimate{}, Capacity{Requests: 500}, Capacity{Requests: 500}},
		{"below the bound: the estimate", Estimate{Requests: 300, Streams: 20}, Capacity{Requests: 500, Streams: 100}, Capacity{Requests: 300, Streams: 20}},
		{"above the bound: the bound", Estimate{Requests: 3000}, Capacity{Requests: 500}, Capacity{Requests: 500}},
		{"no bound: the estimate", Estimate{Requests: 3000}, Capacity{}, Capacity{Requests: 3000}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.e.Within(tt.bound); got != tt.want {
				t.Fatalf("Within = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestStarvedEdgeScoresATierAbove: the figures of a CPU-starved and a
// healthy edge under the same viewers (the starved one at 100 % CPU
// serving a tenth of the requests). With a fixed capacity both pin the
// request component and share a tier; calibrated, the starved edge is at
// least a tier above.
func TestStarvedEdgeScoresATierAbove(t *testing.T) {
	s := Scoring{Weights: DefaultWeights, Thresholds: DefaultThresholds, Hysteresis: 5, Capacity: DefaultCapacity, Warmup: 2, StaleAfter: 3e9}
	reports := func(cpu, rps, streams float64) *View {
		var v *View
		for i := range 5 {
			rep := edgeagent.Report{Schema: edgeagent.SchemaVersion, Seq: uint64(i + 1), State: edgeagent.StateReady,
				CPUPercent: cpu, RequestsPerSecond: rps, Streams: streams}
			v = Accept(v, rep, int64(i+1)*5e8, 0, Capacity{}, &s)
		}
		return v
	}
	for _, calibrate := range []bool{false, true} {
		s.Fixed = !calibrate
		starved, healthy := reports(100, 69, 27), reports(48, 700, 25)
		apart := starved.Tier > healthy.Tier
		if calibrate != apart {
			t.Errorf("calibrate %v: starved tier %d (score %.1f), healthy tier %d (score %.1f)", calibrate, starved.Tier, starved.Score, healthy.Tier, healthy.Score)
		}
	}
}
