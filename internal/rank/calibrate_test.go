package rank

import (
	"math"
	"testing"

	"github.com/edgetier/edgetier/edgeagent"
)

func TestCalibrate(t *testing.T) {
	type report struct{ cpu, rps, streams float64 }
	tests := []struct {
		name    string
		reports []report
		want    Capacity
	}{
		{"healthy busy edge: twice what it serves", []report{{50, 700, 20}}, Capacity{Requests: 1400, Streams: 40}},
		{"starved edge: what it serves", []report{{100, 69, 27}}, Capacity{Requests: 69, Streams: 27}},
		{"past 100 % counts as full", []report{{130, 69, 27}}, Capacity{Requests: 69, Streams: 27}},
		{"idle reports at once keep the estimate", []report{{50, 700, 20}, {5, 10, 1}, {math.NaN(), 10, 1}}, Capacity{Requests: 1400, Streams: 40}},
		{"idle only: no estimate", []report{{5, 10, 1}}, Capacity{}},
		{"no streams: no streams estimate", []report{{50, 700, 0}}, Capacity{Requests: 1400}},
		// A ratio of smoothed figures: streams of 2 and 6 at 50 % make 8,
		// where smoothing each report's own ratio (4, then 12) would
		// follow the last sample further.
		{"smoothed figures, then their ratio", []report{{50, 700, 2}, {50, 700, 6}}, Capacity{Requests: 1400, Streams: 2 * (2 + CalibrationWeight*4)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var e Estimate
			for _, r := range tt.reports {
				rep := edgeagent.Report{CPUPercent: r.cpu, RequestsPerSecond: r.rps, Streams: r.streams}
				e = Calibrate(e, &rep, 0)
			}
			if got := e.Capacity(); math.Abs(got.Requests-tt.want.Requests) > 1e-9 || math.Abs(got.Streams-tt.want.Streams) > 1e-9 {
				t.Fatalf("capacity = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestCalibrationDecays: while an edge reports idle, its estimate grows
// back with time, so an edge kept off for its small capacity is offered
// more again.
func TestCalibrationDecays(t *testing.T) {
	busy := edgeagent.Report{CPUPercent: 100, RequestsPerSecond: 50}
	idle := edgeagent.Report{CPUPercent: 2}
	e := Calibrate(Estimate{}, &busy, 0)
	e = Calibrate(e, &idle, CalibrationDecay)
	if got, want := e.Capacity().Requests, 50*math.E; math.Abs(got-want) > 1e-9 {
		t.Fatalf("after idle reports for one decay time: %.1f requests/s, want %.1f", got, want)
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
		{"below the bound: the estimate", Estimate{Requests: 300, Streams: 20, Utilisation: 1}, Capacity{Requests: 500, Streams: 100}, Capacity{Requests: 300, Streams: 20}},
		{"above the bound: the bound", Estimate{Requests: 3000, Utilisation: 1}, Capacity{Requests: 500}, Capacity{Requests: 500}},
		{"no bound: the estimate", Estimate{Requests: 3000, Utilisation: 1}, Capacity{}, Capacity{Requests: 3000}},
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
		if starved.EstimatedRequests != 0 && !calibrate {
			t.Error("an estimate with calibrate off")
		}
		apart := starved.Tier > healthy.Tier
		if calibrate != apart {
			t.Errorf("calibrate %v: starved tier %d (score %.1f), healthy tier %d (score %.1f)", calibrate, starved.Tier, starved.Score, healthy.Tier, healthy.Score)
		}
	}
}

// TestHostScopeIsNotCalibrated: edges that report the whole machine's CPU
// (scope host, which several edges may share) are normalised against the
// advertised or default capacity: an estimate from a shared utilisation
// would follow the traffic each edge is sent.
func TestHostScopeIsNotCalibrated(t *testing.T) {
	s := Scoring{Weights: DefaultWeights, Thresholds: DefaultThresholds, Hysteresis: 5, Capacity: DefaultCapacity, Warmup: 2, StaleAfter: 3e9}
	rep := edgeagent.Report{Schema: edgeagent.SchemaVersion, Seq: 1, State: edgeagent.StateReady, Scope: edgeagent.ScopeHost, CPUPercent: 60, RequestsPerSecond: 30}
	v := Accept(nil, rep, 1, 0, Capacity{}, &s)
	if v.EstimatedRequests != 0 || v.Capacity.Requests != DefaultCapacity.Requests {
		t.Fatalf("scope host: estimated %.1f, normalised against %.1f requests/s; want no estimate, %.0f", v.EstimatedRequests, v.Capacity.Requests, DefaultCapacity.Requests)
	}
	rep.Scope = edgeagent.ScopeCgroup
	if v := Accept(nil, rep, 1, 0, Capacity{}, &s); v.EstimatedRequests != 50 {
		t.Fatalf("scope cgroup: estimated %.1f requests/s, want 50", v.EstimatedRequests)
	}
}
