package integration

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgetier/edgetier/edgeagent"
	"github.com/edgetier/edgetier/internal/cluster"
)

// fetch sends method url with headers (name, value pairs) and
// returns the response with its body read.
func fetch(t *testing.T, method, url string, headers ...string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s %v: %v", method, url, headers, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s %v: reading the body: %v", method, url, headers, err)
	}
	return resp, body
}

// answer is a request that makes file_server give one kind of answer,
// with the status it gives.
type answer struct {
	name, file string
	headers    []string
	status     int
}

// answers: the whole file, a range, not modified (etag is the file's), an
// unsatisfiable range, a missing file.
func answers(etag string) []answer {
	return []answer{
		{"200", "sample.mp4", nil, http.StatusOK},
		{"206", "sample.mp4", []string{"Range", "bytes=10-99"}, http.StatusPartialContent},
		{"304", "sample.mp4", []string{"If-None-Match", etag}, http.StatusNotModified},
		{"416", "sample.mp4", []string{"Range", "bytes=999999999-"}, http.StatusRequestedRangeNotSatisfiable},
		{"404", "missing.mp4", nil, http.StatusNotFound},
	}
}

// TestShippedLoadHeader: on the default Caddyfile, every answer of an
// edge (200, 206, 304, 416, 404) carries its load, in the ORCA TEXT form,
// counting itself among the streams; its report endpoint does not. The
// load balancer takes the load in (counted as accepted) and no viewer
// ever sees it.
func TestShippedLoadHeader(t *testing.T) {
	s := startShipped(t)
	waitTrusted(t, s.lb, s.url, s.edges...)
	first, _ := fetch(t, http.MethodGet, "http://"+s.edges[0]+"/sample.mp4")
	etag := first.Header.Get("ETag")
	if etag == "" {
		t.Fatal("the edge sends no ETag: the 304 case needs one")
	}
	for _, a := range answers(etag) {
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			resp, _ := fetch(t, method, "http://"+s.edges[0]+"/"+a.file, a.headers...)
			v := resp.Header.Get(edgeagent.LoadHeader)
			load, err := edgeagent.ParseLoadHeader(v)
			if resp.StatusCode != a.status || err != nil || load.Seq == 0 || load.Streams < 1 || load.Has&edgeagent.HasCPU == 0 {
				t.Errorf("edge %s %s: %d, %s %q (%+v, %v): want %d with the edge's load, itself among the streams",
					method, a.name, resp.StatusCode, edgeagent.LoadHeader, v, load, err, a.status)
			}
		}
	}
	report, _ := fetch(t, http.MethodGet, "http://"+s.edges[0]+edgeagent.DefaultReportPath)
	if v := report.Header.Get(edgeagent.LoadHeader); report.StatusCode != http.StatusOK || v != "" {
		t.Errorf("the report endpoint: %d, %s %q: want 200 without the header (its body is the load)", report.StatusCode, edgeagent.LoadHeader, v)
	}

	// Through the LB: every answer, on both video routes, many times (so
	// every edge serves some), without the header.
	want := readLibrary(t, "sample.mp4")
	for round := 0; round < 6; round++ {
		for _, a := range answers(etag) {
			paths := []string{"/videos/" + a.file}
			if a.file == "sample.mp4" {
				paths = append(paths, "/") // the default video
			}
			for _, path := range paths {
				resp, body := fetch(t, http.MethodGet, s.url+path, a.headers...)
				if resp.StatusCode != a.status {
					t.Errorf("LB %s %s: %d, want %d", a.name, path, resp.StatusCode, a.status)
				}
				if a.status == http.StatusOK && !bytes.Equal(body, want) {
					t.Errorf("LB %s %s: %d bytes, not the file", a.name, path, len(body))
				}
				if v, ok := resp.Header[edgeagent.LoadHeader]; ok {
					t.Fatalf("LB %s %s: the viewer sees %s %q", a.name, path, edgeagent.LoadHeader, v)
				}
			}
		}
	}
	m := scrape(t, s.url+"/prometheus")
	accepted := m.sum("edgetier_upstream_load_headers_total", prometheus.Labels{"result": "accepted"})
	rejected := 0.0
	for _, r := range []string{edgeagent.ReasonMalformed, edgeagent.ReasonInvalid, edgeagent.ReasonTooLarge, edgeagent.ReasonUnsupported} {
		rejected += m.sum("edgetier_upstream_load_headers_total", prometheus.Labels{"result": r})
	}
	if accepted == 0 || rejected != 0 {
		t.Errorf("/prometheus: %g load headers accepted, %g rejected: want some accepted, none rejected", accepted, rejected)
	}
}

// TestShippedHostileLoadHeader: an edge whose site sets its own
// Endpoint-Load-Metrics (a claim of no load that a lax parser takes:
// NaN scores as zero) is not believed: the header is counted as
// malformed in /prometheus, logged once per edge rather than per
// response, never reaches the viewer, and the proxy keeps serving.
func TestShippedHostileLoadHeader(t *testing.T) {
	const hostile = "TEXT cpu_utilization=NaN, mem_utilization=NaN, rps_fractional=0, named_metrics.seq=99999999, named_metrics.streams=0"
	s := startShipped(t, "\t\tfile_server\n", "\t\theader "+edgeagent.LoadHeader+` "`+hostile+`"`+"\n\t\tfile_server\n")
	if resp, _ := fetch(t, http.MethodGet, "http://"+s.edges[0]+"/sample.mp4"); resp.Header.Get(edgeagent.LoadHeader) != hostile {
		t.Fatalf("the edge sends %q: the test's Caddyfile edit did not take", resp.Header.Get(edgeagent.LoadHeader))
	}
	waitTrusted(t, s.lb, s.url, s.edges...)
	want := readLibrary(t, "sample.mp4")
	const requests = 30
	for i := 0; i < requests; i++ {
		resp, body := fetch(t, http.MethodGet, s.url+"/")
		if resp.StatusCode != http.StatusOK || !bytes.Equal(body, want) {
			t.Fatalf("request %d: %d, %d bytes: want the file", i, resp.StatusCode, len(body))
		}
		if v, ok := resp.Header[edgeagent.LoadHeader]; ok {
			t.Fatalf("request %d: the viewer sees %s %q", i, edgeagent.LoadHeader, v)
		}
	}
	m := scrape(t, s.url+"/prometheus")
	malformed := m.sum("edgetier_upstream_load_headers_total", prometheus.Labels{"result": edgeagent.ReasonMalformed})
	accepted := m.sum("edgetier_upstream_load_headers_total", prometheus.Labels{"result": "accepted"})
	if malformed < requests || accepted != 0 {
		t.Errorf("/prometheus: %g load headers malformed, %g accepted: want every one of the %d+ responses malformed, none accepted", malformed, accepted, requests)
	}
	if n := strings.Count(s.lb.Log(), "agent load header rejected"); n < 1 || n > len(s.edges) {
		t.Errorf("%d rejections logged: want one per edge at most, not one per response", n)
	}
}

// TestInBandKeepsViewFresh: with reports polled only every 3 s, the view
// of an edge a viewer is streaming from stays as fresh as its latest
// response (the age the LB exports stays well under the poll interval),
// and follows its streams between polls.
func TestInBandKeepsViewFresh(t *testing.T) {
	edge := startEdge(t, "edge-1", library(t), "", cluster.Options{})
	lbPort := freePort(t)
	lb := startCaddy(t, "lb", globalOptions+fmt.Sprintf(`
http://127.0.0.1:%d {
	reverse_proxy %s {
		lb_policy tiered {
			interval 3s
		}
		transport edgetier
	}
}
`, lbPort, addr(edge.port)), cluster.Options{})
	lbURL := "http://" + addr(lbPort)
	eventually(t, 15*time.Second, "the edge trusted after two polls", func() (bool, string) {
		if resp, err := http.Get(lbURL + "/sample.mp4"); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		v := upstreamMetric(t, lb, "edgetier_upstream_trusted", addr(edge.port))
		return v == 1, strconv.FormatFloat(v, 'g', -1, 64)
	})
	// A viewer seeking through the file: a range every 50 ms.
	steadyTraffic(t, 1, lbURL+"/big.bin", "bytes=0-65535", 50*time.Millisecond)
	time.Sleep(500 * time.Millisecond)
	var ages []float64
	for i := 0; i < 16; i++ { // 4 s: more than a poll interval
		ages = append(ages, upstreamMetric(t, lb, "edgetier_upstream_report_age_seconds", addr(edge.port)))
		time.Sleep(250 * time.Millisecond)
	}
	for _, age := range ages {
		if !(age < 0.5) {
			t.Fatalf("report ages %v while a viewer streams: want each under 0.5 s (polls alone leave up to 3 s)", ages)
		}
	}
	if n := scrapeAdmin(t, lb).sum("edgetier_upstream_load_headers_total", prometheus.Labels{"result": "accepted"}); n < 10 {
		t.Fatalf("%g load headers accepted: want the view refreshed by many", n)
	}
}

// TestLoadHeaderOptions: `load_header off` at an edge sends none;
// `strip_load_header off` at the LB lets the viewer see it.
func TestLoadHeaderOptions(t *testing.T) {
	quiet := startEdge(t, "edge-quiet", library(t), "load_header off", cluster.Options{})
	if resp, _ := fetch(t, http.MethodGet, "http://"+addr(quiet.port)+"/sample.mp4"); resp.Header.Get(edgeagent.LoadHeader) != "" {
		t.Errorf("load_header off: the edge sends %q", resp.Header.Get(edgeagent.LoadHeader))
	}
	edge := startEdge(t, "edge-1", library(t), "", cluster.Options{})
	lbPort := freePort(t)
	startCaddy(t, "lb", globalOptions+fmt.Sprintf(`
http://127.0.0.1:%d {
	reverse_proxy %s {
		lb_policy tiered
		transport edgetier {
			strip_load_header off
		}
	}
}
`, lbPort, addr(edge.port)), cluster.Options{})
	resp, _ := fetch(t, http.MethodGet, "http://"+addr(lbPort)+"/sample.mp4")
	if _, err := edgeagent.ParseLoadHeader(resp.Header.Get(edgeagent.LoadHeader)); err != nil {
		t.Errorf("strip_load_header off: the viewer sees %q (%v): want the edge's load", resp.Header.Get(edgeagent.LoadHeader), err)
	}
}

// TestResumedLoadHeaderTaken: the answer of the edge that finishes a
// response whose edge died (a resumed fetch) has its load read too.
func TestResumedLoadHeaderTaken(t *testing.T) {
	lib := library(t)
	edges := startEdges(t, lib, lib)
	lb, lbURL := startResumeLB(t, edges, "2")
	waitTrusted(t, lb, lbURL, edgeAddrs(edges)...)
	headersOf := func(e *edgeProc) float64 {
		return scrapeAdmin(t, lb).sum("edgetier_upstream_load_headers_total", prometheus.Labels{"upstream": addr(e.port)})
	}
	before := []float64{headersOf(edges[0]), headersOf(edges[1])}
	var killed *edgeProc
	d := fetchKilling(t, lbURL+"/big.bin", "", []int64{1 << 20}, func(_ int, served string) {
		killed = edgeNamed(edges, served)
		killed.caddy.Kill()
	})
	if d.err != nil || d.status != http.StatusOK || len(d.body) != len(readLibrary(t, "big.bin")) {
		t.Fatalf("the resumed download: %d, %d bytes, %v", d.status, len(d.body), d.err)
	}
	other := edges[0]
	if killed == edges[0] {
		other = edges[1]
	}
	i := 0
	if other == edges[1] {
		i = 1
	}
	if got := headersOf(other); got <= before[i] {
		t.Fatalf("the resuming edge's load headers: %g before, %g after: want its resumed answer's read", before[i], got)
	}
}
