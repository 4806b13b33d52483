package rank

// Slow start, after Envoy's slow_start_config and HAProxy's slowstart: an
// upstream that joins the candidates while others have been serving (a new
// edge, or one back after being down, ejected, stale, draining or in
// maintenance) ramps from MinRamp of its share to all of it over the slow
// start window. The board stamps when it saw the upstream become available
// (Input.RampSince); the plan turns that into each candidate's ramp, and
// the one selection rule offers a ramping candidate only with its ramp's
// odds (Least.Offer): when it is passed over, the next best is chosen.

// MinRamp is the share of its full share a ramping upstream starts with.
const MinRamp = 0.1

// rampScale is the denominator of a candidate's odds of being offered.
const rampScale = 1 << 16

// Ramp is the slow-start factor, MinRamp to 1, of an upstream available
// since since (unix nanoseconds; 0: not ramping) at now, over window
// nanoseconds (0: slow start off).
func Ramp(since, now, window int64) float64 {
	if since == 0 || window <= 0 || now-since >= window {
		return 1
	}
	return max(MinRamp, float64(now-since)/float64(window))
}

// rampOdds are the odds, of rampScale, that a candidate with ramp factor f
// among n candidates is offered to a choice; 0: always (not ramping).
//
// The rule gives the candidate with the fewest requests in flight the
// request, and a new upstream has none: offered with odds p, it takes
// about p of the requests until it has caught up with the others. So that
// its share is f of its fair share (1/n), it is offered with odds f/n. At
// the end of the ramp (f = 1) it is offered always, and by then its
// requests in flight are about the others'.
func rampOdds(f float64, n int) uint16 {
	if f >= 1 {
		return 0
	}
	return uint16(min(max(f/float64(max(n, 1))*rampScale, 1), rampScale-1))
}
