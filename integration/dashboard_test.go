package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/edgetier/edgetier/internal/board"
	"github.com/edgetier/edgetier/internal/cluster"
)

// TestDashboardStream: frames arrive every interval; their per-edge
// figures match the edges' agents and their selection counts match the
// requests sent through the LB; /metrics serves the same frame as JSON.
func TestDashboardStream(t *testing.T) {
	edges := startCgroupEdges(t, 3)
	lbPort := freePort(t)
	startCaddy(t, "lb", lbDashboardConfig(lbPort, edgeAddrs(edges), "interval 250ms"), cluster.Options{})
	lbURL := "http://" + addr(lbPort)
	want := readLibrary(t, "big.bin")

	const sent = 90
	served := traffic(t, lbURL, 3, sent, want)
	conn, resp, err := dialWS(t, "ws://"+addr(lbPort)+"/ws", lbURL)
	if err != nil {
		t.Fatalf("WebSocket upgrade without log or metrics: %v (%v)", err, resp)
	}
	defer conn.Close()

	// Hold 2 streams on edge-1 directly, to see the agent's figure in the frame.
	for i := 0; i < 2; i++ {
		readHead(t, slowStream(t, addr(edges[0].port), "/big.bin"))
	}
	var frame board.Frame
	start := time.Now()
	for i := 0; i < 8; i++ {
		frame = readFrame(t, conn)
	}
	perFrame := time.Since(start) / 8
	if perFrame < 150*time.Millisecond || perFrame > 500*time.Millisecond {
		t.Errorf("a frame every %s, want every 250ms", perFrame)
	}
	if len(frame.Edges) != 3 {
		t.Fatalf("frame has %d edges: %+v", len(frame.Edges), frame.Edges)
	}
	var total uint64
	for _, e := range frame.Edges {
		total += e.SelectionsTotal
		agent := getReport(t, "http://"+e.Upstream+"/_edgetier/load", "")
		if e.Edge != agent.Edge || e.State != string(agent.State) || e.Health != "ok" || e.Tier < 1 {
			t.Errorf("frame edge %+v does not match its agent %+v", e, agent)
		}
		if e.SelectionsTotal != uint64(served[e.Edge]) {
			t.Errorf("%s: %d selections in the frame, %d requests served by it", e.Edge, e.SelectionsTotal, served[e.Edge])
		}
		if e.Edge == "edge-1" && e.Streams != 2 {
			t.Errorf("edge-1 streams in the frame = %g, its agent holds 2", e.Streams)
		}
	}
	if total != sent {
		t.Errorf("selections in the frame = %d, requests sent = %d", total, sent)
	}
	if frame.LB.RequestsTotal < sent {
		t.Errorf("LB requests_total = %d, want at least %d", frame.LB.RequestsTotal, sent)
	}

	resp, err = http.Get(lbURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("/metrics Content-Type = %q", ct)
	}
	if f := decodeFrame(t, body); len(f.Edges) != 3 {
		t.Errorf("/metrics frame has %d edges", len(f.Edges))
	}
}

// TestDashboardOrigins: same-origin, missing and allow-listed origins may
// open the stream; cross-origin, null and forged ones get 403 and never
// join.
func TestDashboardOrigins(t *testing.T) {
	lbPort := freePort(t)
	edgePort := freePort(t)
	startCaddy(t, "lb", lbDashboardConfig(lbPort, []string{addr(edgePort)}, "allowed_origins https://ops.example.com"), cluster.Options{})
	host := addr(lbPort)
	tests := []struct {
		origin string
		ok     bool
	}{
		{"http://" + host, true},
		{"", true}, // a non-browser client
		{"https://ops.example.com", true},
		{"https://evil.example.com", false},
		{"null", false},
		{"http://" + host + ".evil.com", false},
		{"http://127.0.0.1:1", false},
		{"http://evil.com/" + host, false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("origin=%q", tt.origin), func(t *testing.T) {
			conn, resp, err := dialWS(t, "ws://"+host+"/ws", tt.origin)
			if tt.ok {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				readFrame(t, conn)
				conn.Close()
				return
			}
			if err == nil {
				conn.Close()
				t.Fatal("a cross-origin handshake was accepted")
			}
			if resp == nil || resp.StatusCode != http.StatusForbidden {
				t.Fatalf("response = %v, want 403", resp)
			}
		})
	}
}

// TestDashboardSilentClients: of 500 clients, half stop reading and
// answering pings. The others keep receiving every frame; the silent ones
// are dropped within the pong wait; goroutines and heap return to the
// baseline after everyone leaves and after a reload.
func TestDashboardSilentClients(t *testing.T) { silentClients(t, 500) }

func silentClients(t *testing.T, n int) {
	raiseOpenFiles(4 * n)
	lbPort := freePort(t)
	edgePort := freePort(t)
	cfg := lbDashboardConfig(lbPort, []string{addr(edgePort)}, "interval 200ms\n\t\tpong_wait 1s\n\t\twrite_timeout 1s\n\t\tmax_clients 5000")
	lb := startCaddy(t, "lb", cfg, cluster.Options{})
	url := "ws://" + addr(lbPort) + "/ws"
	baseG, baseHeap := caddyRuntime(t, lb)

	var readers, silent []*websocket.Conn
	for i := 0; i < n; i++ {
		c, _, err := dialWS(t, url, "")
		if err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		if i%2 == 0 {
			readers = append(readers, c)
		} else {
			silent = append(silent, c) // never reads: no pongs, no frames taken
		}
	}
	var received, gapped atomic.Int64
	var minFrames atomic.Int64
	minFrames.Store(1 << 30)
	var wg sync.WaitGroup
	window := 3 * time.Second
	for _, c := range readers {
		wg.Add(1)
		go func(c *websocket.Conn) {
			defer wg.Done()
			deadline := time.Now().Add(window)
			count := int64(0)
			last := uint64(0)
			for time.Now().Before(deadline) {
				_ = c.SetReadDeadline(deadline.Add(time.Second))
				_, data, err := c.ReadMessage()
				if err != nil {
					break
				}
				var f struct{ Seq uint64 }
				_ = json.Unmarshal(data, &f)
				if last != 0 && f.Seq != last+1 && f.Seq != last {
					gapped.Add(1)
				}
				last = f.Seq
				count++
			}
			received.Add(count)
			for {
				cur := minFrames.Load()
				if count >= cur || minFrames.CompareAndSwap(cur, count) {
					break
				}
			}
		}(c)
	}
	wg.Wait()
	// 3 s at one frame per 200 ms is 15 frames (+1 on joining).
	if m := minFrames.Load(); m < 5 || gapped.Load() > 0 {
		t.Errorf("readers missed frames: the slowest got %d in %s, %d gaps (all readers: %d frames)", m, window, gapped.Load(), received.Load())
	}
	// The silent half is dropped within the pong wait (1 s; margin 3 s).
	eventually(t, 4*time.Second, "silent clients to be dropped", func() (bool, string) {
		g, _ := caddyRuntime(t, lb)
		// Each live client costs the hub two goroutines plus the server's.
		return g < baseG+2*n/2+n/2+50, fmt.Sprintf("%d goroutines (baseline %d)", g, baseG)
	})
	for _, c := range append(readers, silent...) {
		c.Close()
	}
	eventually(t, 10*time.Second, "goroutines and heap back to the baseline", func() (bool, string) {
		g, h := caddyRuntime(t, lb)
		return g <= baseG+10 && h < baseHeap+8<<20, fmt.Sprintf("%d goroutines (baseline %d), heap %d (baseline %d)", g, baseG, h, baseHeap)
	})

	// After a reload too: the old hub stops and closes its clients.
	c, _, err := dialWS(t, url, "")
	if err != nil {
		t.Fatal(err)
	}
	readFrame(t, c)
	reload(t, lb, strings.Replace(cfg, "interval 200ms", "interval 300ms", 1))
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		if _, _, err := c.ReadMessage(); err != nil {
			break // closed by the reload
		}
	}
	c.Close()
	eventually(t, 10*time.Second, "goroutines back to the baseline after the reload", func() (bool, string) {
		g, h := caddyRuntime(t, lb)
		return g <= baseG+10 && h < baseHeap+8<<20, fmt.Sprintf("%d goroutines (baseline %d), heap %d (baseline %d)", g, baseG, h, baseHeap)
	})
}
