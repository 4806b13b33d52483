package rank

import "time"

// Latency is what the proxy measured of one upstream's answers, in
// nanoseconds (0: not enough answers to count).
type Latency struct {
	// Base is the fastest answer of the last window: load and noise raise
	// an edge's average and tail, not its fastest answer; a slow link
	// raises every answer.
	Base int64
	// Typical is a moving average of the answers.
	Typical int64
	// Service is a moving average of each answer divided by the requests in
	// flight to the upstream when it was sent: it stays level on a loaded
	// edge and soars on one starved of CPU.
	Service int64
}

// How far apart "clearly slower" is: equal edges are never that far apart,
// so the judgement never moves viewers between healthy edges.
const (
	BaseRatio    = 3                     // base latency this many times the pool's best …
	BaseGap      = 10 * time.Millisecond // … and this much above it
	ServiceRatio = 4                     // service time this many times the pool's best …
	ServiceGap   = 20 * time.Millisecond // … and this much above it
	SteadyRatio  = 2                     // a typical answer within this many times the fastest: a fixed delay, not a queue
)

// BestLatency is the pool's best of each measure among upstreams with a
// base latency; zero when none has one.
func BestLatency(ls []Latency) Latency {
	var best Latency
	for _, l := range ls {
		if l.Base <= 0 {
			continue
		}
		if best.Base == 0 {
			best = l
			continue
		}
		best.Base, best.Typical, best.Service = min(best.Base, l.Base), min(best.Typical, l.Typical), min(best.Service, l.Service)
	}
	return best
}

// SlowerThan reports whether l is clearly slower than the pool's best: a
// base latency clearly above the best's and above what the quickest edge
// typically answers in (when the fast edges are loaded past it, the slow
// one helps), or a service time clearly above the best's.
func (l Latency) SlowerThan(best Latency) bool {
	return (clearly(l.Base, best.Base, BaseRatio, BaseGap) && l.Base > best.Typical) ||
		clearly(l.Service, best.Service, ServiceRatio, ServiceGap)
}

// Helps reports whether l, though judged slower, now answers sooner than
// the pool's quickest upstreams typically do (they are loaded past its
// fastest answer) and steadily: its typical answer within SteadyRatio of
// its fastest. An edge behind a slow link, whose every answer waits the
// same delay, then relieves them; a starved one, whose answers queue,
// never does.
func (l Latency) Helps(best Latency) bool {
	return l.Base > 0 && l.Base <= best.Typical && l.Typical <= SteadyRatio*l.Base
}

func clearly(a, b int64, ratio int64, gap time.Duration) bool {
	return b > 0 && a >= ratio*b && a-b >= int64(gap)
}
