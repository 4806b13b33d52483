package caddymodule

import (
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
)

// A plan is a cached pool's candidates as of one tick of the board's
// clock: the upstreams of the lowest non-empty tier, with those of the
// next tier whose score is within the hysteresis of that tier's highest
// (see outranks), or with the whole next tier when the lowest holds a
// single upstream and nothing is that close (lone). Select chooses from
// the plan by our in-flight counts instead of scoring every upstream, and
// judges the one or two it draws by what it sees now; whenever the plan
// may be wrong it scores every upstream instead.
//
// A plan is only used while nothing it was built from has changed: the
// clock, and the board's version, which changes with every view, the
// average, the configuration and the set of polled upstreams (a new view
// rebuilds the plans at once, the others at the next tick). What changes between ticks is the
// proxy's own in-flight counts and Caddy's health marks; the two drawn
// candidates are checked against both.
type plan struct {
	version    uint64
	clock      int64
	top        int // highest tier of a candidate
	hysteresis float64
	candidates []candidate
	// lone: candidates[0] is the single upstream of the lowest tier, the
	// rest the next tier's, and its lead is believed (see loneLead);
	// without it, they are candidates alike.
	lone bool
}

// candidate is an upstream of a plan. While the plan is current its view,
// and so whether it is trusted, cannot have changed: judging it again
// only needs our in-flight count.
type candidate struct {
	idx   int
	score float64 // when planned
	v     *view   // trusted; nil for an unknown upstream
	// probation is set for an upstream tried one request at a time.
	probation *latency
	// unknown: score = unknownBase + unknownStreams × in flight
	unknownBase, unknownStreams float64
	thresholds                  Thresholds
	// tier is its tier with none of our requests on it, and still with up
	// to sameTierUpTo: Select then need not judge it when it is chosen
	// alone.
	tier, sameTierUpTo int
}

// tierSpan returns the candidate's tier with none of our requests in
// flight and the most in flight with which it keeps that tier (our
// requests only raise a score, and a higher score never lowers a tier).
func (c *candidate) tierSpan() (tier, upTo int) {
	_, tier = c.judge(0)
	lo, hi := 0, 1<<20
	if _, t := c.judge(hi); t == tier {
		return tier, hi
	}
	for hi-lo > 1 {
		mid := (lo + hi) / 2
		if _, t := c.judge(mid); t == tier {
			lo = mid
		} else {
			hi = mid
		}
	}
	return tier, lo
}

// tierAt is the candidate's tier with inflight of our requests on it,
// judged only past its span.
func (c *candidate) tierAt(inflight int) int {
	if inflight <= c.sameTierUpTo {
		return c.tier
	}
	_, tier := c.judge(inflight)
	return tier
}

// judge returns the candidate's score and tier with inflight of our
// requests on it.
func (c *candidate) judge(inflight int) (float64, int) {
	if c.v != nil {
		s := c.v.correctedScore(inflight)
		return s, c.v.tierFor(s, c.thresholds)
	}
	s := unknownScore(c.unknownBase, c.unknownStreams, inflight)
	return s, rawTier(s, c.thresholds)
}

// kind is the selection kind to count when the candidate is chosen from tier.
func (c *candidate) kind(tier int) int {
	if c.v != nil {
		return tier
	}
	return selUnknown
}

// setView publishes an upstream's new view and rebuilds the plans, which
// are not used from the moment the view is stored until they are rebuilt.
func (e *entry) setView(v *view) {
	e.view.Store(v)
	e.board.version.Add(1)
	e.board.replanAll()
}

// judge holds what scoring an upstream needs from the board, loaded once
// per scan or plan.
type judge struct {
	now, stale     int64
	average        *averageView
	thresholds     Thresholds
	hysteresis     float64
	unknownStreams float64 // score points per request in flight on an unknown upstream
}

func (b *board) judge() judge {
	cfg := b.cfg.Load()
	return judge{
		now:            b.clock.Load(),
		stale:          int64(cfg.StaleAfter),
		average:        b.average.Load(),
		thresholds:     cfg.Thresholds,
		hysteresis:     cfg.Hysteresis,
		unknownStreams: cfg.Weights[compStreams] * 100 / cfg.Capacity.Streams,
	}
}

// of says what Select makes of an available upstream with view v (nil
// when it has none) and inflight of our requests: its code, and for a
// trusted or unknown one the score corrected by inflight and its tier.
func (j *judge) of(v *view, inflight int) (code viewCode, score float64, tier int) {
	code = codeWarming // unknown: no report, or a stale one
	if v != nil && (v.code == codeDown || j.now-v.receivedAt <= j.stale) {
		code = v.code
	}
	switch code {
	case codeTrusted:
		score = v.correctedScore(inflight)
		tier = v.tierFor(score, j.thresholds)
	case codeWarming:
		// Unknown: as loaded as the average edge, plus what we hold on it.
		score = unknownScore(j.average.score, j.unknownStreams, inflight)
		tier = rawTier(score, j.thresholds)
	}
	return code, score, tier
}

// replan builds the plan of the policy's cached pool; the board's
// janitor calls it every tick. With choices 1, or a pool where no report
// is fresh, or only drain or down upstreams, there is no plan: Select
// scores every upstream.
func (p *TieredSelection) replan() {
	c := p.cache.Load()
	if c == nil || p.Choices != 2 {
		return
	}
	b := p.board
	version := b.version.Load()
	if c.gen != b.entries.Load().gen {
		// Select rebuilds the cache first.
		c.plan.Store(nil)
		return
	}
	// The policy holds these upstreams while it is provisioned, with or
	// without traffic: Select marks them seen only when it scans.
	now := b.now.Load()
	for _, e := range c.entries {
		if e != nil && e.lastSeen.Load() != now {
			e.lastSeen.Store(now)
		}
	}
	j := b.judge()
	var tierOf [5][]candidate
	fresh := 0
	for i, u := range c.pool {
		if !u.Available() {
			continue
		}
		cand := candidate{idx: i, thresholds: j.thresholds}
		var v *view
		if e := c.entries[i]; e != nil {
			if e.latency.slow.Load() {
				continue // Select scans when only slow upstreams are left
			}
			if e.latency.probation.Load() {
				cand.probation = &e.latency
			}
			v = e.view.Load()
		}
		code, score, tier := j.of(v, u.NumRequests())
		cand.score = score
		switch code {
		case codeTrusted:
			fresh++
			cand.v = v
		case codeWarming:
			cand.unknownBase, cand.unknownStreams = j.average.score, j.unknownStreams
		default:
			continue
		}
		cand.tier, cand.sameTierUpTo = cand.tierSpan()
		tierOf[tier] = append(tierOf[tier], cand)
	}
	if fresh == 0 {
		c.plan.Store(nil)
		return
	}
	lo := 1
	for len(tierOf[lo]) == 0 {
		lo++
	}
	pl := &plan{version: version, clock: j.now, hysteresis: j.hysteresis, top: lo, candidates: tierOf[lo]}
	if lo < 4 {
		highest := tierOf[lo][0].score
		for _, cand := range tierOf[lo][1:] {
			highest = max(highest, cand.score)
		}
		for _, cand := range tierOf[lo+1] {
			if cand.score <= highest+j.hysteresis {
				pl.top, pl.candidates = lo+1, append(pl.candidates, cand)
			}
		}
	}
	if len(pl.candidates) == 1 {
		for hi := lo + 1; hi <= 4; hi++ {
			if len(tierOf[hi]) > 0 {
				pl.top, pl.candidates = hi, append(pl.candidates, tierOf[hi]...)
				pl.lone = leadBelieved(pl.candidates[0].v, j.now)
				break
			}
		}
	}
	c.plan.Store(pl)
}

// outranks reports whether an upstream in tier xTier with score xScore is
// clearly better than one in yTier with yScore: a lower tier, and a score
// lower by more than the hysteresis. Scores closer than that are noise
// even across a tier boundary (or inverted, by tiers kept by hysteresis),
// and strict tiers would send every request to one side of it until the
// next report, from every balancer that shares the reports: such
// upstreams are compared as one tier (see better).
func outranks(xTier int, xScore float64, yTier int, yScore float64, hysteresis float64) bool {
	return xTier < yTier && xScore < yScore-hysteresis
}

// fromPlan chooses from the cache's plan, if it is current, as choose
// does from a scan: of the candidates with the fewest of our requests in
// flight, two at random, the lower tier now, then as better decides (or,
// for a lone plan, the lone upstream in 2 of n). It returns the index and
// the kind of selection; ok is false when the plan is out of date or what
// it drew is no longer what the plan took it for (above the plan's tiers
// now), and the caller must score every upstream.
func (p *TieredSelection) fromPlan(pool reverseproxy.UpstreamPool, c *poolCache) (chosen, kind int, ok bool) {
	pl := c.plan.Load()
	b := p.board
	if pl == nil || pl.clock != b.clock.Load() || pl.version != b.version.Load() {
		return 0, 0, false
	}
	cands := pl.candidates
	// Seeded only when a draw is needed: the least busy candidate is
	// often alone, and seeding costs a tenth of this call.
	var rng xorshift
	draw := func(n uint32) uint32 {
		if rng == 0 {
			rng = newXorshift()
		}
		return rng.below(n)
	}
	if pl.lone {
		// The lone upstream wins on tier whenever it is one of two drawn
		// from all the candidates.
		if draw(uint32(len(cands))) < 2 {
			a := &cands[0]
			u := pool[a.idx]
			if !u.Available() {
				return 0, 0, false
			}
			inflight := u.NumRequests()
			if a.probation != nil && a.probation.keptOff(inflight) {
				return 0, 0, false
			}
			tier := a.tierAt(inflight)
			return a.idx, a.kind(tier), tier < pl.top
		}
		cands = cands[1:]
	}
	// The least busy candidates, as in a scan's reservoir (inlined: this
	// loop is the whole cost of Select, measured against least_conn's in
	// BenchmarkSelect).
	var pair [2]int
	least, ties := 0, uint32(0)
	for k := range cands {
		cand := &cands[k]
		u := pool[cand.idx]
		if !u.Available() {
			continue
		}
		inflight := u.NumRequests()
		if cand.probation != nil && cand.probation.keptOff(inflight) {
			continue
		}
		switch {
		case ties == 0 || inflight < least:
			least, ties, pair[0] = inflight, 1, k
		case inflight == least:
			ties++
			if ties == 2 {
				pair[1] = k
			} else if j := draw(ties); j < 2 {
				pair[j] = k
			}
		}
	}
	if ties == 0 {
		return 0, 0, false
	}
	a := &cands[pair[0]]
	if ties == 1 {
		tier := a.tierAt(least)
		return a.idx, a.kind(tier), tier <= pl.top
	}
	aScore, aTier := a.judge(least)
	o := &cands[pair[1]]
	oScore, oTier := o.judge(least)
	switch {
	case aTier > pl.top && oTier > pl.top:
		return 0, 0, false
	case outranks(aTier, aScore, oTier, oScore, pl.hysteresis):
	case outranks(oTier, oScore, aTier, aScore, pl.hysteresis), better(least, oScore, least, aScore, pl.hysteresis, uint64(draw(2))):
		return o.idx, o.kind(oTier), true
	}
	return a.idx, a.kind(aTier), true
}

// addPlanner has the board's janitor keep p's plan; removePlanner stops it.
func (b *board) addPlanner(p *TieredSelection) {
	b.plannersMu.Lock()
	defer b.plannersMu.Unlock()
	if b.planners == nil {
		b.planners = map[*TieredSelection]struct{}{}
	}
	b.planners[p] = struct{}{}
}

func (b *board) removePlanner(p *TieredSelection) {
	b.plannersMu.Lock()
	defer b.plannersMu.Unlock()
	delete(b.planners, p)
}

// replanAll rebuilds every registered policy's plan.
func (b *board) replanAll() {
	b.plannersMu.Lock()
	defer b.plannersMu.Unlock()
	for p := range b.planners {
		p.replan()
	}
}
