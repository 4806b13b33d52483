// Package integration runs edgetier as users do: the built Caddy and
// edgeagent binaries as separate processes on loopback.
package integration

import (
	"bufio"
	"bytes"
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
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edgetier/edgetier/edgeagent"
	"github.com/edgetier/edgetier/internal/cluster"
	"github.com/edgetier/edgetier/internal/testenv"
)

func freePort(t testing.TB) int {
	t.Helper()
	p, err := cluster.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func addr(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }

// startCaddy runs the built Caddy on caddyfile; %ADMIN% in it becomes the
// admin address.
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
	started.Store(t.Name()+"/"+name, c)
	t.Cleanup(func() {
		if !c.Exited() {
			c.Kill()
		}
		if t.Failed() {
			t.Logf("%s log:\n%s", name, tail(c.Log(), 40))
		}
	})
	return c
}

func tail(s string, lines int) string {
	parts := strings.Split(s, "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}

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

var (
	libraryOnce sync.Once
	libraryDir  string
	libraryErr  error
)

// library returns a folder with big.bin (48 MiB of random bytes, more than
// loopback socket buffers hold) and the bundled sample video.
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

func TestMain(m *testing.M) {
	code := m.Run()
	if libraryDir != "" {
		os.RemoveAll(libraryDir)
	}
	os.Exit(code)
}

// getReport fetches an agent's report.
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

// eventually retries cond until it holds or the timeout passes.
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

// slowStream opens a request for a big file and does not read it, so the
// server blocks writing and the stream stays in flight.
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

// scrape fetches Prometheus text.
func scrape(t testing.TB, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("scraping %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scraping %s: %s: %s", url, resp.Status, body)
	}
	return string(body)
}

// metricValue finds the value of the series whose line starts with prefix
// (name and labels as Prometheus writes them).
func metricValue(text, prefix string) (float64, bool) {
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, prefix) {
			fields := strings.Fields(line)
			v, err := strconv.ParseFloat(fields[len(fields)-1], 64)
			return v, err == nil
		}
	}
	return math.NaN(), false
}

func prettyJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

var optsNone = cluster.Options{}

func stringsReader(s string) io.Reader { return strings.NewReader(s) }

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// reload loads a new Caddyfile into c (with %ADMIN% filled in).
func reload(t testing.TB, c *cluster.Caddy, caddyfile string) {
	t.Helper()
	if err := c.Reload(strings.ReplaceAll(caddyfile, "%ADMIN%", c.Admin)); err != nil {
		t.Fatal(err)
	}
}

var (
	videoOnce = map[string]*sync.Once{"huge.mp4": {}}
	videoErrs sync.Map
)

// hugeVideo adds huge.mp4 (60 s of 720p at 16 Mbit/s, about 115 MB): more
// than a browser buffers ahead, so playback keeps a stream open.
func hugeVideo(t testing.TB) string {
	return makeVideo(t, "huge.mp4", "60", []string{"-b:v", "16M", "-maxrate", "16M", "-bufsize", "8M"})
}

func makeVideo(t testing.TB, name, seconds string, rate []string) string {
	t.Helper()
	lib := library(t)
	ffmpeg := testenv.Program(t, "ffmpeg")
	path := filepath.Join(lib, name)
	videoOnce[name].Do(func() {
		args := []string{"-hide_banner", "-loglevel", "error", "-y",
			"-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=25:duration=" + seconds,
			"-f", "lavfi", "-i", "sine=frequency=440:duration=" + seconds,
			"-c:v", "libx264", "-preset", "ultrafast", "-g", "50", "-pix_fmt", "yuv420p"}
		args = append(append(args, rate...), "-c:a", "aac", "-movflags", "+faststart", path)
		if out, err := exec.Command(ffmpeg, args...).CombinedOutput(); err != nil {
			videoErrs.Store(name, fmt.Errorf("ffmpeg: %v: %s", err, out))
		}
	})
	if err, ok := videoErrs.Load(name); ok {
		t.Fatal(err)
	}
	return path
}

func itoa(i int) string { return strconv.Itoa(i) }

// started remembers each test's processes by name, for helpers that start
// them without returning them.
var started sync.Map

func lastStarted(t testing.TB, name string) *cluster.Caddy {
	t.Helper()
	c, ok := started.Load(t.Name() + "/" + name)
	if !ok {
		t.Fatalf("no %s started by %s", name, t.Name())
	}
	return c.(*cluster.Caddy)
}

// waitTrusted sends a request so the board learns the edges, then waits
// until it trusts every one of them, as on a running system.
func waitTrusted(t testing.TB, lb *cluster.Caddy, lbURL string, edges []*edgeProc) {
	t.Helper()
	eventually(t, 10*time.Second, "every edge trusted", func() (bool, string) {
		if resp, err := http.Get(lbURL + "/sample.mp4"); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		for _, e := range edges {
			if upstreamMetric(t, lb, "edgetier_upstream_trusted", addr(e.port)) != 1 {
				return false, e.name
			}
		}
		return true, ""
	})
}

// clusterEnv is the options of a Caddy started with extra environment.
func clusterEnv(env ...string) cluster.Options { return cluster.Options{Env: env} }

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
