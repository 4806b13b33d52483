package board

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/edgetier/edgetier/edgeagent"
	"github.com/edgetier/edgetier/internal/rank"
)

// FrameSchema is the version of the dashboard frame (JSON at /metrics and
// each WebSocket message). Readers accept frames of the same major
// version and ignore unknown fields.
const FrameSchema = "1.1"

// framedEvents is how many of the latest events a frame carries: a
// screenful, and a frame stays small at 1,000 clients a second.
const framedEvents = 50

// Frame is one second of the CDN as the load balancer sees it.
type Frame struct {
	Schema string `json:"schema"`
	// Seq numbers the frames of one dashboard handler: a gap means the
	// client missed frames.
	Seq             uint64        `json:"seq"`
	Time            time.Time     `json:"time"`
	Pool            string        `json:"pool"`
	IntervalSeconds float64       `json:"interval_seconds"`
	LB              LBFigures     `json:"lb"`
	Edges           []EdgeFigures `json:"edges"`
	// Events are the latest events (up to 50), oldest first; Seq orders them.
	Events []Event `json:"events"`
}

// LBFigures are measured at the load balancer itself.
type LBFigures struct {
	RequestsPerSecond   float64 `json:"requests_per_second"`
	RequestsPerMinute   float64 `json:"requests_per_minute"` // requests in the last 60 s
	RequestsTotal       uint64  `json:"requests_total"`
	Streams             int64   `json:"streams"` // requests in flight
	BandwidthMbps       float64 `json:"bandwidth_mbps"`
	ResponseTimeSeconds float64 `json:"response_time_seconds"` // mean time to first byte
	CPUPercent          float64 `json:"cpu_percent"`
	MemoryPercent       float64 `json:"memory_percent"`
}

// EdgeFigures are one upstream's figures: from its agent's last report,
// scored and corrected by the board, and the balancer's selections.
type EdgeFigures struct {
	Upstream string `json:"upstream"`
	// Edge is the name the agent gives itself: display it as text only.
	Edge   string `json:"edge"`
	State  string `json:"state"`  // ready, drain, maint ("" before a report)
	Health string `json:"health"` // ok, warming, stale, unknown, down, ejected
	// Tier is 1 to 4, 0 when the upstream has no trusted fresh report.
	Tier                int                `json:"tier"`
	Score               float64            `json:"score"`
	Components          map[string]float64 `json:"components"` // 0–100 each
	CPUPercent          float64            `json:"cpu_percent"`
	MemoryPercent       float64            `json:"memory_percent"`
	RequestsPerSecond   float64            `json:"requests_per_second"`
	Streams             float64            `json:"streams"`
	ResponseTimeSeconds float64            `json:"response_time_seconds"`
	ThroughputMbps      float64            `json:"throughput_mbps"`
	// What the upstream can take, as its score normalises against (0
	// before a report).
	CapacityRequests float64  `json:"capacity_requests_per_second"`
	CapacityStreams  float64  `json:"capacity_streams"`
	ReportAgeSeconds *float64 `json:"report_age_seconds"` // null before the first report
	Stale            bool     `json:"stale"`
	InFlight         int      `json:"in_flight"` // this balancer's requests on it
	SelectionsTotal  uint64   `json:"selections_total"`
	// Share is this upstream's part of the balancer's selections in the
	// last interval, 0 to 1.
	Share float64 `json:"share"`
	// Ejected: taken out for its errors (outlier detection) for
	// EjectedSeconds more; Ejections counts every ejection.
	Ejected        bool    `json:"ejected"`
	EjectedSeconds float64 `json:"ejected_seconds"`
	Ejections      uint64  `json:"ejections_total"`
	// ErrorRatio is the share of errors (5xx, transport errors) among its
	// recent answers, 0 to 1.
	ErrorRatio float64 `json:"error_ratio"`
	// Ramp is its slow-start factor: below 1 while a new or returning
	// upstream ramps up to its full share.
	Ramp float64 `json:"ramp"`

	// The link: its capacity as the agent reports it (0: unknown), the
	// share of it in use (corrected by what this balancer sent since the
	// report; null when the capacity is unknown) and whether the edge has
	// headroom (false: above link_headroom, so no new viewers while
	// another has headroom).
	LinkCapacityMbps     float64  `json:"link_capacity_mbps"`
	LinkUtilisation      *float64 `json:"link_utilisation"`
	LinkHeadroom         bool     `json:"link_headroom"`
	StreamBytesPerSecond float64  `json:"stream_bytes_per_second"`
}

// FrameBuilder turns the board and the balancer's meter into frames,
// keeping what it needs to compute rates between frames.
type FrameBuilder struct {
	board    *Board
	meter    *edgeagent.Meter
	host     edgeagent.ResourceSampler
	interval time.Duration

	mu         sync.Mutex
	seq        uint64
	prev       edgeagent.Counters
	havePrev   bool
	perSecond  []uint64 // requests per frame over the last minute
	prevSel    map[string]uint64
	lastCPU    float64
	lastMemory float64
}

// NewFrameBuilder builds frames of b, with the balancer's own figures from
// its meter m and host sampler, one per interval.
func NewFrameBuilder(b *Board, m *edgeagent.Meter, host edgeagent.ResourceSampler, interval time.Duration) *FrameBuilder {
	return &FrameBuilder{board: b, meter: m, host: host, interval: interval, prevSel: map[string]uint64{}}
}

// Frame builds the next frame as JSON.
func (f *FrameBuilder) Frame() []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	f.seq++
	fr := Frame{Schema: FrameSchema, Seq: f.seq, Time: now.UTC(), Pool: f.board.name, IntervalSeconds: f.interval.Seconds(), Edges: []EdgeFigures{}}

	cur, _ := f.meter.Counters()
	fr.LB.RequestsTotal, fr.LB.Streams = cur.Requests, cur.InFlight
	if f.havePrev {
		wall := cur.ObservedAt.Sub(f.prev.ObservedAt).Seconds()
		reqs := cur.Requests - f.prev.Requests
		if wall > 0 {
			fr.LB.RequestsPerSecond = float64(reqs) / wall
			fr.LB.BandwidthMbps = float64(cur.BytesSent-f.prev.BytesSent) * 8 / 1e6 / wall
		}
		if n := cur.TTFBCount - f.prev.TTFBCount; n > 0 {
			fr.LB.ResponseTimeSeconds = (cur.TTFBSum - f.prev.TTFBSum) / float64(n)
		}
		f.perSecond = append(f.perSecond, reqs)
		if window := int(time.Minute / f.interval); len(f.perSecond) > window {
			f.perSecond = f.perSecond[len(f.perSecond)-window:]
		}
	}
	for _, n := range f.perSecond {
		fr.LB.RequestsPerMinute += float64(n)
	}
	f.prev, f.havePrev = cur, true
	ctx, cancel := context.WithTimeout(context.Background(), f.interval/2)
	if res, err := f.host.Sample(ctx); err == nil {
		f.lastCPU, f.lastMemory = res.CPUPercent, res.MemoryPercent
	}
	cancel()
	fr.LB.CPUPercent, fr.LB.MemoryPercent = f.lastCPU, f.lastMemory

	var selDelta uint64
	deltas := make([]uint64, 0, 8)
	for _, e := range f.board.Edges() {
		st := e.Status(now)
		ef := EdgeFigures{
			Upstream: st.Upstream, Edge: st.Edge, State: string(st.State), Tier: int(st.Tier), Score: st.Score,
			Stale: st.Stale, InFlight: st.InFlight, Components: make(map[string]float64, rank.NumComponents),
			Ejected: st.Ejected, EjectedSeconds: st.EjectedFor, Ejections: st.Ejections, ErrorRatio: st.ErrorRatio, Ramp: st.Ramp,
		}
		for i, name := range rank.ComponentNames {
			ef.Components[name] = st.Components[i]
		}
		if r := st.Report; r != nil {
			ef.CPUPercent, ef.MemoryPercent = r.CPUPercent, r.MemoryPercent
			ef.RequestsPerSecond, ef.Streams, ef.ResponseTimeSeconds = r.RequestsPerSecond, r.Streams, r.ResponseTimeSeconds
			ef.ThroughputMbps = r.SentBytesPerSecond * 8 / 1e6
			ef.CapacityRequests, ef.CapacityStreams = st.Capacity.Requests, st.Capacity.Streams
			ef.StreamBytesPerSecond = r.StreamBytesPerSecond
			age := st.ReportAge
			ef.ReportAgeSeconds = &age
		}
		ef.LinkHeadroom = st.Link.Headroom
		if st.Link.Capacity > 0 {
			u := st.Link.Utilisation
			ef.LinkCapacityMbps, ef.LinkUtilisation = st.Link.Capacity*8/1e6, &u
		}
		switch {
		case st.Down:
			ef.Health = "down"
		case st.Ejected:
			ef.Health = "ejected"
		case st.Report == nil:
			ef.Health = "unknown"
		case st.Stale:
			ef.Health = "stale"
		case !st.Trusted:
			ef.Health = "warming"
		default:
			ef.Health = "ok"
		}
		ef.SelectionsTotal = st.TotalSelections()
		d := ef.SelectionsTotal - f.prevSel[e.dial]
		f.prevSel[e.dial] = ef.SelectionsTotal
		deltas = append(deltas, d)
		selDelta += d
		fr.Edges = append(fr.Edges, ef)
	}
	if selDelta > 0 {
		for i := range fr.Edges {
			fr.Edges[i].Share = float64(deltas[i]) / float64(selDelta)
		}
	}
	events := f.board.Events(0)
	if len(events) > framedEvents {
		events = events[len(events)-framedEvents:]
	}
	fr.Events = append([]Event{}, events...)
	out, err := json.Marshal(fr)
	if err != nil {
		return []byte(`{"schema":"` + FrameSchema + `","error":"encoding frame"}`)
	}
	return out
}
