package caddymodule

import (
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"go.uber.org/zap"
)

// A policy or transport cannot see the reverse_proxy handler it belongs to
// while it is provisioned: Caddy provisions them first. Once the config
// runs, the handlers are there to look at: the policy learns its static
// upstreams (so the board polls them before any viewer arrives), and both
// say what in the config points nowhere.

// inspector is a module that looks at the running config's proxies.
type inspector interface {
	inspect(proxies []*reverseproxy.Handler, logger *zap.Logger)
}

// inspectWhenRunning has m inspect the proxies of the config ctx belongs
// to, in the background, once that config is the running one; it gives up
// when the config is unloaded first (or never starts).
func inspectWhenRunning(ctx caddy.Context, m inspector) {
	logger := ctx.Logger()
	go func() {
		defer recoverAndLog(logger, "config inspection")
		ticker := time.NewTicker(20 * time.Millisecond)
		defer ticker.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-ticker.C:
			}
			// Handlers get contexts derived from the config's, which
			// share its Done channel.
			if active := caddy.ActiveContext(); active.Context == nil || active.Done() != ctx.Done() {
				continue
			}
			app, err := ctx.App("http")
			if err != nil {
				return
			}
			if h, ok := app.(*caddyhttp.App); ok {
				m.inspect(proxiesOf(h), logger)
			}
			return
		}
	}()
}

// proxiesOf returns every reverse_proxy handler of an http app, in
// subroutes, error routes and named routes too.
func proxiesOf(app *caddyhttp.App) []*reverseproxy.Handler {
	var out []*reverseproxy.Handler
	var walk func(caddyhttp.RouteList)
	walkErrors := func(e *caddyhttp.HTTPErrorConfig) {
		if e != nil {
			walk(e.Routes)
		}
	}
	walk = func(routes caddyhttp.RouteList) {
		for _, r := range routes {
			for _, h := range r.Handlers {
				switch h := h.(type) {
				case *reverseproxy.Handler:
					out = append(out, h)
				case *caddyhttp.Subroute:
					walk(h.Routes)
					walkErrors(h.Errors)
				}
			}
		}
	}
	for _, srv := range app.Servers {
		walk(srv.Routes)
		walkErrors(srv.Errors)
		for _, r := range srv.NamedRoutes {
			walk(caddyhttp.RouteList{*r})
		}
	}
	return out
}

// inspect tracks the static upstreams of the proxies choosing with p, and
// warns of per-upstream settings for addresses none of them holds.
func (p *TieredSelection) inspect(proxies []*reverseproxy.Handler, logger *zap.Logger) {
	held := map[string]bool{}
	dynamic := false
	for _, h := range proxies {
		if h.LoadBalancing == nil || h.LoadBalancing.SelectionPolicy != reverseproxy.Selector(p) {
			continue
		}
		dynamic = dynamic || h.DynamicUpstreams != nil
		if _, ours := h.Transport.(*ResumeTransport); !ours {
			warnTimeouts(h, logger)
		}
		pool := reverseproxy.UpstreamPool(h.Upstreams)
		if len(pool) == 0 || pool[0].Host == nil {
			continue
		}
		for _, u := range pool {
			held[u.Dial] = true
		}
		// The pool Select will be handed: cached now, so its plan is kept
		// from the start.
		p.missBase.Store(pool[0])
		p.cache.Store(&poolCache{pool: pool, bp: p.track(pool)})
	}
	if dynamic {
		return
	}
	for dial := range p.Upstreams {
		if !held[dial] {
			logger.Warn("tiered: upstream "+dial+": no reverse_proxy using this policy has this upstream; its settings are unused",
				zap.String("upstream", dial), zap.String("pool", p.Pool))
		}
	}
}

// inspect warns when no tiered policy chooses from the transport's pool
// (resumes could only pick upstreams the board has never seen), and of
// timeouts that leave no time to retry.
func (t *ResumeTransport) inspect(proxies []*reverseproxy.Handler, logger *zap.Logger) {
	pooled := false
	for _, h := range proxies {
		if h.LoadBalancing == nil {
			continue
		}
		if sel, ok := h.LoadBalancing.SelectionPolicy.(*TieredSelection); ok && sel.Pool == t.Pool {
			pooled = true
		}
		if h.Transport == http.RoundTripper(t) {
			warnTimeouts(h, logger)
		}
	}
	if !pooled {
		logger.Warn(`transport edgetier: pool "`+t.Pool+`": no lb_policy tiered chooses from this pool, so a failed stream cannot be resumed`,
			zap.String("pool", t.Pool))
	}
}

// warnTimeouts warns of a response header timeout that uses up the try
// window: a silent upstream then costs the viewer the whole timeout and an
// error, with no retry.
func warnTimeouts(h *reverseproxy.Handler, logger *zap.Logger) {
	if h.LoadBalancing == nil || h.LoadBalancing.TryDuration <= 0 {
		return
	}
	var header caddy.Duration
	switch tr := h.Transport.(type) {
	case *reverseproxy.HTTPTransport:
		header = tr.ResponseHeaderTimeout
	case *ResumeTransport:
		if tr.HTTP != nil {
			header = tr.HTTP.ResponseHeaderTimeout
		}
	}
	if header >= h.LoadBalancing.TryDuration {
		logger.Warn("reverse_proxy: response_header_timeout "+time.Duration(header).String()+" is not shorter than lb_try_duration "+
			time.Duration(h.LoadBalancing.TryDuration).String()+": a silent upstream uses up the try window and the request is never retried",
			zap.Duration("response_header_timeout", time.Duration(header)), zap.Duration("lb_try_duration", time.Duration(h.LoadBalancing.TryDuration)))
	}
}
