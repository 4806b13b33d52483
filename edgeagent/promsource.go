package edgeagent

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// MetricNames names the edge's Prometheus series the standalone agent reads.
// The defaults are Caddy's (they need Caddy's global `metrics` option).
type MetricNames struct {
	Requests     string // counter of requests
	InFlight     string // gauge of requests in flight
	TTFB         string // histogram of times to first byte, in seconds
	ResponseSize string // histogram of response sizes, in bytes
}

// CaddyMetricNames are the series Caddy exports with its `metrics` option.
var CaddyMetricNames = MetricNames{
	Requests:     "caddy_http_requests_total",
	InFlight:     "caddy_http_requests_in_flight",
	TTFB:         "caddy_http_response_duration_seconds",
	ResponseSize: "caddy_http_response_size_bytes",
}

// maxScrapeBytes caps how much of the edge's metrics page is read.
const maxScrapeBytes = 16 << 20

// PromSource reads an edge's request counters from its Prometheus endpoint.
// Series with several label sets (per server, per handler) are summed;
// Match restricts them to those carrying the given label values.
type PromSource struct {
	URL     string
	Names   MetricNames
	Match   map[string]string
	Client  *http.Client
	Timeout time.Duration
}

// Counters scrapes the endpoint once.
func (p *PromSource) Counters() (Counters, error) {
	ctx, cancel := context.WithTimeout(context.Background(), p.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.URL, nil)
	if err != nil {
		return Counters{}, fmt.Errorf("scraping %s: %w", p.URL, err)
	}
	// Ask for text: the parser below reads the text format only.
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	client := p.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return Counters{}, fmt.Errorf("scraping %s: %w", p.URL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Counters{}, fmt.Errorf("scraping %s: status %s", p.URL, resp.Status)
	}
	return p.parse(io.LimitReader(resp.Body, maxScrapeBytes))
}

func (p *PromSource) parse(r io.Reader) (Counters, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(r)
	if err != nil {
		return Counters{}, fmt.Errorf("parsing metrics: %w", err)
	}
	c := Counters{ObservedAt: time.Now()}
	reqs, ok := p.sum(families[p.Names.Requests], func(m *dto.Metric) float64 { return m.GetCounter().GetValue() })
	if !ok {
		return Counters{}, fmt.Errorf("metrics have no series %q (is Caddy's global metrics option on?)", p.Names.Requests)
	}
	c.Requests = uint64(reqs)
	inflight, _ := p.sum(families[p.Names.InFlight], func(m *dto.Metric) float64 { return m.GetGauge().GetValue() })
	c.InFlight = int64(inflight)
	sum, _ := p.sum(families[p.Names.TTFB], func(m *dto.Metric) float64 { return m.GetHistogram().GetSampleSum() })
	count, _ := p.sum(families[p.Names.TTFB], func(m *dto.Metric) float64 { return float64(m.GetHistogram().GetSampleCount()) })
	c.TTFBSum, c.TTFBCount = sum, uint64(count)
	sent, _ := p.sum(families[p.Names.ResponseSize], func(m *dto.Metric) float64 { return m.GetHistogram().GetSampleSum() })
	c.BytesSent = uint64(sent)
	return c, nil
}

func (p *PromSource) sum(f *dto.MetricFamily, value func(*dto.Metric) float64) (float64, bool) {
	if f == nil {
		return 0, false
	}
	var total float64
	for _, m := range f.GetMetric() {
		if p.matches(m) {
			total += value(m)
		}
	}
	return total, true
}

func (p *PromSource) matches(m *dto.Metric) bool {
	for name, want := range p.Match {
		found := false
		for _, l := range m.GetLabel() {
			if l.GetName() == name {
				found = l.GetValue() == want
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// ParseMatch parses "name=value,name=value" label matchers.
func ParseMatch(s string) (map[string]string, error) {
	m := map[string]string{}
	if strings.TrimSpace(s) == "" {
		return m, nil
	}
	for _, pair := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(pair, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("label matcher %q is not name=value", pair)
		}
		m[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return m, nil
}
