package rank

import (
	"math"
	"time"

	"github.com/edgetier/edgetier/edgeagent"
)

// PeakHold is the time constant with which a falling score is believed: an
// edge saturated whenever it is busy looks idle as soon as viewers leave it,
// and must not win the next burst.
const PeakHold = 5 * time.Second

// Scoring is how reports become views; a board has one.
type Scoring struct {
	Weights    Weights
	Thresholds Thresholds
	Hysteresis float64
	Capacity   Capacity // the pool's, defaults merged in: where nothing else says
	// Bound is the pool's capacity as the Caddyfile sets it (zero fields:
	// not set): calibrated estimates never exceed it.
	Bound Capacity
	// Fixed: normalise against the advertised or default capacity, not
	// against the estimate from the edge's own reports (calibrate off).
	Fixed      bool
	Warmup     int // good reports in a row before an upstream is trusted
	StaleAfter time.Duration
}

// Code is what a selection makes of an upstream's view.
type Code uint8

// The codes of a view.
const (
	CodeUnknown Code = iota // no report, a stale one, or warming up: counted as average
	CodeTrusted             // scored
	CodeDrain
	CodeMaint
	CodeDown // whatever the report's age
)

// View is an immutable summary of an upstream's last report, scored. A nil
// *View is an upstream without a report.
type View struct {
	Report edgeagent.Report
	// ReceivedAt is when the figures arrived (unix nanoseconds, by the
	// balancer's clock; 0 for none): by a poll, or in a response (Refresh).
	ReceivedAt int64
	// PolledAt is when the latest polled report arrived. Polls alone
	// decide trust: a view whose polls stopped goes stale even while its
	// responses still carry load.
	PolledAt   int64
	Streak     int  // good reports in a row, up to the warm-up
	Trusted    bool // warm-up done
	Down       bool // its own address refuses connections, or it failed mid-stream
	Components Components
	Score      float64 // as reported, before the proxy's correction
	Held       float64 // Score with peak hold: what tiers use
	// InFlightAtReport is the proxy's requests in flight to the upstream
	// when the report arrived: the streams correction is relative to it.
	InFlightAtReport int
	Tier             Tier
	// Estimate is the capacity the edge's reports show, carried from view
	// to view; Capacity what the report was normalised against.
	Estimate    Estimate
	EstimatedAt int64 // unix nanoseconds of the sample it last took in
	Capacity    Capacity
	// EstimatedRequests is Capacity.Requests when it came from the
	// estimate, else 0: the choice weighs requests in flight by it.
	EstimatedRequests float64

	band          Band    // scores that keep Tier
	noStreams     float64 // Held without the streams component
	streamsWeight float64
	streamsScale  float64 // component points per stream
	code          Code    // within stale_after
}

// Accept scores report rep received at now (unix nanoseconds), with
// inflight of the proxy's requests on the upstream, after the upstream's
// previous view prev (nil for none); capacity is the upstream's own from
// the Caddyfile (zero fields: the pool's). A report whose sequence number
// has not advanced is the same sample again: prev is returned, so an
// agent that stopped sampling goes stale.
func Accept(prev *View, rep edgeagent.Report, now int64, inflight int, capacity Capacity, s *Scoring) *View {
	if prev != nil && prev.ReceivedAt != 0 && !prev.Down && rep.Seq != 0 && rep.Seq == prev.Report.Seq {
		return prev
	}
	streak := 1
	if prev != nil && !prev.Down && now-prev.PolledAt <= int64(s.StaleAfter) {
		streak = min(prev.Streak+1, s.Warmup)
	}
	return scored(prev, rep, now, now, streak, inflight, capacity, s)
}

// Refresh is prev brought up to date by load, which the upstream stamped
// on a response that arrived at now with inflight of the proxy's requests
// on it (that response's included). It refreshes only what polls already
// trust: a view trusted, not down, polled within stale_after, and load of
// its report's sample or a later one (an agent whose seq went backwards
// restarted: its polls decide). Anything else returns prev unchanged. The
// figures load carries replace the report's, the view is as fresh as the
// response, and it is rescored and tiered as Accept does (hysteresis,
// peak hold); warm-up and trust are the poll's. A view whose polls stop
// is refreshed for stale_after at most, so it goes stale at most twice
// stale_after after its last poll, however busy the upstream.
func Refresh(prev *View, load *edgeagent.Load, now int64, inflight int, capacity Capacity, s *Scoring) *View {
	if prev == nil || !prev.Trusted || prev.Down || prev.ReceivedAt == 0 || now <= prev.ReceivedAt ||
		now-prev.PolledAt > int64(s.StaleAfter) || load.Seq < prev.Report.Seq {
		return prev
	}
	return scored(prev, load.Apply(prev.Report), now, prev.PolledAt, prev.Streak, inflight, capacity, s)
}

// scored is the view of rep received at now (polled at polledAt), after
// prev, with streak good polls in a row.
func scored(prev *View, rep edgeagent.Report, now, polledAt int64, streak, inflight int, capacity Capacity, s *Scoring) *View {
	c, est, estimated, estimatedAt := calibrated(prev, &rep, now, capacity, s)
	comp := Normalise(&rep, c)
	w := s.Weights.For(LinkCapacity(&rep) > 0)
	v := &View{
		Report:            rep,
		ReceivedAt:        now,
		PolledAt:          polledAt,
		Streak:            streak,
		Trusted:           streak >= s.Warmup,
		Components:        comp,
		Score:             Score(comp, w),
		InFlightAtReport:  inflight,
		streamsWeight:     w[Streams],
		streamsScale:      100 / c.Streams,
		Estimate:          est,
		EstimatedAt:       estimatedAt,
		Capacity:          c,
		EstimatedRequests: estimated,
	}
	without := comp
	without[Streams] = 0
	v.Held = v.Score
	if prev != nil && !prev.Down && prev.ReceivedAt != 0 {
		v.Held = max(v.Held, prev.Held*math.Exp(-float64(now-prev.ReceivedAt)/float64(PeakHold)))
	}
	v.noStreams = Score(without, w) + v.Held - v.Score
	var prevTier Tier
	if prev != nil {
		prevTier = prev.Tier
	}
	v.Tier = Keep(v.Corrected(inflight), prevTier, s.Thresholds, s.Hysteresis)
	v.band = BandOf(v.Tier, s.Thresholds, s.Hysteresis)
	v.setCode()
	return v
}

// MarkDown is prev (nil for none) seen down: not trusted until it reports
// and warms up again.
func MarkDown(prev *View) *View {
	v := &View{}
	if prev != nil {
		*v = *prev
	}
	v.Down, v.Trusted = true, false
	v.setCode()
	return v
}

func (v *View) setCode() {
	switch {
	case v.Down:
		v.code = CodeDown
	case v.Report.State == edgeagent.StateMaint:
		v.code = CodeMaint
	case v.Report.State == edgeagent.StateDrain:
		v.code = CodeDrain
	case !v.Trusted:
		v.code = CodeUnknown
	default:
		v.code = CodeTrusted
	}
}

// Code is what v says at now: down whatever its age, unknown once older
// than staleAfter (nanoseconds). This is the one judgement of freshness.
func (v *View) Code(now, staleAfter int64) Code {
	switch {
	case v == nil:
		return CodeUnknown
	case v.code == CodeDown:
		return CodeDown
	case v.Stale(now, staleAfter):
		return CodeUnknown
	}
	return v.code
}

// Stale reports whether v is a report older than staleAfter at now.
func (v *View) Stale(now, staleAfter int64) bool {
	return v == nil || v.ReceivedAt == 0 || now-v.ReceivedAt > staleAfter
}

// Corrected is v's held score with the streams component recomputed from
// the proxy's inflight requests now.
func (v *View) Corrected(inflight int) float64 {
	return v.noStreams + v.streamsWeight*v.StreamsAt(inflight)
}

// StreamsAt is the streams component with inflight of the proxy's
// requests on the upstream.
func (v *View) StreamsAt(inflight int) float64 {
	return Clamp100(CorrectedStreams(v.Report.Streams, v.InFlightAtReport, inflight) * v.streamsScale)
}

// TierAt is the tier of a corrected score: the report's tier while the
// score stays in its band, else the tier the score falls in.
func (v *View) TierAt(score float64, th Thresholds) Tier {
	if score >= v.band.Lo && score < v.band.Hi {
		return v.Tier
	}
	return TierOf(score, th)
}

// calibrated is the capacity to normalise rep against, received at now
// after prev: the estimate, updated once per sample (a response's load
// repeats its sample's figures), within what is advertised, then the
// pool's; the estimate, the capacity it gives for requests (0: none) and
// when it was last updated.
func calibrated(prev *View, rep *edgeagent.Report, now int64, capacity Capacity, s *Scoring) (Capacity, Estimate, float64, int64) {
	var est Estimate
	var at int64
	if prev != nil {
		est, at = prev.Estimate, prev.EstimatedAt
	}
	bound := Advertised(rep).Merge(capacity).Merge(s.Bound)
	if s.Fixed || rep.Scope == edgeagent.ScopeHost {
		// The utilisation of a whole machine, which other edges may share,
		// says nothing of what this edge can take: an estimate would only
		// follow the traffic sent to it.
		return bound.Merge(s.Capacity), est, 0, at
	}
	if prev == nil || prev.ReceivedAt == 0 || rep.Seq == 0 || rep.Seq != prev.Report.Seq {
		var elapsed time.Duration
		if at != 0 {
			elapsed = time.Duration(now - at)
		}
		est, at = Calibrate(est, rep, elapsed), now
	}
	c, estimated := est.Within(bound), 0.0
	if est.Capacity().Requests > 0 {
		estimated = c.Requests
	}
	return c.Merge(s.Capacity), est, estimated, at
}
