package rank

import (
	"math"
	"time"

	"github.com/edgetier/edgetier/edgeagent"
)

// An edge's capacity is estimated from its own reports, as gRPC's weighted
// round robin derives its weights (gRFC A58): what it serves divided by how
// busy that makes it. An edge serving 700 requests/s at 50 % CPU can take
// about 1,400; one serving 69 at 100 % can take 69. A fixed default is
// right for one workload only: chunked Range requests put a healthy edge
// far past it, so every busy edge scored alike and the starved one hid.
const (
	// CalibrationFloor is the utilisation below which a report says too
	// little of the capacity (an idle edge's CPU is mostly noise): the
	// estimate is kept as it was.
	CalibrationFloor = 0.2
	// CalibrationWeight is the weight of a new report's estimate in the
	// smoothed one: about five reports.
	CalibrationWeight = 0.2
	// CalibrationDecay is the time constant with which an estimate is
	// forgotten while the edge reports idle: an edge kept off because it
	// could take little is offered more as the estimate grows, so one
	// that has recovered comes back, and one still starved is found out
	// again by a few requests.
	CalibrationDecay = 20 * time.Second
)

// Estimate is what an edge's reports say it can take: smoothed figures
// of what it served and how busy that made it. The capacity is their
// ratio, not a smoothed ratio: one report's count of streams is a sample
// of a few, and dividing each sample would make the estimate jump.
type Estimate struct {
	Requests    float64 // requests per second served
	Streams     float64 // concurrent streams served
	Utilisation float64 // 0: no estimate yet
}

// Calibrate is prev updated with report r, received elapsed after the
// one before.
func Calibrate(prev Estimate, r *edgeagent.Report, elapsed time.Duration) Estimate {
	u := r.CPUPercent / 100
	if !(u >= CalibrationFloor) {
		prev.Utilisation *= math.Exp(-float64(max(elapsed, 0)) / float64(CalibrationDecay))
		return prev
	}
	u = min(u, 1)
	if prev.Utilisation <= 0 {
		return Estimate{Requests: r.RequestsPerSecond, Streams: r.Streams, Utilisation: u}
	}
	return Estimate{
		Requests:    prev.Requests + CalibrationWeight*(r.RequestsPerSecond-prev.Requests),
		Streams:     prev.Streams + CalibrationWeight*(r.Streams-prev.Streams),
		Utilisation: prev.Utilisation + CalibrationWeight*(u-prev.Utilisation),
	}
}

// Capacity is the estimate's capacity; zero fields: none (less than one
// request per second, or one stream, served: that says nothing of it).
func (e Estimate) Capacity() Capacity {
	var c Capacity
	if e.Utilisation > 0 && e.Requests >= 1 {
		c.Requests = e.Requests / e.Utilisation
	}
	if e.Utilisation > 0 && e.Streams >= 1 {
		c.Streams = e.Streams / e.Utilisation
	}
	return c
}

// Within is the capacity to normalise against: the estimate where there
// is one, never above what bound (the agent's or the Caddyfile's
// capacity; zero fields: none) advertises, else the bound.
func (e Estimate) Within(bound Capacity) Capacity {
	c, est := bound, e.Capacity()
	if est.Requests > 0 && (c.Requests <= 0 || est.Requests < c.Requests) {
		c.Requests = est.Requests
	}
	if est.Streams > 0 && (c.Streams <= 0 || est.Streams < c.Streams) {
		c.Streams = est.Streams
	}
	return c
}
