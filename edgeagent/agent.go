package edgeagent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// Config is what an agent needs to know about its edge.
type Config struct {
	Name     string
	Interval time.Duration // sampling interval
	Capacity *Capacity     // advertised to the balancer when set
}

// Agent samples its edge and keeps the latest report. Reports are served
// from memory; sampling happens on the agent's own goroutine, so a report
// request never waits for a sample.
type Agent struct {
	cfg       Config
	resources ResourceSampler
	requests  CounterSource
	// live, when set, gives the exact number of streams at report time.
	live   func() int64
	logger *slog.Logger

	state  atomic.Value // State
	seq    atomic.Uint64
	latest atomic.Pointer[Report]
	// loadPrefix is the latest report in the TEXT form of LoadHeader, up
	// to the streams count that each response appends.
	loadPrefix atomic.Pointer[[]byte]
	sampling   atomic.Pointer[samplingState]
	failures   atomic.Uint64 // samples that failed

	mu       sync.Mutex // guards prev and prevResp, used by sample only
	prev     Counters
	prevResp float64
	prevSent uint64
	havePrev bool
}

// samplingState is how the agent's sampling goes: the latest attempt's
// error (nil when it succeeded) and when the latest good sample was taken.
type samplingState struct {
	err    error
	goodAt time.Time // monotonic
}

// ErrNoReport is wrapped by Current when the agent cannot vouch for a
// report: none taken yet, its latest sampling failed, or its latest good
// sample is older than StaleIntervals intervals.
var ErrNoReport = errors.New("no current report")

// StaleIntervals is how many sampling intervals old the latest good
// sample may be before the agent no longer serves it.
const StaleIntervals = 3

// NewAgent returns an agent in state ready. requests may be a *Meter, whose
// in-flight count is then read live for each report.
func NewAgent(cfg Config, resources ResourceSampler, requests CounterSource, logger *slog.Logger) (*Agent, error) {
	if cfg.Interval <= 0 {
		return nil, errors.New("interval must be positive")
	}
	if logger == nil {
		logger = slog.Default()
	}
	a := &Agent{cfg: cfg, resources: resources, requests: requests, logger: logger}
	if m, ok := requests.(*Meter); ok {
		a.live = m.InFlight
	}
	a.state.Store(StateReady)
	return a, nil
}

// Name is the edge's name.
func (a *Agent) Name() string { return a.cfg.Name }

// State returns the edge's state.
func (a *Agent) State() State { return a.state.Load().(State) }

// SetState changes the state; the next report carries it.
func (a *Agent) SetState(s State) { a.state.Store(s) }

// SampleFailures counts samples that could not be taken.
func (a *Agent) SampleFailures() uint64 { return a.failures.Load() }

// Interval is the sampling interval.
func (a *Agent) Interval() time.Duration { return a.cfg.Interval }

// Current returns the report to serve, or an error wrapping ErrNoReport
// when the agent cannot vouch for one: it has taken no sample yet, its
// latest sampling failed (the figures would be stale, or zero), or its
// latest good sample is older than StaleIntervals intervals (the sampler
// is stuck). A balancer must never be handed the last report again as if
// it were current: same seq, old timestamp.
func (a *Agent) Current() (Report, error) {
	if err := a.vouch(); err != nil {
		return Report{}, err
	}
	return a.Report(), nil
}

// vouch says why the agent cannot vouch for its latest report, if it cannot.
func (a *Agent) vouch() error {
	st := a.sampling.Load()
	switch {
	case st != nil && st.err != nil:
		return fmt.Errorf("%w: sampling failed: %w", ErrNoReport, st.err)
	case st == nil || a.latest.Load() == nil:
		return fmt.Errorf("%w: no sample taken yet", ErrNoReport)
	case time.Since(st.goodAt) > StaleIntervals*a.cfg.Interval:
		return fmt.Errorf("%w: the latest sample is %s old", ErrNoReport, time.Since(st.goodAt).Round(time.Millisecond))
	}
	return nil
}

// LoadHeaderValue is the value of LoadHeader for a response that starts
// while streams are in flight (itself included): the latest report's
// figures with that count. ok is false when the agent cannot vouch for a
// report (see Current): a response then carries no load rather than a
// stale one.
func (a *Agent) LoadHeaderValue(streams int64) (value string, ok bool) {
	prefix := a.loadPrefix.Load()
	if prefix == nil || a.vouch() != nil {
		return "", false
	}
	// Built on the stack: the one allocation is the string the header keeps.
	var buf [512]byte
	return string(AppendStreams(append(buf[:0], *prefix...), streams)), true
}

// Report returns the latest report, with the state and (for an in-process
// meter) the number of streams as they are now. It does not say whether
// sampling still works: serve Current instead.
func (a *Agent) Report() Report {
	var r Report
	if p := a.latest.Load(); p != nil {
		r = *p
	} else {
		r = Report{Schema: SchemaVersion, Edge: a.cfg.Name, Timestamp: time.Now(),
			IntervalSeconds: a.cfg.Interval.Seconds(), Capacity: a.cfg.Capacity}
	}
	r.State = a.State()
	if a.live != nil {
		r.Streams = float64(max(a.live(), 0))
	}
	return r
}

// Run samples every interval until ctx ends. The first sample is taken at
// once, so a report exists as soon as Run starts.
func (a *Agent) Run(ctx context.Context) {
	defer func() {
		if err := recover(); err != nil {
			a.logger.Error("agent sampler panicked", "panic", err, "stack", string(debug.Stack()))
		}
	}()
	a.Sample(ctx)
	// A random phase keeps the agents of many edges from sampling in step.
	timer := time.NewTimer(time.Duration(rand.Int64N(int64(a.cfg.Interval))))
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
			a.Sample(ctx)
			timer.Reset(a.cfg.Interval)
		}
	}
}

// Sample takes one sample now and makes it the latest report.
func (a *Agent) Sample(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.Interval)
	defer cancel()
	res, resErr := a.resources.Sample(ctx)
	cur, reqErr := a.requests.Counters()
	if err := errors.Join(resErr, reqErr); err != nil {
		// Without its figures (zero for resources, wrong rates for
		// requests) there is no report to make: Current refuses until a
		// sample succeeds again.
		a.failed(err)
		a.logger.Warn("sampling edge", "edge", a.cfg.Name, "error", err)
		return
	}

	a.mu.Lock()
	defer a.mu.Unlock()
	r := Report{
		Schema:          SchemaVersion,
		Edge:            a.cfg.Name,
		Timestamp:       time.Now().UTC(),
		Seq:             a.seq.Add(1),
		IntervalSeconds: a.cfg.Interval.Seconds(),
		Scope:           res.Scope,
		State:           a.State(),
		CPUPercent:      res.CPUPercent,
		MemoryPercent:   res.MemoryPercent,
		Streams:         float64(max(cur.InFlight, 0)),
		Capacity:        a.cfg.Capacity,
	}
	if a.havePrev {
		wall := cur.ObservedAt.Sub(a.prev.ObservedAt).Seconds()
		if wall > 0 && cur.Requests >= a.prev.Requests {
			r.RequestsPerSecond = float64(cur.Requests-a.prev.Requests) / wall
		}
		if n := cur.TTFBCount - a.prev.TTFBCount; cur.TTFBCount > a.prev.TTFBCount {
			a.prevResp = max(cur.TTFBSum-a.prev.TTFBSum, 0) / float64(n)
		}
		if wall > 0 && res.Link.EgressBytes >= a.prevSent {
			r.EgressBytesPerSecond = float64(res.Link.EgressBytes-a.prevSent) / wall
		}
		if wall > 0 && cur.BytesSent >= a.prev.BytesSent {
			r.SentBytesPerSecond = float64(cur.BytesSent-a.prev.BytesSent) / wall
		}
	}
	r.ResponseTimeSeconds = a.prevResp
	if r.Streams > 0 {
		r.StreamBytesPerSecond = r.SentBytesPerSecond / r.Streams
	}
	a.link(&r, res.Link)
	a.prev, a.prevSent, a.havePrev = cur, res.Link.EgressBytes, true
	if err := r.Validate(); err != nil {
		// Our own figures out of range is a bug; never serve them.
		a.failed(err)
		a.logger.Error("agent made an invalid report", "edge", a.cfg.Name, "error", fmt.Errorf("%w", err))
		return
	}
	prefix := AppendLoadPrefix(nil, &r)
	a.latest.Store(&r)
	a.loadPrefix.Store(&prefix)
	a.sampling.Store(&samplingState{goodAt: time.Now()})
}

// link adds the link's capacity and utilisation to r: the capacity the
// kernel knows is advertised in place of the configured one.
func (a *Agent) link(r *Report, l Link) {
	var advertised float64
	if r.Capacity != nil {
		advertised = r.Capacity.LinkBytesPerSecond
	}
	capacity, util := linkFigures(l, advertised, r.EgressBytesPerSecond, r.SentBytesPerSecond)
	if capacity != advertised {
		c := Capacity{}
		if r.Capacity != nil {
			c = *r.Capacity
		}
		c.LinkBytesPerSecond = capacity
		r.Capacity = &c
	}
	r.LinkUtilisation = util
}

// failed records a sampling attempt that made no report.
func (a *Agent) failed(err error) {
	a.failures.Add(1)
	st := &samplingState{err: err}
	if prev := a.sampling.Load(); prev != nil {
		st.goodAt = prev.goodAt
	}
	a.sampling.Store(st)
}
