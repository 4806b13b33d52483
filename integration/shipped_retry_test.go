package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgetier/edgetier/edgeagent"
	"github.com/edgetier/edgetier/internal/testenv"
)

// silentEdge accepts connections, reads what they send and never answers;
// it counts the requests for anything but its agent's report (the board
// polls it too), so a test knows the LB tried to proxy to it.
func silentEdge(t *testing.T) (address string, tried *atomic.Int64) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tried = new(atomic.Int64)
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go func() {
				br := bufio.NewReader(c)
				if req, err := http.ReadRequest(br); err == nil && req.URL.Path != edgeagent.DefaultReportPath {
					tried.Add(1)
				}
				_, _ = io.Copy(io.Discard, br)
			}()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return l.Addr().String(), tried
}

// TestRetriesOnRefusingAndSilentEdges: the default Caddyfile as it ships,
// with its second edge's address refusing connections and its third
// accepting and never answering. Every GET and HEAD through the LB still
// succeeds, on the good edge, well within the try duration: a silent edge
// costs the response header timeout, which leaves room for a retry, and
// passive health keeps the retry off it. Requests go on, from a few
// viewers at once, until the silent edge has been tried a few times: from
// the start, and again once passive health lets it back (fail_duration).
func TestRetriesOnRefusingAndSilentEdges(t *testing.T) {
	silent, tried := silentEdge(t)
	s := startShipped(t,
		"import edge 9002 edge-2\n", "",
		"import edge 9003 edge-3\n", "",
		"127.0.0.1:9002 127.0.0.1:9003", refusingAddr+" "+silent)
	const (
		viewers    = 4
		wantTried  = 5                             // the first round, and one after passive health lets it back
		maxRequest = 5*time.Second + 3*time.Second // lb_try_duration and a last try's header timeout, with margin
	)
	deadline := time.Now().Add(90 * time.Second)
	var requests, failed atomic.Int64
	var wg sync.WaitGroup
	for v := 0; v < viewers; v++ {
		wg.Add(1)
		go func(v int) {
			defer wg.Done()
			client := &http.Client{Timeout: 30 * time.Second}
			for i := 0; tried.Load() < wantTried && time.Now().Before(deadline) && failed.Load() < 5; i++ {
				method := http.MethodGet
				if (i+v)%2 == 1 {
					method = http.MethodHead
				}
				req, _ := http.NewRequest(method, s.url+"/", nil)
				start := time.Now()
				resp, err := client.Do(req)
				took := time.Since(start)
				requests.Add(1)
				if err != nil {
					failed.Add(1)
					t.Errorf("%s /: %v after %s", method, err, took.Round(time.Millisecond))
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Edge") != "edge-1" || took > maxRequest {
					failed.Add(1)
					t.Errorf("%s /: %d from %q after %s, want 200 from edge-1 within %s", method, resp.StatusCode, resp.Header.Get("X-Edge"), took.Round(time.Millisecond), maxRequest)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}(v)
	}
	wg.Wait()
	t.Logf("%d requests, %d failed; the silent edge was tried %d times", requests.Load(), failed.Load(), tried.Load())
	if tried.Load() < wantTried && failed.Load() == 0 {
		t.Fatalf("the silent edge was tried %d times in %d requests: want %d, or the test proves nothing", tried.Load(), requests.Load(), wantTried)
	}
}

// TestShippedTimeoutsLeaveARetry: in both shipped LB Caddyfiles (the
// default and the Compose one), every reverse_proxy that retries has a
// response header timeout that, with the try interval, ends well inside
// lb_try_duration: a silent edge is given up in time for another try. And
// one failure takes an edge out (passive health, max_fails 1): Caddy does
// not keep a request's retries off the edge that just failed it, so with
// more it can spend every try on the same silent edge.
func TestShippedTimeoutsLeaveARetry(t *testing.T) {
	for _, file := range []string{"../Caddyfile", "../deploy/lb.Caddyfile"} {
		t.Run(file, func(t *testing.T) {
			cmd := exec.Command(testenv.Caddy(t), "adapt", "--config", file, "--adapter", "caddyfile")
			// The Compose LB's basic_auth needs a hash (any will do here).
			cmd.Env = append(os.Environ(), "DASHBOARD_PASSWORD_HASH=$2a$14$Zkx19XLiW6VYouLHR5NmfOFU0z2GTNmpkT/5qqR7hx4IjWJPDhjvG")
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("caddy adapt %s: %v", file, err)
			}
			var proxies []reverseProxyTimes
			collectProxies(t, json.RawMessage(out), &proxies)
			if len(proxies) == 0 {
				t.Fatal("no reverse_proxy found")
			}
			viewers := 0
			for _, p := range proxies {
				if p.Transport.Protocol != "edgetier" {
					continue // not the viewers' (the Compose LB's /ready heartbeat)
				}
				viewers++
				header := time.Duration(p.Transport.ResponseHeaderTimeout)
				if p.Transport.HTTP != nil {
					header = time.Duration(p.Transport.HTTP.ResponseHeaderTimeout)
				}
				try, interval := time.Duration(p.LoadBalancing.TryDuration), time.Duration(p.LoadBalancing.TryInterval)
				t.Logf("response_header_timeout %s, lb_try_interval %s, lb_try_duration %s", header, interval, try)
				if header <= 0 || try <= 0 || 2*(header+interval) > try {
					t.Errorf("response_header_timeout %s and lb_try_interval %s leave no second retry within lb_try_duration %s: a silent edge costs its viewer the whole try window", header, interval, try)
				}
				if p.HealthChecks.Passive == nil || p.HealthChecks.Passive.FailDuration < int64(try) || p.HealthChecks.Passive.MaxFails > 1 {
					t.Errorf("passive health %+v: want max_fails 1 with a fail_duration of at least lb_try_duration %s, so a retry never goes back to the edge that just failed", p.HealthChecks.Passive, try)
				}
			}
			if viewers == 0 {
				t.Fatal("no reverse_proxy with transport edgetier serves the viewers")
			}
		})
	}
}

// reverseProxyTimes is what TestShippedTimeoutsLeaveARetry reads of an
// adapted reverse_proxy handler (durations are nanoseconds in JSON).
type reverseProxyTimes struct {
	Handler       string `json:"handler"`
	LoadBalancing struct {
		TryDuration int64 `json:"try_duration"`
		TryInterval int64 `json:"try_interval"`
	} `json:"load_balancing"`
	HealthChecks struct {
		Passive *struct {
			FailDuration int64 `json:"fail_duration"`
			MaxFails     int   `json:"max_fails"` // 0: Caddy's default, 1
		} `json:"passive"`
	} `json:"health_checks"`
	Transport struct {
		Protocol              string `json:"protocol"`
		ResponseHeaderTimeout int64  `json:"response_header_timeout"`
		HTTP                  *struct {
			ResponseHeaderTimeout int64 `json:"response_header_timeout"`
		} `json:"http"`
	} `json:"transport"`
}

// collectProxies finds every reverse_proxy handler in adapted JSON.
func collectProxies(t *testing.T, raw json.RawMessage, out *[]reverseProxyTimes) {
	t.Helper()
	var obj map[string]json.RawMessage
	if json.Unmarshal(raw, &obj) == nil {
		if string(obj["handler"]) == `"reverse_proxy"` {
			var p reverseProxyTimes
			if err := json.Unmarshal(raw, &p); err != nil {
				t.Fatal(fmt.Errorf("decoding reverse_proxy: %w", err))
			}
			*out = append(*out, p)
		}
		for _, v := range obj {
			collectProxies(t, v, out)
		}
		return
	}
	var arr []json.RawMessage
	if json.Unmarshal(raw, &arr) == nil {
		for _, v := range arr {
			collectProxies(t, v, out)
		}
	}
}
