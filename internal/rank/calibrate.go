package rank

import "github.com/edgetier/edgetier/edgeagent"

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
)

// Estimate is what an edge's reports say it can take; zero fields: no
// estimate yet.
type Estimate struct {
	Requests float64 // requests per second
	Streams  float64 // concurrent streams
}

// Calibrate is prev updated with report r.
func Calibrate(prev Estimate, r *edgeagent.Report) Estimate {
	u := r.CPUPercent / 100
	if !(u >= CalibrationFloor) {
		return prev
	}
	u = min(u, 1)
	prev.Requests = smoothed(prev.Requests, r.RequestsPerSecond, u)
	prev.Streams = smoothed(prev.Streams, r.Streams, u)
	return prev
}

// smoothed folds the estimate of served at utilisation u into prev. A
// figure below one says nothing of the capacity (an edge may be busy with
// other work than streams).
func smoothed(prev, served, u float64) float64 {
	if !(served >= 1) {
		return prev
	}
	est := served / u
	if prev <= 0 {
		return est
	}
	return prev + CalibrationWeight*(est-prev)
}

// Within is the capacity to normalise against: the estimate where there
// is one, never above what bound (the agent's or the Caddyfile's
// capacity; zero fields: none) advertises, else the bound.
func (e Estimate) Within(bound Capacity) Capacity {
	c := bound
	if e.Requests > 0 && (c.Requests <= 0 || e.Requests < c.Requests) {
		c.Requests = e.Requests
	}
	if e.Streams > 0 && (c.Streams <= 0 || e.Streams < c.Streams) {
		c.Streams = e.Streams
	}
	return c
}
