package caddymodule

import (
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/zap"
)

// TestHubDropsSilentClients runs the hub in-process (under -race in make
// test): readers get every frame, clients that never read are dropped
// within the pong wait, and stop leaves no goroutine behind.
func TestHubDropsSilentClients(t *testing.T) {
	baseline := runtime.NumGoroutine()
	var frames atomic.Int64
	h := newHub(100*time.Millisecond, time.Second, 300*time.Millisecond, 100, 8, func() []byte {
		return []byte(strconv.FormatInt(frames.Add(1), 10))
	}, zap.NewNop())
	srv, url := serveHub(h)
	defer srv.Close()

	const n = 40
	var silent []*websocket.Conn
	var wg sync.WaitGroup
	counts := make([]int, n/2)
	gaps := make([]int, n/2)
	for i := 0; i < n; i++ {
		c, _, err := websocket.DefaultDialer.Dial(url, nil)
		if err != nil {
			t.Fatal(err)
		}
		if i%2 == 1 {
			silent = append(silent, c)
			continue
		}
		wg.Add(1)
		go func(k int, c *websocket.Conn) {
			defer wg.Done()
			defer c.Close()
			deadline := time.Now().Add(1500 * time.Millisecond)
			last := int64(-1)
			for time.Now().Before(deadline) {
				_ = c.SetReadDeadline(deadline)
				_, data, err := c.ReadMessage()
				if err != nil {
					return
				}
				seq, _ := strconv.ParseInt(string(data), 10, 64)
				// The first frame is the latest on joining; from then on
				// every frame must arrive, in order.
				if last >= 0 && seq != last+1 && seq != last {
					gaps[k]++
				}
				last = seq
				counts[k]++
			}
		}(i/2, c)
	}
	wg.Wait()
	for k, c := range counts {
		if c < 3 || gaps[k] > 0 {
			t.Errorf("reader %d got %d frames with %d gaps: want every frame", k, c, gaps[k])
		}
	}
	deadline := time.Now().Add(2 * time.Second)
	for h.count.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := h.count.Load(); got != 0 {
		t.Errorf("%d clients still joined after the readers left and the silent ones passed the pong wait", got)
	}
	if h.dropped.Load() < n/2 {
		t.Errorf("dropped %d clients, want the %d silent ones", h.dropped.Load(), n/2)
	}
	for _, c := range silent {
		c.Close()
	}
	h.stop()
	srv.Close()
	deadline = time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > baseline+2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if g := runtime.NumGoroutine(); g > baseline+2 {
		t.Errorf("%d goroutines after stop, baseline %d", g, baseline)
	}
}

// TestHubMaxClients: a full hub refuses new clients.
func TestHubMaxClients(t *testing.T) {
	h := newHub(time.Second, time.Second, time.Second, 1, 2, func() []byte { return []byte(`{}`) }, zap.NewNop())
	defer h.stop()
	srv, url := serveHub(h)
	defer srv.Close()
	c, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for deadline := time.Now().Add(5 * time.Second); !h.full() && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond) // the first client joins asynchronously
	}
	if _, resp, err := websocket.DefaultDialer.Dial(url, nil); err == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("second client: %v %v", resp, err)
	}
}

// serveHub serves h's WebSocket endpoint as the dashboard does (refusing
// when full) and returns the server and its ws:// URL.
func serveHub(h *hub) (*httptest.Server, string) {
	upgrader := websocket.Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h.full() {
			http.Error(w, "full", http.StatusServiceUnavailable)
			return
		}
		conn, err := upgrader.Upgrade(hijackWriter{w}, r, nil)
		if err == nil {
			h.join(conn)
		}
	}))
	return srv, "ws" + strings.TrimPrefix(srv.URL, "http")
}

// TestHubDropsClientsThatNeverRead: a client that never reads but sends
// pongs of its own (unsolicited, or with a payload it did not read) is
// dropped within the pong wait, like a silent one: only a pong echoing a
// ping proves the client has read what came before the ping, so what it
// may leave unread is bounded. Readers, answering pings as every
// WebSocket client does, stay.
func TestHubDropsClientsThatNeverRead(t *testing.T) {
	const pongWait = 400 * time.Millisecond
	frame := []byte(`{"pad":"` + strings.Repeat("x", 2800) + `"}`)
	h := newHub(50*time.Millisecond, time.Second, pongWait, 100, 8, func() []byte { return frame }, zap.NewNop())
	defer h.stop()
	srv, url := serveHub(h)
	defer srv.Close()

	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer func() { close(stop); wg.Wait() }()
	// Non-readers: one sends empty pongs, one pongs with a guessed payload.
	for _, payload := range []string{"", "00000000"} {
		c, _, err := websocket.DefaultDialer.Dial(url, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
					if c.WriteControl(websocket.PongMessage, []byte(payload), time.Now().Add(time.Second)) != nil {
						return // dropped
					}
				}
			}
		}()
	}
	// A reader, for three pong waits.
	reader, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	readErr := make(chan error, 1)
	go func() {
		end := time.Now().Add(3 * pongWait)
		for time.Now().Before(end) {
			_ = reader.SetReadDeadline(end.Add(time.Second))
			if _, _, err := reader.ReadMessage(); err != nil {
				readErr <- err
				return
			}
		}
		readErr <- nil
	}()
	if err := <-readErr; err != nil {
		t.Fatalf("a reader was dropped: %v", err)
	}
	// The non-readers went within the pong wait (with margin); the reader stays.
	if got := h.count.Load(); got != 1 {
		t.Errorf("%d clients joined after %s, want only the reader: clients that never read but pong are kept", got, 3*pongWait)
	}
}
