package rank

import "math"

// Tier is how loaded an upstream is: 1 (lightly loaded) to 4 (critical);
// 0 is no tier (no trusted fresh report).
type Tier uint8

// TierOf is the tier of score, without hysteresis.
func TierOf(score float64, th Thresholds) Tier {
	for i, bound := range th {
		if score < bound {
			return Tier(i + 1)
		}
	}
	return 4
}

// Band is the range of scores [Lo, Hi) that keeps an upstream in a tier:
// the tier's bounds widened by the hysteresis, so an upstream near a
// boundary does not flap between tiers every report.
type Band struct{ Lo, Hi float64 }

// BandOf is tier t's band.
func BandOf(t Tier, th Thresholds, hysteresis float64) Band {
	b := Band{math.Inf(-1), math.Inf(1)}
	if t > 1 {
		b.Lo = th[t-2] - hysteresis
	}
	if t < 4 {
		b.Hi = th[t-1] + hysteresis
	}
	return b
}

// Keep is the tier of score for an upstream that was in tier prev (0 for
// none): prev while the score stays in prev's band, else the tier the
// score falls in.
func Keep(score float64, prev Tier, th Thresholds, hysteresis float64) Tier {
	if prev < 1 || prev > 4 {
		return TierOf(score, th)
	}
	if b := BandOf(prev, th, hysteresis); score >= b.Lo && score < b.Hi {
		return prev
	}
	return TierOf(score, th)
}

// Outranks reports whether an upstream in tier xt with score xs is
// clearly better than one in yt with ys: a lower tier, and a score lower
// by more than the hysteresis. Scores closer than that are noise even
// across a tier boundary (or inverted, by tiers kept by hysteresis), and
// strict tiers would send every request to one side of it until the next
// report, from every balancer that shares the reports: such upstreams are
// compared as one tier.
func Outranks(xt Tier, xs float64, yt Tier, ys float64, hysteresis float64) bool {
	return xt < yt && xs < ys-hysteresis
}
