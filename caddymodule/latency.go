package caddymodule

import (
	"math"
	"sync/atomic"
	"time"
)

// What the proxy itself sees of each upstream's speed: the time to first
// byte of its own requests, fed by the edgetier transport. An agent cannot
// see a slow link or middlebox in front of its edge, and an edge starved
// of CPU reports its load late and looks least loaded exactly when it is
// too slow to be given work; the proxy sees both.
//
// Two measures, over the last latencyWindow to latencyWindow×2:
//   - the base latency, the fastest answer (a windowed minimum, as BBR
//     keeps of round trips). Load and noise raise an edge's average and
//     tail, not its fastest answer; a slow link raises every answer.
//   - the service time, a moving average of about ten answers of the time
//     to first byte divided by our requests in flight to the upstream
//     when it was sent. Queueing behind our own requests raises an edge's
//     answers in proportion to them, so loaded equal edges keep equal
//     service times; a CPU starved by its quota still answers fast now
//     and then, when its budget is fresh, but takes long per request.
//
// An upstream is slow when its base is clearly above the pool's best
// (latencyRatio times and latencyGap more) and above what the quickest
// edge typically answers in (when the fast edges are loaded past it, it
// helps), or when its service time is clearly above the pool's best
// (serviceRatio times and serviceGap more). Select keeps viewers off a
// slow upstream while another can serve. Once it gets no requests its
// window empties and it is tried again, a few requests every window;
// equal edges are never that far apart.
const (
	latencyRatio   = 3
	latencyGap     = 10 * time.Millisecond
	serviceRatio   = 4
	serviceGap     = 20 * time.Millisecond
	typicalWeight  = 0.1
	latencyWindow  = 5 * time.Second
	latencySamples = 3 // in the window before either measure counts
)

// latency is one upstream's windowed minimum of time to first byte, in
// two buckets (the current window and the one before). Observations come
// from every proxied request, concurrently; a sample lost to a rotation
// is harmless.
type latency struct {
	cur, prev   atomic.Int64 // minimum nanoseconds; 0: no sample
	nCur, nPrev atomic.Int64
	base        atomic.Int64 // of both buckets, refreshed each tick; 0: unknown
	average     atomic.Int64 // moving average of answers; 0: reset (no sample for a window)
	perRequest  atomic.Int64 // moving average of answer / in flight; 0: reset
	typical     atomic.Int64 // average while it counts, refreshed each tick; 0: unknown
	service     atomic.Int64 // perRequest while it counts, refreshed each tick; 0: unknown
	slow        atomic.Bool  // clearly slower than the pool's best
	announced   atomic.Bool  // a slow episode was reported
	// probation: it was slow and its window emptied. It is tried again
	// one request at a time until its measures count, so a starved edge,
	// whose answers take long to come back, is not sent a crowd meanwhile.
	probation atomic.Bool
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
	movingAverage(&l.average, float64(n))
	movingAverage(&l.perRequest, float64(n)/float64(max(inflight, 1)))
}

func movingAverage(a *atomic.Int64, sample float64) {
	if prev := a.Load(); prev > 0 {
		sample = float64(prev) + typicalWeight*(sample-float64(prev))
	}
	a.Store(max(int64(sample), 1))
}

// rotate starts a new window. An upstream without a sample for a whole
// window starts its average afresh, so a recovered edge is judged by its
// new answers, not by a memory of its slow ones.
func (l *latency) rotate() {
	l.prev.Store(l.cur.Swap(0))
	n := l.nCur.Swap(0)
	l.nPrev.Store(n)
	if n == 0 {
		l.average.Store(0)
		l.perRequest.Store(0)
	}
}

// refresh recomputes the measures from the windows.
func (l *latency) refresh() (base, typical, service int64) {
	if l.nCur.Load()+l.nPrev.Load() >= latencySamples {
		for _, v := range []int64{l.cur.Load(), l.prev.Load()} {
			if v > 0 && (base == 0 || v < base) {
				base = v
			}
		}
		typical, service = l.average.Load(), l.perRequest.Load()
	}
	l.base.Store(base)
	l.typical.Store(typical)
	l.service.Store(service)
	return base, typical, service
}

// keptOff reports whether Select should pass over the upstream, with
// inflight of our requests on it, while another can serve.
func (l *latency) keptOff(inflight int) bool {
	return l.slow.Load() || (inflight > 0 && l.probation.Load())
}

// clearlySlower reports whether base latency a is unmistakably above b.
func clearlySlower(a, b int64) bool {
	return b > 0 && a >= latencyRatio*b && a-b >= int64(latencyGap)
}

// slowerService reports whether service time a is unmistakably above b.
func slowerService(a, b int64) bool {
	return b > 0 && a >= serviceRatio*b && a-b >= int64(serviceGap)
}

// rounded is n nanoseconds for a message.
func rounded(n int64) time.Duration { return time.Duration(n).Round(100 * time.Microsecond) }

// observeLatency records the time to first byte of a request to dial,
// sent with inflight of ours in flight to it.
func (b *board) observeLatency(dial string, d time.Duration, inflight int) {
	if e := b.entries.Load().byDial[dial]; e != nil {
		e.latency.observe(d, inflight)
	}
}

// judgeLatencies refreshes every upstream's base latency and marks the
// clearly slower ones (the janitor, each tick; rotate starts a window).
func (b *board) judgeLatencies(rotate bool) {
	es := b.entries.Load()
	best, bestTypical, bestService := int64(math.MaxInt64), int64(math.MaxInt64), int64(math.MaxInt64)
	for _, e := range es.byDial {
		if rotate {
			e.latency.rotate()
		}
		if base, typical, service := e.latency.refresh(); base > 0 {
			best, bestTypical, bestService = min(best, base), min(bestTypical, typical), min(bestService, service)
		}
	}
	if best == math.MaxInt64 {
		best, bestTypical, bestService = 0, 0, 0
	}
	for _, e := range es.byDial {
		base, typical := e.latency.base.Load(), e.latency.typical.Load()
		slow := (clearlySlower(base, best) && base > bestTypical) || slowerService(e.latency.service.Load(), bestService)
		e.latency.probation.Store(base == 0 && e.latency.announced.Load())
		e.latency.slow.Store(slow)
		// Said once per episode: a slow edge's window empties while it is
		// kept off, and it is probed again, without news.
		switch {
		case slow && !e.latency.announced.Load():
			e.latency.announced.Store(true)
			b.events.add(e.dial, "slow", "answers in %s at best, %s typically, %s per request in flight (the pool's best: %s, %s, %s): kept off while others serve",
				rounded(base), rounded(typical), rounded(e.latency.service.Load()), rounded(best), rounded(bestTypical), rounded(bestService))
		case !slow && base > 0 && e.latency.announced.Load():
			e.latency.announced.Store(false)
			b.events.add(e.dial, "slow", "no longer clearly slower (%s at best)", rounded(base))
		}
	}
}
