package caddymodule

import (
	"slices"
	"sync/atomic"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"go.uber.org/zap"
)

// resumeCounters count resumes by outcome (resumeOutcomes order).
type resumeCounters [6]atomic.Uint64

// markFailed remembers that dial failed in the middle of a response:
// Caddy's own failure counters are unexported and do not count mid-body
// failures. The upstream counts as down until it reports again (and warms
// up), so no new viewer is sent to it meanwhile.
func (b *board) markFailed(dial string, cause error) {
	e := b.entries.Load().byDial[dial]
	if e == nil {
		return
	}
	e.failures.Add(1)
	b.logger.Warn("upstream failed in the middle of a response", zap.String("upstream", dial), zap.Error(cause))
	down := &view{down: true}
	if prev := e.view.Load(); prev != nil {
		*down = *prev
		down.down, down.trusted = true, false
	}
	down.setCode()
	e.setView(down)
}

// countResume counts a resume outcome.
func (b *board) countResume(outcome string) {
	if i := slices.Index(resumeOutcomes, outcome); i >= 0 {
		b.resumes[i].Add(1)
	}
}

// pickOther chooses, as the tiered policy would, an upstream of the board
// other than those in exclude; nil when there is none.
func (b *board) pickOther(exclude []string) *reverseproxy.Upstream {
	var pool reverseproxy.UpstreamPool
	for _, e := range b.sorted() {
		u := e.upstream.Load()
		if u == nil || u.Host == nil || slices.Contains(exclude, e.dial) || !u.Available() {
			continue
		}
		pool = append(pool, u)
	}
	if len(pool) == 0 {
		return nil
	}
	sel := &TieredSelection{board: b, Choices: 2}
	return sel.Select(pool, nil, nil)
}
