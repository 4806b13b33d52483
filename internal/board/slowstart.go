package board

import (
	"time"

	"github.com/edgetier/edgetier/internal/rank"
)

// trackRamps notes, each tick, which upstreams of list (the board's) are
// available, and starts the slow start of one that becomes available while
// another has been available since before it went (or, new, was first
// tracked): a new edge
// joining a serving pool, or one back after being down, ejected, stale,
// draining or in maintenance. Upstreams that become available together
// (the pool starting, or coming back after every edge was down) do not
// ramp: there is no one else to carry their share, as with HAProxy, whose
// slowstart does not apply at startup.
func (b *Board) trackRamps(list []*Edge, now int64) {
	cfg := b.cfg.Load()
	window := int64(cfg.SlowStart)
	stale := int64(cfg.Scoring.StaleAfter)
	for _, e := range list {
		o := &e.outcomes
		avail := e.availableAt(now, stale)
		switch {
		case avail && !o.avail.Load():
			o.avail.Store(true)
			o.availSince = now
			if window > 0 && servedWithout(list, e) {
				o.rampSince.Store(now)
				b.AddEvent(e.dial, "ramp", "available: ramps up from %.0f %% to its full share over %s (slow start)",
					100*rank.MinRamp, time.Duration(window))
			}
		case !avail && o.avail.Load():
			o.avail.Store(false)
			o.unavailSince = now
			o.rampSince.Store(0)
		}
		if since := o.rampSince.Load(); since != 0 && rank.Ramp(since, now, window) >= 1 {
			o.rampSince.Store(0)
		}
	}
}

// servedWithout reports whether another upstream of list has been
// available since before e went, or was first tracked.
func servedWithout(list []*Edge, e *Edge) bool {
	for _, other := range list {
		if other != e && other.outcomes.avail.Load() && other.outcomes.availSince <= e.outcomes.unavailSince {
			return true
		}
	}
	return false
}

// availableAt reports whether the upstream can be a candidate at now for
// slow start's purposes: not ejected, not down, not draining or in
// maintenance, and its report fresh (trusted or warming up) or it has
// never had one.
func (e *Edge) availableAt(now, stale int64) bool {
	if e.outcomes.ejectedUntil.Load() != 0 {
		return false
	}
	v := e.view.Load()
	switch v.Code(now, stale) {
	case rank.CodeTrusted:
		return true
	case rank.CodeUnknown:
		return v == nil || v.ReceivedAt == 0 || !v.Stale(now, stale)
	}
	return false
}
