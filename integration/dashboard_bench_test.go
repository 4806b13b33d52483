package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/edgetier/edgetier/internal/agentfarm"
	"github.com/edgetier/edgetier/internal/board"
	"github.com/edgetier/edgetier/internal/cluster"
)

// BenchmarkDashboardHub measures what an open dashboard costs the LB:
// 1,000 WebSocket clients on /ws at the default one frame a second. It
// reports the LB's CPU time with them connected minus without, as a share
// of one core, and the p99 time to first byte of player-like Range
// requests through the same LB with the clients connected against
// without, over interleaved rounds (median ratio and spread).
//
//	make build && EDGETIER_CADDY=$PWD/bin/caddy go test -run '^$' -bench DashboardHub -benchtime 1x ./integration/
func BenchmarkDashboardHub(b *testing.B) {
	const clients = 1000
	raiseOpenFiles(4 * clients)
	lib := library(b)
	edges := startEdges(b, lib, lib, lib)
	lbPort := freePort(b)
	lb := startCaddy(b, "lb", lbDashboardConfig(lbPort, edgeAddrs(edges), ""), cluster.Options{})
	lbURL := "http://" + addr(lbPort)
	traffic(b, lbURL, 2, 10, readLibrary(b, "big.bin"))

	var frames frameCount
	connect := func() (closeAll func()) { return dashboardClients(b, "ws://"+addr(lbPort)+"/ws", clients, &frames) }

	for b.Loop() {
		// CPU: 10 s idle without clients, then 10 s with them.
		const window = 10 * time.Second
		idle := cpuOver(b, lb, window)
		closeAll := connect()
		time.Sleep(2 * time.Second) // every client has had a frame
		before := frames.frames.Load()
		open := cpuOver(b, lb, window)
		got := frames.frames.Load() - before
		closeAll()
		hubShare := (open - idle) / window.Seconds() * 100
		b.Logf("LB CPU: %.2f s idle, %.2f s with %d clients in %s; %d frames delivered (%.0f per client per s)",
			idle, open, clients, window, got, float64(got)/clients/window.Seconds())
		if float64(got) < 0.8*clients*window.Seconds() {
			b.Errorf("clients received %d frames in %s, want about %d", got, window, clients*int(window.Seconds()))
		}

		// Proxy p99 with and without the clients, interleaved rounds.
		var ratios []float64
		var without, with []time.Duration
		for round := 0; round < 6; round++ {
			order := []bool{false, true}
			if round%2 == 1 {
				order = []bool{true, false}
			}
			var p99 [2]time.Duration
			for _, open := range order {
				var closeAll func()
				if open {
					closeAll = connect()
					time.Sleep(time.Second)
				}
				p := percentile(players(b, lbURL, 8, 8*time.Second), 0.99)
				if open {
					closeAll()
					p99[1] = p
					with = append(with, p)
				} else {
					p99[0] = p
					without = append(without, p)
				}
			}
			ratios = append(ratios, float64(p99[1])/float64(p99[0]))
		}
		slices.Sort(ratios)
		med := (ratios[len(ratios)/2-1] + ratios[len(ratios)/2]) / 2
		b.Logf("proxy p99 without the dashboard %v, with %d clients %v; ratio median %.2f [%.2f–%.2f]",
			without, clients, with, med, ratios[0], ratios[len(ratios)-1])
		b.ReportMetric(hubShare, "%core-for-1000-clients")
		b.ReportMetric(med, "p99-ratio-with/without")
	}
}

// BenchmarkDashboardEdges measures how the dashboard's cost grows with the
// pool: an LB over 50 and over 200 edges, each an agent on its own
// loopback port (agentfarm, in this process) polled at the default
// interval, nothing proxied, with 1,000 WebSocket clients on /ws at the
// default one frame a second. It reports the LB's CPU with the clients
// minus without as a share of one core (the median of 3 rounds, 5 s per
// arm, the arms interleaved), the LB's CPU without them (its pollers and
// frames), and the size of the frames the clients received.
//
//	make build && EDGETIER_CADDY=$PWD/bin/caddy go test -run '^$' -bench DashboardEdges -benchtime 1x -count 3 ./integration/
func BenchmarkDashboardEdges(b *testing.B) {
	const clients, rounds, window = 1000, 3, 5 * time.Second
	for _, n := range []int{50, 200} {
		b.Run(fmt.Sprintf("edges=%d", n), func(b *testing.B) {
			raiseOpenFiles(4*clients + 4*n)
			farm, err := agentfarm.Start(n, time.Second)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(farm.Close)
			port := freePort(b)
			lb := startCaddy(b, "lb", globalOptions+fmt.Sprintf(`
http://127.0.0.1:%d {
	cdn_dashboard
	reverse_proxy %s {
		lb_policy tiered
	}
}
`, port, strings.Join(farm.Dials, " ")), cluster.Options{})
			lbURL := "http://" + addr(port)
			eventually(b, 15*time.Second, fmt.Sprintf("all %d edges ok in the frame", n), func() (bool, string) {
				ok := 0
				if resp, err := http.Get(lbURL + "/metrics"); err == nil {
					var f board.Frame
					_ = json.NewDecoder(resp.Body).Decode(&f)
					resp.Body.Close()
					for _, e := range f.Edges {
						if e.Health == "ok" {
							ok++
						}
					}
				}
				return ok == n, fmt.Sprintf("%d ok", ok)
			})

			var count frameCount
			for b.Loop() {
				var idle, open, hub []float64
				var frames, bytes int64
				for round := range rounds {
					for _, withClients := range []bool{round%2 == 1, round%2 == 0} {
						if !withClients {
							idle = append(idle, cpuOver(b, lb, window))
							continue
						}
						closeAll := dashboardClients(b, "ws://"+addr(port)+"/ws", clients, &count)
						time.Sleep(2 * time.Second) // every client has had a frame
						f0, b0 := count.frames.Load(), count.bytes.Load()
						open = append(open, cpuOver(b, lb, window))
						frames, bytes = frames+count.frames.Load()-f0, bytes+count.bytes.Load()-b0
						closeAll()
						time.Sleep(time.Second) // the LB has let them go
					}
					hub = append(hub, (open[round]-idle[round])/window.Seconds()*100)
				}
				if want := float64(rounds*clients) * window.Seconds(); float64(frames) < 0.8*want {
					b.Errorf("clients received %d frames in %d windows of %s, want about %.0f", frames, rounds, window, want)
				}
				b.Logf("LB CPU over %s without clients %.2f s, with %d clients %.2f s; hub %% of a core by round %.1f",
					window, idle, clients, open, hub)
				slices.Sort(hub)
				slices.Sort(idle)
				b.ReportMetric(hub[rounds/2], "%core-for-1000-clients")
				b.ReportMetric(idle[rounds/2]/window.Seconds()*100, "%core-without-clients")
				b.ReportMetric(float64(bytes)/float64(max(frames, 1)), "bytes/frame")
			}
		})
	}
}

// frameCount counts the frames dashboard clients received, and their bytes.
type frameCount struct{ frames, bytes atomic.Int64 }

// dashboardClients connects n WebSocket clients to url, each a browser
// tab: it reads every frame (counted in count) and answers pings.
// closeAll closes them and waits for their readers.
func dashboardClients(b *testing.B, url string, n int, count *frameCount) (closeAll func()) {
	b.Helper()
	conns := make([]*websocket.Conn, 0, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		c, _, err := dialWS(b, url, "")
		if err != nil {
			b.Fatalf("client %d: %v", i, err)
		}
		conns = append(conns, c)
		wg.Go(func() {
			for {
				_, data, err := c.ReadMessage()
				if err != nil {
					return
				}
				count.frames.Add(1)
				count.bytes.Add(int64(len(data)))
			}
		})
	}
	return func() {
		for _, c := range conns {
			_ = c.Close()
		}
		wg.Wait()
	}
}

// cpuOver is the CPU time the process spends over d.
func cpuOver(b *testing.B, c *cluster.Caddy, d time.Duration) float64 {
	start := cpuSeconds(b, c.Pid())
	time.Sleep(d)
	return cpuSeconds(b, c.Pid()) - start
}

// players run n players for d against the LB, each fetching Range chunks
// of 256 KiB–1 MiB of big.bin at random places with a short pause, as a
// video player does; it returns every request's time to first byte.
func players(b *testing.B, lbURL string, n int, d time.Duration) []time.Duration {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: n}}
	deadline := time.Now().Add(d)
	var mu sync.Mutex
	var ttfb []time.Duration
	var wg sync.WaitGroup
	for p := 0; p < n; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				size := int64(256<<10 + rand.IntN(768<<10))
				from := rand.Int64N(48<<20 - size)
				req, _ := http.NewRequest(http.MethodGet, lbURL+"/big.bin", nil)
				req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", from, from+size-1))
				start := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				took := time.Since(start)
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusPartialContent {
					b.Errorf("status %d", resp.StatusCode)
					return
				}
				mu.Lock()
				ttfb = append(ttfb, took)
				mu.Unlock()
				time.Sleep(time.Duration(rand.IntN(20)) * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	return ttfb
}

func percentile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return d[min(len(d)-1, int(q*float64(len(d))))]
}
