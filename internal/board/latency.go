package board

import (
	"sync/atomic"
	"time"

	"github.com/edgetier/edgetier/internal/rank"
)

// What the proxy itself sees of each upstream's time to first byte, fed by
// the edgetier transport, over the last latencyWindow to twice that (two
// buckets); rank.Latency says what the measures mean.
const (
	latencyWindow  = 5 * time.Second // long enough for a few answers of an idle edge
	latencySamples = 3               // answers in the window before the measures count
	averageWeight  = 0.1             // of a new answer in the moving averages: about ten answers
	// A judgement of slow answers holds for slowHold, twice as long with
	// each judgement in a row (until its answers have been in time for
	// maxSlowHold), up to maxSlowHold; then the edge's answers are
	// forgotten and it is tried again one request at a time. An edge
	// caught in a passing stall (the host busy for a moment) is back
	// within a second; one that stays slow is offered three requests per
	// hold, as few as when the window had to empty first, even when a
	// starved edge answers those three in time and is slow again as soon
	// as a crowd follows.
	slowHold    = 500 * time.Millisecond
	maxSlowHold = 8 * time.Second
	// slowConfirm is how long an edge in good standing must stay clearly
	// slower before it is judged so: the moving averages follow about
	// ten answers, a tenth of a second on a busy edge, and a pause of its
	// process or host that short is no reason to move viewers. In a row
	// of judgements there is no wait: a starved edge would take a crowd
	// meanwhile.
	slowConfirm = 250 * time.Millisecond
	// rampAnswers ends the ramp after a hold: by then the edge may have as
	// many requests in flight as any edge of a busy pool.
	rampAnswers = 64
)

// latency is one upstream's measures. Observations come from every proxied
// request, concurrently; a sample lost to a rotation is harmless.
type latency struct {
	cur, prev   atomic.Int64 // minimum nanoseconds; 0: no sample
	nCur, nPrev atomic.Int64
	average     atomic.Int64 // moving average of answers; 0: reset (no sample for a window)
	perRequest  atomic.Int64 // moving average of answer / in flight; 0: reset
	measures    atomic.Pointer[rank.Latency]
	slow        atomic.Bool // clearly slower than the pool's best
	announced   atomic.Bool // a slow episode was reported
	// probation: it was slow and its hold ended, or its window emptied:
	// how many of the proxy's requests it may have in flight (0: any).
	// It is tried one request at a time until its measures count, then
	// with as many as it has answered since its hold (ramping), so a
	// starved edge, which answers one request in time and a crowd late,
	// is caught with a few, not sent the crowd.
	probation atomic.Int32
	ramping   atomic.Bool
	answered  atomic.Int64 // answers since they were last forgotten
	// heldUntil is when the judgement of its answers as slow ends (unix
	// nanoseconds; 0: none), heldEnded when the last one ended; holds
	// counts the judgements in a row.
	heldUntil, heldEnded atomic.Int64
	holds                atomic.Int32
	// suspectSince is when its answers were first seen clearly slower,
	// not yet judged so; inTimeSince since when they have counted and been
	// in time, without a hold (unix nanoseconds; 0: not).
	suspectSince, inTimeSince atomic.Int64
}

// observe records one answer's time to first byte d, for a request sent
// with inflight of ours in flight to the upstream (itself included).
func (l *latency) observe(d time.Duration, inflight int) {
	n := max(int64(d), 1)
	for {
		old := l.cur.Load()
		if old != 0 && old <= n {
			break
		}
		if l.cur.CompareAndSwap(old, n) {
			break
		}
	}
	l.nCur.Add(1)
	l.answered.Add(1)
	movingAverage(&l.average, float64(n))
	movingAverage(&l.perRequest, float64(n)/float64(max(inflight, 1)))
}

func movingAverage(a *atomic.Int64, sample float64) {
	if prev := a.Load(); prev > 0 {
		sample = float64(prev) + averageWeight*(sample-float64(prev))
	}
	a.Store(max(int64(sample), 1))
}

// rotate starts a new window. An upstream without a sample for a whole
// window starts its averages afresh, so a recovered edge is judged by its
// new answers, not by a memory of its slow ones. A held edge keeps the
// answers it was judged by until its hold ends: they tell whether it helps
// the loaded others (rank.Latency.Helps).
func (l *latency) rotate() {
	if l.heldUntil.Load() != 0 {
		return
	}
	l.prev.Store(l.cur.Swap(0))
	n := l.nCur.Swap(0)
	l.nPrev.Store(n)
	if n == 0 {
		l.average.Store(0)
		l.perRequest.Store(0)
	}
}

// forget drops every answer, for a judgement afresh.
func (l *latency) forget() {
	l.cur.Store(0)
	l.prev.Store(0)
	l.nCur.Store(0)
	l.nPrev.Store(0)
	l.average.Store(0)
	l.perRequest.Store(0)
	l.answered.Store(0)
}

// release ends a hold that is over at now: the answers are forgotten, for
// a judgement afresh.
func (l *latency) release(now int64) {
	if until := l.heldUntil.Load(); until != 0 && now >= until {
		l.heldUntil.Store(0)
		l.heldEnded.Store(until)
		l.forget()
		l.ramping.Store(true)
	}
}

// allowed is how many of the proxy's requests the upstream may have in
// flight, given whether its measures count (0: any): one while they do not
// after a slow episode, then after a hold as many as it has answered
// since, until rampAnswers.
func (l *latency) allowed(counted bool) int32 {
	n := l.answered.Load()
	switch {
	case !counted && l.announced.Load():
		return 1
	case !l.ramping.Load():
		return 0
	case n >= rampAnswers:
		l.ramping.Store(false)
		return 0
	}
	return int32(max(n, 1))
}

// judge judges the answers at now, given whether they count (enough of
// them) and are clearly slower than the pool's best, and reports whether
// they are held slow.
func (l *latency) judge(now int64, counted, slower bool) bool {
	held := l.heldUntil.Load() != 0
	switch {
	case slower && !held && l.confirmed(now):
		l.hold(now)
		held = true
	case !slower:
		l.suspectSince.Store(0)
	}
	// In time while neither held nor suspect; a suspicion keeps the
	// standing it began in.
	switch {
	case held || !counted:
		l.inTimeSince.Store(0)
	case l.suspectSince.Load() == 0 && l.inTimeSince.Load() == 0:
		l.inTimeSince.Store(now)
	}
	return held
}

// confirmed reports whether answers clearly slower at now are judged so:
// in a row of judgements at once, else once they stay so for slowConfirm.
func (l *latency) confirmed(now int64) bool {
	if l.inRow(now) {
		return true
	}
	since := l.suspectSince.Load()
	if since == 0 {
		l.suspectSince.Store(now)
		return false
	}
	return now-since >= int64(slowConfirm)
}

// inRow reports whether a judgement at now continues a row: there was a
// hold, and its answers have not been in time for maxSlowHold since. An
// edge without answers (no viewers came, or it is kept off) stays in its
// row: a starved edge is not let back into good standing by idling.
func (l *latency) inRow(now int64) bool {
	if l.heldEnded.Load() == 0 {
		return false
	}
	since := l.inTimeSince.Load()
	return since == 0 || now-since <= int64(maxSlowHold)
}

// hold judges the answers slow from now for the hold this judgement in a
// row earns.
func (l *latency) hold(now int64) {
	l.suspectSince.Store(0)
	if !l.inRow(now) {
		l.holds.Store(0)
	}
	n := min(l.holds.Add(1), 8) // past 5 the hold is maxSlowHold anyway
	l.heldUntil.Store(now + int64(min(slowHold<<(n-1), maxSlowHold)))
}

// refresh recomputes the measures from the windows.
func (l *latency) refresh() rank.Latency {
	var m rank.Latency
	if l.nCur.Load()+l.nPrev.Load() >= latencySamples {
		for _, v := range []int64{l.cur.Load(), l.prev.Load()} {
			if v > 0 && (m.Base == 0 || v < m.Base) {
				m.Base = v
			}
		}
		m.Typical, m.Service = l.average.Load(), l.perRequest.Load()
	}
	l.measures.Store(&m)
	return m
}

// current is the measures as of the last refresh.
func (l *latency) current() rank.Latency {
	if m := l.measures.Load(); m != nil {
		return *m
	}
	return rank.Latency{}
}

// judgeLatencies refreshes every upstream's measures and marks the clearly
// slower ones (each tick, at now; rotate starts a window): slower in the
// answers the proxy saw, or in its agent's answers to the polls.
func (b *Board) judgeLatencies(now int64, rotate bool) {
	list := b.Edges()
	ms := make([]rank.Latency, len(list))
	probes := make([]rank.Latency, len(list))
	for i, e := range list {
		if rotate {
			e.latency.rotate()
			e.probe.rotate()
		}
		e.latency.release(now)
		ms[i], probes[i] = e.latency.refresh(), e.probe.refresh()
	}
	best, bestProbe := rank.BestLatency(ms), rank.BestLatency(probes)
	for i, e := range list {
		m, p := ms[i], probes[i]
		held := e.latency.judge(now, m.Base > 0, m.SlowerThan(best))
		// The polls judge an edge only while the proxy has no answers of
		// its own to judge it by (the policy alone, or an edge kept off):
		// a few polls an interval are a thin sample beside every answer,
		// and a busy edge's polls wait behind its viewers'.
		probeSlower := p.SlowerThan(bestProbe)
		slowAnswers, slowProbe := held, m.Base == 0 && probeSlower
		e.latency.probation.Store(e.latency.allowed(m.Base > 0))
		// A hold keeps an edge off for being slower; while the others are
		// loaded past its fastest answer it no longer is, and it takes
		// viewers within its hold (the hold, its row and its news go on).
		e.latency.slow.Store((slowAnswers && !m.Helps(best)) || slowProbe)
		// Said once per episode: a slow edge's window empties while it is
		// kept off, and it is probed again, without news.
		switch {
		case slowAnswers && !e.latency.announced.Load():
			e.latency.announced.Store(true)
			b.AddEvent(e.dial, "slow", "answers in %s at best, %s typically, %s per request in flight (the pool's best: %s, %s, %s): kept off while others serve",
				rounded(m.Base), rounded(m.Typical), rounded(m.Service), rounded(best.Base), rounded(best.Typical), rounded(best.Service))
		case !slowAnswers && m.Base > 0 && e.latency.announced.Load():
			e.latency.announced.Store(false)
			b.AddEvent(e.dial, "slow", "no longer clearly slower (%s at best)", rounded(m.Base))
		}
		switch {
		case slowProbe && !e.probe.announced.Load():
			e.probe.announced.Store(true)
			b.AddEvent(e.dial, "slow", "its agent answers polls in %s at best, %s typically (the pool's best: %s, %s): kept off while others serve",
				rounded(p.Base), rounded(p.Typical), rounded(bestProbe.Base), rounded(bestProbe.Typical))
		case !probeSlower && p.Base > 0 && e.probe.announced.Load():
			e.probe.announced.Store(false)
			b.AddEvent(e.dial, "slow", "its agent answers polls in time again (%s at best)", rounded(p.Base))
		}
	}
}

// rounded is n nanoseconds for a message.
func rounded(n int64) time.Duration { return time.Duration(n).Round(100 * time.Microsecond) }
