package edgeagent

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Collector exposes an agent's latest figures in Prometheus form. Each
// series carries the edge's name as a constant label, so one registry can
// hold the collectors of several edges.
type Collector struct {
	agent *Agent
	guard *Guard

	cpu, memory, requests, streams, response, egress, sent, state, failures, unauthorized, reports *prometheus.Desc
	link, linkCapacity                                                                             *prometheus.Desc
}

// NewCollector returns a collector for a; guard may be nil.
func NewCollector(a *Agent, guard *Guard) *Collector {
	labels := prometheus.Labels{"edge": a.Name()}
	desc := func(name, help string, variable ...string) *prometheus.Desc {
		return prometheus.NewDesc("edgetier_agent_"+name, help, variable, labels)
	}
	return &Collector{
		agent:        a,
		guard:        guard,
		cpu:          desc("cpu_ratio", "CPU use of the edge's scope over the last sample, 0 to 1."),
		memory:       desc("memory_ratio", "Memory use of the edge's scope without reclaimable cache, 0 to 1."),
		requests:     desc("requests_per_second", "Request rate over the last sample interval."),
		streams:      desc("streams", "Requests in flight."),
		response:     desc("response_time_seconds", "Mean time to first byte over the last sample interval."),
		egress:       desc("egress_bytes_per_second", "Bytes sent on non-loopback interfaces per second."),
		sent:         desc("sent_bytes_per_second", "Response body bytes served per second."),
		link:         desc("link_utilisation", "Share of the edge's link in use over the last sample, 0 to 1 (only while the link's capacity is known)."),
		linkCapacity: desc("link_bytes_per_second", "The edge's link capacity: the kernel's interface speed where it knows it, else the advertised one."),
		state:        desc("state", "1 for the edge's current state.", "state"),
		failures:     desc("sample_failures_total", "Samples that could not be taken."),
		unauthorized: desc("unauthorized_requests_total", "Requests refused for a missing or wrong token."),
		reports:      desc("reports_served_total", "Load reports served to balancers."),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.cpu, c.memory, c.requests, c.streams, c.response, c.egress, c.sent, c.state, c.failures, c.unauthorized, c.reports, c.link, c.linkCapacity} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	r := c.agent.Report()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(c.cpu, r.CPUPercent/100)
	gauge(c.memory, r.MemoryPercent/100)
	gauge(c.requests, r.RequestsPerSecond)
	gauge(c.streams, r.Streams)
	gauge(c.response, r.ResponseTimeSeconds)
	gauge(c.egress, r.EgressBytesPerSecond)
	gauge(c.sent, r.SentBytesPerSecond)
	if r.Capacity != nil && r.Capacity.LinkBytesPerSecond > 0 {
		gauge(c.linkCapacity, r.Capacity.LinkBytesPerSecond)
		gauge(c.link, r.LinkUtilisation)
	}
	for _, s := range []State{StateReady, StateDrain, StateMaint} {
		v := 0.0
		if r.State == s {
			v = 1
		}
		gauge(c.state, v, string(s))
	}
	ch <- prometheus.MustNewConstMetric(c.failures, prometheus.CounterValue, float64(c.agent.SampleFailures()))
	if c.guard != nil {
		ch <- prometheus.MustNewConstMetric(c.unauthorized, prometheus.CounterValue, float64(c.guard.Unauthorized.Load()))
		ch <- prometheus.MustNewConstMetric(c.reports, prometheus.CounterValue, float64(c.guard.Reports.Load()))
	}
}
