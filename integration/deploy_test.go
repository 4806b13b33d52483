package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/edgetier/edgetier/internal/cluster"
	"github.com/edgetier/edgetier/internal/testenv"
)

// TestComposeConfig validates docker-compose.yml statically (no Docker
// engine here) and checks what the deployment promises: the LB publishes
// 80/443 only, edges and metrics stay on the private network, secrets are
// required, and prometheus.yml passes promtool.
func TestComposeConfig(t *testing.T) {
	compose := testenv.Program(t, "docker-compose")
	cmd := exec.Command(compose, "-f", "docker-compose.yml", "config")
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "EDGE_TOKEN=t0ken", "DASHBOARD_PASSWORD_HASH=$$2a$$14$$x")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("docker-compose config: %v\n%s", err, out)
	}
	text := string(out)
	for _, want := range []string{"published: 80", "published: 443", "protocol: udp", "caddy_data:/data", "videos:/srv/videos:ro"} {
		if !strings.Contains(text, want) && !strings.Contains(strings.ReplaceAll(text, "'", ""), want) {
			t.Errorf("compose config lacks %q", want)
		}
	}
	// Without the secrets, Compose refuses to start.
	cmd = exec.Command(compose, "-f", "docker-compose.yml", "config")
	cmd.Dir = ".."
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "EDGE_TOKEN") {
		t.Errorf("compose config without EDGE_TOKEN: %v %s", err, out)
	}
	// Only the LB and Prometheus (on loopback) publish ports.
	edgeSection := text[strings.Index(text, "\n  edge:")+1:]
	if next := regexp.MustCompile(`\n  [a-z]+:\n`).FindStringIndex(edgeSection); next != nil {
		edgeSection = edgeSection[:next[0]]
	}
	if strings.Contains(edgeSection, "published") {
		t.Errorf("edges publish ports:\n%s", edgeSection)
	}
	promtool := testenv.Program(t, "promtool")
	if out, err := exec.Command(promtool, "check", "config", "../prometheus.yml").CombinedOutput(); err != nil {
		t.Errorf("promtool check config: %v\n%s", err, out)
	}
	lb, err := os.ReadFile("../deploy/lb.Caddyfile")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"@ops path /dashboard /dashboard/* /ws /metrics /prometheus", "basic_auth @ops", "token {env.EDGE_TOKEN}"} {
		if !strings.Contains(string(lb), want) {
			t.Errorf("deploy/lb.Caddyfile lacks %q", want)
		}
	}
	edge, err := os.ReadFile("../deploy/edge.Caddyfile")
	if err != nil || !strings.Contains(string(edge), "token {env.EDGE_TOKEN}") {
		t.Errorf("deploy/edge.Caddyfile does not require the agent token (%v)", err)
	}
	dockerfile, err := os.ReadFile("../xcaddy.Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"FROM caddy:2.11-builder", "xcaddy build v2.11.9 --with github.com/edgetier/edgetier=./", "FROM caddy:2.11\n"} {
		if !strings.Contains(string(dockerfile), want) {
			t.Errorf("xcaddy.Dockerfile lacks %q", want)
		}
	}
}

// TestPrometheusScrapesEverything starts a real Prometheus (Debian's) with
// a config generated from prometheus.yml (targets on loopback instead of
// Compose's DNS) against a running LB and edges, and queries its API until
// the per-upstream series and Caddy's own have samples from every target.
func TestPrometheusScrapesEverything(t *testing.T) {
	prom := testenv.Program(t, "prometheus")
	lib := library(t)
	var edgeTargets []string
	var edgeAddrsList []string
	for i := 0; i < 3; i++ {
		port, mport := freePort(t), freePort(t)
		cfg := edgeConfig(port, fmt.Sprintf("edge-%d", i+1), lib, "") + fmt.Sprintf("\nhttp://127.0.0.1:%d {\n\tmetrics\n}\n", mport)
		startCaddy(t, fmt.Sprintf("edge-%d", i+1), cfg, cluster.Options{})
		edgeTargets = append(edgeTargets, fmt.Sprintf("%q", addr(mport)))
		edgeAddrsList = append(edgeAddrsList, addr(port))
	}
	lbPort, lbMetrics := freePort(t), freePort(t)
	startCaddy(t, "lb", lbConfig(lbPort, edgeAddrsList, "")+fmt.Sprintf("\nhttp://127.0.0.1:%d {\n\tmetrics\n}\n", lbMetrics), cluster.Options{})
	for i := 0; i < 20; i++ {
		resp, err := http.Get(fmt.Sprintf("http://%s/sample.mp4", addr(lbPort)))
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}

	// The same file, with loopback targets for Compose's names.
	orig, err := os.ReadFile("../prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(orig)
	replace := func(old, new string) {
		if !strings.Contains(cfg, old) {
			t.Fatalf("prometheus.yml no longer has %q", old)
		}
		cfg = strings.Replace(cfg, old, new, 1)
	}
	replace(`targets: ["lb:9180"]`, fmt.Sprintf(`targets: [%q]`, addr(lbMetrics)))
	replace("dns_sd_configs:\n      - names: [\"edge\"]\n        type: A\n        port: 9180\n        refresh_interval: 5s",
		"static_configs:\n      - targets: ["+strings.Join(edgeTargets, ", ")+"]")
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	startProgram(t, "prometheus", exec.Command(prom, "--config.file="+cfgPath, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr(port)))
	api := "http://" + addr(port) + "/api/v1/query?query="
	query := func(q string) []map[string]any {
		resp, err := http.Get(api + url.QueryEscape(q))
		if err != nil {
			return nil
		}
		defer resp.Body.Close()
		var body struct {
			Data struct {
				Result []map[string]any `json:"result"`
			} `json:"data"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&body)
		return body.Data.Result
	}
	checks := []struct {
		query string
		want  int
	}{
		{`count(edgetier_upstream_score{job="lb"})`, 3},
		{`count(edgetier_upstream_tier{job="lb"})`, 3},
		{`count(edgetier_upstream_selections_total{job="lb",tier="1"})`, 3},
		{`count(caddy_http_requests_total{job="lb"}) > 0`, 1},
		{`count(up{job="edges"} == 1)`, 3},
		{`count(edgetier_agent_streams{job="edges"})`, 3},
		{`count(caddy_http_requests_total{job="edges"}) >= 1`, 1},
	}
	for _, c := range checks {
		eventually(t, 30*time.Second, c.query, func() (bool, string) {
			r := query(c.query)
			if len(r) != 1 {
				return false, fmt.Sprint(r)
			}
			v, _ := r[0]["value"].([]any)
			if len(v) != 2 {
				return false, fmt.Sprint(r)
			}
			return fmt.Sprint(v[1]) == fmt.Sprint(c.want) || (c.want == 1 && fmt.Sprint(v[1]) != "0"), fmt.Sprint(v[1])
		})
	}
}
