package caddymodule

import (
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
)

func init() {
	caddy.RegisterModule(targetSelection{})
	caddy.RegisterModule(holdingTransport{})
}

// holdInFlight puts counts[i] requests in flight to upstream dials[i]
// through a real reverse_proxy handler of a running Caddy config, whose
// transport holds them until release is called: Caddy changes an
// upstream's in-flight count only from inside its proxy loop. It returns
// the handler's upstreams. Upstreams with the same address share their
// count across configs: give each call its own addresses.
func holdInFlight(t testing.TB, dials []string, counts []int) (pool reverseproxy.UpstreamPool, release func()) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	listen := l.Addr().String()
	l.Close()
	var ups []map[string]string
	for _, d := range dials {
		ups = append(ups, map[string]string{"dial": d})
	}
	proxy := map[string]any{
		"handler": "reverse_proxy", "upstreams": ups,
		"load_balancing": map[string]any{"selection_policy": map[string]string{"policy": "edgetier_test_target"}},
		"transport":      map[string]string{"protocol": "edgetier_test_hold"},
	}
	cfg, _ := json.Marshal(map[string]any{
		"admin":   map[string]any{"disabled": true, "config": map[string]any{"persist": false}},
		"logging": map[string]any{"logs": map[string]any{"default": map[string]any{"level": "ERROR"}}},
		"apps": map[string]any{"http": map[string]any{"servers": map[string]any{"hold": map[string]any{
			"listen": []string{listen}, "routes": []any{map[string]any{"handle": []any{proxy}}},
		}}}},
	})
	holding.Lock()
	holding.release = make(chan struct{})
	held := holding.release
	holding.Unlock()
	if err := caddy.Load(cfg, true); err != nil {
		t.Fatalf("loading a config with a holding reverse_proxy: %v", err)
	}
	app, err := caddy.ActiveContext().App("http")
	if err != nil {
		t.Fatal(err)
	}
	proxies := proxiesOf(app.(*caddyhttp.App))
	if len(proxies) != 1 {
		t.Fatalf("%d reverse_proxy handlers in the holding config", len(proxies))
	}
	h := proxies[0]
	var wg sync.WaitGroup
	var once sync.Once
	release = func() {
		once.Do(func() {
			close(held)
			wg.Wait()
			_ = caddy.Stop()
		})
	}
	t.Cleanup(release)
	total := 0
	for i, n := range counts {
		for k := 0; k < n; k++ {
			total++
			wg.Add(1)
			go func() {
				defer wg.Done()
				req := httptest.NewRequest(http.MethodGet, "http://test/", nil)
				req.Header.Set("X-Target", strconv.Itoa(i))
				req = caddyhttp.PrepareRequest(req, caddy.NewReplacer(), nil, &caddyhttp.Server{})
				_ = h.ServeHTTP(httptest.NewRecorder(), req, caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil }))
			}()
		}
	}
	deadline := time.Now().Add(time.Minute)
	for {
		n := 0
		for _, u := range h.Upstreams {
			n += u.NumRequests()
		}
		if n == total {
			return h.Upstreams, release
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d requests in flight after a minute", n, total)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// targetSelection chooses the upstream the request names in X-Target.
type targetSelection struct{}

func (targetSelection) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "http.reverse_proxy.selection_policies.edgetier_test_target", New: func() caddy.Module { return new(targetSelection) }}
}

func (targetSelection) Select(pool reverseproxy.UpstreamPool, r *http.Request, _ http.ResponseWriter) *reverseproxy.Upstream {
	i, err := strconv.Atoi(r.Header.Get("X-Target"))
	if err != nil || i < 0 || i >= len(pool) {
		return nil
	}
	return pool[i]
}

// holding is the release of the requests the holding transport holds.
var holding struct {
	sync.Mutex
	release chan struct{}
}

// holdingTransport holds every request until the test releases it.
type holdingTransport struct{}

func (holdingTransport) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "http.reverse_proxy.transport.edgetier_test_hold", New: func() caddy.Module { return new(holdingTransport) }}
}

func (holdingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	holding.Lock()
	release := holding.release
	holding.Unlock()
	select {
	case <-release:
	case <-r.Context().Done():
	}
	return nil, errors.New("released")
}
