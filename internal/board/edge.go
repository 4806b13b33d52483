package board

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/edgetier/edgetier/internal/rank"
)

// Edge is one tracked upstream: its view, its poller and what the proxy
// has seen of it.
type Edge struct {
	dial      string
	reportURL string
	// ownAddress: the report comes from the upstream's own address, so a
	// refused poll means the upstream itself refuses connections.
	ownAddress bool
	cancel     context.CancelFunc
	board      *Board

	view     atomic.Pointer[rank.View]
	upstream atomic.Pointer[Upstream] // latest seen, for its in-flight count
	lastSeen atomic.Int64             // board clock when a pool last held it

	latency latency // the proxy's answers (edgetier transport); holds the judgement
	// probe is the report poll's own round trip, connect to first byte: a
	// latency probe that needs neither viewers nor the transport, so the
	// policy alone sees a starved edge, whose agent answers late too.
	probe      latency
	outcomes   outcomes
	selections [rank.NumKinds]atomic.Uint64
	errors     [numReasons]atomic.Uint64
	polls      atomic.Uint64
	failures   atomic.Uint64 // mid-stream failures reported by the proxy
	stale      atomic.Bool   // set by the janitor
	sent       sentBytes     // response bytes the proxy read from it

	inBand           [numInBandResults]atomic.Uint64
	lastInBand       atomic.Int64 // unix nanoseconds of the latest header taken in
	loadHeaderReason atomic.Int32 // inBandResult of the latest bad header; inBandGood after a good one

	// mu serialises taking reports in (polled and in-band) and failures.
	mu         sync.Mutex
	lastReason reason
	lastTier   rank.Tier
}

func newEdge(b *Board, dial string, u Upstream, cfg *Config) (*Edge, error) {
	e := &Edge{dial: dial, board: b, lastReason: reasonNone}
	e.loadHeaderReason.Store(int32(inBandGood))
	e.upstream.Store(&u)
	e.lastSeen.Store(b.clock())
	e.outcomes.unavailSince = b.clock()
	target, own, err := reportURL(cfg, dial)
	if err != nil {
		return e, err
	}
	e.reportURL, e.ownAddress = target, own
	return e, nil
}

// Dial is the upstream's address.
func (e *Edge) Dial() string { return e.dial }

// View is the upstream's latest view; nil before a report.
func (e *Edge) View() *rank.View { return e.view.Load() }

// Count counts a selection of the upstream.
func (e *Edge) Count(kind rank.Kind) { e.selections[kind].Add(1) }

// seen marks the upstream held by a pool at clock now, through u.
func (e *Edge) seen(now int64, u Upstream) {
	if now/1e9 != e.lastSeen.Load()/1e9 {
		e.lastSeen.Store(now)
	}
	if p := e.upstream.Load(); p == nil || *p != u {
		v := u // a copy only here: taking u's address would move it to the heap on every call
		e.upstream.Store(&v)
	}
}

// inFlight is the proxy's requests in flight to the upstream.
func (e *Edge) inFlight() int {
	if p := e.upstream.Load(); p != nil && *p != nil {
		return (*p).NumRequests()
	}
	return 0
}

func (e *Edge) stop() {
	if e.cancel != nil {
		e.cancel()
	}
}

// setView publishes a new view and tells the subscribers.
func (e *Edge) setView(v *rank.View) {
	e.markSent(v)
	e.view.Store(v)
	e.board.changed(e.board.clock())
}

// ValidateReportURL says what is wrong with a report URL template, if
// anything, for an upstream at dial.
func ValidateReportURL(template, dial string) error {
	_, _, err := reportURL(&Config{ReportURL: template}, dial)
	return err
}

// reportURL builds the agent's URL for an upstream: an explicit one from
// the Caddyfile, else the template over the upstream's address.
func reportURL(cfg *Config, dial string) (string, bool, error) {
	host, port, err := net.SplitHostPort(dial)
	if err != nil {
		return "", false, fmt.Errorf("upstream address %q: %w", dial, err)
	}
	tmpl := cfg.ReportURL
	if u := cfg.Upstreams[dial]; u.ReportURL != "" {
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
