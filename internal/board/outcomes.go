package board

import (
	"strconv"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/edgetier/edgetier/internal/rank"
)

// What the proxy sees of each upstream's answers, fed by the edgetier
// transport: successes and errors (status 500 and above, or a transport
// error before the first byte) over the last latencyWindow to twice that
// (two buckets, rotated with the latency windows). An upstream whose
// recent answers are mostly errors is ejected (rank.Ejection): it is no
// candidate until its ejection ends, as with Envoy's outlier detection.
type outcomes struct {
	okCur, okPrev, errCur, errPrev atomic.Int64
	okTotal, errTotal              atomic.Uint64
	// ejectedUntil is when its ejection ends, by the board's clock; 0: it
	// is in the pool.
	ejectedUntil atomic.Int64
	ejections    atomic.Uint64 // ever, for the metrics
	// Guarded by Board.ejectMu: the ejections counting toward the next
	// one's length (less one for every ejection time in the pool without
	// one), when that count last changed, and whether a refusal to eject
	// it (max_ejected) was said.
	streak  int
	lastOut int64
	capped  bool

	// Slow start, kept by the janitor: whether the upstream was available
	// at the last tick, since when, or since when it was not.
	avail                    atomic.Bool
	availSince, unavailSince int64
	// rampSince is when it became available again and started ramping up;
	// 0: not ramping.
	rampSince atomic.Int64
}

// recent is the upstream's answers and errors in the window.
func (o *outcomes) recent() (answers, errors int64) {
	errors = o.errCur.Load() + o.errPrev.Load()
	return errors + o.okCur.Load() + o.okPrev.Load(), errors
}

func (o *outcomes) rotate() {
	o.okPrev.Store(o.okCur.Swap(0))
	o.errPrev.Store(o.errCur.Swap(0))
}

func (o *outcomes) reset() {
	o.okCur.Store(0)
	o.okPrev.Store(0)
	o.errCur.Store(0)
	o.errPrev.Store(0)
}

// ObserveAnswer records an answer of dial to a request sent with inflight
// of ours in flight to it (itself included), d after it was sent: status
// below 500 is a success, whose time to first byte counts toward the
// upstream's latency; 500 and above, or 0 for a transport error before
// the first byte, is an error, which never counts as fast and may eject
// the upstream.
func (b *Board) ObserveAnswer(dial string, status int, d time.Duration, inflight int) {
	e := b.edge(dial)
	if e == nil {
		return
	}
	o := &e.outcomes
	if status > 0 && status < 500 {
		e.latency.observe(d, inflight)
		o.okCur.Add(1)
		o.okTotal.Add(1)
		return
	}
	o.errCur.Add(1)
	o.errTotal.Add(1)
	b.judgeErrors(e, status)
}

// judgeErrors ejects e if its recent answers are mostly errors and the
// pool allows one more ejected upstream.
func (b *Board) judgeErrors(e *Edge, status int) {
	o := &e.outcomes
	rule := &b.cfg.Load().Ejection
	answers, errors := o.recent()
	if o.ejectedUntil.Load() != 0 || !rule.Ejects(answers, errors) {
		return
	}
	b.ejectMu.Lock()
	if o.ejectedUntil.Load() != 0 {
		b.ejectMu.Unlock()
		return
	}
	now := b.clock()
	list := b.Edges()
	ejected := 0
	for _, other := range list {
		if other.outcomes.ejectedUntil.Load() != 0 {
			ejected++
		}
	}
	ratio := 100 * float64(errors) / float64(answers)
	if allowed := rank.MaxEjectedOf(len(list), rule.MaxEjected); ejected >= allowed {
		if !o.capped {
			o.capped = true
			b.AddEvent(e.dial, "eject", "%d of %d recent answers were errors (%.0f %%), but max_ejected keeps it in: %d of %d upstreams are ejected already",
				errors, answers, ratio, ejected, len(list))
		}
		b.ejectMu.Unlock()
		return
	}
	o.capped = false
	o.streak++
	d := rule.Duration(o.streak)
	o.ejectedUntil.Store(now + int64(d))
	o.ejections.Add(1)
	o.lastOut = now
	o.reset()
	b.ejectMu.Unlock()
	b.logger.Warn("upstream ejected for its errors", zap.String("upstream", e.dial), zap.Int64("answers", answers),
		zap.Int64("errors", errors), zap.Int("last_status", status), zap.Duration("for", d))
	b.AddEvent(e.dial, "eject", "%d of %d recent answers were errors (%.0f %%, the last %s): ejected for %s (ejection %d)",
		errors, answers, ratio, statusText(status), d, o.streak)
	b.changed(now)
}

func statusText(status int) string {
	if status == 0 {
		return "a transport error"
	}
	return "status " + strconv.Itoa(status)
}

// updateOutcomes rotates the windows of list, the board's upstreams
// (when rotate), returns those whose ejection ended, and lets the count
// toward the next ejection's length decay (each tick).
func (b *Board) updateOutcomes(list []*Edge, now int64, rotate bool) {
	rule := &b.cfg.Load().Ejection
	b.ejectMu.Lock()
	defer b.ejectMu.Unlock()
	for _, e := range list {
		o := &e.outcomes
		if rotate {
			o.rotate()
		}
		until := o.ejectedUntil.Load()
		switch {
		case until != 0 && now >= until:
			o.ejectedUntil.Store(0)
			o.lastOut = now
			b.AddEvent(e.dial, "return", "back after an ejection of %s; its answers are judged afresh", rule.Duration(o.streak))
		case until == 0 && o.streak > 0 && now-o.lastOut >= int64(rule.BaseTime):
			o.streak--
			o.lastOut = now
		}
		if answers, errors := o.recent(); rotate && o.capped && !rule.Ejects(answers, errors) {
			o.capped = false
		}
	}
}

// outcomeStatus fills in st's ejection and slow start at now.
func (e *Edge) outcomeStatus(st *Status, now time.Time) {
	o := &e.outcomes
	if until := o.ejectedUntil.Load(); until != 0 {
		st.Ejected, st.EjectedFor = true, max(time.Duration(until-now.UnixNano()).Seconds(), 0)
	}
	st.Ejections = o.ejections.Load()
	if answers, errors := o.recent(); answers > 0 {
		st.ErrorRatio = float64(errors) / float64(answers)
	}
	st.Errors = o.errTotal.Load()
	st.Answers = st.Errors + o.okTotal.Load()
	st.Ramp = rank.Ramp(o.rampSince.Load(), now.UnixNano(), int64(e.board.cfg.Load().SlowStart))
}
