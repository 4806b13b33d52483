package edgeagent

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

const caddyMetricsFixture = `# HELP caddy_http_requests_total Counter of HTTP(S) requests made.
# TYPE caddy_http_requests_total counter
caddy_http_requests_total{handler="file_server",server="srv0"} 120
caddy_http_requests_total{handler="file_server",server="srv1"} 30
caddy_http_requests_total{handler="reverse_proxy",server="srv1"} 1000
# HELP caddy_http_requests_in_flight Number of requests currently handled by this server.
# TYPE caddy_http_requests_in_flight gauge
caddy_http_requests_in_flight{handler="file_server",server="srv0"} 4
caddy_http_requests_in_flight{handler="file_server",server="srv1"} 1
# HELP caddy_http_response_duration_seconds Histogram of times to first byte in response bodies.
# TYPE caddy_http_response_duration_seconds histogram
caddy_http_response_duration_seconds_bucket{code="200",handler="file_server",method="GET",server="srv0",le="+Inf"} 100
caddy_http_response_duration_seconds_sum{code="200",handler="file_server",method="GET",server="srv0"} 2.5
caddy_http_response_duration_seconds_count{code="200",handler="file_server",method="GET",server="srv0"} 100
# HELP caddy_http_response_size_bytes Size of the returned response.
# TYPE caddy_http_response_size_bytes histogram
caddy_http_response_size_bytes_bucket{code="200",handler="file_server",method="GET",server="srv0",le="+Inf"} 100
caddy_http_response_size_bytes_sum{code="200",handler="file_server",method="GET",server="srv0"} 1e6
caddy_http_response_size_bytes_count{code="200",handler="file_server",method="GET",server="srv0"} 100
`

func TestPromSource(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(caddyMetricsFixture))
	}))
	defer srv.Close()
	tests := []struct {
		name  string
		match map[string]string
		want  Counters
	}{
		{"all series summed", nil, Counters{Requests: 1150, InFlight: 5, TTFBSum: 2.5, TTFBCount: 100, BytesSent: 1e6}},
		{"one server's file_server", map[string]string{"server": "srv0", "handler": "file_server"}, Counters{Requests: 120, InFlight: 4, TTFBSum: 2.5, TTFBCount: 100, BytesSent: 1e6}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &PromSource{URL: srv.URL, Names: CaddyMetricNames, Match: tt.match, Timeout: time.Second}
			got, err := p.Counters()
			if err != nil {
				t.Fatal(err)
			}
			got.ObservedAt = time.Time{}
			if got != tt.want {
				t.Fatalf("Counters() = %+v, want %+v", got, tt.want)
			}
		})
	}
	p := &PromSource{URL: srv.URL, Names: MetricNames{Requests: "nginx_requests"}, Timeout: time.Second}
	if _, err := p.Counters(); err == nil || !strings.Contains(err.Error(), "metrics option") {
		t.Fatalf("missing series error = %v", err)
	}
}

func TestParseMatch(t *testing.T) {
	if m, err := ParseMatch("server=srv0, handler=file_server"); err != nil || m["handler"] != "file_server" || len(m) != 2 {
		t.Fatalf("ParseMatch = %v, %v", m, err)
	}
	if _, err := ParseMatch("server"); err == nil {
		t.Fatal("ParseMatch accepted a matcher without =")
	}
}

// TestPromSourceStreams: pages are read in chunks, so families of
// thousands of series (a histogram's lines split across chunks too) sum
// right; families the agent does not read are skipped unparsed; a page
// above the cap fails.
func TestPromSourceStreams(t *testing.T) {
	var page strings.Builder
	page.WriteString("# HELP other_total Not read.\n# TYPE other_total counter\n")
	page.WriteString("other_total{a=\"1\"} this is not a number\n") // skipped, never parsed
	page.WriteString("# TYPE caddy_http_requests_total counter\n")
	for i := 0; i < 2500; i++ {
		fmt.Fprintf(&page, "caddy_http_requests_total{server=\"srv%d\",handler=\"file_server\"} 2\n", i)
	}
	page.WriteString("# TYPE caddy_http_response_duration_seconds histogram\n")
	for i := 0; i < 700; i++ { // 3 lines a series: chunk boundaries fall inside series
		fmt.Fprintf(&page, "caddy_http_response_duration_seconds_bucket{server=\"srv%d\",le=\"+Inf\"} 4\n", i)
		fmt.Fprintf(&page, "caddy_http_response_duration_seconds_sum{server=\"srv%d\"} 0.5\n", i)
		fmt.Fprintf(&page, "caddy_http_response_duration_seconds_count{server=\"srv%d\"} 4\n", i)
	}
	page.WriteString("caddy_http_requests_in_flight 3") // untyped, and no final newline
	text := page.String()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(text))
	}))
	defer srv.Close()
	p := &PromSource{URL: srv.URL, Names: CaddyMetricNames, Timeout: 5 * time.Second}
	got, err := p.Counters()
	if err != nil {
		t.Fatal(err)
	}
	got.ObservedAt = time.Time{}
	if want := (Counters{Requests: 5000, InFlight: 3, TTFBSum: 350, TTFBCount: 2800}); got != want {
		t.Fatalf("Counters() = %+v, want %+v", got, want)
	}
	p.MaxBytes = int64(len(text)) - 1
	if _, err := p.Counters(); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("a page one byte above the cap: %v, want an error", err)
	}
	p.MaxBytes = int64(len(text))
	if _, err := p.Counters(); err != nil {
		t.Fatalf("a page exactly at the cap: %v", err)
	}
}
