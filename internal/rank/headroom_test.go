package rank

import (
	"math"
	"testing"
	"time"

	"github.com/edgetier/edgetier/edgeagent"
)

func TestLinkUtilisation(t *testing.T) {
	link := &edgeagent.Capacity{LinkBytesPerSecond: 100e6}
	tests := []struct {
		name string
		rep  edgeagent.Report
		want float64
	}{
		{"the agent's figure", edgeagent.Report{Schema: "1.2", LinkUtilisation: 0.7, EgressBytesPerSecond: 10e6, Capacity: link}, 0.7},
		{"the agent's zero is zero", edgeagent.Report{Schema: "1.2", EgressBytesPerSecond: 90e6, Capacity: link}, 0},
		{"an older agent: egress against the link", edgeagent.Report{Schema: "1.1", EgressBytesPerSecond: 90e6, Capacity: link}, 0.9},
		{"an older agent above its link", edgeagent.Report{Schema: "1.0", EgressBytesPerSecond: 300e6, Capacity: link}, 1},
		{"no link known", edgeagent.Report{Schema: "1.1", EgressBytesPerSecond: 90e6}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := LinkUtilisation(&tt.rep); got != tt.want {
				t.Fatalf("LinkUtilisation = %g, want %g", got, tt.want)
			}
		})
	}
}

func TestLinkAt(t *testing.T) {
	view := func(util, link float64) *View {
		rep := edgeagent.Report{Schema: edgeagent.SchemaVersion, IntervalSeconds: 1, LinkUtilisation: util}
		if link > 0 {
			rep.Capacity = &edgeagent.Capacity{LinkBytesPerSecond: link}
		}
		return &View{Report: rep}
	}
	tests := []struct {
		name string
		v    *View
		sent Sent
		want float64
	}{
		{"nothing sent since", view(0.5, 100e6), Sent{}, 0.5},
		{"as much as before the report", view(0.5, 100e6), Sent{Bytes: 40e6, Elapsed: time.Second, RateThen: 40e6}, 0.5},
		{"a burst since the report counts at once", view(0.5, 100e6), Sent{Bytes: 45e6, Elapsed: 500 * time.Millisecond}, 0.95},
		{"over a short window the rate is taken over an interval", view(0, 100e6), Sent{Bytes: 10e6, Elapsed: 10 * time.Millisecond}, 0.1},
		{"an edge claiming an idle link while we fill it is not believed", view(0, 100e6), Sent{Bytes: 190e6, Elapsed: 2 * time.Second, RateThen: 95e6}, 0.95},
		{"less than before: not free until a report says so (other flows take it)", view(0.9, 100e6), Sent{Bytes: 20e6, Elapsed: time.Second, RateThen: 60e6}, 0.9},
		{"a burst just before the report counts while the report may not hold it", view(0.1, 100e6), Sent{RateThen: 95e6}, 0.95},
		{"never above 1", view(0.9, 100e6), Sent{Bytes: 500e6, Elapsed: time.Second}, 1},
		{"no link capacity: as reported", view(0, 0), Sent{Bytes: 500e6, Elapsed: time.Second}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := LinkAt(tt.v, tt.sent); math.Abs(got-tt.want) > 1e-9 {
				t.Fatalf("LinkAt = %g, want %g", got, tt.want)
			}
		})
	}
}

// TestHeadroomRule: an upstream without link headroom gets no new viewers
// while another has headroom, whatever its score; with none left, all serve.
func TestHeadroomRule(t *testing.T) {
	tests := []struct {
		name  string
		load  []float64 // scores
		full  []bool
		slow  []bool
		avail []bool
		link  []float64 // utilisations; nil: unknown
		want  []int     // upstreams that may be chosen, the first of them is
	}{
		{"the full idle edge is left out", []float64{5, 40, 40}, []bool{true, false, false}, nil, nil, nil, []int{1, 2}},
		{"a full edge beside a loaded one with headroom", []float64{5, 90}, []bool{true, false}, nil, nil, nil, []int{1}},
		{"every edge full: they all serve", []float64{5, 40}, []bool{true, true}, nil, nil, nil, []int{0}},
		{"the only one with headroom is unavailable", []float64{5, 40}, []bool{true, false}, nil, []bool{true, false}, nil, []int{0}},
		{"none full: the tier rule", []float64{5, 40, 40}, nil, nil, nil, nil, []int{0, 1, 2}},
		// Room means a link below the limit by the band: beside links all
		// near their limit the full one serves too.
		{"a full edge beside one with room is left out", []float64{5, 40}, []bool{true, false}, nil, nil, []float64{0.97, 0.80}, []int{1}},
		{"a full edge beside one nearly full: both serve", []float64{5, 40}, []bool{true, false}, nil, nil, []float64{0.97, 0.88}, []int{0, 1}},
		// The slow edge has headroom: the full link stays out (a slow
		// edge serves where nothing else can, a full link after it).
		{"full and slow beside each other: the slow one with headroom serves", []float64{5, 40}, []bool{true, false}, []bool{false, true}, nil, nil, []int{1}},
		{"full and slow on one edge, slow on the other: the slow one with headroom serves", []float64{5, 40}, []bool{true, false}, []bool{true, true}, nil, nil, []int{1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newTestPool(len(tt.load), nil)
			for i, load := range tt.load {
				p.report(i, load, edgeagent.StateReady, 2)
				p.in[i].Full = tt.full != nil && tt.full[i]
				p.in[i].Slow = tt.slow != nil && tt.slow[i]
				if tt.avail != nil {
					p.in[i].Available = tt.avail[i]
				}
				if tt.link != nil {
					p.in[i].Link = tt.link[i]
				}
			}
			shares := p.shares(400, false)
			for i, s := range shares {
				allowed := false
				for _, w := range tt.want {
					allowed = allowed || w == i
				}
				if s > 0 && !allowed {
					t.Fatalf("shares %v, want only %v chosen", shares, tt.want)
				}
			}
			if shares[tt.want[0]] == 0 {
				t.Fatalf("shares %v, want %d chosen", shares, tt.want[0])
			}
		})
	}
}

func TestHeadroom(t *testing.T) {
	for _, tt := range []struct {
		util, limit float64
		full, want  bool
	}{
		{0.5, 0.9, false, true}, {0.9, 0.9, false, true}, {0.91, 0.9, false, false}, {1, 1, false, true},
		{0.2, 0, false, false}, {0, 0, false, true},
		// A full link has headroom again only clearly below the limit.
		{0.88, 0.9, true, false}, {0.85, 0.9, true, true}, {1, 1, true, true},
	} {
		if got := Headroom(tt.util, tt.limit, tt.full); got != tt.want {
			t.Errorf("Headroom(%g, %g, full %v) = %v, want %v", tt.util, tt.limit, tt.full, got, tt.want)
		}
	}
}
