package caddymodule

import (
	"context"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"go.uber.org/zap"

	"github.com/edgetier/edgetier/edgeagent"
)

// boards holds one board per pool name. A reload provisions the new config
// (acquiring the board again) before cleaning up the old one, so pollers
// and history carry over.
var boards = caddy.NewUsagePool()

// boardConfig is how a board polls and scores; the policy provisioned last
// sets it.
type boardConfig struct {
	Interval    time.Duration
	Timeout     time.Duration
	StaleAfter  time.Duration
	ForgetAfter time.Duration
	Warmup      int
	ReportURL   string // template over {upstream_host}, {upstream_port}, {upstream}
	Token       string
	Weights     Weights
	Thresholds  Thresholds
	Hysteresis  float64
	Capacity    Capacity
	Choices     int
	Upstreams   map[string]boardUpstream // by dial address
}

// boardUpstream is what the board needs of one upstream's settings.
type boardUpstream struct {
	ReportURL string
	Token     string
	Capacity  Capacity
}

func (c *boardConfig) upstream(dial string) boardUpstream { return c.Upstreams[dial] }

// tokenFor is the bearer token for an upstream's agent.
func (c *boardConfig) tokenFor(dial string) string {
	if t := c.Upstreams[dial].Token; t != "" {
		return t
	}
	return c.Token
}

// board holds what is known about the edges of one pool: the latest view of
// each, published for Select through atomic pointers.
type board struct {
	name   string
	logger *zap.Logger
	ctx    context.Context
	cancel context.CancelFunc
	client *http.Client
	cfg    atomic.Pointer[boardConfig]

	mu      sync.Mutex              // serialises changes to entries
	entries atomic.Pointer[entries] // read without locks by Select
	// now is a coarse clock (unix seconds) for marking upstreams as seen;
	// clock (unix nanoseconds, updated every clockTick) judges freshness in
	// Select without a system call.
	now   atomic.Int64
	clock atomic.Int64
	// version changes with every view, average, configuration and set of
	// entries published, so plans built from older ones are not used.
	version atomic.Uint64
	// planners are the policies whose plans the janitor rebuilds each tick.
	plannersMu sync.Mutex
	planners   map[*TieredSelection]struct{}
	// average of fresh trusted scores, for upstreams with no fresh report.
	average atomic.Pointer[averageView]

	collector *boardCollector
	events    eventLog
	resumes   resumeCounters
}

// entries is an immutable set of polled upstreams; gen changes with it.
type entries struct {
	byDial map[string]*entry
	gen    uint64
}

type averageView struct {
	score float64
	fresh int // trusted upstreams with a fresh report
}

func newBoard(name string, logger *zap.Logger) *board {
	ctx, cancel := context.WithCancel(context.Background())
	b := &board{
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
	}
	b.entries.Store(&entries{byDial: map[string]*entry{}})
	// Defaults until a policy configures the board (a dashboard may
	// provision first).
	defaults := new(TieredSelection)
	defaults.setDefaults()
	b.cfg.Store(defaults.boardConfig())
	b.average.Store(&averageView{})
	b.tick(time.Now())
	b.collector = newBoardCollector(b)
	go b.janitor()
	return b
}

// Destruct stops every poller; the last config using the pool let go.
func (b *board) Destruct() error {
	b.cancel()
	b.client.CloseIdleConnections()
	return nil
}

// configure replaces the board's configuration.
func (b *board) configure(cfg *boardConfig) {
	b.cfg.Store(cfg)
	b.version.Add(1)
}

// lookup returns the entry for an upstream, starting to poll it the first
// time it is seen (the only path of Select that allocates, once per edge).
func (b *board) lookup(u *reverseproxy.Upstream) *entry {
	if e := b.entries.Load().byDial[u.Dial]; e != nil {
		return e
	}
	return b.add(u)
}

func (b *board) add(u *reverseproxy.Upstream) *entry {
	b.mu.Lock()
	defer b.mu.Unlock()
	cur := b.entries.Load()
	if e := cur.byDial[u.Dial]; e != nil {
		return e
	}
	if b.ctx.Err() != nil {
		return nil
	}
	cfg := b.cfg.Load()
	e, err := newEntry(b, u, cfg)
	if err != nil {
		// An address the report URL cannot be built from: proxy it without
		// reports (it is "unknown"), and say so once.
		b.logger.Warn("cannot poll upstream's agent", zap.String("upstream", u.Dial), zap.Error(err))
	}
	next := &entries{byDial: make(map[string]*entry, len(cur.byDial)+1), gen: cur.gen + 1}
	for k, v := range cur.byDial {
		next.byDial[k] = v
	}
	next.byDial[u.Dial] = e
	b.entries.Store(next)
	b.version.Add(1)
	if e.reportURL != "" {
		ctx, cancel := context.WithCancel(b.ctx)
		e.cancel = cancel
		go e.poll(ctx)
	}
	return e
}

// clockTick is the resolution of the board's clock: freshness (seconds)
// is judged to within it.
const clockTick = 50 * time.Millisecond

// janitor ticks the clocks, forgets upstreams unseen for a while and keeps
// the average current as reports go stale.
func (b *board) janitor() {
	defer recoverAndLog(b.logger, "board janitor")
	ticker := time.NewTicker(clockTick)
	defer ticker.Stop()
	ticks := 0
	for {
		select {
		case <-b.ctx.Done():
			return
		case t := <-ticker.C:
			if b.tick(t) {
				b.forgetUnseen(t)
			}
			b.updateAverage(t)
			ticks++
			b.judgeLatencies(ticks%int(latencyWindow/clockTick) == 0)
			b.replanAll()
		}
	}
}

// tick advances the clocks and reports whether a new second began.
func (b *board) tick(t time.Time) bool {
	b.clock.Store(t.UnixNano())
	return b.now.Swap(t.Unix()) != t.Unix()
}

func (b *board) forgetUnseen(now time.Time) {
	cfg := b.cfg.Load()
	cutoff := now.Add(-cfg.ForgetAfter).Unix()
	b.mu.Lock()
	defer b.mu.Unlock()
	cur := b.entries.Load()
	var gone []string
	for dial, e := range cur.byDial {
		if e.lastSeen.Load() < cutoff {
			gone = append(gone, dial)
		}
	}
	if len(gone) == 0 {
		return
	}
	next := &entries{byDial: make(map[string]*entry, len(cur.byDial)), gen: cur.gen + 1}
	for k, v := range cur.byDial {
		next.byDial[k] = v
	}
	for _, dial := range gone {
		next.byDial[dial].stop()
		delete(next.byDial, dial)
		b.logger.Info("stopped polling upstream no longer in any pool", zap.String("upstream", dial))
	}
	b.entries.Store(next)
	b.version.Add(1)
}

// updateAverage recomputes the mean score of trusted fresh upstreams.
func (b *board) updateAverage(now time.Time) {
	cfg := b.cfg.Load()
	var sum float64
	var n int
	nowNanos := now.UnixNano()
	for _, e := range b.entries.Load().byDial {
		v := e.view.Load()
		if v.usable(nowNanos, cfg.StaleAfter) {
			sum += v.score
			n++
		}
		stale := v != nil && v.receivedAt != 0 && nowNanos-v.receivedAt > int64(cfg.StaleAfter)
		if stale && !e.stale.Swap(true) {
			b.events.add(e.dial, "stale", "no good report for %s", cfg.StaleAfter)
		} else if !stale {
			e.stale.Store(false)
		}
	}
	avg := &averageView{fresh: n}
	if n > 0 {
		avg.score = sum / float64(n)
	}
	b.average.Store(avg)
	b.version.Add(1)
}

// sorted returns the entries ordered by address, for stable output.
func (b *board) sorted() []*entry {
	cur := b.entries.Load()
	list := make([]*entry, 0, len(cur.byDial))
	for _, e := range cur.byDial {
		list = append(list, e)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].dial < list[j].dial })
	return list
}

// view is an immutable summary of an upstream's last report, scored.
type view struct {
	report     edgeagent.Report
	receivedAt int64 // unix nanoseconds, by the balancer's clock
	trusted    bool  // warm-up done
	down       bool  // its own address refuses connections
	comp       [numComponents]float64
	score      float64 // as reported, before the proxy's correction
	held       float64 // score with peak hold (see accept), what tiers use
	// scoreNoStreams is the score without the streams component, which
	// Select recomputes from the proxy's own in-flight count.
	scoreNoStreams   float64
	streamsWeight    float64 // weight of the streams component
	streamsScale     float64 // 100 / capacity: component points per stream
	inflightAtReport int
	tier             int
	// stayLo and stayHi bound the scores that keep tier (hysteresis).
	stayLo, stayHi float64
	// code sums up down, state and trust for Select.
	code viewCode
}

// viewCode is what Select does with a view received within stale_after.
type viewCode uint8

const (
	codeTrusted viewCode = iota // scored
	codeWarming                 // not trusted yet: average
	codeDrain
	codeMaint
	codeDown // whatever the report's age
)

func (v *view) setCode() {
	switch {
	case v.down:
		v.code = codeDown
	case v.report.State == edgeagent.StateMaint:
		v.code = codeMaint
	case v.report.State == edgeagent.StateDrain:
		v.code = codeDrain
	case !v.trusted:
		v.code = codeWarming
	default:
		v.code = codeTrusted
	}
}

// tierFor is the tier of a corrected score: the report's tier while the
// score stays within its hysteresis band, else the tier the score falls in.
func (v *view) tierFor(score float64, th Thresholds) int {
	if score >= v.stayLo && score < v.stayHi {
		return v.tier
	}
	return rawTier(score, th)
}

// usable reports whether v is a trusted report received within staleAfter.
func (v *view) usable(nowNanos int64, staleAfter time.Duration) bool {
	return v != nil && v.trusted && !v.down && nowNanos-v.receivedAt <= int64(staleAfter)
}

// correctedScore is v's score with the streams component recomputed from
// what the proxy sees now.
func (v *view) correctedScore(inflightNow int) float64 {
	streams := correctedStreams(v.report.Streams, v.inflightAtReport, inflightNow)
	return v.scoreNoStreams + v.streamsWeight*clamp100(streams*v.streamsScale)
}

func recoverAndLog(logger *zap.Logger, what string) {
	if err := recover(); err != nil {
		logger.Error(what+" panicked", zap.Any("panic", err), zap.Stack("stack"))
	}
}
