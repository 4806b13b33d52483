package rank

import (
	"fmt"
	"math"

	"github.com/edgetier/edgetier/edgeagent"
)

// Component indexes a load score's components, in the order of Weights.
type Component int

// The components of a score.
const (
	CPU Component = iota
	Memory
	Requests
	Streams
	ResponseTime
	Bandwidth // link utilisation
	NumComponents
)

// ComponentNames label the components in metrics and JSON.
var ComponentNames = [NumComponents]string{"cpu", "memory", "requests", "streams", "response_time", "bandwidth"}

// Components are a report's figures normalised to 0–100.
type Components [NumComponents]float64

// Weights of the score components; they sum to 1.
type Weights [NumComponents]float64

// DefaultWeights give bandwidth (link utilisation) a quarter and keep the
// original design's proportions for the rest, so an edge whose link is
// unknown is scored by the original formula: CPU 30 %, memory 25 %,
// request rate 20 %, streams 15 %, response time 10 % (Weights.For). A
// video edge runs out of link first: an edge whose link nears full still
// answers fast and finishes few requests, and without its link in its
// score it would sit a tier below the others and draw every new viewer
// until the headroom rule shut it off, then again once it drained.
var DefaultWeights = OriginalWeights.withBandwidth(0.25)

// OriginalWeights are the original design's five, bandwidth 0.
var OriginalWeights = Weights{0.30, 0.25, 0.20, 0.15, 0.10, 0}

// withBandwidth is w with bandwidth weighing b and the others scaled to
// keep the sum.
func (w Weights) withBandwidth(b float64) Weights {
	rest := 1 - w[Bandwidth]
	for i := range w {
		w[i] *= (1 - b) / rest
	}
	w[Bandwidth] = b
	return w
}

// For is the weights that score an edge whose link capacity is known
// (linkKnown) or not: without one, bandwidth says nothing, and its weight
// goes to the others in their proportions.
func (w Weights) For(linkKnown bool) Weights {
	if linkKnown || w[Bandwidth] <= 0 || w[Bandwidth] >= 1 {
		return w
	}
	return w.withBandwidth(0)
}

// Thresholds are the upper score bounds of tiers 1, 2 and 3.
type Thresholds [3]float64

// DefaultThresholds put tier 1 below 25, tier 2 below 50, tier 3 below 75.
var DefaultThresholds = Thresholds{25, 50, 75}

// Capacity is what a report's figures are normalised against.
type Capacity struct {
	Streams      float64 // concurrent streams
	Requests     float64 // requests per second
	ResponseTime float64 // seconds to first byte
}

// DefaultCapacity applies when neither the agent nor the Caddyfile gives one.
var DefaultCapacity = Capacity{Streams: 100, Requests: 200, ResponseTime: 0.5}

// Merge fills the zero fields of c from fallback.
func (c Capacity) Merge(fallback Capacity) Capacity {
	if c.Streams <= 0 {
		c.Streams = fallback.Streams
	}
	if c.Requests <= 0 {
		c.Requests = fallback.Requests
	}
	if c.ResponseTime <= 0 {
		c.ResponseTime = fallback.ResponseTime
	}
	return c
}

// Advertised is the capacity a report advertises, zero where it says nothing.
func Advertised(r *edgeagent.Report) Capacity {
	if r.Capacity == nil {
		return Capacity{}
	}
	return Capacity{Streams: r.Capacity.MaxStreams, Requests: r.Capacity.MaxRequestsPerSecond, ResponseTime: r.Capacity.MaxResponseTimeSeconds}
}

// Normalise returns a report's components against capacity c.
func Normalise(r *edgeagent.Report, c Capacity) Components {
	return Components{
		CPU:          Clamp100(r.CPUPercent),
		Memory:       Clamp100(r.MemoryPercent),
		Requests:     Clamp100(100 * r.RequestsPerSecond / c.Requests),
		Streams:      Clamp100(100 * r.Streams / c.Streams),
		ResponseTime: Clamp100(100 * r.ResponseTimeSeconds / c.ResponseTime),
		Bandwidth:    Clamp100(100 * LinkUtilisation(r)),
	}
}

// Score is the weighted sum of the components, 0–100.
func Score(comp Components, w Weights) float64 {
	var s float64
	for i := range comp {
		s += w[i] * comp[i]
	}
	return Clamp100(s)
}

// CorrectedStreams is an edge's stream count as the proxy sees it now: the
// reported count plus what this proxy opened since (or minus what it
// closed), and never less than what this proxy alone holds open on it, so
// a burst spreads and an edge claiming to be idle while serving our
// streams is not believed.
func CorrectedStreams(reported float64, inflightAtReport, inflightNow int) float64 {
	if s := reported + float64(inflightNow-inflightAtReport); s > float64(inflightNow) {
		return s
	}
	return float64(inflightNow)
}

// Clamp100 bounds v to 0–100; NaN counts as 0.
func Clamp100(v float64) float64 {
	switch {
	case v > 100:
		return 100
	case v >= 0:
		return v
	}
	return 0
}

// CheckWeights says what is wrong with w, if anything.
func CheckWeights(w Weights) error {
	var sum float64
	for i, v := range w {
		if !(v >= 0 && v <= 1) {
			return fmt.Errorf("%s weight %g is not between 0 and 1", ComponentNames[i], v)
		}
		sum += v
	}
	if math.Abs(sum-1) > 1e-6 {
		return fmt.Errorf("must sum to 1, they sum to %g", sum)
	}
	return nil
}

// CheckThresholds says what is wrong with tier bounds t, if anything.
func CheckThresholds(t []float64) error {
	if len(t) != 3 {
		return fmt.Errorf("want 3 bounds (tiers 1, 2 and 3), got %d", len(t))
	}
	prev := 0.0
	for _, v := range t {
		if !(v > prev) || !(v < 100) {
			return fmt.Errorf("%v must be strictly increasing, between 0 and 100", t)
		}
		prev = v
	}
	return nil
}
