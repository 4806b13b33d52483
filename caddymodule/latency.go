package caddymodule

import (
	"math"
	"sync/atomic"
	"time"
)

// latencyDecay is the time constant with which an upstream's observed
// latency fades when it gets no new observations, so an edge avoided for
// being slow is tried again after a while.
const latencyDecay = 5 * time.Second

// latency is a peak-sensitive moving average of the time to first byte the
// proxy observes from one upstream (the edgetier transport feeds it): a
// slower answer raises it at once, faster ones lower it gradually, and it
// decays with time. Lock-free: a lost update under contention is harmless.
type latency struct {
	nanos atomic.Int64 // the average at the last update
	at    atomic.Int64 // unix nanoseconds of the last update
}

// observe records one time to first byte.
func (l *latency) observe(d time.Duration, now int64) {
	prev := l.current(now)
	next := float64(d)
	if next < prev {
		// Falling: a moving average with a 10-request memory.
		next = prev + (next-prev)/10
	}
	l.nanos.Store(int64(next))
	l.at.Store(now)
}

// current is the average decayed to now; 0 when never observed.
func (l *latency) current(now int64) float64 {
	v := l.nanos.Load()
	if v == 0 {
		return 0
	}
	age := float64(now - l.at.Load())
	if age <= 0 {
		return float64(v)
	}
	return float64(v) * math.Exp(-age/float64(latencyDecay))
}

// observeLatency records an upstream's time to first byte.
func (b *board) observeLatency(dial string, d time.Duration) {
	if e := b.entries.Load().byDial[dial]; e != nil {
		e.latency.observe(d, b.clock.Load())
	}
}
