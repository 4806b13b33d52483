package board

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgetier/edgetier/edgeagent"
	"github.com/edgetier/edgetier/internal/rank"
)

// collector exports a board's view of its upstreams. A board has one,
// registered once per config's registry, so two policies on one pool never
// emit the same series twice.
type collector struct {
	b                                                                       *Board
	score, tier, load, age, stale, down, state, trusted                     *prometheus.Desc
	selections, reportErrors, polls, streamFailures, upCount, latency, slow *prometheus.Desc
	resumes, capacity, loadHeaders                                          *prometheus.Desc
	ejected, ejections, errorRatio, answers, ramp                           *prometheus.Desc
	link, linkHeadroom                                                      *prometheus.Desc
}

// Collector is the board's Prometheus collector.
func (b *Board) Collector() prometheus.Collector { return b.collector }

func newCollector(b *Board) *collector {
	labels := prometheus.Labels{"pool": b.name}
	desc := func(name, help string, variable ...string) *prometheus.Desc {
		return prometheus.NewDesc("edgetier_"+name, help, variable, labels)
	}
	return &collector{
		b:            b,
		score:        desc("upstream_score", "Load score, 0 to 100, corrected by the proxy's own in-flight requests.", "upstream"),
		tier:         desc("upstream_tier", "Tier, 1 (lightly loaded) to 4 (critical); 0 before a trusted report.", "upstream"),
		load:         desc("upstream_load_ratio", "Score component from the last report, normalised to capacity, 0 to 1.", "upstream", "component"),
		age:          desc("upstream_report_age_seconds", "Seconds since the last good report was received.", "upstream"),
		stale:        desc("upstream_stale", "1 when the upstream has no good report within stale_after.", "upstream"),
		down:         desc("upstream_down", "1 when the upstream's own address refuses the report poll.", "upstream"),
		trusted:      desc("upstream_trusted", "1 when the upstream passed its warm-up.", "upstream"),
		state:        desc("upstream_state", "1 for the state the upstream's agent reports.", "upstream", "state"),
		selections:   desc("upstream_selections_total", "Requests sent to the upstream, by its tier when chosen (unknown, 1-4, fallback, drain, down).", "upstream", "tier"),
		reportErrors: desc("upstream_report_errors_total", "Report polls that failed or were rejected, by reason.", "upstream", "reason"),
		polls:        desc("upstream_polls_total", "Report polls made.", "upstream"),
		loadHeaders: desc("upstream_load_headers_total", "Endpoint-Load-Metrics headers read from the upstream's responses (edgetier transport only), by result: accepted, "+
			"coalesced (within 20 ms of the last one taken in), ignored (its view is not one a header refreshes), or why it was rejected.", "upstream", "result"),
		capacity:       desc("upstream_capacity", "What the upstream can take, as the score normalises against: estimated from its reports, bounded by what is advertised.", "upstream", "resource"),
		latency:        desc("upstream_latency_seconds", "Fastest time to first byte the proxy saw from the upstream in the last 5-10 s (edgetier transport only).", "upstream"),
		slow:           desc("upstream_slow", "1 while the upstream answers clearly slower than the pool's fastest (kept off while others serve).", "upstream"),
		streamFailures: desc("upstream_stream_failures_total", "Responses that failed after their body had started.", "upstream"),
		upCount:        desc("pool_upstreams", "Upstreams the board polls."),
		ejected:        desc("upstream_ejected", "1 while the upstream is ejected for its errors (no viewers until its ejection ends).", "upstream"),
		ejections:      desc("upstream_ejections_total", "Times the upstream was ejected for its errors.", "upstream"),
		errorRatio:     desc("upstream_error_ratio", "Share of errors (status 500 and above, transport errors) among the upstream's answers of the last 5-10 s, 0 to 1 (edgetier transport only).", "upstream"),
		answers:        desc("upstream_answers_total", "Answers the proxy had from the upstream, by outcome (ok; error: status 500 and above or a transport error before the first byte; edgetier transport only).", "upstream", "outcome"),
		ramp:           desc("upstream_ramp_ratio", "Slow-start factor: below 1 while a new or returning upstream ramps up to its full share.", "upstream"),
		resumes:        desc("resumes_total", "Responses whose upstream failed mid-body, by what the resume did (ok, no_edge, mismatch, failed, limit, disabled).", "outcome"),
		link: desc("upstream_link_utilisation", "Share of its link the upstream uses, 0 to 1: its report's, corrected by what the proxy sent it since "+
			"(edgetier transport); only for an upstream whose link capacity is known (upstream_capacity{resource=\"link_bytes_per_second\"}).", "upstream"),
		linkHeadroom: desc("upstream_link_headroom", "1 while the upstream's link utilisation is at most link_headroom, 0 above it: it then takes no new viewers while another upstream has headroom.", "upstream"),
	}
}

func (c *collector) all() []*prometheus.Desc {
	return []*prometheus.Desc{c.score, c.tier, c.load, c.age, c.stale, c.down, c.trusted, c.state,
		c.selections, c.reportErrors, c.polls, c.streamFailures, c.upCount, c.resumes, c.latency, c.slow, c.capacity, c.loadHeaders,
		c.ejected, c.ejections, c.errorRatio, c.answers, c.ramp, c.link, c.linkHeadroom}
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.all() {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	now := time.Now()
	list := c.b.Edges()
	ch <- prometheus.MustNewConstMetric(c.upCount, prometheus.GaugeValue, float64(len(list)))
	for o := range numOutcomes {
		ch <- prometheus.MustNewConstMetric(c.resumes, prometheus.CounterValue, float64(c.b.resumes[o].Load()), outcomeLabels[o])
	}
	for _, e := range list {
		st := e.Status(now)
		gauge := func(d *prometheus.Desc, v float64, labels ...string) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, append([]string{e.dial}, labels...)...)
		}
		counter := func(d *prometheus.Desc, v uint64, labels ...string) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), append([]string{e.dial}, labels...)...)
		}
		gauge(c.score, st.Score)
		gauge(c.tier, float64(st.Tier))
		for i, name := range rank.ComponentNames {
			gauge(c.load, st.Components[i]/100, name)
		}
		if st.ReportAge >= 0 {
			gauge(c.age, st.ReportAge)
			gauge(c.capacity, st.Capacity.Requests, "requests_per_second")
			gauge(c.capacity, st.Capacity.Streams, "streams")
		}
		gauge(c.stale, boolFloat(st.Stale))
		gauge(c.down, boolFloat(st.Down))
		gauge(c.trusted, boolFloat(st.Trusted))
		for _, s := range []edgeagent.State{edgeagent.StateReady, edgeagent.StateDrain, edgeagent.StateMaint} {
			gauge(c.state, boolFloat(st.State == s), string(s))
		}
		for kind, label := range rank.KindLabels {
			counter(c.selections, st.Selections[kind], label)
		}
		for r, label := range reasonLabels {
			counter(c.reportErrors, e.errors[r].Load(), label)
		}
		for r, label := range inBandLabels {
			counter(c.loadHeaders, e.inBand[r].Load(), label)
		}
		counter(c.polls, e.polls.Load())
		counter(c.streamFailures, e.failures.Load())
		if st.Latency.Base > 0 {
			gauge(c.latency, time.Duration(st.Latency.Base).Seconds())
		}
		gauge(c.slow, boolFloat(st.Slow))
		gauge(c.ejected, boolFloat(st.Ejected))
		counter(c.ejections, st.Ejections)
		gauge(c.errorRatio, st.ErrorRatio)
		counter(c.answers, st.Answers-st.Errors, "ok")
		counter(c.answers, st.Errors, "error")
		gauge(c.ramp, st.Ramp)
		if st.Link.Capacity > 0 {
			gauge(c.capacity, st.Link.Capacity, "link_bytes_per_second")
			gauge(c.link, st.Link.Utilisation)
		}
		gauge(c.linkHeadroom, boolFloat(st.Link.Headroom))
	}
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
