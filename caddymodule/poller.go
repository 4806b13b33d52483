package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"go.uber.org/zap"

	"github.com/edgetier/edgetier/edgeagent"
)

// Reasons a poll fails, beside edgeagent's decoding reasons.
const (
	reasonRefused = "refused"
	reasonTimeout = "timeout"
	reasonNetwork = "network"
	reasonStatus  = "status"
)

// scoreHold is the time constant with which a falling score is believed.
const scoreHold = 5 * time.Second

// reportErrorReasons are every reason a report can be rejected for; each
// has its own counter so none is created on the fly.
var reportErrorReasons = []string{
	reasonRefused, reasonTimeout, reasonNetwork, reasonStatus,
	edgeagent.ReasonMalformed, edgeagent.ReasonTooLarge, edgeagent.ReasonSchema, edgeagent.ReasonInvalid,
}

// Selection outcomes counted per upstream: tiers 1–4 and the fallbacks.
const (
	selUnknown  = 0 // no fresh trusted report: treated as average
	selFallback = 5 // no fresh report anywhere: least in flight
	selDrain    = 6 // only draining edges could serve
	selDown     = 7 // only edges the board saw down could serve
	numSelKinds = 8
)

var selectionLabels = [numSelKinds]string{"unknown", "1", "2", "3", "4", "fallback", "drain", "down"}

// entry is one polled upstream.
type entry struct {
	dial      string
	reportURL string
	// ownAddress: the report comes from the upstream's own address, so a
	// refused poll means the upstream itself refuses connections.
	ownAddress bool
	cancel     context.CancelFunc
	board      *board

	view     atomic.Pointer[view]
	upstream atomic.Pointer[reverseproxy.Upstream] // latest seen, for its in-flight count
	lastSeen atomic.Int64                          // board.now when a pool last held it

	latency    latency // what the proxy sees of its time to first byte
	selections [numSelKinds]atomic.Uint64
	errors     map[string]*atomic.Uint64 // by reason; the map is never written after creation
	polls      atomic.Uint64
	failures   atomic.Uint64 // mid-stream failures reported by the proxy
	stale      atomic.Bool   // set by the board's janitor

	// owned by the poll goroutine
	goodStreak int
	lastReason string
	lastTier   int
}

func newEntry(b *board, u *reverseproxy.Upstream, cfg *boardConfig) (*entry, error) {
	e := &entry{dial: u.Dial, board: b, errors: make(map[string]*atomic.Uint64, len(reportErrorReasons))}
	for _, r := range reportErrorReasons {
		e.errors[r] = new(atomic.Uint64)
	}
	e.upstream.Store(u)
	e.lastSeen.Store(b.now.Load())
	target, own, err := reportURL(cfg, u.Dial)
	if err != nil {
		return e, err
	}
	e.reportURL, e.ownAddress = target, own
	return e, nil
}

// reportURL builds the agent's URL for an upstream: an explicit one from
// the Caddyfile, else the template over the upstream's address.
func reportURL(cfg *boardConfig, dial string) (string, bool, error) {
	host, port, err := net.SplitHostPort(dial)
	if err != nil {
		return "", false, fmt.Errorf("upstream address %q: %w", dial, err)
	}
	tmpl := cfg.ReportURL
	if u := cfg.upstream(dial); u.ReportURL != "" {
		tmpl = u.ReportURL
	}
	hostPort := net.JoinHostPort(host, port)
	target := strings.NewReplacer("{upstream}", hostPort, "{upstream_host}", host, "{upstream_port}", port).Replace(tmpl)
	parsed, err := url.Parse(target)
	if err != nil || (parsed.Scheme != "http" && parsed.Scheme != "https") || parsed.Host == "" {
		return "", false, fmt.Errorf("report URL %q for upstream %s is not an http(s) URL", target, dial)
	}
	return target, parsed.Host == hostPort, nil
}

func (e *entry) stop() {
	if e.cancel != nil {
		e.cancel()
	}
}

// poll asks the agent for a report every interval (±10 % jitter, so many
// balancers do not poll in step) until the board or the entry stops.
func (e *entry) poll(ctx context.Context) {
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

func (e *entry) pollOnce(ctx context.Context, cfg *boardConfig) {
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
	reason string
	err    error
}

func (p *pollError) Error() string { return p.err.Error() }

func (e *entry) fetch(ctx context.Context, cfg *boardConfig) (edgeagent.Report, error) {
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
	resp, err := e.board.client.Do(req)
	if err != nil {
		return edgeagent.Report{}, &pollError{classifyNetError(err), err}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return edgeagent.Report{}, &pollError{reasonStatus, fmt.Errorf("agent answered %s", resp.Status)}
	}
	rep, err := edgeagent.Decode(resp.Body)
	if err != nil {
		var de *edgeagent.DecodeError
		if errors.As(err, &de) {
			return rep, &pollError{de.Reason, err}
		}
		if errors.Is(err, context.DeadlineExceeded) {
			return rep, &pollError{reasonTimeout, err}
		}
		return rep, &pollError{edgeagent.ReasonMalformed, err}
	}
	return rep, nil
}

func classifyNetError(err error) string {
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
func (e *entry) fail(err error) {
	reason := reasonNetwork
	var pe *pollError
	if errors.As(err, &pe) {
		reason = pe.reason
	}
	if c := e.errors[reason]; c != nil {
		c.Add(1)
	}
	if reason != e.lastReason {
		e.board.logger.Warn("agent report failed", zap.String("upstream", e.dial), zap.String("url", e.reportURL),
			zap.String("reason", reason), zap.Error(err))
		e.lastReason = reason
	}
	if reason == reasonRefused && e.ownAddress {
		down := &view{down: true}
		prev := e.view.Load()
		if prev != nil {
			*down = *prev
			down.down, down.trusted = true, false
		}
		down.setCode()
		e.setView(down)
		if prev == nil || !prev.down {
			e.board.events.add(e.dial, "down", "refuses connections: down until it answers")
		}
	}
	// Otherwise the last good report stays until it goes stale; accept
	// asks for a new warm-up once an upstream comes back from stale.
}

// accept scores a good report and publishes it.
func (e *entry) accept(cfg *boardConfig, rep edgeagent.Report) {
	now := time.Now()
	prev := e.view.Load()
	if prev == nil || prev.down || now.UnixNano()-prev.receivedAt > int64(cfg.StaleAfter) {
		e.goodStreak = 0 // a returning upstream warms up again
	}
	e.goodStreak++
	if e.lastReason != "" {
		e.board.logger.Info("agent reports again", zap.String("upstream", e.dial))
		e.lastReason = ""
	}
	if prev != nil && prev.down {
		e.board.events.add(e.dial, "up", "answers again")
	}
	if prev != nil && prev.report.State != "" && prev.report.State != rep.State {
		e.board.events.add(e.dial, "state", "state %s → %s", prev.report.State, rep.State)
	}
	capacity := capacityOf(&rep).merge(cfg.upstream(e.dial).Capacity).merge(cfg.Capacity)
	comp := components(&rep, capacity)
	v := &view{
		report:        rep,
		receivedAt:    now.UnixNano(),
		trusted:       e.goodStreak >= cfg.Warmup,
		comp:          comp,
		score:         score(comp, cfg.Weights),
		streamsWeight: cfg.Weights[compStreams],
		streamsScale:  100 / capacity.Streams,
	}
	without := comp
	without[compStreams] = 0
	v.scoreNoStreams = score(without, cfg.Weights)
	// Peak hold: a score that falls is believed only gradually. An edge that
	// is saturated when busy (a small CPU quota) looks idle as soon as
	// viewers leave it; without the hold it would win the next burst, flap
	// between tiers every report, and its slow answers would be the tail.
	v.held = v.score
	if prev != nil && !prev.down && prev.receivedAt != 0 {
		decayed := prev.held * math.Exp(-float64(v.receivedAt-prev.receivedAt)/float64(scoreHold))
		if decayed > v.held {
			v.held = decayed
		}
	}
	v.scoreNoStreams += v.held - v.score
	if u := e.upstream.Load(); u != nil && u.Host != nil {
		v.inflightAtReport = u.NumRequests()
	}
	prevTier := 0
	if prev != nil {
		prevTier = prev.tier
	}
	v.tier = tierOf(v.correctedScore(v.inflightAtReport), prevTier, cfg.Thresholds, cfg.Hysteresis)
	v.stayLo, v.stayHi = stayBand(v.tier, cfg.Thresholds, cfg.Hysteresis)
	v.setCode()
	e.setView(v)
	if v.trusted && v.tier != e.lastTier {
		if e.lastTier != 0 {
			e.board.logger.Info("upstream changed tier", zap.String("upstream", e.dial),
				zap.Int("from", e.lastTier), zap.Int("to", v.tier), zap.Float64("score", v.score))
			e.board.events.add(e.dial, "tier", "tier %d → %d (score %.1f)", e.lastTier, v.tier, v.score)
		} else {
			e.board.events.add(e.dial, "tier", "trusted in tier %d (score %.1f)", v.tier, v.score)
		}
		e.lastTier = v.tier
	}
}
