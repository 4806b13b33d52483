// Package integration runs edgetier as users do: the built Caddy and
// edgeagent binaries as separate processes on loopback.
//
// This file holds every helper that more than one test file uses:
// processes, Caddyfiles, the edges and load balancers built from them, the
// test library, requests, Prometheus metrics, the dashboard's frames and
// headless Chromium. A helper that one file alone needs stays in that file.
package integration

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/edgetier/edgetier/edgeagent"
	"github.com/edgetier/edgetier/internal/board"
	"github.com/edgetier/edgetier/internal/cluster"
	"github.com/edgetier/edgetier/internal/rank"
	"github.com/edgetier/edgetier/internal/testenv"
)

// TestMain runs the tests, then removes the library they shared.
func TestMain(m *testing.M) {
	code := m.Run()
	if libraryDir != "" {
		os.RemoveAll(libraryDir)
	}
	os.Exit(code)
}

// --- Processes ---

// freePort returns a loopback port that was free a moment ago and that no
// other caller in this test run has been given (see cluster.FreePort).
func freePort(t testing.TB) int {
	t.Helper()
	p, err := cluster.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// addr is the loopback address of port, host:port.
func addr(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }

// startCaddy runs the built Caddy on caddyfile for the rest of the test;
// %ADMIN% in caddyfile and in opts.Env becomes the admin address. The
// process is killed when the test ends, and its log shown if it failed.
func startCaddy(t testing.TB, name, caddyfile string, opts cluster.Options) *cluster.Caddy {
	t.Helper()
	bin := testenv.Caddy(t)
	admin := addr(freePort(t))
	for i, e := range opts.Env {
		opts.Env[i] = strings.ReplaceAll(e, "%ADMIN%", admin)
	}
	c, err := cluster.StartCaddy(bin, filepath.Join(t.TempDir(), name), admin, strings.ReplaceAll(caddyfile, "%ADMIN%", admin), opts)
	if err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	t.Cleanup(func() {
		if !c.Exited() {
			c.Kill()
		}
		if t.Failed() {
			t.Logf("%s log:\n%s", name, lastLines(c.Log(), 40))
		}
	})
	return c
}

// reload loads a new Caddyfile into c (with %ADMIN% filled in); the test
// fails if Caddy refuses it.
func reload(t testing.TB, c *cluster.Caddy, caddyfile string) {
	t.Helper()
	if err := c.Reload(strings.ReplaceAll(caddyfile, "%ADMIN%", c.Admin)); err != nil {
		t.Fatal(err)
	}
}

// startProgram runs cmd for the rest of the test, killing it at the end
// and showing its output if the test failed.
func startProgram(t testing.TB, name string, cmd *exec.Cmd) {
	t.Helper()
	out := &cluster.Output{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("%s output:\n%s", name, lastLines(out.String(), 30))
		}
	})
}

// lastLines is the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// --- Caddyfiles ---

// globalOptions are the options every test Caddy uses.
const globalOptions = `{
	admin %ADMIN%
	metrics
	auto_https off
}
`

// edgeConfig is an edge: edge_agent plus file_server over root, also
// under /videos/ inside a handle block.
func edgeConfig(port int, name, root, agentOptions string) string {
	return globalOptions + fmt.Sprintf(`
http://:%d {
	bind 127.0.0.1
	edge_agent %s {
		interval 250ms
		%s
	}
	handle_path /videos/* {
		root * %s
		file_server
	}
	handle {
		root * %s
		file_server
	}
}
`, port, name, agentOptions, root, root)
}

// retryOptions are the default Caddyfile's retries: GET and HEAD go to
// another edge within bounded tries and time.
const retryOptions = `lb_retries 2
		lb_try_duration 3s
		lb_retry_match {
			method GET HEAD
		}`

// lbConfig is a load balancer over the edges with the tiered policy, set
// up as the default Caddyfile is (retries, passive health).
func lbConfig(port int, edges []string, policyOptions string) string {
	return globalOptions + fmt.Sprintf(`
http://127.0.0.1:%d {
	reverse_proxy %s {
		lb_policy tiered {
			interval 250ms
			%s
		}
		`+retryOptions+`
		fail_duration 2s
		max_fails 1
		transport http {
			dial_timeout 1s
			response_header_timeout 5s
		}
	}
}
`, port, strings.Join(edges, " "), policyOptions)
}

// lbDashboardConfig is a load balancer with the dashboard. It has neither
// `log` nor the global `metrics` option: the WebSocket upgrade must work
// where Caddy's writer cannot hijack directly.
func lbDashboardConfig(port int, edges []string, dashboardOptions string) string {
	return fmt.Sprintf(`{
	admin %%ADMIN%%
	auto_https off
}
http://127.0.0.1:%d {
	cdn_dashboard {
		%s
	}
	reverse_proxy %s {
		lb_policy tiered {
			interval 250ms
		}
	}
}
`, port, dashboardOptions, strings.Join(edges, " "))
}

// defaultCaddyfile is the top-level Caddyfile, what `make run` starts.
func defaultCaddyfile(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile("../Caddyfile")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// startDefaultSystem runs caddyfile (defaultCaddyfile, or an edit of it)
// as `make run` does, with its LB site on a free loopback port and the
// library as its videos. It returns the Caddy and the LB site's address.
func startDefaultSystem(t testing.TB, caddyfile string) (*cluster.Caddy, string) {
	t.Helper()
	lbPort := freePort(t)
	c := startCaddy(t, "default", caddyfile, cluster.Options{Env: []string{
		"EDGETIER_ADMIN=%ADMIN%",
		"LB_SITE=http://:" + strconv.Itoa(lbPort),
		"VIDEO_DIR=" + library(t),
	}})
	return c, addr(lbPort)
}

// --- Edges and load balancers ---

// edgeProc is one running edge.
type edgeProc struct {
	name  string // its agent's name, which its responses carry in X-Edge
	port  int
	caddy *cluster.Caddy
	group *cluster.CgroupV1 // only for startCgroupEdges
}

// startEdges starts one edge per folder, each a separate Caddy: edge-1
// serving roots[0], edge-2 serving roots[1], and so on.
func startEdges(t testing.TB, roots ...string) []*edgeProc {
	t.Helper()
	var edges []*edgeProc
	for i, root := range roots {
		edges = append(edges, startEdge(t, fmt.Sprintf("edge-%d", i+1), root, "", cluster.Options{}))
	}
	return edges
}

// startCgroupEdges starts n edges over the library, edge-1 to edge-n, each
// a separate Caddy in its own cgroup whose agent reports that cgroup's
// figures, so that a test can load one of them for real (burnCPU,
// SetQuota).
func startCgroupEdges(t testing.TB, n int) []*edgeProc {
	t.Helper()
	lib := library(t)
	var edges []*edgeProc
	for i := range n {
		name := fmt.Sprintf("edge-%d", i+1)
		g, err := cluster.NewCgroupV1(fmt.Sprintf("edgetier-it-%d-%s", os.Getpid(), name))
		if err != nil {
			testenv.Missing(t, "%v", err)
		}
		t.Cleanup(func() { _ = g.Remove() })
		e := startEdge(t, name, lib, "scope cgroup", cluster.Options{Wrap: g.Wrap()})
		e.group = g
		edges = append(edges, e)
	}
	return edges
}

// startEdge starts the edge name on a free port, serving root.
func startEdge(t testing.TB, name, root, agentOptions string, opts cluster.Options) *edgeProc {
	t.Helper()
	e := &edgeProc{name: name, port: freePort(t)}
	e.caddy = startCaddy(t, name, edgeConfig(e.port, name, root, agentOptions), opts)
	return e
}

// edgeAddrs are the edges' addresses, host:port.
func edgeAddrs(edges []*edgeProc) []string {
	var out []string
	for _, e := range edges {
		out = append(out, addr(e.port))
	}
	return out
}

// burnCPU runs a busy loop inside the edge's cgroup until the test ends
// or the returned stop is called.
func burnCPU(t testing.TB, e *edgeProc) (stop func()) {
	t.Helper()
	cmd := exec.Command("sh", "-c", "while :; do :; done")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if err := e.group.Join(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop = func() { once.Do(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }) }
	t.Cleanup(stop)
	return stop
}

// startResumeLB starts a load balancer over edges with the edgetier
// transport, resume set to resume (a count or "off"). It returns the LB
// and its URL.
func startResumeLB(t testing.TB, edges []*edgeProc, resume string) (*cluster.Caddy, string) {
	t.Helper()
	port := freePort(t)
	cfg := globalOptions + fmt.Sprintf(`
http://:%d {
	bind 127.0.0.1
	reverse_proxy %s {
		lb_policy tiered {
			interval 250ms
		}
		`+retryOptions+`
		transport edgetier {
			resume %s
			http {
				dial_timeout 1s
				response_header_timeout 5s
			}
		}
	}
}
`, port, strings.Join(edgeAddrs(edges), " "), resume)
	lb := startCaddy(t, "lb", cfg, cluster.Options{})
	return lb, "http://" + addr(port)
}

// startVideoSystem starts three edges in cgroups and an LB configured like
// the default Caddyfile (/ plays the default video, /videos/NAME serves
// the library). It returns the LB and its URL.
func startVideoSystem(t testing.TB) (*cluster.Caddy, string) {
	t.Helper()
	edges := startCgroupEdges(t, 3)
	lbPort := freePort(t)
	cfg := globalOptions + fmt.Sprintf(`
http://127.0.0.1:%d {
	cdn_dashboard
	@video path / /videos/*
	handle @video {
		header Access-Control-Allow-Origin "*"
		header Access-Control-Expose-Headers "Content-Range, Accept-Ranges, Content-Length, X-Edge"
		rewrite / /sample.mp4
		uri strip_prefix /videos
		reverse_proxy %s {
			lb_policy tiered {
				interval 250ms
			}
			`+retryOptions+`
		}
	}
	handle {
		respond 404
	}
}
`, lbPort, strings.Join(edgeAddrs(edges), " "))
	lb := startCaddy(t, "lb", cfg, cluster.Options{})
	return lb, "http://" + addr(lbPort)
}

// --- The test library ---

var (
	libraryOnce sync.Once
	libraryDir  string
	libraryErr  error
)

// library returns a folder with big.bin (48 MiB of random bytes, more than
// loopback socket buffers hold) and the bundled sample video, made once
// for the test run (TestMain removes it).
func library(t testing.TB) string {
	t.Helper()
	libraryOnce.Do(func() {
		libraryDir, libraryErr = os.MkdirTemp("", "edgetier-library-")
		if libraryErr != nil {
			return
		}
		f, err := os.Create(filepath.Join(libraryDir, "big.bin"))
		if err != nil {
			libraryErr = err
			return
		}
		defer f.Close()
		if _, err := io.CopyN(f, rand.Reader, 48<<20); err != nil {
			libraryErr = err
			return
		}
		sample, err := os.ReadFile("../testdata/sample.mp4")
		if err != nil {
			libraryErr = err
			return
		}
		libraryErr = os.WriteFile(filepath.Join(libraryDir, "sample.mp4"), sample, 0o644)
	})
	if libraryErr != nil {
		t.Fatal(libraryErr)
	}
	return libraryDir
}

// readLibrary returns the bytes of the library's file name.
func readLibrary(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(library(t), name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// videos remembers, by name, each video makeVideo has made (or failed to).
var videos struct {
	sync.Mutex
	made map[string]error
}

// makeVideo adds the video name to the library and returns its path:
// seconds of 720p test pattern at 25 frames/s with a tone, H.264 and AAC,
// its index first (faststart); rate are more ffmpeg arguments for the
// video's bit rate. The first call for a name makes the file; later calls
// reuse it, whatever their arguments.
func makeVideo(t testing.TB, name string, seconds int, rate ...string) string {
	t.Helper()
	lib := library(t)
	ffmpeg := testenv.Program(t, "ffmpeg")
	path := filepath.Join(lib, name)
	videos.Lock()
	defer videos.Unlock()
	err, made := videos.made[name]
	if !made {
		duration := strconv.Itoa(seconds)
		args := []string{"-hide_banner", "-loglevel", "error", "-y",
			"-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=25:duration=" + duration,
			"-f", "lavfi", "-i", "sine=frequency=440:duration=" + duration,
			"-c:v", "libx264", "-preset", "ultrafast", "-g", "50", "-pix_fmt", "yuv420p"}
		args = append(append(args, rate...), "-c:a", "aac", "-movflags", "+faststart", path)
		if out, runErr := exec.Command(ffmpeg, args...).CombinedOutput(); runErr != nil {
			err = fmt.Errorf("ffmpeg making %s: %v: %s", name, runErr, out)
		}
		if videos.made == nil {
			videos.made = map[string]error{}
		}
		videos.made[name] = err
	}
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// hugeVideo adds huge.mp4 (60 s of 720p at 16 Mbit/s, about 115 MB): more
// than a browser buffers ahead, so playback keeps a stream open.
func hugeVideo(t testing.TB) string {
	t.Helper()
	return makeVideo(t, "huge.mp4", 60, "-b:v", "16M", "-maxrate", "16M", "-bufsize", "8M")
}

// --- Requests ---

// getBody GETs url and returns the body; the test fails unless the answer
// is 200 OK.
func getBody(t testing.TB, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading the body: %v", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %s", url, resp.Status, body)
	}
	return string(body)
}

// getReport fetches an agent's report from url, with token as a bearer
// token unless it is empty; the test fails unless it gets a valid report.
func getReport(t testing.TB, url, token string) edgeagent.Report {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("report: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("report: %s", resp.Status)
	}
	rep, err := edgeagent.Decode(resp.Body)
	if err != nil {
		t.Fatalf("report: %v", err)
	}
	return rep
}

// traffic sends n Range requests for random 256 KiB chunks of big.bin
// through the LB from workers clients, checks every byte against want (the
// file), and returns how many each edge served (by X-Edge).
func traffic(t testing.TB, lbURL string, workers, n int, want []byte) map[string]int {
	t.Helper()
	var mu sync.Mutex
	served := map[string]int{}
	var wg sync.WaitGroup
	jobs := make(chan int)
	client := &http.Client{Timeout: 20 * time.Second}
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range jobs {
				const chunk = 256 << 10
				start := (k * 7919 * chunk) % (len(want) - chunk)
				req, _ := http.NewRequest(http.MethodGet, lbURL+"/big.bin", nil)
				req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", start, start+chunk-1))
				resp, err := client.Do(req)
				if err != nil {
					t.Errorf("request %d: %v", k, err)
					continue
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, want[start:start+chunk]) {
					t.Errorf("request %d: status %d, %d bytes, err %v: wrong response", k, resp.StatusCode, len(body), err)
					continue
				}
				mu.Lock()
				served[resp.Header.Get("X-Edge")]++
				mu.Unlock()
			}
		}()
	}
	for k := 0; k < n; k++ {
		jobs <- k
	}
	close(jobs)
	wg.Wait()
	return served
}

// steadyTraffic has workers clients GET url over and over (with rng as
// the Range header unless it is empty), each pausing for pause after every
// answer, until the test ends.
func steadyTraffic(t testing.TB, workers int, url, rng string, pause time.Duration) {
	t.Helper()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Timeout: 10 * time.Second}
			for {
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequest(http.MethodGet, url, nil)
				if rng != "" {
					req.Header.Set("Range", rng)
				}
				if resp, err := client.Do(req); err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				time.Sleep(pause)
			}
		}()
	}
	t.Cleanup(func() { close(stop); wg.Wait() })
}

// slowStream opens a request for a big file and does not read it, so the
// server blocks writing and the stream stays in flight until the test
// ends or the connection is closed.
func slowStream(t testing.TB, hostPort, path string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", hostPort)
	if err != nil {
		t.Fatal(err)
	}
	// A small receive buffer makes the server block sooner.
	_ = conn.(*net.TCPConn).SetReadBuffer(4096)
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, hostPort)
	t.Cleanup(func() { conn.Close() })
	return conn
}

// readHead reads a response's status line and headers from a raw stream.
func readHead(t testing.TB, conn net.Conn) http.Header {
	t.Helper()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	return resp.Header
}

// eventually retries cond every 50 ms until it holds, failing the test
// after timeout with what it waited for and cond's last state.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s (last: %s)", timeout, what, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitTrusted sends requests for /sample.mp4 through the LB so that its
// board learns the upstreams, until it trusts every one of them, as on a
// running system.
func waitTrusted(t testing.TB, lb *cluster.Caddy, lbURL string, upstreams ...string) {
	t.Helper()
	eventually(t, 10*time.Second, "every upstream trusted", func() (bool, string) {
		if resp, err := http.Get(lbURL + "/sample.mp4"); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		for _, u := range upstreams {
			if upstreamMetric(t, lb, "edgetier_upstream_trusted", u) != 1 {
				return false, u
			}
		}
		return true, ""
	})
}

// asJSON is v as compact JSON, for messages.
func asJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// --- Prometheus metrics ---

// promMetrics is Prometheus text parsed by expfmt: the metric families by
// name.
type promMetrics map[string]*dto.MetricFamily

// scrape fetches and parses the Prometheus text at url.
func scrape(t testing.TB, url string) promMetrics {
	t.Helper()
	parser := expfmt.NewTextParser(model.LegacyValidation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(getBody(t, url)))
	if err != nil {
		t.Fatalf("parsing the Prometheus text of %s: %v", url, err)
	}
	return families
}

// scrapeAdmin scrapes c's own metrics, on its admin endpoint.
func scrapeAdmin(t testing.TB, c *cluster.Caddy) promMetrics {
	t.Helper()
	return scrape(t, "http://"+c.Admin+"/metrics")
}

// value is the value of the counter, gauge or untyped series of name
// whose labels are exactly labels; NaN, which no comparison holds, when
// there is none.
func (m promMetrics) value(name string, labels prometheus.Labels) float64 {
	for _, s := range m[name].GetMetric() {
		if len(s.GetLabel()) == len(labels) && hasLabels(s, labels) {
			return seriesValue(s)
		}
	}
	return math.NaN()
}

// sum adds up the series of name whose labels include labels; 0 when
// there are none.
func (m promMetrics) sum(name string, labels prometheus.Labels) float64 {
	var total float64
	for _, s := range m[name].GetMetric() {
		if hasLabels(s, labels) {
			total += seriesValue(s)
		}
	}
	return total
}

// missing lists the metric families of names that m lacks.
func (m promMetrics) missing(names ...string) []string {
	var out []string
	for _, name := range names {
		if _, ok := m[name]; !ok {
			out = append(out, name)
		}
	}
	return out
}

// hasLabels reports whether series s has every label of labels.
func hasLabels(s *dto.Metric, labels prometheus.Labels) bool {
	found := 0
	for _, l := range s.GetLabel() {
		if v, ok := labels[l.GetName()]; ok && v == l.GetValue() {
			found++
		}
	}
	return found == len(labels)
}

// seriesValue is the value of a counter, gauge or untyped series; NaN for
// a summary or histogram.
func seriesValue(s *dto.Metric) float64 {
	switch {
	case s.Counter != nil:
		return s.GetCounter().GetValue()
	case s.Gauge != nil:
		return s.GetGauge().GetValue()
	case s.Untyped != nil:
		return s.GetUntyped().GetValue()
	}
	return math.NaN()
}

// upstreamMetric reads one of the LB's per-upstream series of the default
// pool (NaN while the LB has none for upstream).
func upstreamMetric(t testing.TB, lb *cluster.Caddy, name, upstream string) float64 {
	t.Helper()
	return scrapeAdmin(t, lb).value(name, prometheus.Labels{"pool": "default", "upstream": upstream})
}

// selectionsOf is how many times the LB's policy chose each edge, over
// every tier.
func selectionsOf(t testing.TB, lb *cluster.Caddy, edges []*edgeProc) []float64 {
	t.Helper()
	m := scrapeAdmin(t, lb)
	counts := make([]float64, len(edges))
	for i, e := range edges {
		counts[i] = m.sum("edgetier_upstream_selections_total", prometheus.Labels{"upstream": addr(e.port)})
	}
	return counts
}

// --- Process figures ---

// caddyRuntime reads goroutines and live heap of a Caddy process from its
// admin endpoint's pprof (forcing a GC first).
func caddyRuntime(t testing.TB, c *cluster.Caddy) (goroutines int, heap uint64) {
	t.Helper()
	text := getBody(t, "http://"+c.Admin+"/debug/pprof/goroutine?debug=1")
	m := regexp.MustCompile(`goroutine profile: total (\d+)`).FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("no goroutine total in pprof output")
	}
	goroutines, _ = strconv.Atoi(m[1])
	text = getBody(t, "http://"+c.Admin+"/debug/pprof/heap?gc=1&debug=1")
	m = regexp.MustCompile(`# HeapAlloc = (\d+)`).FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("no HeapAlloc in pprof output")
	}
	heap, _ = strconv.ParseUint(m[1], 10, 64)
	return goroutines, heap
}

// cpuSeconds is the CPU time (user + system) process pid has used so far.
func cpuSeconds(t testing.TB, pid int) float64 {
	t.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(raw[bytes.LastIndexByte(raw, ')')+2:]))
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / 100 // clock ticks
}

// raiseOpenFiles lifts this process's open-file limit to n (within its
// hard limit) for tests with thousands of connections; the Caddy
// processes it starts inherit it.
func raiseOpenFiles(n int) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < uint64(n) {
		lim.Cur = min(lim.Max, uint64(n))
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
}

// --- The dashboard's WebSocket ---

// dialWS opens the dashboard's WebSocket at url, sending origin as Origin
// unless it is empty.
func dialWS(t testing.TB, url, origin string) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	h := http.Header{}
	if origin != "" {
		h.Set("Origin", origin)
	}
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	return d.Dial(url, h)
}

// readFrame reads the next dashboard frame within 5 s and checks it with
// decodeFrame.
func readFrame(t testing.TB, c *websocket.Conn) board.Frame {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, data, err := c.ReadMessage()
	if err != nil {
		t.Fatalf("reading frame: %v", err)
	}
	return decodeFrame(t, data)
}

// decodeFrame checks a frame against the documented schema: known fields
// only, required fields present, figures in range.
func decodeFrame(t testing.TB, data []byte) board.Frame {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var f board.Frame
	if err := dec.Decode(&f); err != nil {
		t.Fatalf("frame does not match the schema: %v\n%s", err, data)
	}
	var raw map[string]json.RawMessage
	_ = json.Unmarshal(data, &raw)
	for _, field := range []string{"schema", "time", "pool", "interval_seconds", "lb", "edges", "events"} {
		if _, ok := raw[field]; !ok {
			t.Fatalf("frame lacks %q: %s", field, data)
		}
	}
	if f.Schema != board.FrameSchema || f.Time.IsZero() || f.Edges == nil {
		t.Fatalf("frame = %s", data)
	}
	for _, e := range f.Edges {
		if e.Tier < 0 || e.Tier > 4 || e.Score < 0 || e.Score > 100 || e.Share < 0 || e.Share > 1 || len(e.Components) != int(rank.NumComponents) ||
			(e.LinkUtilisation != nil && !(*e.LinkUtilisation >= 0 && *e.LinkUtilisation <= 1)) {
			t.Fatalf("edge figures out of range: %+v", e)
		}
		switch e.Health {
		case "ok", "warming", "stale", "unknown", "down":
		default:
			t.Fatalf("edge health %q", e.Health)
		}
	}
	return f
}

// --- Headless Chromium ---

// browser starts headless Chromium (Debian's package) for one test.
func browser(t testing.TB) context.Context {
	t.Helper()
	exe := testenv.Program(t, "chromium")
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
		chromedp.WindowSize(1440, 1000),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	return ctx
}

// evalUntil evaluates a JavaScript expression every 100 ms until it is
// true, failing the test after timeout with the page's last dashboard
// frame.
func evalUntil(t testing.TB, ctx context.Context, timeout time.Duration, what, expr string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr))
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			state, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify(window.edgetierLastFrame || null).slice(0, 2000)`))
			t.Fatalf("timed out after %s waiting for %s (err %v); last frame: %s", timeout, what, err, state)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// screenshot saves a full-page PNG as build/screenshots/name and returns
// its path.
func screenshot(t testing.TB, ctx context.Context, name string) string {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	dir := filepath.Join("..", "build", "screenshots")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
	return path
}
