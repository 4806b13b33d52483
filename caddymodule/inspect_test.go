package caddymodule

import (
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// TestInspectWarnsOfOptionsThatPointNowhere: an option whose target is in
// no reverse_proxy of the running config draws a warning naming it, and
// so does a header timeout that leaves no time to retry.
func TestInspectWarnsOfOptionsThatPointNowhere(t *testing.T) {
	p, dials, _ := newTestPolicy(t, 2)
	p.Upstreams = map[string]UpstreamConfig{dials[0]: {}, "127.0.0.1:9999": {}}
	silent := &ResumeTransport{Pool: "other", HTTP: &reverseproxy.HTTPTransport{ResponseHeaderTimeout: caddy.Duration(10 * time.Second)}}
	h := &reverseproxy.Handler{
		Upstreams:     plainPool(dials),
		LoadBalancing: &reverseproxy.LoadBalancing{SelectionPolicy: p, TryDuration: caddy.Duration(5 * time.Second)},
		Transport:     silent,
	}
	tests := []struct {
		name string
		look func(*zap.Logger)
		want []string // in one warning each
		not  string
	}{
		{"an upstream option for an address no proxy has", func(l *zap.Logger) { p.inspect([]*reverseproxy.Handler{h}, l) },
			[]string{"upstream 127.0.0.1:9999"}, "upstream " + dials[0]},
		{"a transport pool no tiered policy chooses from, and a header timeout past the try window", func(l *zap.Logger) { silent.inspect([]*reverseproxy.Handler{h}, l) },
			[]string{`pool "other"`, "response_header_timeout 10s", "lb_try_duration 5s"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			core, logs := observer.New(zapcore.WarnLevel)
			tt.look(zap.New(core))
			var all []string
			for _, e := range logs.All() {
				all = append(all, e.Message)
			}
			text := strings.Join(all, "\n")
			for _, w := range tt.want {
				if !strings.Contains(text, w) {
					t.Errorf("no warning names %q; warnings:\n%s", w, text)
				}
			}
			if tt.not != "" && strings.Contains(text, tt.not) {
				t.Errorf("a warning names %q, which a proxy holds:\n%s", tt.not, text)
			}
		})
	}
	t.Run("a proxy whose options all point somewhere", func(t *testing.T) {
		ok := &ResumeTransport{Pool: p.Pool, HTTP: &reverseproxy.HTTPTransport{ResponseHeaderTimeout: caddy.Duration(2 * time.Second)}}
		h := &reverseproxy.Handler{Upstreams: plainPool(dials),
			LoadBalancing: &reverseproxy.LoadBalancing{SelectionPolicy: p, TryDuration: caddy.Duration(5 * time.Second)}, Transport: ok}
		p.Upstreams = map[string]UpstreamConfig{dials[1]: {}}
		core, logs := observer.New(zapcore.WarnLevel)
		p.inspect([]*reverseproxy.Handler{h}, zap.New(core))
		ok.inspect([]*reverseproxy.Handler{h}, zap.New(core))
		if logs.Len() != 0 {
			t.Errorf("warnings for a sound config: %v", logs.All())
		}
	})
}
