package caddymodule

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgetier/edgetier/edgeagent"
)

func init() {
	caddy.RegisterModule(new(TieredSelection))
}

// TieredSelection is a reverse_proxy selection policy that scores each
// upstream from its agent's load reports with the weighted 4-tier
// algorithm and picks, among the least loaded, the one with the fewest of
// its requests in flight.
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
	// Tiers are the upper scores of tiers 1, 2 and 3 (default 25, 50, 75).
	Tiers []float64 `json:"tiers,omitempty"`
	// Hysteresis is how many points past its tier's bound an upstream's
	// score must go before it changes tier (default 5).
	Hysteresis *float64 `json:"hysteresis,omitempty"`
	// Capacity to normalise against when an agent advertises none.
	Capacity *CapacityConfig `json:"capacity,omitempty"`
	// Upstreams holds per-upstream settings, by dial address.
	Upstreams map[string]UpstreamConfig `json:"upstreams,omitempty"`
	// Choices is 2 (default: the least loaded share, by in-flight counts
	// and two random choices; see choose) or 1 (always the single best;
	// herds on stale reports, kept for comparison).
	Choices int `json:"choices,omitempty"`

	board *board
	cache atomic.Pointer[poolCache]
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
}

func (w *WeightsConfig) weights() Weights {
	if w == nil {
		return DefaultWeights
	}
	return Weights{w.CPU, w.Memory, w.Requests, w.Streams, w.ResponseTime}
}

// UpstreamConfig is the policy's setting for one upstream whose agent
// needs its own URL or token, or advertises no capacity.
type UpstreamConfig struct {
	ReportURL string          `json:"report_url,omitempty"`
	Token     string          `json:"token,omitempty"`
	Capacity  *CapacityConfig `json:"capacity,omitempty"`
}

// Capacity returns the upstream's capacity, zero where unset.
func (c *CapacityConfig) capacity() Capacity {
	if c == nil {
		return Capacity{}
	}
	return Capacity{Streams: c.MaxStreams, Requests: c.MaxRequests, ResponseTime: time.Duration(c.MaxResponseTime).Seconds()}
}

// CaddyModule returns the Caddy module information.
func (*TieredSelection) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.reverse_proxy.selection_policies.tiered",
		New: func() caddy.Module { return new(TieredSelection) },
	}
}

// Provision sets defaults, checks the settings and acquires the board.
func (p *TieredSelection) Provision(ctx caddy.Context) error {
	p.setDefaults()
	if err := p.Validate(); err != nil {
		return err
	}
	cfg := p.boardConfig()
	logger := ctx.Logger()
	val, _, err := boards.LoadOrNew(p.Pool, func() (caddy.Destructor, error) {
		return newBoard(p.Pool, logger), nil
	})
	if err != nil {
		return fmt.Errorf("tiered: acquiring board %q: %w", p.Pool, err)
	}
	p.board = val.(*board)
	p.board.configure(cfg)
	p.board.addPlanner(p)
	err = ctx.GetMetricsRegistry().Register(p.board.collector)
	if err != nil && !errors.As(err, &prometheus.AlreadyRegisteredError{}) {
		return fmt.Errorf("tiered: registering metrics: %w", err)
	}
	return nil
}

// boardConfig is the board's part of the settings, placeholders expanded.
func (p *TieredSelection) boardConfig() *boardConfig {
	repl := caddy.NewReplacer()
	cfg := &boardConfig{
		Interval:    time.Duration(p.Interval),
		Timeout:     time.Duration(p.Timeout),
		StaleAfter:  time.Duration(p.StaleAfter),
		ForgetAfter: time.Duration(p.ForgetAfter),
		Warmup:      p.Warmup,
		ReportURL:   p.ReportURL,
		Token:       repl.ReplaceKnown(p.Token, ""),
		Weights:     p.Weights.weights(),
		Thresholds:  Thresholds{p.Tiers[0], p.Tiers[1], p.Tiers[2]},
		Hysteresis:  *p.Hysteresis,
		Capacity:    p.Capacity.capacity().merge(DefaultCapacity),
		Choices:     p.Choices,
		Upstreams:   make(map[string]boardUpstream, len(p.Upstreams)),
	}
	for dial, u := range p.Upstreams {
		cfg.Upstreams[dial] = boardUpstream{ReportURL: u.ReportURL, Token: repl.ReplaceKnown(u.Token, ""), Capacity: u.Capacity.capacity()}
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
		p.Tiers = DefaultThresholds[:]
	}
	if p.Hysteresis == nil {
		h := 5.0
		p.Hysteresis = &h
	}
	if p.Choices == 0 {
		p.Choices = 2
	}
}

// Validate checks the settings (after Provision's defaults).
func (p *TieredSelection) Validate() error {
	if err := checkWeights(p.Weights.weights()); err != nil {
		return fmt.Errorf("tiered: weights: %w", err)
	}
	if err := checkTiers(p.Tiers); err != nil {
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
	case p.Hysteresis != nil && (*p.Hysteresis < 0 || *p.Hysteresis > 50 || math.IsNaN(*p.Hysteresis)):
		return fmt.Errorf("tiered: hysteresis: %g is not between 0 and 50", *p.Hysteresis)
	case p.Choices != 1 && p.Choices != 2:
		return fmt.Errorf("tiered: choices: %d is not 1 or 2", p.Choices)
	}
	if _, _, err := reportURL(&boardConfig{ReportURL: p.ReportURL}, "127.0.0.1:1"); err != nil {
		return fmt.Errorf("tiered: report_url: %w", err)
	}
	for dial, u := range p.Upstreams {
		if u.ReportURL == "" {
			continue
		}
		if _, _, err := reportURL(&boardConfig{ReportURL: u.ReportURL}, dial); err != nil {
			return fmt.Errorf("tiered: upstream %s: report_url: %w", dial, err)
		}
	}
	return nil
}

func checkWeights(w Weights) error {
	var sum float64
	for i, v := range w {
		if v < 0 || v > 1 || math.IsNaN(v) {
			return fmt.Errorf("%s weight %g is not between 0 and 1", componentNames[i], v)
		}
		sum += v
	}
	if math.Abs(sum-1) > 1e-6 {
		return fmt.Errorf("must sum to 1, they sum to %g", sum)
	}
	return nil
}

func checkTiers(t []float64) error {
	if len(t) != 3 {
		return fmt.Errorf("want 3 bounds (tiers 1, 2 and 3), got %d", len(t))
	}
	prev := 0.0
	for _, v := range t {
		if !(v > prev) || v >= 100 {
			return fmt.Errorf("%v must be strictly increasing, between 0 and 100", t)
		}
		prev = v
	}
	return nil
}

// Cleanup lets go of the board; the last policy on a pool stops its pollers.
func (p *TieredSelection) Cleanup() error {
	if p.board == nil {
		return nil
	}
	p.board.removePlanner(p)
	_, err := boards.Delete(p.Pool)
	return err
}

// poolCache maps a static pool's upstreams to their entries, so Select
// needs no map look-ups.
type poolCache struct {
	pool    reverseproxy.UpstreamPool // &pool[0] and its length identify it
	gen     uint64
	entries []*entry
	seen    atomic.Int64 // board.now when lastSeen was refreshed
	plan    atomic.Pointer[plan]
}

// reservoir keeps, of the upstreams offered to it, a uniform random
// sample of two of those with the fewest of our requests in flight (least;
// ties of them share it), the best score (for choices 1) and the highest,
// without storing the others.
type reservoir struct {
	n      uint32 // offered
	ties   uint32 // offered with least in flight
	least  int
	idx    [2]int32
	score  [2]float64
	best   int32
	bestS  float64
	worstS float64
}

func (r *reservoir) offer(i int, score float64, inflight int, rng *xorshift) {
	r.n++
	switch {
	case r.n == 1 || inflight < r.least:
		r.least, r.ties = inflight, 1
		r.idx[0], r.score[0] = int32(i), score
	case inflight == r.least:
		r.ties++
		if r.ties == 2 {
			r.idx[1], r.score[1] = int32(i), score
		} else if j := rng.below(r.ties); j < 2 {
			r.idx[j], r.score[j] = int32(i), score
		}
	}
	if r.n == 1 || score < r.bestS {
		r.best, r.bestS = int32(i), score
	}
	if r.n == 1 || score > r.worstS {
		r.worstS = score
	}
}

// xorshift is a tiny generator seeded once per Select from the runtime's
// generator: a draw per upstream from math/rand would cost more than the
// rest of the scoring.
type xorshift uint64

func newXorshift() xorshift { return xorshift(rand.Uint64() | 1) }

// below returns a number in [0, n) (multiply-shift; the bias is below 2⁻³²).
func (x *xorshift) below(n uint32) uint32 {
	v := uint64(*x)
	v ^= v << 13
	v ^= v >> 7
	v ^= v << 17
	*x = xorshift(v)
	return uint32((v >> 32) * uint64(n) >> 32)
}

// Select chooses an upstream: among the available ones not in maintenance,
// draining or down, it takes the lowest non-empty tier (with the next
// tier's upstreams that it does not outrank, or the whole next tier when
// it holds a single upstream) and picks as choose says. A static pool
// chooses from its plan (see plan) by in-flight counts and judges only
// what it picks; otherwise, or when the plan is out of date, Select
// scores every upstream in one pass. No locks, no allocations.
func (p *TieredSelection) Select(pool reverseproxy.UpstreamPool, _ *http.Request, _ http.ResponseWriter) *reverseproxy.Upstream {
	if len(pool) == 0 {
		return nil
	}
	// A current plan implies a current cache (see replan).
	if c := p.cache.Load(); c != nil && len(c.pool) == len(pool) && &c.pool[0] == &pool[0] {
		if chosen, kind, ok := p.fromPlan(pool, c); ok {
			if e := c.entries[chosen]; e != nil {
				e.selections[kind].Add(1)
			}
			return pool[chosen]
		}
	}
	cache := p.resolve(pool)
	chosen, kind := p.scan(pool, cache)
	if chosen < 0 {
		return nil
	}
	return p.count(pool, cache, chosen, kind)
}

// scan scores every upstream of pool and chooses; it returns the index
// chosen (-1 for none) and the kind of selection.
func (p *TieredSelection) scan(pool reverseproxy.UpstreamPool, cache *poolCache) (int, int) {
	chosen, kind, slowSkipped := p.scanOnce(pool, cache, false)
	if chosen < 0 && slowSkipped {
		// Only clearly slower upstreams can serve: slow beats nothing.
		chosen, kind, _ = p.scanOnce(pool, cache, true)
	}
	return chosen, kind
}

// scanOnce is one scan; without withSlow, upstreams the proxy sees as
// clearly slower are skipped (slowSkipped says whether any was).
func (p *TieredSelection) scanOnce(pool reverseproxy.UpstreamPool, cache *poolCache, withSlow bool) (chosen, kind int, slowSkipped bool) {
	j := p.board.judge()
	var tiers [5]reservoir
	rng := newXorshift()
	single := p.Choices == 1
	fresh, candidates := 0, 0
	drainIdx, downIdx := -1, -1
	drainLoad, downLoad := math.MaxInt, math.MaxInt
	for i, u := range pool {
		if !u.Available() {
			continue
		}
		inflight, v, slow := p.viewOf(i, u, cache, withSlow)
		if slow {
			slowSkipped = true
			continue
		}
		code, score, tier := j.of(v, inflight)
		switch code {
		case codeTrusted:
			fresh++
		case codeWarming:
		case codeDrain:
			if inflight < drainLoad {
				drainIdx, drainLoad = i, inflight
			}
			continue
		case codeDown:
			if inflight < downLoad {
				downIdx, downLoad = i, inflight
			}
			continue
		default: // maintenance
			continue
		}
		candidates++
		tiers[tier].offer(i, score, inflight, &rng)
	}
	switch {
	case candidates == 0 && slowSkipped:
		return -1, 0, true
	case candidates == 0 && drainIdx >= 0:
		return drainIdx, selDrain, false
	case candidates == 0 && downIdx >= 0:
		return downIdx, selDown, false
	case candidates == 0:
		return -1, 0, false
	case fresh == 0:
		return p.leastInFlight(pool, cache), selFallback, slowSkipped
	}
	var near reservoir
	if lo := lowestTier(&tiers); !single && lo < 4 && tiers[lo+1].n > 0 && tiers[lo+1].bestS <= tiers[lo].worstS+j.hysteresis {
		near = p.sampleNear(pool, cache, &j, withSlow, lo+1, tiers[lo].worstS+j.hysteresis, &rng)
	}
	lead := true
	if lo := lowestTier(&tiers); tiers[lo].n == 1 && near.n == 0 {
		i := int(tiers[lo].idx[0])
		inflight, v, _ := p.viewOf(i, pool[i], cache, true)
		if code, _, _ := j.of(v, inflight); code != codeTrusted {
			v = nil // counted as average: no lead of its own
		}
		lead = leadBelieved(v, j.now)
	}
	chosen, kind = p.choose(&tiers, &near, lead, &rng)
	return chosen, kind, slowSkipped
}

// loneLead is how long after its report a lone best upstream's lead is
// believed. A report shows the load of about the second before it; past
// that, what the lead has drawn since, from every balancer sharing the
// reports, is not in it, and with long report intervals the lone upstream
// would take the lion's share from all of them until the next report.
const loneLead = 1500 * time.Millisecond

// leadBelieved reports whether an upstream's report (v; nil for one
// without, counted as average) is recent enough for loneLead.
func leadBelieved(v *view, now int64) bool {
	return v == nil || now-v.receivedAt <= int64(loneLead)
}

// sampleNear is a second pass for the upstreams of tier whose score is at
// most limit, the ones that do not rank below the tier under it (see
// outranks). It is rare: only when scores straddle a tier boundary.
func (p *TieredSelection) sampleNear(pool reverseproxy.UpstreamPool, cache *poolCache, j *judge, withSlow bool, tier int, limit float64, rng *xorshift) reservoir {
	var near reservoir
	for i, u := range pool {
		if !u.Available() {
			continue
		}
		inflight, v, slow := p.viewOf(i, u, cache, withSlow)
		if slow {
			continue
		}
		code, score, t := j.of(v, inflight)
		if (code == codeTrusted || code == codeWarming) && t == tier && score <= limit {
			near.offer(i, score, inflight, rng)
		}
	}
	return near
}

// viewOf returns what scoring pool[i] (u) needs: our requests in flight
// there and its view (nil without an entry), or slow for an upstream the
// proxy keeps off as clearly slower, unless withSlow.
func (p *TieredSelection) viewOf(i int, u *reverseproxy.Upstream, cache *poolCache, withSlow bool) (inflight int, v *view, slow bool) {
	var e *entry
	if cache != nil {
		e = cache.entries[i]
	} else {
		e = p.lookup(u)
	}
	inflight = u.NumRequests()
	if e == nil {
		return inflight, nil, false
	}
	if !withSlow && e.latency.keptOff(inflight) {
		return inflight, nil, true
	}
	return inflight, e.view.Load(), false
}

// lowestTier is the lowest tier holding a candidate (there is one).
func lowestTier(tiers *[5]reservoir) int {
	lo := 1
	for tiers[lo].n == 0 {
		lo++
	}
	return lo
}

// count counts the selection of pool[chosen] (by tier, or another kind)
// and returns it.
func (p *TieredSelection) count(pool reverseproxy.UpstreamPool, cache *poolCache, chosen, kind int) *reverseproxy.Upstream {
	var e *entry
	if cache != nil {
		e = cache.entries[chosen]
	} else {
		e = p.lookup(pool[chosen])
	}
	if e != nil {
		if kind >= 1 && kind <= 4 {
			if v := e.view.Load(); v == nil || v.code != codeTrusted || p.board.clock.Load()-v.receivedAt > int64(p.board.cfg.Load().StaleAfter) {
				kind = selUnknown
			}
		}
		e.selections[kind].Add(1)
	}
	return pool[chosen]
}

// unknownScore is the score of an upstream without a trusted fresh report:
// the average edge's, plus what we hold open on it.
func unknownScore(average, perStream float64, inflight int) float64 {
	s := average + perStream*float64(inflight)
	if s > 100 {
		return 100
	}
	return s
}

// choose applies the tier rule to the candidates and then, as
// least_conn does, takes one with the fewest of our requests in flight
// (or, with choices 1, the single best score); near holds the next tier's
// upstreams that the lowest tier does not outrank, and lead says whether
// a lone best upstream's lead is still believed (see loneLead). It
// returns the index and the tier chosen from.
func (p *TieredSelection) choose(tiers *[5]reservoir, near *reservoir, lead bool, rng *xorshift) (int, int) {
	lo := lowestTier(tiers)
	r := &tiers[lo]
	if p.Choices == 1 {
		return int(r.best), lo
	}
	h := p.board.cfg.Load().Hysteresis
	if near.n > 0 {
		return pickAcross(r, lo, near, lo+1, h, rng)
	}
	if r.n >= 2 {
		return r.pick(h, rng), lo
	}
	// A single upstream in the best tier would take every request until
	// the next report: it wins two choices drawn at random from the union
	// with the next tier whenever it is one of them (2 in n+1), and the
	// next tier's least busy serves the rest.
	hi := lo + 1
	for hi <= 4 && tiers[hi].n == 0 {
		hi++
	}
	if hi > 4 {
		return int(r.idx[0]), lo
	}
	next := &tiers[hi]
	if !lead {
		// An old lead: the two tiers are candidates alike.
		return pickAcross(r, lo, next, hi, h, rng)
	}
	if next.n >= 2 && rng.below(next.n+1) >= 2 {
		return next.pick(h, rng), hi
	}
	return int(r.idx[0]), lo
}

// pickAcross chooses from the union of a (tier aTier) and b (tier bTier),
// as from one tier: the fewest in flight; of two drawn at random from
// those tied, the one that outranks the other, else as better decides.
// It returns the index and its tier.
func pickAcross(a *reservoir, aTier int, b *reservoir, bTier int, h float64, rng *xorshift) (int, int) {
	switch {
	case a.least < b.least:
		return a.pick(h, rng), aTier
	case b.least < a.least:
		return b.pick(h, rng), bTier
	}
	type drawn struct {
		idx   int32
		score float64
		tier  int
	}
	// The pair's first member from a with probability a.ties/(a.ties+
	// b.ties), the second from what is left. A reservoir's two samples
	// are a uniform pair of its ties, in no random order: one taken alone
	// is either at random.
	var pair [2]drawn
	aFirst, bFirst := 0, 0
	if a.ties >= 2 {
		aFirst = int(rng.below(2))
	}
	if b.ties >= 2 {
		bFirst = int(rng.below(2))
	}
	fromA := 0
	for k := range pair {
		total := a.ties + b.ties - uint32(k)
		if left := a.ties - uint32(fromA); rng.below(total) < left {
			i := (aFirst + fromA) % 2
			pair[k] = drawn{a.idx[i], a.score[i], aTier}
			fromA++
		} else {
			i := (bFirst + k - fromA) % 2
			pair[k] = drawn{b.idx[i], b.score[i], bTier}
		}
	}
	x, y := pair[0], pair[1]
	switch {
	case outranks(y.tier, y.score, x.tier, x.score, h):
	case outranks(x.tier, x.score, y.tier, y.score, h),
		better(a.least, x.score, a.least, y.score, h, uint64(rng.below(2))):
		return int(x.idx), x.tier
	}
	return int(y.idx), y.tier
}

// pick returns one of the reservoir's upstreams with the fewest in
// flight: the better of two such when it has more than one.
func (r *reservoir) pick(tolerance float64, rng *xorshift) int {
	if r.ties >= 2 && better(r.least, r.score[1], r.least, r.score[0], tolerance, uint64(rng.below(2))) {
		return int(r.idx[1])
	}
	return int(r.idx[0])
}

// better reports whether upstream x (with xInflight of our requests and
// score xScore) is better than y, two upstreams of one tier.
// The tier says how loaded an edge is (scores are noisy: edges within a
// tier count as equally good); within it, the one with fewer of our
// requests in flight wins, so equal edges balance as with least_conn and
// a slow edge, whose requests last longer, gets fewer. On equal counts a
// clearly lower score (by more than the hysteresis) wins; otherwise chance
// (the lowest bit of random) decides, so idle periods do not send
// everyone to the edge whose score is lowest by noise.
func better(xInflight int, xScore float64, yInflight int, yScore float64, tolerance float64, random uint64) bool {
	switch {
	case xInflight != yInflight:
		return xInflight < yInflight
	case xScore < yScore-tolerance:
		return true
	case yScore < xScore-tolerance:
		return false
	}
	return random&1 == 0
}

// leastInFlight is the fallback when no upstream has a fresh report, as
// least_conn: one of the candidates with the fewest of our requests in
// flight, at random (a second pass; this path is rare). Candidates are
// available upstreams not known to be down, draining or in maintenance.
func (p *TieredSelection) leastInFlight(pool reverseproxy.UpstreamPool, cache *poolCache) int {
	var r reservoir
	rng := newXorshift()
	for i, u := range pool {
		if !u.Available() {
			continue
		}
		var e *entry
		if cache != nil {
			e = cache.entries[i]
		} else {
			e = p.lookup(u)
		}
		if e != nil {
			if v := e.view.Load(); v != nil && (v.down || v.report.State == edgeagent.StateMaint || v.report.State == edgeagent.StateDrain) {
				continue
			}
		}
		r.offer(i, 0, u.NumRequests(), &rng)
	}
	if r.ties >= 2 {
		return int(r.idx[rng.below(2)])
	}
	return int(r.idx[0])
}

// resolve returns the cache for pool if it is valid, building one for a
// pool seen twice in a row; nil means look entries up by address.
func (p *TieredSelection) resolve(pool reverseproxy.UpstreamPool) *poolCache {
	es := p.board.entries.Load()
	c := p.cache.Load()
	if c != nil && &c.pool[0] == &pool[0] && len(c.pool) == len(pool) && c.gen == es.gen {
		if now := p.board.now.Load(); c.seen.Load() != now {
			c.seen.Store(now)
			for _, e := range c.entries {
				if e != nil {
					e.lastSeen.Store(now)
				}
			}
		}
		return c
	}
	if p.missBase.Swap(pool[0]) != pool[0] {
		return nil
	}
	// Seen twice: a static pool. Building the cache allocates, once per
	// pool and change of the board's upstream set.
	c = &poolCache{pool: pool, gen: es.gen, entries: make([]*entry, len(pool))}
	for i, u := range pool {
		if e := p.board.lookup(u); e != nil {
			e.upstream.Store(u)
			c.entries[i] = e
		}
	}
	// Looking up may have added entries; build again next time if so.
	c.gen = p.board.entries.Load().gen
	c.seen.Store(p.board.now.Load())
	p.cache.Store(c)
	return c
}

// lookup returns the entry of an upstream of a pool that is not cached,
// marking it seen.
func (p *TieredSelection) lookup(u *reverseproxy.Upstream) *entry {
	e := p.board.lookup(u)
	if e != nil {
		if now := p.board.now.Load(); e.lastSeen.Load() != now {
			e.lastSeen.Store(now)
		}
		if e.upstream.Load() != u {
			e.upstream.Store(u)
		}
	}
	return e
}

// Interface guards
var (
	_ reverseproxy.Selector = (*TieredSelection)(nil)
	_ caddy.Provisioner     = (*TieredSelection)(nil)
	_ caddy.Validator       = (*TieredSelection)(nil)
	_ caddy.CleanerUpper    = (*TieredSelection)(nil)
)
