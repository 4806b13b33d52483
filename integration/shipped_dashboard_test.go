package integration

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestDashboardOriginExact: on the default Caddyfile, the dashboard's
// WebSocket admits the page's own origin only when scheme, host and port
// all match it, and only under a host name the site may be reached by (an
// IP address, localhost, or a name the site is configured for): another
// name could be an attacker's, rebound to this address (DNS rebinding).
func TestDashboardOriginExact(t *testing.T) {
	s := startShipped(t)
	hostPort := strings.TrimPrefix(s.url, "http://")
	port := hostPort[strings.LastIndex(hostPort, ":")+1:]
	tests := []struct {
		name, host, origin string
		ok                 bool
	}{
		{"same origin", "", "http://" + hostPort, true},
		{"no origin (not a browser)", "", "", true},
		{"localhost", "localhost:" + port, "http://localhost:" + port, true},
		{"host in capitals", "LOCALHOST:" + port, "http://localhost:" + port, true},
		{"https origin on the http site", "", "https://" + hostPort, false},
		{"user before the host", "", "http://user@" + hostPort, false},
		{"foreign name as user", "", "http://evil.example@" + hostPort, false},
		{"another port", "", "http://127.0.0.1:1", false},
		{"default port", "", "http://127.0.0.1", false},
		{"a path", "", "http://" + hostPort + "/dashboard", false},
		{"null", "", "null", false},
		{"DNS rebinding: foreign name in Host and Origin", "evil.example:" + port, "http://evil.example:" + port, false},
		{"DNS rebinding: a subdomain of localhost", "x.localhost.evil.example:" + port, "http://x.localhost.evil.example:" + port, false},
		{"origin differs from Host", "localhost:" + port, "http://" + hostPort, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			if tt.origin != "" {
				h.Set("Origin", tt.origin)
			}
			if tt.host != "" {
				h.Set("Host", tt.host) // gorilla sends it as the request's Host
			}
			d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
			conn, resp, err := d.Dial("ws://"+hostPort+"/ws", h)
			if tt.ok {
				if err != nil {
					t.Fatalf("Host %q, Origin %q refused: %v (%v)", tt.host, tt.origin, err, statusOf(resp))
				}
				readFrame(t, conn)
				conn.Close()
				return
			}
			if err == nil {
				conn.Close()
				t.Fatalf("Host %q, Origin %q: the handshake was accepted, want 403", tt.host, tt.origin)
			}
			if resp == nil || resp.StatusCode != http.StatusForbidden {
				t.Fatalf("Host %q, Origin %q: %v, want 403", tt.host, tt.origin, statusOf(resp))
			}
		})
	}
}

func statusOf(resp *http.Response) string {
	if resp == nil {
		return "no response"
	}
	return fmt.Sprint(resp.StatusCode)
}

// TestDashboardDropsClientsThatNeverRead: on the default Caddyfile (pong
// wait 30 s, as shipped), a WebSocket client that never reads but keeps
// sending pongs of its own is dropped within the pong wait; its frames do
// not pile up in socket buffers for as long as they last. A client that
// reads keeps every frame meanwhile.
func TestDashboardDropsClientsThatNeverRead(t *testing.T) {
	s := startShipped(t)
	const pongWait = 30 * time.Second // cdn_dashboard's default
	ws := "ws" + strings.TrimPrefix(s.url, "http") + "/ws"
	getBody(t, s.url+"/") // the board learns the edges, frames show them
	time.Sleep(1500 * time.Millisecond)
	frame := getBody(t, s.url+"/metrics")
	t.Logf("a frame is %d bytes", len(frame))

	reader, _, err := dialWS(t, ws, "")
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	frames := make(chan int, 1)
	go func() {
		n := 0
		for {
			_ = reader.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, _, err := reader.ReadMessage(); err != nil {
				frames <- n
				return
			}
			n++
		}
	}()

	c, _, err := dialWS(t, ws, "")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	for c.WriteControl(websocket.PongMessage, nil, time.Now().Add(time.Second)) == nil {
		if time.Since(start) > pongWait+10*time.Second {
			t.Fatalf("a client that never reads but sends pongs is still connected after %s (pong wait %s)", time.Since(start).Round(time.Second), pongWait)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("the client that never reads was dropped after %s", time.Since(start).Round(100*time.Millisecond))
	reader.Close()
	if n := <-frames; float64(n) < 0.8*time.Since(start).Seconds() {
		t.Errorf("the reader got %d frames in %s: want one a second", n, time.Since(start).Round(time.Second))
	}
}
