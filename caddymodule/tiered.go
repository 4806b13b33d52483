package caddymodule

import (
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgetier/edgetier/edgeagent"
	"github.com/edgetier/edgetier/internal/board"
	"github.com/edgetier/edgetier/internal/rank"
)

func init() {
	caddy.RegisterModule(new(TieredSelection))
}

// TieredSelection is a reverse_proxy selection policy that scores each
// upstream from its agent's load reports with the weighted 4-tier
// algorithm and picks, among the least loaded, the one with the fewest of
// its requests in flight (README "How it works").
type TieredSelection struct {
	// Pool names the board of reports. Policies with the same pool share
	// pollers and history (default "default").
	Pool string `json:"pool,omitempty"`
	// Interval between report polls of each agent (default 1s, ±10 %).
	Interval caddy.Duration `json:"interval,omitempty"`
	// Timeout of one poll; shorter than Interval (default half of it).
	Timeout caddy.Duration `json:"timeout,omitempty"`
	// StaleAfter is how old a report may be and still count (default 3 intervals).
	StaleAfter caddy.Duration `json:"stale_after,omitempty"`
	// ForgetAfter stops polling an upstream no pool has held for this long (default 5m).
	ForgetAfter caddy.Duration `json:"forget_after,omitempty"`
	// Warmup is how many good reports in a row a new or returning upstream
	// needs before it is trusted (default 2).
	Warmup int `json:"warmup,omitempty"`
	// ReportURL is the agent's URL as a template over the upstream's
	// address: {upstream} (host:port), {upstream_host}, {upstream_port}. Default
	// http://{upstream}/_edgetier/load (the in-Caddy agent).
	ReportURL string `json:"report_url,omitempty"`
	// Token is the bearer token sent to the agents; placeholders such as
	// {env.EDGE_TOKEN} are expanded.
	Token string `json:"token,omitempty"`
	// Weights of the score components; they must sum to 1.
	Weights *WeightsConfig `json:"weights,omitempty"`
	// LinkHeadroom is the link utilisation (0–1, default 0.9) above which
	// an edge takes no new viewers while another has headroom; 1 turns
	// the rule off.
	LinkHeadroom *float64 `json:"link_headroom,omitempty"`
	// Tiers are the upper scores of tiers 1, 2 and 3 (default 25, 50, 75).
	Tiers []float64 `json:"tiers,omitempty"`
	// Hysteresis is how many points past its tier's bound an upstream's
	// score must go before it changes tier (default 5).
	Hysteresis *float64 `json:"hysteresis,omitempty"`
	// Capacity the edges can take at most, when an agent advertises none;
	// unset fields default to 100 streams, 200 requests/s, 500 ms. Each
	// edge's capacity is estimated from its own reports (requests and
	// streams served over CPU utilisation) and bounded by this.
	Capacity *CapacityConfig `json:"capacity,omitempty"`
	// FixedCapacity normalises against the capacity above alone, without
	// the estimates (Caddyfile: calibrate off).
	FixedCapacity bool `json:"fixed_capacity,omitempty"`
	// Upstreams holds per-upstream settings, by dial address.
	Upstreams map[string]UpstreamConfig `json:"upstreams,omitempty"`
	// Choices is 2 (default: the least loaded share, by in-flight counts)
	// or 1 (always the single best; herds on stale reports, kept for
	// comparison).
	Choices int `json:"choices,omitempty"`
	// EjectErrors is the share of errors, in percent, among an upstream's
	// answers of the last 5-10 s (status 500 and above, transport errors;
	// seen by the edgetier transport) at which the policy ejects it
	// (default 50); 0 turns ejection off.
	EjectErrors *float64 `json:"eject_errors,omitempty"`
	// EjectMinAnswers is how many recent answers an upstream needs before
	// its errors are judged (default 5).
	EjectMinAnswers int `json:"eject_min_answers,omitempty"`
	// EjectTime is the first ejection's length; each further one lasts
	// this times the number of ejections (less one for every EjectTime in
	// the pool without one), up to EjectMaxTime (defaults 30s and 5m).
	EjectTime    caddy.Duration `json:"eject_time,omitempty"`
	EjectMaxTime caddy.Duration `json:"eject_max_time,omitempty"`
	// MaxEjected is the share of the pool, in percent, that may be ejected
	// at once (default 50); past it, every upstream is a candidate again.
	MaxEjected *float64 `json:"max_ejected,omitempty"`
	// SlowStart is how long a new or returning upstream ramps up, from
	// 10 % of its share to all of it (default 0: off).
	SlowStart caddy.Duration `json:"slow_start,omitempty"`

	board       *board.Board
	unsubscribe func()
	cache       atomic.Pointer[poolCache]
	// missBase remembers the last pool that missed the cache: a pool seen
	// twice is static and worth caching, a new one each time is dynamic.
	missBase atomic.Pointer[reverseproxy.Upstream]
}

// WeightsConfig holds the weights of the score components.
type WeightsConfig struct {
	CPU          float64 `json:"cpu"`
	Memory       float64 `json:"memory"`
	Requests     float64 `json:"requests"`
	Streams      float64 `json:"streams"`
	ResponseTime float64 `json:"response_time"`
	// Bandwidth weighs link utilisation; 0 when not given.
	Bandwidth float64 `json:"bandwidth,omitempty"`
}

func (w *WeightsConfig) weights() rank.Weights {
	if w == nil {
		return rank.DefaultWeights
	}
	return rank.Weights{w.CPU, w.Memory, w.Requests, w.Streams, w.ResponseTime, w.Bandwidth}
}

// UpstreamConfig is the policy's setting for one upstream whose agent
// needs its own URL or token, or advertises no capacity.
type UpstreamConfig struct {
	ReportURL string          `json:"report_url,omitempty"`
	Token     string          `json:"token,omitempty"`
	Capacity  *CapacityConfig `json:"capacity,omitempty"`
}

// capacity returns the upstream's capacity, zero where unset.
func (c *CapacityConfig) capacity() rank.Capacity {
	if c == nil {
		return rank.Capacity{}
	}
	return rank.Capacity{Streams: c.MaxStreams, Requests: c.MaxRequests, ResponseTime: time.Duration(c.MaxResponseTime).Seconds()}
}

// CaddyModule returns the Caddy module information.
func (*TieredSelection) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.reverse_proxy.selection_policies.tiered",
		New: func() caddy.Module { return new(TieredSelection) },
	}
}

// Provision sets defaults, checks the settings, acquires the board and
// has it keep the plan of the pool this policy chooses from.
func (p *TieredSelection) Provision(ctx caddy.Context) error {
	p.setDefaults()
	if err := p.Validate(); err != nil {
		return err
	}
	b, err := acquireBoard(p.Pool, ctx.Logger())
	if err != nil {
		return fmt.Errorf("tiered: %w", err)
	}
	p.board = b
	b.Configure(p.boardConfig())
	p.unsubscribe = b.Subscribe(p.replan)
	err = ctx.GetMetricsRegistry().Register(b.Collector())
	if err != nil && !errors.As(err, &prometheus.AlreadyRegisteredError{}) {
		return fmt.Errorf("tiered: registering metrics: %w", err)
	}
	inspectWhenRunning(ctx, p)
	return nil
}

// boardConfig is the board's part of the settings, placeholders expanded.
func (p *TieredSelection) boardConfig() *board.Config {
	repl := caddy.NewReplacer()
	cfg := &board.Config{
		Interval:    time.Duration(p.Interval),
		Timeout:     time.Duration(p.Timeout),
		ForgetAfter: time.Duration(p.ForgetAfter),
		ReportURL:   p.ReportURL,
		Token:       repl.ReplaceKnown(p.Token, ""),
		Scoring: rank.Scoring{
			Weights:    p.Weights.weights(),
			Thresholds: rank.Thresholds{p.Tiers[0], p.Tiers[1], p.Tiers[2]},
			Hysteresis: *p.Hysteresis,
			Capacity:   p.Capacity.capacity().Merge(rank.DefaultCapacity),
			Bound:      p.Capacity.capacity(),
			Fixed:      p.FixedCapacity,
			Warmup:     p.Warmup,
			StaleAfter: time.Duration(p.StaleAfter),
		},
		Headroom: p.headroom(),
		Single:   p.Choices == 1,
		Ejection: rank.Ejection{
			ErrorRatio: *p.EjectErrors / 100,
			MinAnswers: p.EjectMinAnswers,
			BaseTime:   time.Duration(p.EjectTime),
			MaxTime:    time.Duration(p.EjectMaxTime),
			MaxEjected: *p.MaxEjected / 100,
		},
		SlowStart: time.Duration(p.SlowStart),
		Upstreams: make(map[string]board.UpstreamConfig, len(p.Upstreams)),
	}
	for dial, u := range p.Upstreams {
		cfg.Upstreams[dial] = board.UpstreamConfig{ReportURL: u.ReportURL, Token: repl.ReplaceKnown(u.Token, ""), Capacity: u.Capacity.capacity()}
	}
	return cfg
}

func (p *TieredSelection) setDefaults() {
	if p.Pool == "" {
		p.Pool = "default"
	}
	if p.Interval == 0 {
		p.Interval = caddy.Duration(time.Second)
	}
	if p.Timeout == 0 {
		p.Timeout = p.Interval / 2
	}
	if p.StaleAfter == 0 {
		p.StaleAfter = 3 * p.Interval
	}
	if p.ForgetAfter == 0 {
		p.ForgetAfter = caddy.Duration(5 * time.Minute)
	}
	if p.Warmup == 0 {
		p.Warmup = 2
	}
	if p.ReportURL == "" {
		p.ReportURL = "http://{upstream}" + edgeagent.DefaultReportPath
	}
	if p.Tiers == nil {
		p.Tiers = rank.DefaultThresholds[:]
	}
	if p.Hysteresis == nil {
		h := 5.0
		p.Hysteresis = &h
	}
	if p.Choices == 0 {
		p.Choices = 2
	}
	def := rank.DefaultEjection
	if p.EjectErrors == nil {
		v := 100 * def.ErrorRatio
		p.EjectErrors = &v
	}
	if p.EjectMinAnswers == 0 {
		p.EjectMinAnswers = def.MinAnswers
	}
	if p.EjectTime == 0 {
		p.EjectTime = caddy.Duration(def.BaseTime)
	}
	if p.EjectMaxTime == 0 {
		p.EjectMaxTime = caddy.Duration(max(def.MaxTime, time.Duration(p.EjectTime)))
	}
	if p.MaxEjected == nil {
		v := 100 * def.MaxEjected
		p.MaxEjected = &v
	}
}

// Validate checks the settings (after Provision's defaults).
func (p *TieredSelection) Validate() error {
	if err := rank.CheckWeights(p.Weights.weights()); err != nil {
		return fmt.Errorf("tiered: weights: %w", err)
	}
	if err := rank.CheckThresholds(p.Tiers); err != nil {
		return fmt.Errorf("tiered: tiers: %w", err)
	}
	switch {
	case p.Interval < caddy.Duration(10*time.Millisecond):
		return fmt.Errorf("tiered: interval: %s is below the minimum of 10ms", time.Duration(p.Interval))
	case p.Timeout <= 0 || p.Timeout >= p.Interval:
		return fmt.Errorf("tiered: timeout: %s must be positive and shorter than the interval %s", time.Duration(p.Timeout), time.Duration(p.Interval))
	case p.StaleAfter < p.Interval:
		return fmt.Errorf("tiered: stale_after: %s is shorter than the interval %s", time.Duration(p.StaleAfter), time.Duration(p.Interval))
	case p.ForgetAfter < p.StaleAfter:
		return fmt.Errorf("tiered: forget_after: %s is shorter than stale_after %s", time.Duration(p.ForgetAfter), time.Duration(p.StaleAfter))
	case p.Warmup < 1 || p.Warmup > 100:
		return fmt.Errorf("tiered: warmup: %d is not between 1 and 100", p.Warmup)
	case p.Hysteresis != nil && !(*p.Hysteresis >= 0 && *p.Hysteresis <= 50):
		return fmt.Errorf("tiered: hysteresis: %g is not between 0 and 50", *p.Hysteresis)
	case p.LinkHeadroom != nil && !(*p.LinkHeadroom > 0 && *p.LinkHeadroom <= 1):
		return fmt.Errorf("tiered: link_headroom: %g is not above 0 and at most 1", *p.LinkHeadroom)
	case p.Choices != 1 && p.Choices != 2:
		return fmt.Errorf("tiered: choices: %d is not 1 or 2", p.Choices)
	case p.EjectErrors != nil && !(*p.EjectErrors >= 0 && *p.EjectErrors <= 100):
		return fmt.Errorf("tiered: eject_errors: %g is not a percentage between 0 and 100", *p.EjectErrors)
	case p.EjectMinAnswers < 1 || p.EjectMinAnswers > maxEjectMinAnswers:
		return fmt.Errorf("tiered: eject_min_answers: %d is not between 1 and %d", p.EjectMinAnswers, maxEjectMinAnswers)
	case p.EjectTime <= 0:
		return fmt.Errorf("tiered: eject_time: %s is not positive", time.Duration(p.EjectTime))
	case p.EjectMaxTime < p.EjectTime:
		return fmt.Errorf("tiered: eject_max_time: %s is shorter than eject_time %s", time.Duration(p.EjectMaxTime), time.Duration(p.EjectTime))
	case p.MaxEjected != nil && !(*p.MaxEjected >= 0 && *p.MaxEjected <= 100):
		return fmt.Errorf("tiered: max_ejected: %g is not a percentage between 0 and 100", *p.MaxEjected)
	case p.SlowStart < 0 || p.SlowStart > caddy.Duration(maxSlowStart):
		return fmt.Errorf("tiered: slow_start: %s is not between 0 and %s", time.Duration(p.SlowStart), maxSlowStart)
	}
	if err := board.ValidateReportURL(p.ReportURL, "127.0.0.1:1"); err != nil {
		return fmt.Errorf("tiered: report_url: %w", err)
	}
	for dial, u := range p.Upstreams {
		if u.ReportURL == "" {
			continue
		}
		if err := board.ValidateReportURL(u.ReportURL, dial); err != nil {
			return fmt.Errorf("tiered: upstream %s: report_url: %w", dial, err)
		}
	}
	return nil
}

// Cleanup lets go of the board; the last policy on a pool stops its pollers.
func (p *TieredSelection) Cleanup() error {
	if p.board == nil {
		return nil
	}
	p.unsubscribe()
	return releaseBoard(p.Pool)
}

// poolCache is a static pool resolved to the board's edges.
type poolCache struct {
	pool reverseproxy.UpstreamPool // &pool[0] and its length identify it
	bp   *board.Pool
}

// Select chooses an upstream by the tiered rule (rank.Plan's Decide) from
// the pool's plan, which the board keeps current; when the plan no longer
// fits what the proxy sees (see Decide), it plans again at once and
// decides from that. No locks; no allocations for a static pool. It is
// board.Pool.Choose over Caddy's own upstream type: a call through an
// interface per candidate would cost more than the rest of a choice. A
// retry leaves out the edges that failed the request's earlier tries
// (retry.go) while another can serve; a request that failed none, choosing
// among candidates none of which needs a closer look, takes the loop of
// offerPlain, no dearer than least_conn's.
func (p *TieredSelection) Select(pool reverseproxy.UpstreamPool, r *http.Request, _ http.ResponseWriter) *reverseproxy.Upstream {
	if len(pool) == 0 {
		return nil
	}
	var failed *tries
	if r != nil && failing.Load() != 0 {
		failed = requestTries(r)
	}
	var bp *board.Pool
	var pl *rank.Plan
	if c := p.cache.Load(); c != nil && len(c.pool) == len(pool) && &c.pool[0] == &pool[0] {
		bp, pl = c.bp, c.bp.Plan()
	}
	if pl == nil {
		bp, pl = p.resolve(pool)
	}
	for attempt := 0; ; attempt++ {
		if pl == nil {
			pl = bp.Replan()
		}
		var l rank.Least
		if failed == nil && pl.Plain() {
			offerPlain(&l, pl, pool)
		} else {
			offerAll(&l, pl, pool, failed)
		}
		k, kind := pl.Settled(&l) // inlined: Decide only when not settled
		ok := k >= 0
		if !ok {
			k, kind, ok = pl.Decide(&l)
		}
		if !ok && attempt == 1 && k < 0 {
			// The pool changed under both plans (in-flight counts and
			// health move with every request): nil would cost the viewer
			// a try, so the least busy available upstream serves.
			return leastBusy(pool, failed)
		}
		if ok || attempt == 1 {
			if k < 0 {
				return nil
			}
			i := pl.Slots()[k].Index
			bp.Count(int(i), kind)
			return pool[i]
		}
		pl = nil
	}
}

// offerAll offers l each candidate of pl available in pool, with its
// requests in flight, passing over those that failed the request's earlier
// tries: rank.Least.Offer inlined for Caddy's type.
func offerAll(l *rank.Least, pl *rank.Plan, pool reverseproxy.UpstreamPool, failed *tries) {
	cands := pl.Candidates
	for k := range cands {
		c := &cands[k]
		u := pool[c.Index]
		switch {
		case !u.Available():
			continue
		case failed.failedBy(u.Dial):
			l.Pass(c) // it failed this request: another serves
			continue
		}
		inflight := u.NumRequests()
		switch n := c.Load(inflight); {
		case c.Special():
			l.Offer(pl, c, k, inflight)
		case l.Empty() || n < l.Least():
			l.Start(k, n)
		case n == l.Least():
			l.Tie(k)
		}
	}
}

// offerPlain is offerAll for the usual request: it failed no try yet, and
// no candidate needs Offer (pl.Plain). Without those checks and calls it is
// least_conn's loop (weighed by each candidate's cost), and costs less: it
// asks Caddy whether a candidate is available only when its load would
// lead or tie, as no other can be chosen, and that question costs more
// than the rest of a turn.
func offerPlain(l *rank.Least, pl *rank.Plan, pool reverseproxy.UpstreamPool) {
	for k, s := range pl.Slots() {
		u := pool[s.Index]
		n := s.Load(u.NumRequests())
		if l.Empty() || n < l.Least() {
			if u.Available() {
				l.Start(k, n)
			}
		} else if n == l.Least() && u.Available() {
			l.Tie(k)
		}
	}
}

// leastBusy is the available upstream with the fewest requests in flight,
// one that did not fail the request if there is one; nil when none is
// available.
func leastBusy(pool reverseproxy.UpstreamPool, failed *tries) *reverseproxy.Upstream {
	var best *reverseproxy.Upstream
	bestFailed := false
	for _, u := range pool {
		if !u.Available() {
			continue
		}
		f := failed.failedBy(u.Dial)
		if best == nil || (bestFailed && !f) || (bestFailed == f && u.NumRequests() < best.NumRequests()) {
			best, bestFailed = u, f
		}
	}
	return best
}

// resolve returns the board's pool for pool, the cached one for a static
// pool (seen twice in a row), with its plan if it is current (else nil).
func (p *TieredSelection) resolve(pool reverseproxy.UpstreamPool) (*board.Pool, *rank.Plan) {
	if c := p.cache.Load(); c != nil && len(c.pool) == len(pool) && &c.pool[0] == &pool[0] {
		// A current plan implies a current set of edges.
		if pl := c.bp.Plan(); pl != nil || c.bp.Current() {
			return c.bp, pl
		}
	}
	bp := p.track(pool)
	if p.missBase.Swap(pool[0]) == pool[0] {
		// Seen twice: a static pool. Caching allocates, once per pool and
		// change of the board's upstream set.
		p.cache.Store(&poolCache{pool: pool, bp: bp})
	}
	return bp, nil
}

// track resolves upstreams to the board's edges, polling new ones.
func (p *TieredSelection) track(pool reverseproxy.UpstreamPool) *board.Pool {
	dials := make([]string, len(pool))
	ups := make([]board.Upstream, len(pool))
	for i, u := range pool {
		dials[i], ups[i] = u.Dial, u
	}
	return p.board.Pool(dials, ups)
}

// replan rebuilds the cached pool's plan; the board calls it on every
// change and tick.
func (p *TieredSelection) replan() {
	if c := p.cache.Load(); c != nil && c.bp.Current() {
		c.bp.Replan()
	}
}

// Interface guards
var (
	_ reverseproxy.Selector = (*TieredSelection)(nil)
	_ caddy.Provisioner     = (*TieredSelection)(nil)
	_ caddy.Validator       = (*TieredSelection)(nil)
	_ caddy.CleanerUpper    = (*TieredSelection)(nil)
)
