package integration

import (
	"net/http"
	"strings"
	"testing"
)

// TestDefaultCaddyfile runs the top-level Caddyfile (what `make run`
// starts) and checks every endpoint it promises.
func TestDefaultCaddyfile(t *testing.T) {
	_, site := startDefaultSystem(t, defaultCaddyfile(t))
	base := "http://" + site
	check := func(method, path string, header map[string]string, status int, wantType string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, nil)
		// Viewers use names, not the LB's loopback address.
		req.Host = "localhost"
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != status || !strings.HasPrefix(resp.Header.Get("Content-Type"), wantType) {
			t.Errorf("%s %s = %d %q, want %d %q", method, path, resp.StatusCode, resp.Header.Get("Content-Type"), status, wantType)
		}
		return resp
	}
	if r := check("GET", "/", nil, 200, "video/mp4"); r.Header.Get("X-Edge") == "" || r.Header.Get("Accept-Ranges") != "bytes" {
		t.Errorf("/ headers: %v", r.Header)
	}
	if r := check("GET", "/videos/sample.mp4", map[string]string{"Range": "bytes=0-99"}, 206, "video/mp4"); r.Header.Get("Content-Range") == "" {
		t.Errorf("no Content-Range: %v", r.Header)
	}
	check("GET", "/videos/big.bin", nil, 200, "")
	check("GET", "/dashboard/", nil, 200, "text/html")
	check("GET", "/dashboard/vendor/chart.umd.min.js", nil, 200, "text/javascript")
	check("GET", "/metrics", nil, 200, "application/json")
	if r := check("OPTIONS", "/videos/sample.mp4", map[string]string{"Origin": "https://player.example.com", "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "range"}, 204, ""); r.Header.Get("Access-Control-Allow-Headers") != "Range" {
		t.Errorf("preflight headers: %v", r.Header)
	}
	check("GET", "/nothing-here", nil, 404, "")
	check("GET", "/videos/../Caddyfile", nil, 404, "")
	if missing := scrape(t, base+"/prometheus").missing("edgetier_upstream_selections_total", "caddy_http_requests_total", "edgetier_agent_streams"); len(missing) > 0 {
		t.Errorf("/prometheus lacks %v", missing)
	}
	// The edges answer reports on their own addresses.
	for _, port := range []string{"9001", "9002", "9003"} {
		if r := getReport(t, "http://127.0.0.1:"+port+"/_edgetier/load", ""); r.Scope != "host" {
			t.Errorf("edge on %s: %+v", port, r)
		}
	}
}
