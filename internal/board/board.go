package board

import (
	"context"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/edgetier/edgetier/edgeagent"
	"github.com/edgetier/edgetier/internal/rank"
)

// Upstream is what the board needs of an upstream besides its address.
type Upstream interface {
	// Available reports whether the upstream may take a request now.
	Available() bool
	// NumRequests is the proxy's requests in flight to it.
	NumRequests() int
}

// Config is how a board polls and scores; the policy provisioned last sets it.
type Config struct {
	Interval    time.Duration
	Timeout     time.Duration
	ForgetAfter time.Duration
	ReportURL   string // template over {upstream_host}, {upstream_port}, {upstream}
	Token       string
	Scoring     rank.Scoring
	// Headroom is the link utilisation above which an upstream takes no
	// new viewers while another has headroom (link_headroom).
	Headroom float64
	// Single: always the single best (choices 1).
	Single bool
	// Ejection is when an upstream answering errors is taken out, and for
	// how long (outcomes.go).
	Ejection rank.Ejection
	// SlowStart is how long a new or returning upstream ramps up to its
	// full share (slowstart.go); 0: off.
	SlowStart time.Duration
	Upstreams map[string]UpstreamConfig // by dial address
}

// UpstreamConfig is one upstream's own settings.
type UpstreamConfig struct {
	ReportURL string
	Token     string
	Capacity  rank.Capacity
}

// DefaultConfig is what a board uses until a policy configures it.
func DefaultConfig() *Config {
	return &Config{
		Interval: time.Second, Timeout: time.Second / 2, ForgetAfter: 5 * time.Minute,
		ReportURL: "http://{upstream}" + edgeagent.DefaultReportPath,
		Scoring: rank.Scoring{
			Weights: rank.DefaultWeights, Thresholds: rank.DefaultThresholds, Hysteresis: 5,
			Capacity: rank.DefaultCapacity, Warmup: 2, StaleAfter: 3 * time.Second,
		},
		Ejection: rank.DefaultEjection,
		Headroom: rank.DefaultHeadroom,
	}
}

// tokenFor is the bearer token for an upstream's agent.
func (c *Config) tokenFor(dial string) string {
	if t := c.Upstreams[dial].Token; t != "" {
		return t
	}
	return c.Token
}

// tick is the resolution of the board's clock: freshness is judged, and
// plans are rebuilt, to within it.
const tick = 50 * time.Millisecond

// Board holds what is known about the edges of one pool.
type Board struct {
	name   string
	logger *zap.Logger
	ctx    context.Context
	cancel context.CancelFunc
	client *http.Client
	cfg    atomic.Pointer[Config]

	mu    sync.Mutex            // serialises changes to edges
	edges atomic.Pointer[edges] // read without locks
	// epoch changes with every view, average, configuration and set of
	// edges published, and every tick of the clock: plans are built for
	// one, so plans built from older ones are not used. A change is
	// planned for its new epoch (pending) before that is published, so a
	// request never finds the current plans out of date.
	epoch   atomic.Pointer[epoch]
	pending atomic.Pointer[epoch]
	average atomic.Pointer[average]

	subsMu sync.Mutex
	subs   map[*func()]struct{}

	// ejectMu serialises ejections and returns, so that no more of the
	// pool is ejected than it allows.
	ejectMu sync.Mutex

	events    eventLog
	resumes   [numOutcomes]atomic.Uint64
	collector *collector
}

// edges is an immutable set of polled upstreams; gen changes with it.
type edges struct {
	byDial map[string]*Edge
	gen    uint64
}

// epoch is one state of the board, at a time of its clock.
type epoch struct {
	// clock (unix nanoseconds, advanced every tick) is the board's one
	// clock: freshness is judged by it without a system call.
	clock int64
}

type average struct {
	score float64
	fresh int // trusted upstreams with a fresh report
}

// New starts a board (its clock); it polls upstreams once they are tracked.
func New(name string, logger *zap.Logger) *Board {
	ctx, cancel := context.WithCancel(context.Background())
	b := &Board{
		name:   name,
		logger: logger.With(zap.String("pool", name)),
		ctx:    ctx,
		cancel: cancel,
		client: &http.Client{
			Transport: &http.Transport{
				MaxIdleConnsPerHost: 2,
				IdleConnTimeout:     time.Minute,
				DisableCompression:  true,
			},
			// Reports are never redirected: a redirect could point the
			// poller anywhere an agent chooses.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		subs: map[*func()]struct{}{},
	}
	b.edges.Store(&edges{byDial: map[string]*Edge{}})
	b.cfg.Store(DefaultConfig())
	b.average.Store(&average{})
	b.epoch.Store(&epoch{clock: time.Now().UnixNano()})
	b.collector = newCollector(b)
	go b.janitor()
	return b
}

// Name is the pool's name.
func (b *Board) Name() string { return b.name }

// Destruct stops every poller: the last config using the pool let go.
func (b *Board) Destruct() error {
	b.cancel()
	b.client.CloseIdleConnections()
	return nil
}

// Configure replaces the board's configuration.
func (b *Board) Configure(cfg *Config) {
	b.cfg.Store(cfg)
	b.changed(b.clock())
}

// Config is the board's configuration.
func (b *Board) Config() *Config { return b.cfg.Load() }

// Subscribe has fn called after every change of a view and every tick of
// the clock; the returned function ends the subscription.
func (b *Board) Subscribe(fn func()) (cancel func()) {
	key := &fn
	b.subsMu.Lock()
	b.subs[key] = struct{}{}
	b.subsMu.Unlock()
	return func() {
		b.subsMu.Lock()
		delete(b.subs, key)
		b.subsMu.Unlock()
	}
}

// clock is the board's clock, unix nanoseconds.
func (b *Board) clock() int64 { return b.epoch.Load().clock }

// changed publishes a change at clock: the subscribers plan for the new
// epoch, which is then published.
func (b *Board) changed(clock int64) {
	b.subsMu.Lock()
	defer b.subsMu.Unlock()
	next := &epoch{clock: clock}
	b.pending.Store(next)
	for fn := range b.subs {
		(*fn)()
	}
	b.epoch.Store(next)
	b.pending.Store(nil)
}

// planning is the epoch a plan built now is for.
func (b *Board) planning() *epoch {
	if e := b.pending.Load(); e != nil {
		return e
	}
	return b.epoch.Load()
}

// Track returns the board's edge for an upstream, polling its agent from
// the first time it is seen.
func (b *Board) Track(dial string, u Upstream) *Edge {
	if e := b.edges.Load().byDial[dial]; e != nil {
		e.seen(b.clock(), u)
		return e
	}
	return b.add(dial, u)
}

func (b *Board) add(dial string, u Upstream) *Edge {
	b.mu.Lock()
	cur := b.edges.Load()
	if e := cur.byDial[dial]; e != nil {
		b.mu.Unlock()
		return e
	}
	if b.ctx.Err() != nil {
		b.mu.Unlock()
		return nil
	}
	e, err := newEdge(b, dial, u, b.cfg.Load())
	if err != nil {
		// An address the report URL cannot be built from: proxy it without
		// reports (it is "unknown"), and say so once.
		b.logger.Warn("cannot poll upstream's agent", zap.String("upstream", dial), zap.Error(err))
	}
	next := &edges{byDial: make(map[string]*Edge, len(cur.byDial)+1), gen: cur.gen + 1}
	for k, v := range cur.byDial {
		next.byDial[k] = v
	}
	next.byDial[dial] = e
	b.edges.Store(next)
	if e.reportURL != "" {
		ctx, cancel := context.WithCancel(b.ctx)
		e.cancel = cancel
		go e.poll(ctx)
	}
	b.mu.Unlock()
	b.changed(b.clock())
	return e
}

// Edges returns the tracked upstreams ordered by address.
func (b *Board) Edges() []*Edge {
	cur := b.edges.Load()
	list := make([]*Edge, 0, len(cur.byDial))
	for _, e := range cur.byDial {
		list = append(list, e)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].dial < list[j].dial })
	return list
}

// edge returns the tracked upstream with address dial, nil for none.
func (b *Board) edge(dial string) *Edge { return b.edges.Load().byDial[dial] }

// janitor ticks the clock, forgets upstreams unseen for a while, keeps the
// average and the latency judgement current, and tells the subscribers.
func (b *Board) janitor() {
	defer recoverAndLog(b.logger, "board janitor")
	ticker := time.NewTicker(tick)
	defer ticker.Stop()
	ticks := 0
	for {
		select {
		case <-b.ctx.Done():
			return
		case t := <-ticker.C:
			if b.clock()/1e9 != t.Unix() {
				b.forgetUnseen(t.UnixNano())
			}
			b.updateAverage(t.UnixNano())
			ticks++
			rotate := ticks%int(latencyWindow/tick) == 0
			b.judgeLatencies(t.UnixNano(), rotate)
			list := b.Edges()
			b.updateOutcomes(list, t.UnixNano(), rotate)
			b.trackRamps(list, t.UnixNano())
			b.changed(t.UnixNano())
		}
	}
}

func (b *Board) forgetUnseen(now int64) {
	cutoff := now - int64(b.cfg.Load().ForgetAfter)
	b.mu.Lock()
	defer b.mu.Unlock()
	cur := b.edges.Load()
	var gone []string
	for dial, e := range cur.byDial {
		if e.lastSeen.Load() < cutoff {
			gone = append(gone, dial)
		}
	}
	if len(gone) == 0 {
		return
	}
	next := &edges{byDial: make(map[string]*Edge, len(cur.byDial)), gen: cur.gen + 1}
	for k, v := range cur.byDial {
		next.byDial[k] = v
	}
	for _, dial := range gone {
		next.byDial[dial].stop()
		delete(next.byDial, dial)
		b.logger.Info("stopped polling upstream no longer in any pool", zap.String("upstream", dial))
	}
	b.edges.Store(next)
}

// updateAverage recomputes the mean score of trusted fresh upstreams and
// notes upstreams going stale.
func (b *Board) updateAverage(now int64) {
	stale := int64(b.cfg.Load().Scoring.StaleAfter)
	cur := b.edges.Load()
	views := make([]*rank.View, 0, len(cur.byDial))
	for _, e := range cur.byDial {
		v := e.view.Load()
		views = append(views, v)
		isStale := v != nil && v.ReceivedAt != 0 && v.Stale(now, stale)
		if isStale && !e.stale.Swap(true) {
			b.AddEvent(e.dial, "stale", "no good report for %s", time.Duration(stale))
		} else if !isStale {
			e.stale.Store(false)
		}
	}
	score, n := rank.Average(views, now, stale)
	b.average.Store(&average{score: score, fresh: n})
}

// judge is what the board knows beside the views, for planning at clock now.
func (b *Board) judge(now int64) *rank.Judge {
	cfg := b.cfg.Load()
	s := &cfg.Scoring
	return &rank.Judge{
		Now:        now,
		StaleAfter: int64(s.StaleAfter),
		Average:    b.average.Load().score,
		PerStream:  s.Weights[rank.Streams] * 100 / s.Capacity.Streams,
		Thresholds: s.Thresholds,
		Hysteresis: s.Hysteresis,
		Single:     cfg.Single,
		MaxEjected: cfg.Ejection.MaxEjected,
		SlowStart:  int64(cfg.SlowStart),
		Headroom:   cfg.Headroom,
	}
}

func recoverAndLog(logger *zap.Logger, what string) {
	if err := recover(); err != nil {
		logger.Error(what+" panicked", zap.Any("panic", err), zap.Stack("stack"))
	}
}
