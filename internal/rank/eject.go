package rank

import (
	"math"
	"time"
)

// Ejection takes an upstream whose recent answers are mostly errors (status
// 500 and above, or a transport error before the first byte) out of the
// candidates for a while, as Envoy's outlier detection does: an edge that
// answers 503 in a millisecond must not look like the fastest edge.
type Ejection struct {
	// ErrorRatio is the share of errors among the recent answers, 0 to 1,
	// at which an upstream is ejected; 0 turns ejection off.
	ErrorRatio float64
	// MinAnswers is how many recent answers an upstream needs before its
	// errors are judged.
	MinAnswers int
	// BaseTime is the first ejection's length; each further one lasts
	// BaseTime times the number of ejections, up to MaxTime.
	BaseTime, MaxTime time.Duration
	// MaxEjected is the share of the pool, 0 to 1, that may be ejected at
	// once; past it, none is left out (panic).
	MaxEjected float64
}

// DefaultEjection is the ejection of a pool whose policy says nothing.
var DefaultEjection = Ejection{ErrorRatio: 0.5, MinAnswers: 5, BaseTime: 30 * time.Second, MaxTime: 5 * time.Minute, MaxEjected: 0.5}

// Ejects reports whether an upstream with answers recent answers, errors
// of them errors, is to be ejected.
func (e *Ejection) Ejects(answers, errors int64) bool {
	return e.ErrorRatio > 0 && answers >= int64(max(e.MinAnswers, 1)) && float64(errors) >= e.ErrorRatio*float64(answers)
}

// Duration is the length of an upstream's nth ejection (n ≥ 1): the base
// time n times, capped at the maximum.
func (e *Ejection) Duration(n int) time.Duration {
	d := e.BaseTime * time.Duration(max(n, 1))
	if e.MaxTime > 0 && (d > e.MaxTime || d < 0) {
		d = e.MaxTime
	}
	return d
}

// MaxEjectedOf is how many upstreams of a pool of n may be ejected at once
// with fraction of them allowed (rounded down; at least one upstream is
// never ejected).
func MaxEjectedOf(n int, fraction float64) int {
	if n <= 1 || !(fraction > 0) {
		return 0
	}
	return min(int(math.Floor(float64(n)*min(fraction, 1)+1e-9)), n-1)
}

// panics reports whether more of in are ejected than the pool allows: then
// ejection is ignored and every upstream is a candidate again.
func panics(in []Input, fraction float64) bool {
	ejected := 0
	for i := range in {
		if in[i].Ejected {
			ejected++
		}
	}
	return ejected > 0 && ejected > MaxEjectedOf(len(in), fraction)
}
