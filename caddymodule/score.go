package caddymodule

import (
	"math"

	"github.com/edgetier/edgetier/edgeagent"
)

// Components of a load score, in the order of Weights.
const (
	compCPU = iota
	compMemory
	compRequests
	compStreams
	compResponse
	numComponents
)

// componentNames label the components in metrics and JSON.
var componentNames = [numComponents]string{"cpu", "memory", "requests", "streams", "response_time"}

// Weights of the score components; they sum to 1.
type Weights [numComponents]float64

// DefaultWeights are the original design's: CPU 30 %, memory 25 %,
// request rate 20 %, streams 15 %, response time 10 %.
var DefaultWeights = Weights{0.30, 0.25, 0.20, 0.15, 0.10}

// Thresholds are the upper score bounds of tiers 1, 2 and 3.
type Thresholds [3]float64

// DefaultThresholds put tier 1 below 25, tier 2 below 50, tier 3 below 75.
var DefaultThresholds = Thresholds{25, 50, 75}

// Capacity is what scores are normalised against.
type Capacity struct {
	Streams      float64 // concurrent streams
	Requests     float64 // requests per second
	ResponseTime float64 // seconds to first byte
}

// DefaultCapacity applies when neither the agent nor the Caddyfile gives one.
var DefaultCapacity = Capacity{Streams: 100, Requests: 200, ResponseTime: 0.5}

// merge fills zero fields of c from fallback.
func (c Capacity) merge(fallback Capacity) Capacity {
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

// capacityOf is what a report advertises, zero where it says nothing.
func capacityOf(r *edgeagent.Report) Capacity {
	if r.Capacity == nil {
		return Capacity{}
	}
	return Capacity{Streams: r.Capacity.MaxStreams, Requests: r.Capacity.MaxRequestsPerSecond, ResponseTime: r.Capacity.MaxResponseTimeSeconds}
}

// components normalises a report's figures to 0–100 against capacity.
func components(r *edgeagent.Report, c Capacity) [numComponents]float64 {
	return [numComponents]float64{
		compCPU:      clamp100(r.CPUPercent),
		compMemory:   clamp100(r.MemoryPercent),
		compRequests: clamp100(100 * r.RequestsPerSecond / c.Requests),
		compStreams:  clamp100(100 * r.Streams / c.Streams),
		compResponse: clamp100(100 * r.ResponseTimeSeconds / c.ResponseTime),
	}
}

// score is the weighted sum of components, 0–100.
func score(comp [numComponents]float64, w Weights) float64 {
	var s float64
	for i := range comp {
		s += w[i] * comp[i]
	}
	return clamp100(s)
}

// correctedStreams is the edge's stream count as the proxy sees it now:
// the reported count plus what this proxy opened since (or minus what it
// closed), and never less than what this proxy alone holds open on it, so
// a burst spreads and an edge claiming to be idle while serving our
// streams is not believed.
func correctedStreams(reported float64, inflightAtReport, inflightNow int) float64 {
	if s := reported + float64(inflightNow-inflightAtReport); s > float64(inflightNow) {
		return s
	}
	return float64(inflightNow)
}

// rawTier is the tier of score without hysteresis: 1 to 4.
func rawTier(score float64, th Thresholds) int {
	for i, bound := range th {
		if score < bound {
			return i + 1
		}
	}
	return 4
}

// tierOf is the tier of score for an edge that was in tier prev: it stays
// there while its score is within hysteresis points of the tier's bounds,
// so an edge near a boundary does not flap every report.
func tierOf(score float64, prev int, th Thresholds, hysteresis float64) int {
	if prev < 1 || prev > 4 {
		return rawTier(score, th)
	}
	lo, hi := stayBand(prev, th, hysteresis)
	if score >= lo && score < hi {
		return prev
	}
	return rawTier(score, th)
}

// stayBand is the range of scores that keeps an edge in tier.
func stayBand(tier int, th Thresholds, hysteresis float64) (lo, hi float64) {
	lo, hi = math.Inf(-1), math.Inf(1)
	if tier > 1 {
		lo = th[tier-2] - hysteresis
	}
	if tier < 4 {
		hi = th[tier-1] + hysteresis
	}
	return lo, hi
}

func clamp100(v float64) float64 {
	switch {
	case v > 100:
		return 100
	case v >= 0:
		return v
	}
	return 0 // negative or NaN
}
