package board

import (
	"errors"
	"time"

	"go.uber.org/zap"

	"github.com/edgetier/edgetier/edgeagent"
	"github.com/edgetier/edgetier/internal/rank"
)

// inBandResult is what became of a load header; each has its own counter.
type inBandResult int32

const (
	inBandAccepted  inBandResult = iota // the view was refreshed
	inBandCoalesced                     // good, within minInBandGap of the upstream's last one taken in
	inBandIgnored                       // good, but its view is not one a header refreshes (rank.Refresh)
	inBandMalformed                     // the rest are edgeagent's decoding reasons
	inBandTooLarge
	inBandUnsupported
	inBandInvalid
	numInBandResults
	inBandGood inBandResult = -1 // the latest header was good: nothing to log
)

// inBandLabels label the results in metrics.
var inBandLabels = [numInBandResults]string{"accepted", "coalesced", "ignored",
	edgeagent.ReasonMalformed, edgeagent.ReasonTooLarge, edgeagent.ReasonUnsupported, edgeagent.ReasonInvalid}

// minInBandGap is how often at most a response's load refreshes an
// upstream's view. A refresh allocates a view and replans every policy on
// the board; a busy edge answers thousands of responses a second, whose
// figures change once per agent sample but for the stream count. 20 ms is
// below the board's tick (50 ms), the resolution freshness is judged at,
// so the view is still as fresh as the board can tell.
const minInBandGap = 20 * time.Millisecond

// InBand takes in the values of the load header (edgeagent.LoadHeader)
// of a response from upstream dial, which arrived with inflight of the
// proxy's requests on it (that one included). A good header refreshes the
// upstream's view between polls (rank.Refresh); a bad one is counted and
// logged once per change of reason, as a bad polled report is, and
// otherwise ignored. Upstreams the board does not track are dropped.
func (b *Board) InBand(dial string, values []string, inflight int) {
	if len(values) == 0 {
		return
	}
	e := b.edge(dial)
	if e == nil {
		return
	}
	if len(values) > 1 {
		e.badLoadHeader(inBandMalformed, errors.New("malformed load header: the header appears more than once"))
		return
	}
	load, err := edgeagent.ParseLoadHeader(values[0])
	if err != nil {
		var de *edgeagent.DecodeError
		r := inBandMalformed
		if errors.As(err, &de) {
			r = decodeInBand(de.Reason)
		}
		e.badLoadHeader(r, err)
		return
	}
	if inBandResult(e.loadHeaderReason.Load()) != inBandGood && inBandResult(e.loadHeaderReason.Swap(int32(inBandGood))) != inBandGood {
		b.logger.Info("agent load headers good again", zap.String("upstream", dial))
	}
	now := time.Now().UnixNano()
	last := e.lastInBand.Load()
	if now-last < int64(minInBandGap) || !e.lastInBand.CompareAndSwap(last, now) {
		e.inBand[inBandCoalesced].Add(1)
		return
	}
	e.inBand[e.refresh(&load, now, inflight)].Add(1)
}

func decodeInBand(label string) inBandResult {
	for r := inBandMalformed; r < numInBandResults; r++ {
		if inBandLabels[r] == label {
			return r
		}
	}
	return inBandMalformed
}

// badLoadHeader counts a rejected header and logs it once per change of reason.
func (e *Edge) badLoadHeader(r inBandResult, err error) {
	e.inBand[r].Add(1)
	if inBandResult(e.loadHeaderReason.Swap(int32(r))) != r {
		e.board.logger.Warn("agent load header rejected", zap.String("upstream", e.dial),
			zap.String("reason", inBandLabels[r]), zap.Error(err))
	}
}

// refresh brings the view up to date from a response's load.
func (e *Edge) refresh(load *edgeagent.Load, now int64, inflight int) inBandResult {
	cfg := e.board.cfg.Load()
	e.mu.Lock()
	defer e.mu.Unlock()
	prev := e.view.Load()
	v := rank.Refresh(prev, load, now, inflight, cfg.Upstreams[e.dial].Capacity, &cfg.Scoring)
	if v == prev {
		return inBandIgnored
	}
	e.setView(v)
	e.noteTier(v)
	return inBandAccepted
}
