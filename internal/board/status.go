package board

import (
	"time"

	"github.com/edgetier/edgetier/edgeagent"
	"github.com/edgetier/edgetier/internal/rank"
)

// Status is the board's view of one upstream, for metrics and the dashboard.
type Status struct {
	Upstream   string
	Edge       string // as the agent names itself: display only
	State      edgeagent.State
	Score      float64 // corrected by the proxy's in-flight requests
	Tier       rank.Tier
	Components rank.Components
	// Capacity is what the report was normalised against: the edge's
	// calibrated estimate, bounded by what is advertised.
	Capacity   rank.Capacity
	ReportAge  float64 // seconds; -1 before the first report
	Stale      bool
	Down       bool
	Trusted    bool
	InFlight   int
	Report     *edgeagent.Report
	Slow       bool
	Link       Link
	Latency    rank.Latency
	Selections [rank.NumKinds]uint64
	// Ejected: taken out for its errors, for EjectedFor more seconds.
	Ejected    bool
	EjectedFor float64
	Ejections  uint64 // ever
	// ErrorRatio is the share of errors among its recent answers, 0 to 1
	// (0 without answers).
	ErrorRatio      float64
	Answers, Errors uint64  // ever
	Ramp            float64 // its slow-start factor, rank.MinRamp to 1
}

// Status is the upstream's status at now.
func (e *Edge) Status(now time.Time) Status {
	st := Status{Upstream: e.dial, ReportAge: -1, Stale: true, InFlight: e.inFlight(),
		Slow: e.latency.slow.Load(), Latency: e.latency.current(), Link: Link{Headroom: true}}
	for k := range e.selections {
		st.Selections[k] = e.selections[k].Load()
	}
	e.outcomeStatus(&st, now)
	v := e.view.Load()
	if v == nil {
		return st
	}
	st.Down = v.Down
	if v.ReceivedAt == 0 {
		return st
	}
	cfg := e.board.cfg.Load()
	rep := v.Report
	st.Report = &rep
	st.Edge, st.State = rep.Edge, rep.State
	st.ReportAge = now.Sub(time.Unix(0, v.ReceivedAt)).Seconds()
	st.Stale = v.Stale(now.UnixNano(), int64(cfg.Scoring.StaleAfter))
	st.Trusted = v.Trusted && !v.Down
	st.Components = v.Components
	st.Capacity = v.Capacity
	st.Components[rank.Streams] = v.StreamsAt(st.InFlight)
	st.Score = v.Corrected(st.InFlight)
	st.Link = e.link(v, now.UnixNano(), cfg.Headroom)
	if st.Trusted {
		st.Tier = v.TierAt(st.Score, cfg.Scoring.Thresholds)
	}
	return st
}

// TotalSelections is every selection of the upstream, whatever its kind.
func (st *Status) TotalSelections() uint64 {
	var n uint64
	for _, c := range st.Selections {
		n += c
	}
	return n
}
