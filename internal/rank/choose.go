package rank

// The one selection rule. A request offers each candidate of its pool's
// plan, with the proxy's requests in flight to it now, to a Least; Decide
// then applies the rule:
//
//  1. A lone best upstream (Plan.Lone) wins whenever it is one of two
//     candidates drawn at random (2 in n): it is the best, but alone it
//     would take every request until the next report. It does not while
//     its load is more than LoneLoad allows: a
//     report that calls it idle is not believed against what the proxy
//     sees (a lying agent, or an edge whose answers take long).
//  2. Otherwise the candidate with the least load wins: its requests in
//     flight, with this one, weighed by how little it can take against
//     the others (Candidate.Load), as with weighted least-request
//     balancing: candidates of one tier count as equally loaded (scores
//     are noisy), and requests that last longer on a slower edge keep it
//     out of the way.
//  3. Of two drawn at random from those tied for the fewest, one that
//     outranks the other (a lower tier and a score lower by more than the
//     hysteresis) wins, then a score lower by more than the hysteresis,
//     then chance. Where the plan knows that no two candidates can
//     differ so at that load (its evenLoad), chance picks without judging.
//
// A candidate on probation is offered only while fewer of the proxy's
// requests than its probation allows are on it. A ramping candidate (slow
// start) is offered only with its ramp's odds: passed over, it is kept
// aside, and chosen only when nothing else was offered. Ejected upstreams are not candidates at all
// (Build). Decide says when what it chose no longer fits the
// plan (it climbed above the plan's tiers, or nothing offered could
// serve): the caller plans again from what it sees now and decides again.

// Least keeps, of the candidates offered, a uniform random pair of those
// with the least load, without storing the others.
type Least struct {
	least int // load
	// the lone candidate (Plan.Lone), kept aside
	lone int // in flight
	// the best score offered (ModeSingle)
	bestScore float64
	rng       Rand
	ties      uint32
	// pair[2] takes the draws that keep neither (draw)
	pair [3]int32
	best int32
	// a ramping candidate passed over (the least busy of them, ties by
	// chance), for when nothing else is offered
	spare, spareLoad      int32
	spareSeen             uint32
	loneSeen, loneSkipped bool
}

// Offer offers candidate k of pl (c = &pl.Candidates[k]), with inflight of
// the proxy's requests on it, which is available now.
//
// Select's loop, the hot path, does the same with the parts inlined:
// Special candidates go to Offer, the others to Start or Tie by their
// load (Candidate.Load) against Least's.
func (l *Least) Offer(pl *Plan, c *Candidate, k, inflight int) {
	if c.special {
		l.offerSpecial(pl.th, c, k, inflight)
		return
	}
	switch n := c.Load(inflight); {
	case l.ties == 0 || n < l.least:
		l.Start(k, n)
	case n == l.least:
		l.Tie(k)
	}
}

func (l *Least) offerSpecial(th Thresholds, c *Candidate, k, inflight int) {
	if c.probation > 0 && inflight >= int(c.probation) {
		return
	}
	if c.ramp != 0 && l.rng.Below(rampScale) >= uint32(c.ramp) {
		l.keepSpare(k, c.Load(inflight))
		l.loneSkipped = l.loneSkipped || c.lone
		return
	}
	switch {
	case c.single:
		if s, _ := c.judge(th, inflight); l.ties == 0 || s < l.bestScore {
			l.best, l.bestScore, l.ties = int32(k), s, 1
		}
	case c.lone:
		l.lone, l.loneSeen = inflight, true
	case l.ties == 0 || c.Load(inflight) < l.least:
		l.Start(k, c.Load(inflight))
	case c.Load(inflight) == l.least:
		l.Tie(k)
	}
}

// keepSpare keeps a ramping candidate passed over, with load: the least
// loaded of them, ties by chance.
func (l *Least) keepSpare(k, load int) {
	switch n := int32(load); {
	case l.spareSeen == 0 || n < l.spareLoad:
		l.spare, l.spareLoad, l.spareSeen = int32(k), n, 1
	case n == l.spareLoad:
		l.spareSeen++
		if l.rng.Below(l.spareSeen) == 0 {
			l.spare = int32(k)
		}
	}
}

// useSpare offers the ramping candidate passed over as if it had been
// offered: nothing else was.
func (l *Least) useSpare(pl *Plan) {
	if pl.Mode == ModeSingle {
		l.best, l.ties = l.spare, 1
		return
	}
	// The lone candidate decides only if it was offered.
	l.loneSkipped = l.loneSkipped || !l.loneSeen
	l.Start(int(l.spare), int(l.spareLoad))
}

// Pass tells l that candidate c, available, is passed over for this
// request (a retry leaves out the edges that failed it): if it is the lone
// candidate, the others decide.
func (l *Least) Pass(c *Candidate) {
	l.loneSkipped = l.loneSkipped || c.lone
}

// Special reports whether candidate c needs Offer (probation, the lone
// candidate, choices 1) rather than Start or Tie.
func (c *Candidate) Special() bool { return c.special }

// Plain reports whether no candidate of pl needs Offer: each goes to Start
// or Tie by its load, so a loop over them needs no call per candidate.
func (pl *Plan) Plain() bool { return !pl.special }

// Empty reports whether nothing was offered yet.
func (l *Least) Empty() bool { return l.ties == 0 }

// Least is the least load offered so far.
func (l *Least) Least() int { return l.least }

// Start offers candidate k as the least loaded so far, with load.
func (l *Least) Start(k, load int) {
	l.least, l.ties, l.pair[0] = load, 1, int32(k)
}

// Tie offers candidate k as tied with the least busy so far: it is kept
// in the pair with the probability that keeps the pair a uniform sample of
// the ties.
func (l *Least) Tie(k int) {
	if l.ties == 1 {
		l.ties, l.pair[1] = 2, int32(k)
	} else {
		l.draw(k)
	}
}

// draw is Tie past the second tie, kept out of line so that Tie, on the
// loop's path, is inlined.
//
//go:noinline
func (l *Least) draw(k int) {
	l.ties++
	// Kept when the draw is below 2: without a branch on it, which the
	// processor could only guess.
	l.pair[min(l.rng.Below(l.ties), 2)] = int32(k)
}

// Settled is Decide's usual case, small enough to be inlined into the
// caller's: one least loaded candidate of a plan by the tier rule, without
// a lone candidate, still in its planned tier. It returns the candidate and
// the kind of selection, as Decide would, or -1 when it is not that case
// (then Decide decides).
func (pl *Plan) Settled(l *Least) (k int, kind Kind) {
	if l.ties == 1 && pl.settles {
		if s := &pl.slots[l.pair[0]]; l.least <= int(s.sameTierLoad) {
			return int(l.pair[0]), s.kind
		}
	}
	return -1, 0
}

// Decide chooses among what was offered. It returns the candidate (its
// position in pl.Candidates; -1 for none) and the kind of selection; ok is
// false when the choice no longer fits the plan, and the caller should
// build a plan from what it sees now and decide from that.
func (pl *Plan) Decide(l *Least) (k int, kind Kind, ok bool) {
	if k, kind := pl.Settled(l); k >= 0 {
		return k, kind, true
	}
	return pl.decide(l)
}

// decide is Decide without the shortcut of Settled.
func (pl *Plan) decide(l *Least) (k int, kind Kind, ok bool) {
	if l.ties >= 2 && l.least <= pl.evenLoad {
		// No two candidates' scores differ by more than the hysteresis
		// at this load, nor their tiers from the plan's (a plan that
		// settles: of ModeTiers, not Lone): chance picks.
		k = int(l.pair[l.rng.Below(2)])
		return k, pl.slots[k].kind, true
	}
	if l.ties == 0 && l.spareSeen > 0 {
		l.useSpare(pl)
	}
	cands := pl.Candidates
	switch pl.Mode {
	case ModeNone:
		return -1, 0, true
	case ModeSingle:
		if l.ties == 0 {
			return -1, 0, false
		}
		c := &cands[l.best]
		return int(l.best), c.kind, true
	case ModeFallback, ModeDrain, ModeDown:
		if l.ties == 0 {
			return -1, 0, false
		}
		k = int(l.pair[0])
		if l.ties >= 2 {
			k = int(l.pair[l.rng.Below(2)])
		}
		return k, cands[k].kind, true
	}
	if pl.Lone && !l.loneSkipped && l.rng.Below(uint32(len(cands))) < 2 {
		if !l.loneSeen {
			return -1, 0, false
		}
		if l.ties == 0 || cands[0].Load(l.lone) <= LoneLoad(l.least) {
			t := cands[0].tierAt(pl.th, l.lone)
			return 0, cands[0].Kind(t), t < pl.Top
		}
	}
	if l.ties == 0 {
		return -1, 0, false
	}
	a := &cands[l.pair[0]]
	if l.ties == 1 {
		t := a.tierAt(pl.th, a.inFlightAt(l.least))
		return int(l.pair[0]), a.Kind(t), t <= pl.Top
	}
	as, at := a.judge(pl.th, a.inFlightAt(l.least))
	b := &cands[l.pair[1]]
	bs, bt := b.judge(pl.th, b.inFlightAt(l.least))
	if at > pl.Top && bt > pl.Top {
		return -1, 0, false
	}
	// The first of the pair (0) or the second (1), picked by index: a
	// branch on the chance of Better is one the processor can only guess.
	var pick uint32
	switch {
	case Outranks(at, as, bt, bs, pl.Hysteresis):
	case Outranks(bt, bs, at, as, pl.Hysteresis):
		pick = 1
	default:
		pick = Better(bs, as, pl.Hysteresis, &l.rng)
	}
	tiers := [2]Tier{at, bt}
	k = int(l.pair[pick])
	return k, cands[k].Kind(tiers[pick]), true
}

// LoneLoad is the most load (Candidate.Load) a lone best upstream may
// have and still win its draw, with least the least loaded other
// candidate's: about twice that, as its lead (with one request each in
// flight and the next: two more), so in an idle pool it takes the first.
func LoneLoad(least int) int { return 2*least + 1 }

// Better is 1 when score x is better than y for two upstreams with as
// many requests in flight, else 0: clearly lower (by more than tolerance),
// or as close and chance says so, so idle periods do not send everyone to
// the upstream whose score is lowest by noise. A number, not a bool, so
// that the caller picks by index: a branch on chance is one the processor
// can only guess.
func Better(x, y, tolerance float64, rng *Rand) uint32 {
	switch {
	case x < y-tolerance:
		return 1
	case y < x-tolerance:
		return 0
	}
	return 1 - rng.Below(2)
}
