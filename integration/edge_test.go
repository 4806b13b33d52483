package integration

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/edgetier/edgetier/internal/cluster"
)

// TestEdgeAgentCountsStreams holds N slow streams open against a real edge
// (some inside a handle_path block), sees streams == N in the report, then
// 0 after the clients abort; request rate and response time move with real
// traffic and every response names the edge.
func TestEdgeAgentCountsStreams(t *testing.T) {
	edge := startEdge(t, "edge-a", library(t), "", cluster.Options{})
	base := "http://" + addr(edge.port)
	reportURL := base + "/_edgetier/load"

	const n = 6
	var conns []interface{ Close() error }
	for i := 0; i < n; i++ {
		path := "/big.bin"
		if i%2 == 1 {
			path = "/videos/big.bin" // inside handle_path
		}
		c := slowStream(t, addr(edge.port), path)
		if h := readHead(t, c); h.Get("X-Edge") != "edge-a" {
			t.Fatalf("stream %d: X-Edge = %q, want edge-a", i, h.Get("X-Edge"))
		}
		conns = append(conns, c)
	}
	eventually(t, 5*time.Second, fmt.Sprintf("%d streams in the report", n), func() (bool, string) {
		r := getReport(t, reportURL, "")
		return r.Streams == n, asJSON(r)
	})
	for _, c := range conns[:n/2] {
		c.Close() // the client aborts mid-body
	}
	eventually(t, 5*time.Second, "aborted streams to leave the count", func() (bool, string) {
		r := getReport(t, reportURL, "")
		return r.Streams == n-n/2, asJSON(r)
	})
	for _, c := range conns[n/2:] {
		c.Close()
	}
	eventually(t, 5*time.Second, "streams to drop to 0", func() (bool, string) {
		r := getReport(t, reportURL, "")
		return r.Streams == 0, asJSON(r)
	})

	// Real traffic moves the request rate and the response time.
	deadline := time.Now().Add(1500 * time.Millisecond)
	requests := 0
	for time.Now().Before(deadline) {
		resp, err := http.Get(base + "/videos/sample.mp4")
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.Header.Get("X-Edge") != "edge-a" {
			t.Fatalf("response without the edge header: %v", resp.Header)
		}
		requests++
	}
	r := getReport(t, reportURL, "")
	t.Logf("after %d requests in 1.5s: %s", requests, asJSON(r))
	if r.RequestsPerSecond < 5 {
		t.Errorf("requests_per_second = %g after %d requests in 1.5 s", r.RequestsPerSecond, requests)
	}
	if r.ResponseTimeSeconds <= 0 || r.ResponseTimeSeconds > 1 {
		t.Errorf("response_time_seconds = %g, want a small positive time to first byte", r.ResponseTimeSeconds)
	}
	if r.Edge != "edge-a" || r.State != "ready" || r.Seq == 0 {
		t.Errorf("report = %+v", r)
	}
}

// TestEdgeAgentToken: with a token, report requests without it get 401
// and no data; the state changes through an authenticated request and
// shows in the next report.
func TestEdgeAgentToken(t *testing.T) {
	edge := startEdge(t, "edge-t", library(t), "token s3cret", cluster.Options{})
	base := "http://" + addr(edge.port)

	resp, err := http.Get(base + "/_edgetier/load")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || len(body) > 100 {
		t.Fatalf("report without token: %s %q", resp.Status, body)
	}
	req, _ := http.NewRequest(http.MethodPut, base+"/_edgetier/state", strings.NewReader("drain"))
	req.Header.Set("Authorization", "Bearer s3cret")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("drain: %s", resp.Status)
	}
	if r := getReport(t, base+"/_edgetier/load", "s3cret"); r.State != "drain" {
		t.Fatalf("state after drain = %s", r.State)
	}
}
