package board

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/edgetier/edgetier/edgeagent"
	"github.com/edgetier/edgetier/internal/rank"
)

// reason is why a poll failed; each has its own counter.
type reason int

const (
	reasonRefused reason = iota
	reasonTimeout
	reasonNetwork
	reasonStatus
	reasonMalformed
	reasonTooLarge
	reasonSchema
	reasonInvalid
	numReasons
	reasonNone reason = -1
)

// reasonLabels label the reasons in metrics; the last four are edgeagent's
// decoding reasons.
var reasonLabels = [numReasons]string{"refused", "timeout", "network", "status",
	edgeagent.ReasonMalformed, edgeagent.ReasonTooLarge, edgeagent.ReasonSchema, edgeagent.ReasonInvalid}

func decodeReason(label string) reason {
	for r, l := range reasonLabels {
		if l == label {
			return reason(r)
		}
	}
	return reasonMalformed
}

// poll asks the agent for a report every interval (±10 % jitter, so many
// balancers do not poll in step) until the board or the edge stops.
func (e *Edge) poll(ctx context.Context) {
	defer recoverAndLog(e.board.logger, "poller")
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		cfg := e.board.cfg.Load()
		e.pollOnce(ctx, cfg)
		jitter := 0.9 + 0.2*rand.Float64()
		timer.Reset(time.Duration(float64(cfg.Interval) * jitter))
	}
}

func (e *Edge) pollOnce(ctx context.Context, cfg *Config) {
	e.polls.Add(1)
	rep, err := e.fetch(ctx, cfg)
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		e.fail(err)
		return
	}
	e.accept(cfg, rep)
}

type pollError struct {
	reason reason
	err    error
}

func (p *pollError) Error() string { return p.err.Error() }

func (e *Edge) fetch(ctx context.Context, cfg *Config) (edgeagent.Report, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.reportURL, nil)
	if err != nil {
		return edgeagent.Report{}, &pollError{reasonNetwork, err}
	}
	req.Header.Set("Accept", "application/json")
	if token := cfg.tokenFor(e.dial); token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	start := time.Now()
	resp, err := e.board.client.Do(req)
	if err != nil {
		return edgeagent.Report{}, &pollError{classifyNetError(err), err}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return edgeagent.Report{}, &pollError{reasonStatus, fmt.Errorf("agent answered %s", resp.Status)}
	}
	e.probe.observe(time.Since(start), 1)
	rep, err := edgeagent.Decode(resp.Body)
	if err != nil {
		var de *edgeagent.DecodeError
		if errors.As(err, &de) {
			return rep, &pollError{decodeReason(de.Reason), err}
		}
		if errors.Is(err, context.DeadlineExceeded) {
			return rep, &pollError{reasonTimeout, err}
		}
		return rep, &pollError{reasonMalformed, err}
	}
	return rep, nil
}

func classifyNetError(err error) reason {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return reasonRefused
	case errors.Is(err, context.DeadlineExceeded):
		return reasonTimeout
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return reasonTimeout
	}
	return reasonNetwork
}

// fail counts and logs (once per change of reason) a failed poll. A refused
// connection to the upstream's own address marks it down at once; other
// failures leave the last report to go stale.
func (e *Edge) fail(err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	r := reasonNetwork
	var pe *pollError
	if errors.As(err, &pe) {
		r = pe.reason
	}
	e.errors[r].Add(1)
	if r != e.lastReason {
		e.board.logger.Warn("agent report failed", zap.String("upstream", e.dial), zap.String("url", e.reportURL),
			zap.String("reason", reasonLabels[r]), zap.Error(err))
		e.lastReason = r
	}
	if r == reasonRefused && e.ownAddress {
		prev := e.view.Load()
		e.setView(rank.MarkDown(prev))
		if prev == nil || !prev.Down {
			e.board.AddEvent(e.dial, "down", "refuses connections: down until it answers")
		}
	}
}

// Report takes in a report of dial's agent that arrived other than by
// polling (in a response, or from a test): it is scored and published as
// a polled one is. Reports for upstreams the board does not track are
// dropped.
func (b *Board) Report(dial string, rep edgeagent.Report) {
	if e := b.edge(dial); e != nil {
		e.accept(b.cfg.Load(), rep)
	}
}

// accept scores a good report and publishes it.
func (e *Edge) accept(cfg *Config, rep edgeagent.Report) {
	e.mu.Lock()
	defer e.mu.Unlock()
	prev := e.view.Load()
	if e.lastReason != reasonNone {
		e.board.logger.Info("agent reports again", zap.String("upstream", e.dial))
		e.lastReason = reasonNone
	}
	v := rank.Accept(prev, rep, time.Now().UnixNano(), e.inFlight(), cfg.Upstreams[e.dial].Capacity, &cfg.Scoring)
	if v == prev {
		return // the same sample again: the agent is not sampling
	}
	if prev != nil && prev.Down {
		e.board.AddEvent(e.dial, "up", "answers again")
	}
	if prev != nil && prev.Report.State != "" && prev.Report.State != rep.State {
		e.board.AddEvent(e.dial, "state", "state %s → %s", prev.Report.State, rep.State)
	}
	e.setView(v)
	e.noteTier(v)
}

// noteTier logs and records a trusted view's change of tier; e.mu is held.
func (e *Edge) noteTier(v *rank.View) {
	if v.Trusted && v.Tier != e.lastTier {
		if e.lastTier != 0 {
			e.board.logger.Info("upstream changed tier", zap.String("upstream", e.dial),
				zap.Uint8("from", uint8(e.lastTier)), zap.Uint8("to", uint8(v.Tier)), zap.Float64("score", v.Score))
			e.board.AddEvent(e.dial, "tier", "tier %d → %d (score %.1f)", e.lastTier, v.Tier, v.Score)
		} else {
			e.board.AddEvent(e.dial, "tier", "trusted in tier %d (score %.1f)", v.Tier, v.Score)
		}
		e.lastTier = v.Tier
	}
}
