package board

import (
	"slices"

	"go.uber.org/zap"

	"github.com/edgetier/edgetier/internal/rank"
)

// Outcome is what a resume of a failed response did.
type Outcome int

// The outcomes of a resume, counted in edgetier_resumes_total.
const (
	ResumeOK       Outcome = iota
	ResumeNoEdge           // no other edge was available
	ResumeMismatch         // another edge had another representation or range
	ResumeFailed           // the resume requests themselves failed
	ResumeLimit            // the response had used its resumes or budget
	ResumeOff              // resuming is off: the failure was only remembered
	numOutcomes
)

var outcomeLabels = [numOutcomes]string{"ok", "no_edge", "mismatch", "failed", "limit", "disabled"}

// String is the outcome's label.
func (o Outcome) String() string { return outcomeLabels[o] }

// CountResume counts a resume outcome.
func (b *Board) CountResume(o Outcome) { b.resumes[o].Add(1) }

// MarkFailed remembers that dial failed in the middle of a response:
// Caddy's own failure counters are unexported and do not count mid-body
// failures. The upstream counts as down until it reports again (and warms
// up), so no new viewer is sent to it meanwhile.
func (b *Board) MarkFailed(dial string, cause error) {
	e := b.edge(dial)
	if e == nil {
		return
	}
	e.failures.Add(1)
	b.logger.Warn("upstream failed in the middle of a response", zap.String("upstream", dial), zap.Error(cause))
	e.setView(rank.MarkDown(e.view.Load()))
}

// Pick chooses, by the same rule as the policy, an available upstream of
// the board other than those in exclude; nil when there is none.
func (b *Board) Pick(exclude []string) Upstream {
	var dials []string
	var ups []Upstream
	for _, e := range b.Edges() {
		p := e.upstream.Load()
		if p == nil || *p == nil || slices.Contains(exclude, e.dial) || !(*p).Available() {
			continue
		}
		dials, ups = append(dials, e.dial), append(ups, *p)
	}
	if len(ups) == 0 {
		return nil
	}
	if i := b.Pool(dials, ups).Choose(); i >= 0 {
		return ups[i]
	}
	return nil
}
