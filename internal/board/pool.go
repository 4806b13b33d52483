package board

import (
	"sync/atomic"

	"github.com/edgetier/edgetier/internal/rank"
)

// Pool is a set of upstreams a policy chooses from, in the policy's order,
// with its plan (rank.Plan), rebuilt as the board changes.
type Pool struct {
	b     *Board
	ups   []Upstream
	edges []*Edge // nil where an upstream cannot be tracked
	gen   uint64  // of the board's edge set it was resolved against
	plan  atomic.Pointer[stampedPlan]
}

// stampedPlan is a plan and the epoch it was built for.
type stampedPlan struct {
	*rank.Plan
	epoch *epoch
}

// Pool resolves upstreams (with their addresses dials) to the board's
// edges, tracking the new ones.
func (b *Board) Pool(dials []string, ups []Upstream) *Pool {
	p := &Pool{b: b, ups: ups, edges: make([]*Edge, len(ups)), gen: b.edges.Load().gen}
	for i, u := range ups {
		p.edges[i] = b.Track(dials[i], u)
	}
	// Tracking may have added edges; a pool resolved against the set it
	// holds stays current until the set changes.
	p.gen = b.edges.Load().gen
	return p
}

// Current reports whether the board's set of edges is still the one the
// pool was resolved against.
func (p *Pool) Current() bool { return p.gen == p.b.edges.Load().gen }

// Plan is the pool's plan if nothing it was built from has changed but the
// proxy's in-flight counts and Caddy's health marks (which rank.Plan's
// Decide checks), else nil.
func (p *Pool) Plan() *rank.Plan {
	sp := p.plan.Load()
	if sp == nil || sp.epoch != p.b.epoch.Load() {
		return nil
	}
	return sp.Plan
}

// Replan builds the pool's plan from what it sees now and keeps it.
func (p *Pool) Replan() *rank.Plan {
	ep := p.b.planning()
	j := p.b.judge(ep.clock)
	now := j.Now
	cfg := p.b.cfg.Load()
	in := make([]rank.Input, len(p.ups))
	for i, u := range p.ups {
		in[i] = rank.Input{Available: u.Available(), InFlight: u.NumRequests()}
		if e := p.edges[i]; e != nil {
			e.seen(now, u)
			in[i].View = e.view.Load()
			in[i].Slow, in[i].Probation = e.latency.slow.Load(), int(e.latency.probation.Load())
			in[i].Ejected, in[i].RampSince = e.outcomes.ejectedUntil.Load() != 0, e.outcomes.rampSince.Load()
			in[i].Full, in[i].Link = e.full(in[i].View, now, cfg)
		}
	}
	pl := rank.Build(in, j)
	p.plan.Store(&stampedPlan{Plan: pl, epoch: ep})
	return pl
}

// Count counts a selection of the pool's upstream i.
func (p *Pool) Count(i int, kind rank.Kind) {
	if e := p.edges[i]; e != nil {
		e.selections[kind].Add(1)
	}
}

// Choose chooses one of the pool's upstreams by the tiered rule (rank's
// Least and Decide) from its plan, planning again when the plan no longer
// fits what it sees; it counts the choice and returns its index, -1 for
// none. The policy's Select does the same over Caddy's own upstream type:
// a call through the Upstream interface per candidate would cost it more
// than the rest of a choice.
func (p *Pool) Choose() int {
	pl := p.Plan()
	for attempt := 0; ; attempt++ {
		if pl == nil {
			pl = p.Replan()
		}
		var l rank.Least
		for k := range pl.Candidates {
			c := &pl.Candidates[k]
			if u := p.ups[c.Index]; u.Available() {
				l.Offer(pl, c, k, u.NumRequests())
			}
		}
		k, kind, ok := pl.Decide(&l)
		if ok || attempt == 1 {
			if k < 0 {
				return -1
			}
			i := pl.Candidates[k].Index
			p.Count(i, kind)
			return i
		}
		pl = nil
	}
}
