package edgeagent

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
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

// DefaultMaxScrapeBytes caps the edge's metrics page the standalone agent
// reads, as MaxReportBytes caps a report: a larger page fails the sample
// (it would cost memory and CPU every interval, and a truncated page
// would give wrong sums).
const DefaultMaxScrapeBytes = 8 << 20

// maxScrapeLine is the longest line of a metrics page the agent reads.
const maxScrapeLine = 256 << 10

// scrapeChunkLines is how many sample lines of a family are parsed at
// once: the page is streamed, and only this much of it is ever held.
const scrapeChunkLines = 1000

// PromSource reads an edge's request counters from its Prometheus endpoint.
// Series with several label sets (per server, per handler) are summed;
// Match restricts them to those carrying the given label values.
//
// The page (Prometheus text format) is streamed, never held: lines of the
// families it reads are parsed with expfmt in chunks of a thousand, every
// other line is skipped unparsed, so memory stays flat whatever the
// page's size, which is capped at MaxBytes.
type PromSource struct {
	URL     string
	Names   MetricNames
	Match   map[string]string
	Client  *http.Client
	Timeout time.Duration
	// MaxBytes caps the page; a larger one fails the sample. Zero means
	// DefaultMaxScrapeBytes.
	MaxBytes int64
}

// errTooLarge is returned by cappedReader past its cap.
var errTooLarge = errors.New("too large")

// cappedReader reads r and fails with errTooLarge once more than left
// bytes came.
type cappedReader struct {
	r    io.Reader
	left int64
}

func (c *cappedReader) Read(b []byte) (int, error) {
	if c.left < 0 {
		return 0, errTooLarge
	}
	if int64(len(b)) > c.left+1 {
		b = b[:c.left+1]
	}
	n, err := c.r.Read(b)
	c.left -= int64(n)
	if c.left < 0 {
		return 0, errTooLarge
	}
	return n, err
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
	limit := cmp.Or(p.MaxBytes, DefaultMaxScrapeBytes)
	c, err := p.parse(&cappedReader{r: resp.Body, left: limit})
	if errors.Is(err, errTooLarge) || resp.ContentLength > limit {
		return Counters{}, fmt.Errorf("scraping %s: the metrics page is larger than %d bytes (-max-scrape-bytes)", p.URL, limit)
	}
	return c, err
}

// sums accumulates the figures of the families the agent reads.
type sums struct {
	requests, inFlight, ttfbSum, ttfbCount, sent float64
	sawRequests                                  bool
}

// parse streams a metrics page: the lines of the families it reads go to
// expfmt's parser a chunk at a time (each chunk with its family's TYPE
// line), the others are skipped.
func (p *PromSource) parse(r io.Reader) (Counters, error) {
	wanted := map[string]bool{}
	for _, n := range []string{p.Names.Requests, p.Names.InFlight, p.Names.TTFB, p.Names.ResponseSize} {
		if n != "" {
			wanted[n] = true
		}
	}
	var (
		acc     sums
		types   = map[string][]byte{} // TYPE line of each wanted family seen
		chunk   bytes.Buffer
		family  string // of the lines in chunk
		lines   int
		lineNum int
	)
	flush := func() error {
		if lines == 0 {
			return nil
		}
		var text bytes.Buffer
		text.Grow(len(types[family]) + chunk.Len())
		text.Write(types[family])
		text.Write(chunk.Bytes())
		parser := expfmt.NewTextParser(model.UTF8Validation)
		families, err := parser.TextToMetricFamilies(&text)
		if err != nil {
			return fmt.Errorf("parsing metrics (a chunk of %s ending at line %d): %w", family, lineNum, err)
		}
		for _, f := range families {
			p.add(&acc, f)
		}
		chunk.Reset()
		lines = 0
		return nil
	}
	br := bufio.NewReaderSize(r, maxScrapeLine)
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			return Counters{}, fmt.Errorf("parsing metrics: line %d is longer than %d bytes", lineNum+1, maxScrapeLine)
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return Counters{}, fmt.Errorf("parsing metrics: %w", err)
		}
		if len(line) > 0 {
			lineNum++
			if line[len(line)-1] != '\n' {
				line = append(line, '\n') // the last line, unterminated
			}
			name, isType := lineFamily(line)
			if fam := familyOf(name, wanted); fam != "" {
				if fam != family {
					if ferr := flush(); ferr != nil {
						return Counters{}, ferr
					}
					family = fam
				}
				if isType {
					types[fam] = bytes.Clone(line)
				} else {
					chunk.Write(line)
					if lines++; lines >= scrapeChunkLines {
						if ferr := flush(); ferr != nil {
							return Counters{}, ferr
						}
					}
				}
			}
		}
		if err != nil { // io.EOF
			break
		}
	}
	if err := flush(); err != nil {
		return Counters{}, err
	}
	if !acc.sawRequests && types[p.Names.Requests] == nil {
		return Counters{}, fmt.Errorf("metrics have no series %q (is Caddy's global metrics option on?)", p.Names.Requests)
	}
	return Counters{
		ObservedAt: time.Now(),
		Requests:   uint64(acc.requests),
		InFlight:   int64(acc.inFlight),
		TTFBSum:    acc.ttfbSum,
		TTFBCount:  uint64(acc.ttfbCount),
		BytesSent:  uint64(acc.sent),
	}, nil
}

// lineFamily returns the metric name a line of the text format is about:
// a sample's name, or the name of a "# TYPE" line (isType). Other comments
// and blank lines give "". A quoted (UTF-8) name is not read.
func lineFamily(line []byte) (name string, isType bool) {
	if rest, ok := bytes.CutPrefix(line, []byte("# TYPE ")); ok {
		if f := bytes.Fields(rest); len(f) > 0 {
			return string(f[0]), true
		}
		return "", false
	}
	if len(line) == 0 || line[0] == '#' {
		return "", false
	}
	end := bytes.IndexAny(line, "{ \t\n")
	if end <= 0 {
		return "", false
	}
	return string(line[:end]), false
}

// familyOf is the wanted family a series name belongs to: the name
// itself, or a histogram's or summary's, for its _bucket, _sum and _count
// series; "" when none is wanted.
func familyOf(name string, wanted map[string]bool) string {
	if name == "" {
		return ""
	}
	if wanted[name] {
		return name
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && wanted[base] {
			return base
		}
	}
	return ""
}

// add sums a parsed family's matching series into acc.
func (p *PromSource) add(acc *sums, f *dto.MetricFamily) {
	name := f.GetName()
	for _, m := range f.GetMetric() {
		if !p.matches(m) {
			continue
		}
		if name == p.Names.Requests {
			acc.requests += m.GetCounter().GetValue() + m.GetUntyped().GetValue()
		}
		if name == p.Names.InFlight {
			acc.inFlight += m.GetGauge().GetValue() + m.GetUntyped().GetValue()
		}
		if name == p.Names.TTFB {
			acc.ttfbSum += m.GetHistogram().GetSampleSum()
			acc.ttfbCount += float64(m.GetHistogram().GetSampleCount())
		}
		if name == p.Names.ResponseSize {
			acc.sent += m.GetHistogram().GetSampleSum()
		}
	}
	if name == p.Names.Requests {
		acc.sawRequests = true
	}
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
