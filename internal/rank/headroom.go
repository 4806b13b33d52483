package rank

import (
	"strconv"
	"strings"
	"time"

	"github.com/edgetier/edgetier/edgeagent"
)

// DefaultHeadroom is the link utilisation above which an edge takes no new
// viewers while another has headroom.
const DefaultHeadroom = 0.9

// LinkUtilisation is the share of its link an edge's report says it uses,
// 0–1: the agent's own figure (schema 1.2 and later), else, for an older
// agent that advertises its link, its egress against it; 0 when unknown.
func LinkUtilisation(r *edgeagent.Report) float64 {
	if minor(r.Schema) >= 2 {
		return r.LinkUtilisation
	}
	if link := LinkCapacity(r); link > 0 {
		return min(r.EgressBytesPerSecond/link, 1)
	}
	return 0
}

// LinkCapacity is the link capacity a report advertises, bytes per
// second; 0 when it advertises none.
func LinkCapacity(r *edgeagent.Report) float64 {
	if r.Capacity == nil {
		return 0
	}
	return r.Capacity.LinkBytesPerSecond
}

func minor(schema string) int {
	_, m, _ := strings.Cut(schema, ".")
	n, err := strconv.Atoi(m)
	if err != nil {
		return 0
	}
	return n
}

// Sent is what a balancer has sent through an upstream since its report:
// the bytes, over how long, and its own rate over the interval before the
// report (which the report's figure already holds).
type Sent struct {
	Bytes    uint64
	Elapsed  time.Duration
	RateThen float64 // bytes per second
}

// LinkAt is v's link utilisation corrected by what this balancer sent the
// upstream since its report, as in-flight counts correct streams: the
// reported figure plus the rise of the balancer's own rate since, and
// never less than the balancer's rate alone, since the report or in the
// interval before it (which a report sampled before the poll may not
// hold yet). The rate since the report is taken over an agent's interval
// at least, so a burst that follows a report counts in full without a
// short window magnifying it. An upstream whose link capacity is unknown
// reports no utilisation; 0 then.
func LinkAt(v *View, sent Sent) float64 {
	link := LinkCapacity(&v.Report)
	if link <= 0 {
		return LinkUtilisation(&v.Report)
	}
	window := max(sent.Elapsed, time.Duration(v.Report.IntervalSeconds*float64(time.Second)), time.Second)
	rate := float64(sent.Bytes) / window.Seconds()
	reported := LinkUtilisation(&v.Report)
	// Only what this balancer added counts: what it stopped sending is not
	// free until a report says so, since the other flows on the link (TCP
	// takes what is free) fill it at once.
	return min(max(reported+max(rate-sent.RateThen, 0)/link, rate/link, sent.RateThen/link, 0), 1)
}

// HeadroomBand is how far below the limit a full link's utilisation must
// fall before it has headroom again: a link kept near its limit would
// otherwise flip at every sample, taking a crowd each time.
const HeadroomBand = 0.05

// Headroom reports whether an upstream whose corrected link utilisation
// is util has room for another viewer: not above limit, or, for one
// without headroom until now (full), not above limit less HeadroomBand.
// A limit of 1 turns the rule off.
func Headroom(util, limit float64, full bool) bool {
	switch {
	case limit >= 1:
		return true
	case full:
		return util <= limit-HeadroomBand
	}
	return util <= limit
}
