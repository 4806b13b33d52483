package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgetier/edgetier/internal/cluster"
	"github.com/edgetier/edgetier/internal/testenv"
)

// deployCaddyfile reads one of deploy/*.Caddyfile and moves it onto
// loopback for a test: an admin endpoint instead of "admin off" (to know
// when it is ready), each listed address on a free loopback port. Nothing
// else of the file changes.
func deployCaddyfile(t *testing.T, name string, replace ...string) string {
	t.Helper()
	b, err := os.ReadFile("../deploy/" + name)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Replace(string(b), "\tadmin off\n", "\tadmin %ADMIN%\n\tauto_https off\n", 1)
	for i := 0; i+1 < len(replace); i += 2 {
		if !strings.Contains(text, replace[i]) {
			t.Fatalf("deploy/%s no longer contains %q: update the test", name, replace[i])
		}
		text = strings.ReplaceAll(text, replace[i], replace[i+1])
	}
	return text
}

// TestDeployCaddyfiles runs the Compose deployment's own Caddyfiles (an
// edge and the LB, on loopback instead of Compose's network) and checks
// what they promise: the edge's agent answers only with the token, the LB
// finds the edge through DNS, polls it with the token and serves video
// from it, and the operator endpoints (/dashboard, /ws, /metrics,
// /prometheus) need the password.
func TestDeployCaddyfiles(t *testing.T) {
	const token = "edge-secret-token"
	edgePort, edgeMetrics, lbPort, lbMetrics := freePort(t), freePort(t), freePort(t), freePort(t)
	edgeCfg := deployCaddyfile(t, "edge.Caddyfile",
		":8080 {", fmt.Sprintf("http://:%d {\n\tbind 127.0.0.1", edgePort),
		":9180 {", fmt.Sprintf("http://:%d {\n\tbind 127.0.0.1", edgeMetrics),
		"/srv/videos", library(t))
	startCaddy(t, "edge", edgeCfg, cluster.Options{Env: []string{"EDGE_TOKEN=" + token, "HOSTNAME=edge-1"}})

	hash, err := exec.Command(testenv.Caddy(t), "hash-password", "--plaintext", "ops-password").Output()
	if err != nil {
		t.Fatalf("caddy hash-password: %v", err)
	}
	lbCfg := deployCaddyfile(t, "lb.Caddyfile",
		"{$LB_SITE::80} {", "{$LB_SITE::80} {\n\tbind 127.0.0.1",
		"dynamic a {$EDGE_HOST:edge} 8080 {", fmt.Sprintf("dynamic a localhost %d {\n\t\t\t\tversions ipv4", edgePort),
		":9180 {", fmt.Sprintf("http://:%d {\n\tbind 127.0.0.1", lbMetrics))
	lb := startCaddy(t, "lb", lbCfg, cluster.Options{Env: []string{"LB_SITE=http://:" + strconv.Itoa(lbPort), "EDGE_TOKEN=" + token,
		"DASHBOARD_USER=ops", "DASHBOARD_PASSWORD_HASH=" + strings.TrimSpace(string(hash))}})
	lbURL := "http://" + addr(lbPort)
	edgeURL := "http://" + addr(edgePort)

	get := func(url, user, password, bearer string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		if user != "" {
			req.SetBasicAuth(user, password)
		}
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return resp.StatusCode, string(body)
	}

	// The edge: its agent needs the token; its files do not.
	if code, _ := get(edgeURL+"/_edgetier/load", "", "", ""); code != http.StatusUnauthorized {
		t.Errorf("edge agent without the token: %d, want 401", code)
	}
	if code, _ := get(edgeURL+"/_edgetier/load", "", "", "wrong"); code != http.StatusUnauthorized {
		t.Errorf("edge agent with a wrong token: %d, want 401", code)
	}
	code, body := get(edgeURL+"/_edgetier/load", "", "", token)
	var report struct {
		Edge string `json:"edge"`
	}
	if code != http.StatusOK || json.Unmarshal([]byte(body), &report) != nil || report.Edge != "edge-1" {
		t.Errorf("edge agent with the token: %d %.200s", code, body)
	}

	// The LB polls the edge with the token and trusts it.
	upstream := addr(edgePort)
	eventually(t, 15*time.Second, "the LB trusts the edge", func() (bool, string) {
		get(lbURL+"/", "", "", "") // the board learns the upstream from requests
		tr := upstreamMetric(t, lb, "edgetier_upstream_trusted", upstream)
		return tr == 1, fmt.Sprintf("trusted %g", tr)
	})
	if code, body := get(lbURL+"/videos/sample.mp4", "", "", ""); code != http.StatusOK || len(body) == 0 {
		t.Errorf("video through the LB: %d, %d bytes", code, len(body))
	}

	// Operator endpoints: the password, or nothing.
	for _, path := range []string{"/dashboard", "/ws", "/metrics", "/prometheus"} {
		if code, _ := get(lbURL+path, "", "", ""); code != http.StatusUnauthorized {
			t.Errorf("%s without the password: %d, want 401", path, code)
		}
		if code, _ := get(lbURL+path, "ops", "wrong", ""); code != http.StatusUnauthorized {
			t.Errorf("%s with a wrong password: %d, want 401", path, code)
		}
	}
	if code, body := get(lbURL+"/dashboard", "ops", "ops-password", ""); code != http.StatusOK || !strings.Contains(body, "<html") {
		t.Errorf("/dashboard with the password: %d", code)
	}
	// The LB's readiness answers through the pool; asked, as the
	// deployment's health check does every second, it also keeps the edge
	// known (the LB forgets an edge 4 s after its last request).
	if code, body := get("http://"+addr(lbMetrics)+"/ready", "", "", ""); code != http.StatusOK || !strings.Contains(body, `"edge":"edge-1"`) {
		t.Errorf("/ready on the LB's private port: %d %.200s", code, body)
	}
	if code, body := get(lbURL+"/prometheus", "ops", "ops-password", ""); code != http.StatusOK || !strings.Contains(body, "edgetier_upstream_score") {
		t.Errorf("/prometheus with the password: %d", code)
	}
	// The LB itself has no agent to expose.
	if code, _ := get(lbURL+"/_edgetier/load", "", "", token); code != http.StatusNotFound {
		t.Errorf("/_edgetier/load on the LB: %d, want 404", code)
	}
}
