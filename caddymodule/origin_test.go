package caddymodule

import (
	"context"
	"crypto/tls"
	"net/http/httptest"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// TestCheckOrigin: the WebSocket's origin check compares scheme, host and
// port exactly, with the page's own origin (under a host the site can be
// reached by) and with allowed_origins.
func TestCheckOrigin(t *testing.T) {
	d := &CDNDashboard{AllowedOrigins: []string{"https://ops.example.com", "http://ops.example.com:8080/"}}
	for _, o := range d.AllowedOrigins {
		parsed, ok := allowedOrigin(o)
		if !ok {
			t.Fatalf("parseOrigin(%q) failed", o)
		}
		d.allowed = append(d.allowed, parsed)
	}
	// A server with a named site besides one that answers any name.
	named := &caddyhttp.Server{Routes: caddyhttp.RouteList{
		{MatcherSets: caddyhttp.MatcherSets{{caddyhttp.MatchHost{"cdn.example.com", "*.cdn.example.com"}}}},
		{},
	}}
	tests := []struct {
		name, host, origin string
		tls                bool
		server             *caddyhttp.Server
		ok                 bool
	}{
		{"no origin", "127.0.0.1:8080", "", false, nil, true},
		{"same origin by IP", "127.0.0.1:8080", "http://127.0.0.1:8080", false, nil, true},
		{"same origin by IPv6", "[::1]:8080", "http://[::1]:8080", false, nil, true},
		{"localhost", "localhost:8080", "http://localhost:8080", false, nil, true},
		{"default port both ways", "localhost", "http://localhost:80", false, nil, true},
		{"https default port", "localhost", "https://localhost", true, nil, true},
		{"https origin on http", "localhost:8080", "https://localhost:8080", false, nil, false},
		{"http origin on https", "localhost:8443", "http://localhost:8443", true, nil, false},
		{"other port", "localhost:8080", "http://localhost:8081", false, nil, false},
		{"user info", "localhost:8080", "http://user@localhost:8080", false, nil, false},
		{"user and password", "localhost:8080", "http://a:b@localhost:8080", false, nil, false},
		{"path", "localhost:8080", "http://localhost:8080/", false, nil, false},
		{"query", "localhost:8080", "http://localhost:8080?", false, nil, false},
		{"fragment", "localhost:8080", "http://localhost:8080#", false, nil, false},
		{"empty port", "localhost:8080", "http://localhost:", false, nil, false},
		{"null", "localhost:8080", "null", false, nil, false},
		{"ws scheme", "localhost:8080", "ws://localhost:8080", false, nil, false},
		{"rebinding: any name on a site without one", "evil.example:8080", "http://evil.example:8080", false, nil, false},
		{"rebinding: a name the server does not give", "evil.example", "https://evil.example", true, named, false},
		{"a name a site address gives", "cdn.example.com", "https://cdn.example.com", true, named, true},
		{"in capitals", "CDN.example.com", "https://cdn.EXAMPLE.com", true, named, true},
		{"a wildcard site address", "eu.cdn.example.com", "https://eu.cdn.example.com", true, named, true},
		{"allowed", "localhost:8080", "https://ops.example.com", false, nil, true},
		{"allowed, default port given", "localhost:8080", "https://ops.example.com:443", false, nil, true},
		{"allowed with a port", "localhost:8080", "http://ops.example.com:8080", false, nil, true},
		{"allowed host, other scheme", "localhost:8080", "http://ops.example.com", false, nil, false},
		{"allowed host, other port", "localhost:8080", "https://ops.example.com:8443", false, nil, false},
		{"allowed host with user info", "localhost:8080", "https://x@ops.example.com", false, nil, false},
		{"allowed as a suffix", "localhost:8080", "https://evil-ops.example.com", false, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/ws", nil)
			r.Host = tt.host
			if tt.origin != "" {
				r.Header.Set("Origin", tt.origin)
			}
			if tt.tls {
				r.TLS = &tls.ConnectionState{}
			}
			ctx := context.WithValue(r.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer())
			if tt.server != nil {
				ctx = context.WithValue(ctx, caddyhttp.ServerCtxKey, tt.server)
			}
			if got := d.checkOrigin(r.WithContext(ctx)); got != tt.ok {
				t.Fatalf("Host %q, Origin %q: admitted %v, want %v", tt.host, tt.origin, got, tt.ok)
			}
		})
	}
	r := httptest.NewRequest("GET", "/ws", nil)
	r.Header.Add("Origin", "http://example.com")
	r.Header.Add("Origin", "http://example.com")
	if d.checkOrigin(r) {
		t.Fatal("two Origin headers admitted")
	}
}
