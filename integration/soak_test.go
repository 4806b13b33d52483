//go:build soak

// Soak tests: `make soak`. Bounded, they stop by themselves, and they are
// not part of `make test`.
package integration

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestSoakDashboard2000Clients: 2,000 WebSocket clients, half silent.
func TestSoakDashboard2000Clients(t *testing.T) { silentClients(t, 2000) }

// TestSoakSlowloris: thousands of connections trickling their headers are
// closed by the server's read_header timeout while normal viewers are
// served; a viewer reading at 1 KB/s does not grow the LB's memory.
func TestSoakSlowloris(t *testing.T) {
	const trickles = 2000
	raiseOpenFiles(3 * trickles)
	// The default configuration, with a short header timeout for the test.
	cfg := strings.Replace(defaultCaddyfile(t), "read_header 10s", "read_header 2s", 1)
	lb, site := startDefaultSystem(t, cfg)
	base := "http://" + site

	var conns []net.Conn
	for i := 0; i < trickles; i++ {
		c, err := net.Dial("tcp", site)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		fmt.Fprintf(c, "GET /videos/sample.mp4 HTTP/1.1\r\nHost: x\r\n")
		conns = append(conns, c)
	}
	// Keep trickling a header byte now and then; the server must close them.
	var closed sync.WaitGroup
	var open int64
	var mu sync.Mutex
	for _, c := range conns {
		closed.Add(1)
		go func(c net.Conn) {
			defer closed.Done()
			defer c.Close()
			for i := 0; i < 20; i++ {
				if _, err := fmt.Fprintf(c, "X-%d: y\r\n", i); err != nil {
					return
				}
				_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
				buf := make([]byte, 1)
				if _, err := c.Read(buf); err != nil && !isTimeout(err) {
					return // closed by the server
				}
			}
			mu.Lock()
			open++
			mu.Unlock()
		}(c)
	}
	// Normal viewers are served meanwhile.
	for i := 0; i < 20; i++ {
		resp, err := http.Get(base + "/videos/sample.mp4")
		if err != nil {
			t.Fatalf("viewer %d: %v", i, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("viewer %d: %d", i, resp.StatusCode)
		}
	}
	closed.Wait()
	if open > 0 {
		t.Errorf("%d trickling connections outlived the 2 s header timeout by 10 s", open)
	}

	// A viewer reading at 1 KB/s for 10 s does not grow memory.
	_, heap0 := caddyRuntime(t, lb)
	resp, err := http.Get(base + "/videos/big.bin")
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1024)
	for i := 0; i < 10; i++ {
		if _, err := io.ReadFull(resp.Body, buf); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
	}
	_, heap1 := caddyRuntime(t, lb)
	resp.Body.Close()
	t.Logf("heap %d → %d while a viewer read at 1 KB/s", heap0, heap1)
	if heap1 > heap0+16<<20 {
		t.Errorf("heap grew by %d bytes for one slow viewer", heap1-heap0)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
