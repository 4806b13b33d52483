package rank

import (
	"math"
	"slices"
	"sync"
	"time"
)

// LoneLead is how long after its report a lone best upstream's lead is
// believed: a report shows about the second before it, not what the lead
// has drawn since from every balancer sharing the reports.
const LoneLead = 1500 * time.Millisecond

// Input is what a plan needs of one upstream of a pool.
type Input struct {
	View      *View // nil: no report
	InFlight  int   // the proxy's requests on it now
	Available bool  // Caddy's health and request limit allow it
	// Slow: clearly slower than the pool's best; no viewers while another
	// upstream can serve.
	Slow bool
	// Probation: it was slow and is tried again, with at most this many
	// of the proxy's requests in flight (0: not on probation).
	Probation int
	// Ejected: its recent answers were mostly errors (Ejection); no
	// viewers unless more of the pool is ejected than it allows.
	Ejected bool
	// RampSince is when the board saw it become available again (unix
	// nanoseconds), for slow start; 0: not ramping.
	RampSince int64
	// Full: its link has no headroom (Headroom); no viewers while another
	// upstream has room (Spare).
	Full bool
	// Link is its link utilisation, 0–1, corrected by what the proxy sent
	// it since its report (LinkAt); 0 when its link is unknown.
	Link float64
}

// Judge is what the board knows beside the upstreams' views, loaded once
// per plan.
type Judge struct {
	Now        int64 // unix nanoseconds
	StaleAfter int64 // nanoseconds
	// Average is the mean score of trusted fresh upstreams: an upstream
	// without a trusted fresh report counts as that loaded.
	Average float64
	// PerStream is the score points one request in flight adds to an
	// upstream without a trusted fresh report.
	PerStream  float64
	Thresholds Thresholds
	Hysteresis float64
	// Single: always the single best (choices 1), for comparison with the
	// original algorithm; it herds on stale reports.
	Single bool
	// MaxEjected is the share of the pool, 0 to 1, that may be ejected at
	// once (Ejection.MaxEjected).
	MaxEjected float64
	// SlowStart is the ramp of a new or returning upstream, nanoseconds;
	// 0: off.
	SlowStart int64
	// Headroom is the pool's link_headroom; 0: DefaultHeadroom.
	Headroom float64
}

// Mode is how a plan's candidates are chosen from.
type Mode uint8

// The modes of a plan.
const (
	ModeNone     Mode = iota // no upstream can serve
	ModeTiers                // the tier rule, then the fewest in flight
	ModeSingle               // the single best score of the lowest tier
	ModeFallback             // no fresh report anywhere: the fewest in flight
	ModeDrain                // only draining upstreams: the fewest in flight
	ModeDown                 // only upstreams seen down: the fewest in flight
)

// Plan is a pool's candidates at one moment: the upstreams of the lowest
// non-empty tier, with those of the next tier whose score is within the
// hysteresis of that tier's highest, or with the whole next tier when the
// lowest holds a single upstream and nothing is that close (Lone). Choose
// picks among them by the proxy's in-flight counts at the time of the
// request, and reports when what it drew no longer fits the plan.
type Plan struct {
	Mode       Mode
	Top        Tier // the highest tier of a candidate (ModeTiers)
	Hysteresis float64
	// Lone: Candidates[0] is the single upstream of the lowest tier, the
	// rest the next tier's, and its lead is still believed (LoneLead).
	Lone bool
	// Panic: more of the pool is ejected than it allows, so the ejected
	// are candidates too.
	Panic      bool
	Candidates []Candidate
	slots      []Slot // one per candidate (Slots)
	th         Thresholds
	// special: some candidate needs Least.Offer (Candidate.Special).
	special bool
	// settles: a single least loaded candidate still in its planned tier
	// is the choice (Settled): ModeTiers, not Lone.
	settles bool
	// evenLoad: while the least load is at most this, every candidate's
	// score is within the hysteresis of every other's, in its planned
	// tier: of tied candidates chance picks, with nothing to judge
	// (settles plans only; 0: never).
	evenLoad int
}

// Candidate is an upstream of a plan. While the plan is current its view
// cannot have changed: judging it again needs only the in-flight count.
// (Fields are ordered for size: Choose reads every candidate.)
type Candidate struct {
	Index int // in the pool
	// special: Offer must look closer: on probation, the lone candidate
	// (lone), a candidate of a plan of ModeSingle (single), or ramping.
	special, lone, single bool
	// probation: on probation, it may have at most this many of the
	// proxy's requests in flight (Input.Probation, up to 255; 0: any).
	probation uint8
	// ramp is the odds, of rampScale, that it is offered while it ramps up
	// (slow start); 0: always.
	ramp uint16
	// tier is its tier with none of the proxy's requests in flight, kept
	// up to sameTierUpTo of them: Choose need not judge it then.
	tier Tier
	kind Kind // when chosen from tier, and for the fallback modes
	// cost weighs its requests in flight against the other candidates':
	// about how many times less than the largest it can take (1 for those
	// within CostRatio of it, and for those without an estimate).
	cost         int32
	sameTierUpTo int32
	Score        float64 // when planned
	view         *View   // trusted; nil: counted as average
	average      float64 // for an upstream without a view
	perStream    float64
}

// Slot is what the loop of a request reads of a candidate (Plan.Slots):
// the whole loop reads an eighth of the memory the candidates take.
type Slot struct {
	Index int32 // in the pool
	cost  int32 // the candidate's
	// sameTierLoad is its load (Load) with sameTierUpTo in flight: a load
	// is a multiple of cost, so it is at most this exactly when its
	// requests in flight are at most sameTierUpTo (Settled compares loads).
	sameTierLoad int32
	kind         Kind // the candidate's, as Settled returns it
}

// Load is the candidate's Load.
func (s Slot) Load(inflight int) int { return load(inflight, s.cost) }

// Slots are the candidates' slots, in the order of Candidates.
func (pl *Plan) Slots() []Slot { return pl.slots }

// Build plans the choice among a pool's upstreams.
func Build(in []Input, j *Judge) *Plan {
	withEjected := panics(in, j.MaxEjected)
	var first admit
	if !spare(in, j) {
		first = admitFull
	}
	pl := build(in, j, first, withEjected)
	if pl.Mode == ModeNone && pl.Candidates != nil {
		// Only clearly slower upstreams, or full links, can serve: slow
		// beats nothing, and a slow edge with link headroom beats a full
		// link.
		if pl = build(in, j, first|admitSlow, withEjected); pl.Mode == ModeNone {
			pl = build(in, j, admitSlow|admitFull, withEjected)
		}
	}
	if pl.Mode == ModeNone && !withEjected && slices.ContainsFunc(in, func(u Input) bool { return u.Ejected && u.Available }) {
		// Only ejected upstreams can serve: they serve (panic).
		withEjected = true
		pl = build(in, j, admitSlow|admitFull, true)
	}
	pl.Panic = withEjected
	return pl
}

// admit is which of the upstreams kept off while others can serve a plan
// takes in.
type admit uint8

const (
	admitSlow admit = 1 << iota // the slow ones (and those on probation)
	admitFull                   // full links
)

// spare reports whether an upstream that can serve has link room to take
// a full link's new viewers: not full, and its utilisation below the limit
// by HeadroomBand at least (or its link unknown). Where every link is
// near its limit, leaving the fullest out would only move its viewers onto
// the next to fill, and back when it drains: they all serve, and their
// requests in flight decide.
func spare(in []Input, j *Judge) bool {
	limit := j.Headroom
	if limit <= 0 {
		limit = DefaultHeadroom
	}
	full := false
	for i := range in {
		u := &in[i]
		if !u.Available || u.Ejected {
			continue
		}
		if u.Full {
			full = true
		} else if u.Link <= limit-HeadroomBand {
			return true
		}
	}
	return !full
}

// build plans with the upstreams kept off that adm admits, and without
// the ejected ones unless withEjected; a ModeNone plan with non-nil
// (empty) Candidates says some were kept off.
func build(in []Input, j *Judge, adm admit, withEjected bool) *Plan {
	sc := scratchPool.Get().(*scratch)
	defer scratchPool.Put(sc)
	sc.reset()
	fresh, slowSkipped := 0, false
	for i := range in {
		u := &in[i]
		if !u.Available || (u.Ejected && !withEjected) {
			continue
		}
		if (u.Full && adm&admitFull == 0) || ((u.Slow || (u.Probation > 0 && u.InFlight >= u.Probation)) && adm&admitSlow == 0) {
			slowSkipped = true
			continue
		}
		c := Candidate{Index: i, probation: uint8(min(u.Probation, math.MaxUint8))}
		switch u.View.Code(j.Now, j.StaleAfter) {
		case CodeTrusted:
			fresh++
			c.view = u.View
		case CodeUnknown:
			c.average, c.perStream = j.Average, j.PerStream
		case CodeDrain:
			c.kind = KindDrain
			sc.add(groupDrain, c)
			continue
		case CodeDown:
			c.kind = KindDown
			sc.add(groupDown, c)
			continue
		default: // maintenance
			continue
		}
		c.Score, _ = c.judge(j.Thresholds, u.InFlight)
		var upTo int
		c.tier, upTo = c.span(j.Thresholds)
		c.sameTierUpTo = int32(upTo)
		c.kind = KindOf(c.tier)
		if c.view == nil {
			c.kind = KindUnknown
		}
		g := group(c.tierAt(j.Thresholds, u.InFlight))
		if lastSaid(u.View, CodeDrain, CodeMaint, CodeDown) {
			g += groupStale
		}
		sc.add(g, c)
	}
	pl := &Plan{Hysteresis: j.Hysteresis, th: j.Thresholds}
	lo := Tier(1)
	for lo <= 4 && sc.count(group(lo)) == 0 {
		lo++
	}
	switch {
	case lo > 4 && sc.count(groupDrain) > 0:
		pl.Mode, pl.Candidates = ModeDrain, sc.take(groupDrain)
	case lo > 4 && sc.count(groupDown) > 0:
		pl.Mode, pl.Candidates = ModeDown, sc.take(groupDown)
	case lo > 4:
		if slowSkipped {
			pl.Candidates = []Candidate{}
		}
	case fresh == 0:
		// No fresh report anywhere: all are candidates, but those whose
		// last report, however old, said drain, maintenance or down.
		pl.Mode, pl.Candidates = ModeFallback, sc.take(1, 2, 3, 4)
		if len(pl.Candidates) == 0 {
			pl.Candidates = sc.take(1, 2, 3, 4, 1+groupStale, 2+groupStale, 3+groupStale, 4+groupStale)
		}
		for k := range pl.Candidates {
			pl.Candidates[k].kind = KindFallback
		}
	case j.Single:
		pl.Mode, pl.Top, pl.Candidates = ModeSingle, lo, sc.take(group(lo), group(lo)+groupStale)
	default:
		pl.Mode, pl.Top = ModeTiers, lo
		pl.plan(sc, lo, j.Now)
	}
	largest, largestLink, linked := 0.0, 0.0, len(pl.Candidates) > 0
	for k := range pl.Candidates {
		v := pl.Candidates[k].view
		if v == nil {
			linked = false
			continue
		}
		largest = max(largest, v.EstimatedRequests)
		link := LinkCapacity(&v.Report)
		largestLink = max(largestLink, link)
		linked = linked && link > 0
	}
	pl.slots = make([]Slot, len(pl.Candidates))
	for k := range pl.Candidates {
		c := &pl.Candidates[k]
		c.single, c.lone = pl.Mode == ModeSingle, pl.Lone && k == 0
		c.ramp = rampOdds(Ramp(in[c.Index].RampSince, j.Now, j.SlowStart), len(pl.Candidates))
		c.special = c.probation > 0 || c.single || c.lone || c.ramp != 0
		pl.special = pl.special || c.special
		c.cost = 1
		// An edge whose report shows it idle has room now, whatever it
		// could take when busy: its requests weigh alike, so a recovered
		// edge has its share back at once.
		if c.view != nil && c.view.EstimatedRequests > 0 && c.view.Report.CPUPercent >= 100*CalibrationFloor &&
			largest >= CostRatio*c.view.EstimatedRequests {
			c.cost = int32(min(math.Round(largest/c.view.EstimatedRequests), maxCost))
		}
		if linked {
			c.cost = linkCost(c.cost, largestLink/LinkCapacity(&c.view.Report))
		}
		pl.slots[k] = Slot{Index: int32(c.Index), cost: c.cost, sameTierLoad: int32(c.Load(int(c.sameTierUpTo))), kind: c.kind}
	}
	pl.settles = pl.Mode == ModeTiers && !pl.Lone
	if pl.settles {
		pl.evenLoad = evenLoad(pl.Candidates, j.Thresholds, j.Hysteresis)
	}
	return pl
}

// evenLoad is the most load (Candidate.Load) up to which every candidate
// keeps its planned tier and a score at most hysteresis above the lowest
// score of any with none in flight: then no two of them differ by more
// than the hysteresis, so neither outranks nor beats the other (the tie
// rule's third step goes to chance). Scores only grow with requests, so
// each candidate's bound is the most in flight that keeps it there.
func evenLoad(cands []Candidate, th Thresholds, hysteresis float64) int {
	lowest := math.Inf(1)
	for k := range cands {
		s, _ := cands[k].judge(th, 0)
		lowest = min(lowest, s)
	}
	even := math.MaxInt
	for k := range cands {
		c := &cands[k]
		n := c.mostWithin(th, lowest+hysteresis)
		if n < 0 {
			return 0
		}
		even = min(even, c.Load(n))
	}
	return even
}

// mostWithin is the most requests in flight, up to sameTierUpTo, with
// which c's score stays at most limit; -1 when it is above with none.
func (c *Candidate) mostWithin(th Thresholds, limit float64) int {
	within := func(n int) bool { s, _ := c.judge(th, n); return s <= limit }
	s0, _ := c.judge(th, 0)
	if s0 > limit {
		return -1
	}
	upTo := int(c.sameTierUpTo)
	// A score grows by the same step with each request until a component
	// is clamped: the step from none to one usually gives the answer,
	// which two judgements confirm (a plan is built on every report).
	if s1, _ := c.judge(th, 1); s1 > s0 {
		g := int(min((limit-s0)/(s1-s0), float64(upTo)))
		if within(g) && (g == upTo || !within(g+1)) {
			return g
		}
	}
	return mostWhile(upTo, within)
}

// mostWhile is the most n from 0 to upTo for which holds(n), given that
// holds(0) and that holds, once false, stays false for larger n.
func mostWhile(upTo int, holds func(int) bool) int {
	if holds(upTo) {
		return upTo
	}
	lo, hi := 0, upTo // holds(lo), not holds(hi)
	for hi-lo > 1 {
		if mid := (lo + hi) / 2; holds(mid) {
			lo = mid
		} else {
			hi = mid
		}
	}
	return lo
}

// linkCost is the cost of a candidate whose cost by capacity is cost and
// whose link is ratio times smaller than the largest among the candidates
// (all of which advertise theirs): an edge with a third of the largest
// link counts its requests three times, so each link carries its share of
// the bytes and the smaller ones do not fill first (least_conn balances
// them only by their downloads slowing).
func linkCost(cost int32, ratio float64) int32 {
	return int32(min(math.Round(float64(cost)*ratio), maxCost))
}

// CostRatio is how many times less than the largest capacity among the
// candidates an edge must be estimated to take before its requests in
// flight weigh more: estimates of equal edges on a busy machine differ by
// up to about 1.5 times, a starved edge's by ten and more.
const CostRatio = 3

// Load is what the candidate's inflight of the proxy's requests weigh
// with the one being placed, as weighted least-request balancing counts
// them: an edge that can take a tenth of the others' requests counts each
// of its requests in flight ten times, so a starved edge idling because it is kept
// off does not win every request by having the fewest in flight.
func (c *Candidate) Load(inflight int) int { return load(inflight, c.cost) }

func load(inflight int, cost int32) int { return (inflight + 1) * int(cost) }

// maxCost bounds a candidate's cost: past it, its requests weigh alike.
const maxCost = 1 << 10

// inFlightAt is the requests in flight that make load.
func (c *Candidate) inFlightAt(load int) int {
	if c.cost == 1 { // nearly always: no division on the hot path
		return load - 1
	}
	return load/int(c.cost) - 1
}

// plan takes, for the tier rule, the candidates of tier lo, with the next
// tier's that lo does not outrank: those within the hysteresis of its
// highest score. When that leaves a single upstream, the whole next
// non-empty tier joins it: a lone best upstream would take every request
// until the next report. Its lead is believed for LoneLead after its report.
func (pl *Plan) plan(sc *scratch, lo Tier, now int64) {
	best := sc.take(group(lo), group(lo)+groupStale)
	highest := best[0].Score
	for _, c := range best[1:] {
		highest = max(highest, c.Score)
	}
	var near []*Candidate
	if lo < 4 {
		for _, c := range sc.all(group(lo+1), group(lo+1)+groupStale) {
			if c.Score <= highest+pl.Hysteresis {
				near = append(near, c)
			}
		}
	}
	switch {
	case len(near) > 0:
		pl.Top, pl.Candidates = lo+1, best
		for _, c := range near {
			pl.Candidates = append(pl.Candidates, *c)
		}
	case len(best) == 1:
		pl.Candidates = best
		for hi := lo + 1; hi <= 4; hi++ {
			if rest := sc.take(group(hi), group(hi)+groupStale); len(rest) > 0 {
				pl.Top, pl.Candidates = hi, append(best, rest...)
				v := best[0].view
				pl.Lone = v == nil || now-v.ReceivedAt <= int64(LoneLead)
				return
			}
		}
	default:
		pl.Candidates = best
	}
}

// group sorts a plan's upstreams as it is built: by tier (1–4), those of
// each tier whose last report said drain, maintenance or down however old
// (groupStale more), the draining ones and the down ones.
type group int

const (
	groupStale = 4
	groupDrain = 9
	groupDown  = 10
	numGroups  = 11
)

// scratch holds the candidates of one plan as it is built, by group; it
// is reused so that a plan allocates only what it keeps.
type scratch struct {
	cands  []Candidate
	groups []group
	counts [numGroups]int
}

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

func (s *scratch) reset() {
	s.cands, s.groups, s.counts = s.cands[:0], s.groups[:0], [numGroups]int{}
}

func (s *scratch) add(g group, c Candidate) {
	s.cands, s.groups = append(s.cands, c), append(s.groups, g)
	s.counts[g]++
}

func (s *scratch) count(gs ...group) int {
	n := 0
	for _, g := range gs {
		n += s.counts[g]
	}
	return n
}

// all points at the candidates of groups gs, in pool order.
func (s *scratch) all(gs ...group) []*Candidate {
	var out []*Candidate
	for k := range s.cands {
		if slices.Contains(gs, s.groups[k]) {
			out = append(out, &s.cands[k])
		}
	}
	return out
}

// take copies the candidates of groups gs, in pool order, into a new slice
// with room for more.
func (s *scratch) take(gs ...group) []Candidate {
	out := make([]Candidate, 0, s.count(gs...)+len(s.cands)/4)
	for k := range s.cands {
		if slices.Contains(gs, s.groups[k]) {
			out = append(out, s.cands[k])
		}
	}
	return out
}

// lastSaid reports whether v's last report, whatever its age, said one of
// codes: the fallback without fresh reports leaves such upstreams out.
func lastSaid(v *View, codes ...Code) bool {
	if v == nil {
		return false
	}
	for _, c := range codes {
		if v.code == c {
			return true
		}
	}
	return false
}

// judge returns the candidate's score and tier with inflight of the
// proxy's requests on it and the one being placed: an edge that one more
// stream takes a tier up (one of little capacity, such as a starved edge
// that idles because it is kept off) is judged as it would be with it.
func (c *Candidate) judge(th Thresholds, inflight int) (float64, Tier) {
	if c.view != nil {
		s := c.view.Corrected(inflight + 1)
		return s, c.view.TierAt(s, th)
	}
	s := min(c.average+c.perStream*float64(inflight+1), 100)
	return s, TierOf(s, th)
}

// span returns the candidate's tier with none of the proxy's requests in
// flight and the most in flight with which it keeps that tier (requests
// only raise a score, and a higher score never lowers a tier).
func (c *Candidate) span(th Thresholds) (Tier, int) {
	_, tier := c.judge(th, 0)
	return tier, mostWhile(1<<20, func(n int) bool { _, t := c.judge(th, n); return t == tier })
}

// tierAt is the candidate's tier with inflight of the proxy's requests on it.
func (c *Candidate) tierAt(th Thresholds, inflight int) Tier {
	if inflight <= int(c.sameTierUpTo) {
		return c.tier
	}
	_, t := c.judge(th, inflight)
	return t
}

// Kind is the kind to count when the candidate is chosen from tier t.
func (c *Candidate) Kind(t Tier) Kind {
	if c.view == nil || c.kind >= KindFallback {
		return c.kind
	}
	return KindOf(t)
}

// Average is the mean reported score of the trusted fresh views among
// views, and how many there are.
func Average(views []*View, now, staleAfter int64) (float64, int) {
	var sum float64
	n := 0
	for _, v := range views {
		if v.Code(now, staleAfter) == CodeTrusted {
			sum += v.Score
			n++
		}
	}
	if n == 0 {
		return 0, 0
	}
	return sum / float64(n), n
}
