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
