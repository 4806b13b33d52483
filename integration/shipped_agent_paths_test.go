package integration

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgetier/edgetier/internal/cluster"
	"github.com/edgetier/edgetier/internal/testenv"
)

// agentPathSpellings are requests through the LB for an edge agent's
// endpoints: the LB strips /videos, so these would reach the edges'
// /_edgetier/load and /_edgetier/state, in every spelling the edge (or
// Caddy's path matching) reads as those paths.
var agentPathSpellings = []struct{ method, path, body string }{
	{"GET", "/videos/_edgetier/load", ""},
	{"HEAD", "/videos/_edgetier/load", ""},
	{"GET", "/videos/_edgetier/state", ""},
	{"PUT", "/videos/_edgetier/state", "drain"},
	{"POST", "/videos/_edgetier/state", `{"state":"maint"}`},
	{"GET", "/videos/_EDGETIER/load", ""},
	{"GET", "/videos/%5Fedgetier/load", ""},
	{"GET", "/videos/%5fedgetier%2fload", ""},
	{"GET", "/videos/_edgetier%2Fstate", ""},
	{"GET", "/videos//_edgetier/load", ""},
	{"GET", "/videos/./_edgetier/load", ""},
	{"GET", "/videos/x/../_edgetier/load", ""},
	{"GET", "/videos/_edgetier/load?x=1", ""},
	{"GET", "/videos/_edgetier", ""},
	{"GET", "/videos/_edgetier/", ""},
	{"GET", "/_edgetier/load", ""},
	{"GET", "/_edgetier/state", ""},
}

// rawRequest sends one request with its path exactly as given (no client
// cleaning or re-escaping) and returns the status, the headers and up to
// 64 KiB of the body.
func rawRequest(t *testing.T, hostPort, method, path, bearer, body string) (int, http.Header, string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", hostPort, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	var req strings.Builder
	fmt.Fprintf(&req, "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n", method, path, hostPort)
	if bearer != "" {
		fmt.Fprintf(&req, "Authorization: Bearer %s\r\n", bearer)
	}
	fmt.Fprintf(&req, "Content-Length: %d\r\n\r\n%s", len(body), body)
	if _, err := io.WriteString(conn, req.String()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, resp.Header, string(b)
}

// checkAgentPathsHidden asserts that no spelling of an agent endpoint
// through the LB reaches an agent: the LB answers 404 itself, never an
// agent's report, state, 401 (a token guess reached it) or 403.
func checkAgentPathsHidden(t *testing.T, lbHostPort string, bearers ...string) {
	t.Helper()
	for _, bearer := range append([]string{""}, bearers...) {
		for _, r := range agentPathSpellings {
			code, header, body := rawRequest(t, lbHostPort, r.method, r.path, bearer, r.body)
			reached := strings.Contains(body, `"edge"`) || strings.Contains(body, "state") || strings.Contains(body, "token") ||
				header.Get("WWW-Authenticate") != "" || header.Get("X-Edge") != ""
			if code != http.StatusNotFound || reached {
				t.Errorf("%s %s (token %q) through the LB: %d %q, X-Edge %q: want the LB's own 404", r.method, r.path, bearer, code, truncate(body, 120), header.Get("X-Edge"))
			}
		}
	}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// TestLBHidesAgentEndpoints: through the default Caddyfile's LB, no
// spelling of /videos/_edgetier/load or /videos/_edgetier/state reaches an
// edge's agent; the edges still answer their reports on their own
// addresses, and videos still play.
func TestLBHidesAgentEndpoints(t *testing.T) {
	s := startShipped(t)
	checkAgentPathsHidden(t, strings.TrimPrefix(s.url, "http://"))
	for _, e := range s.edges {
		if r := getReport(t, "http://"+e+"/_edgetier/load", ""); r.State != "ready" {
			t.Errorf("edge %s: state %q after the attempts, want ready", e, r.State)
		}
	}
	code, header, _ := rawRequest(t, strings.TrimPrefix(s.url, "http://"), "GET", "/videos/sample.mp4", "", "")
	if code != http.StatusOK || header.Get("X-Edge") == "" {
		t.Errorf("/videos/sample.mp4 through the LB: %d, X-Edge %q", code, header.Get("X-Edge"))
	}
}

// TestDeployLBHidesAgentEndpoints: the same for the Compose deployment's
// LB, where the agents need a token: neither a guess nor the right token
// reaches an agent through the LB (a 401 would let anyone try tokens).
func TestDeployLBHidesAgentEndpoints(t *testing.T) {
	const token = "edge-secret-token"
	edgePort, edgeMetrics, lbPort, lbMetrics := freePort(t), freePort(t), freePort(t), freePort(t)
	startCaddy(t, "edge", deployCaddyfile(t, "edge.Caddyfile",
		":8080 {", fmt.Sprintf("http://:%d {\n\tbind 127.0.0.1", edgePort),
		":9180 {", fmt.Sprintf("http://:%d {\n\tbind 127.0.0.1", edgeMetrics),
		"/srv/videos", library(t)), cluster.Options{Env: []string{"EDGE_TOKEN=" + token, "HOSTNAME=edge-1"}})
	hash, err := exec.Command(testenv.Caddy(t), "hash-password", "--plaintext", "ops-password").Output()
	if err != nil {
		t.Fatalf("caddy hash-password: %v", err)
	}
	startCaddy(t, "lb", deployCaddyfile(t, "lb.Caddyfile",
		"{$LB_SITE::80} {", "{$LB_SITE::80} {\n\tbind 127.0.0.1",
		"dynamic a {$EDGE_HOST:edge} 8080 {", fmt.Sprintf("dynamic a localhost %d {\n\t\t\t\tversions ipv4", edgePort),
		":9180 {", fmt.Sprintf("http://:%d {\n\tbind 127.0.0.1", lbMetrics)),
		cluster.Options{Env: []string{"LB_SITE=http://:" + strconv.Itoa(lbPort), "EDGE_TOKEN=" + token,
			"DASHBOARD_USER=ops", "DASHBOARD_PASSWORD_HASH=" + strings.TrimSpace(string(hash))}})
	lbHostPort := addr(lbPort)
	eventually(t, 10*time.Second, "the LB to serve a video", func() (bool, string) {
		code, header, _ := rawRequest(t, lbHostPort, "GET", "/videos/sample.mp4", "", "")
		return code == http.StatusOK && header.Get("X-Edge") == "edge-1", fmt.Sprint(code)
	})
	checkAgentPathsHidden(t, lbHostPort, "a-guess", token)
	if r := getReport(t, "http://"+addr(edgePort)+"/_edgetier/load", token); r.State != "ready" {
		t.Errorf("edge state %q after the attempts, want ready", r.State)
	}
}
