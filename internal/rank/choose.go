package rank

// The one selection rule. A request offers each candidate of its pool's
// plan, with the proxy's requests in flight to it now, to a Least; Decide
// then applies the rule:
//
//  1. A lone best upstream (Plan.Lone) wins whenever it is one of two
//     candidates drawn at random (2 in n): it is the best, but alone it
//     would take every request until the next report.
//  2. Otherwise the candidate with the fewest requests in flight wins, as
//     with least_conn: candidates of one tier count as equally loaded
//     (scores are noisy), and requests that last longer on a slower edge
//     keep it out of the way.
//  3. Of two drawn at random from those tied for the fewest, one that
//     outranks the other (a lower tier and a score lower by more than the
//     hysteresis) wins, then a score lower by more than the hysteresis,
//     then chance.
//
// A candidate on probation is offered only while none of the proxy's
// requests is on it. Decide says when what it chose no longer fits the
// plan (it climbed above the plan's tiers, or nothing offered could
// serve): the caller plans again from what it sees now and decides again.

// Least keeps, of the candidates offered, a uniform random pair of those
// with the fewest requests in flight, without storing the others.
type Least struct {
	least int
	ties  uint32
	pair  [2]int32
	// the lone candidate (Plan.Lone), kept aside
	lone     int
	loneSeen bool
	// the best score offered (ModeSingle)
	best      int32
	bestScore float64
}

// Offer offers candidate k of pl (c = &pl.Candidates[k]), with inflight of
// the proxy's requests on it, which is available now. It is inlined into
// the caller's loop for the common case, a candidate busier than the least
// busy so far.
func (l *Least) Offer(pl *Plan, c *Candidate, k, inflight int, rng *Rand) {
	if c.special || l.ties == 0 || inflight <= l.least {
		l.offer(pl, c, k, inflight, rng)
	}
}

func (l *Least) offer(pl *Plan, c *Candidate, k, inflight int, rng *Rand) {
	switch {
	case !c.special:
	case c.Probation && inflight > 0:
		return
	case pl.Mode == ModeSingle:
		if s, _ := c.judge(inflight); l.ties == 0 || s < l.bestScore {
			l.best, l.bestScore, l.ties = int32(k), s, 1
		}
		return
	case pl.Lone && k == 0:
		l.lone, l.loneSeen = inflight, true
		return
	}
	if l.ties == 0 || inflight < l.least {
		l.least, l.ties, l.pair[0] = inflight, 1, int32(k)
		return
	}
	if inflight == l.least {
		l.tie(k, rng)
	}
}

// tie keeps candidate k, tied for the fewest in flight, in the pair with
// the probability that keeps the pair a uniform sample of the ties.
func (l *Least) tie(k int, rng *Rand) {
	l.ties++
	if l.ties == 2 {
		l.pair[1] = int32(k)
	} else if j := rng.Below(l.ties); j < 2 {
		l.pair[j] = int32(k)
	}
}

// Decide chooses among what was offered. It returns the candidate (its
// position in pl.Candidates; -1 for none) and the kind of selection; ok is
// false when the choice no longer fits the plan, and the caller should
// build a plan from what it sees now and decide from that.
func (pl *Plan) Decide(l *Least, rng *Rand) (k int, kind Kind, ok bool) {
	cands := pl.Candidates
	switch pl.Mode {
	case ModeNone:
		return -1, 0, true
	case ModeSingle:
		if l.ties == 0 {
			return -1, 0, false
		}
		c := &cands[l.best]
		return int(l.best), c.Kind(c.TierAt(0)), true
	case ModeFallback, ModeDrain, ModeDown:
		if l.ties == 0 {
			return -1, 0, false
		}
		k = int(l.pair[0])
		if l.ties >= 2 {
			k = int(l.pair[rng.Below(2)])
		}
		return k, cands[k].kind, true
	}
	if pl.Lone && rng.Below(uint32(len(cands))) < 2 {
		if !l.loneSeen {
			return -1, 0, false
		}
		t := cands[0].TierAt(l.lone)
		return 0, cands[0].Kind(t), t < pl.Top
	}
	if l.ties == 0 {
		return -1, 0, false
	}
	a := &cands[l.pair[0]]
	if l.ties == 1 {
		t := a.TierAt(l.least)
		return int(l.pair[0]), a.Kind(t), t <= pl.Top
	}
	as, at := a.judge(l.least)
	b := &cands[l.pair[1]]
	bs, bt := b.judge(l.least)
	switch {
	case at > pl.Top && bt > pl.Top:
		return -1, 0, false
	case Outranks(at, as, bt, bs, pl.Hysteresis):
	case Outranks(bt, bs, at, as, pl.Hysteresis), Better(bs, as, pl.Hysteresis, rng):
		return int(l.pair[1]), b.Kind(bt), true
	}
	return int(l.pair[0]), a.Kind(at), true
}

// Better reports whether score x is better than y for two upstreams with
// as many requests in flight: clearly lower (by more than tolerance), or
// as close and chance says so, so idle periods do not send everyone to the
// upstream whose score is lowest by noise.
func Better(x, y, tolerance float64, rng *Rand) bool {
	switch {
	case x < y-tolerance:
		return true
	case y < x-tolerance:
		return false
	}
	return rng.Below(2) == 0
}
