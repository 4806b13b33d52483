package caddymodule

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/gorilla/websocket"

	"github.com/edgetier/edgetier/dashboard"
	"github.com/edgetier/edgetier/edgeagent"
	"github.com/edgetier/edgetier/internal/board"
)

func init() {
	caddy.RegisterModule(CDNDashboard{})
	httpcaddyfile.RegisterHandlerDirective("cdn_dashboard", parseCDNDashboard)
	// After the authentication directives, so basic_auth or forward_auth
	// protect the dashboard with no order line, and before handle, route
	// and reverse_proxy, so the load balancer's accounting sees every
	// request of the site.
	httpcaddyfile.RegisterDirectiveOrder("cdn_dashboard", httpcaddyfile.After, "forward_auth")
}

// CDNDashboard serves the live dashboard of a pool: the page, a WebSocket
// stream of frames, and the same frame as JSON. It also measures the load
// balancer itself: every other request of the site passes through its
// request meter.
type CDNDashboard struct {
	// Pool is the tiered policy's pool to show (default "default").
	Pool string `json:"pool,omitempty"`
	// PagePath serves the page (default /dashboard).
	PagePath string `json:"page_path,omitempty"`
	// WSPath serves the WebSocket stream (default /ws).
	WSPath string `json:"ws_path,omitempty"`
	// JSONPath serves the latest frame as JSON (default /metrics).
	JSONPath string `json:"json_path,omitempty"`
	// Interval between frames (default 1s).
	Interval caddy.Duration `json:"interval,omitempty"`
	// PongWait drops a client that answers no ping for this long (default 30s).
	PongWait caddy.Duration `json:"pong_wait,omitempty"`
	// WriteTimeout bounds every write to a client (default 5s).
	WriteTimeout caddy.Duration `json:"write_timeout,omitempty"`
	// MaxClients is the most WebSocket clients at once (default 1000).
	MaxClients int `json:"max_clients,omitempty"`
	// Queue is how many frames may wait for a slow client before it is
	// dropped (default 4).
	Queue int `json:"queue,omitempty"`
	// AllowedOrigins may open the WebSocket besides the page's own origin
	// (e.g. https://ops.example.com); scheme, host and port must match
	// exactly. Requests without an Origin header (non-browser clients) are
	// allowed; "null" never is. A page served under a name that no site
	// address of the server gives (the site answers any name) needs its
	// origin here: see checkOrigin.
	AllowedOrigins []string `json:"allowed_origins,omitempty"`

	allowed  []origin // AllowedOrigins, parsed
	board    *board.Board
	hub      *hub
	meter    *edgeagent.Meter
	stats    *board.FrameBuilder
	upgrader websocket.Upgrader
	files    http.Handler
	cancel   context.CancelFunc
}

// CaddyModule returns the Caddy module information.
func (CDNDashboard) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.cdn_dashboard",
		New: func() caddy.Module { return new(CDNDashboard) },
	}
}

// Provision sets defaults, finds the board and starts the hub.
func (d *CDNDashboard) Provision(ctx caddy.Context) error {
	if d.Pool == "" {
		d.Pool = "default"
	}
	if d.PagePath == "" {
		d.PagePath = "/dashboard"
	}
	if d.WSPath == "" {
		d.WSPath = "/ws"
	}
	if d.JSONPath == "" {
		d.JSONPath = "/metrics"
	}
	if d.Interval == 0 {
		d.Interval = caddy.Duration(time.Second)
	}
	if d.PongWait == 0 {
		d.PongWait = caddy.Duration(30 * time.Second)
	}
	if d.WriteTimeout == 0 {
		d.WriteTimeout = caddy.Duration(5 * time.Second)
	}
	if d.MaxClients == 0 {
		d.MaxClients = 1000
	}
	if d.Queue == 0 {
		d.Queue = 4
	}
	if err := d.Validate(); err != nil {
		return err
	}
	d.allowed = d.allowed[:0]
	for _, o := range d.AllowedOrigins {
		parsed, _ := allowedOrigin(o)
		d.allowed = append(d.allowed, parsed)
	}
	logger := ctx.Logger()
	b, err := acquireBoard(d.Pool, ctx.Logger())
	if err != nil {
		return fmt.Errorf("cdn_dashboard: %w", err)
	}
	d.board = b
	runCtx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	host, err := edgeagent.NewResourceSampler(runCtx, edgeagent.ScopeHost, 0)
	if err != nil {
		return fmt.Errorf("cdn_dashboard: %w", err)
	}
	d.meter = new(edgeagent.Meter)
	d.stats = board.NewFrameBuilder(d.board, d.meter, host, time.Duration(d.Interval))
	d.upgrader = websocket.Upgrader{
		HandshakeTimeout:  10 * time.Second,
		ReadBufferSize:    512,
		WriteBufferSize:   16 << 10,
		CheckOrigin:       d.checkOrigin,
		EnableCompression: false,
	}
	d.files = http.StripPrefix(d.PagePath, http.FileServer(http.FS(dashboard.FS())))
	d.hub = newHub(time.Duration(d.Interval), time.Duration(d.WriteTimeout), time.Duration(d.PongWait), d.MaxClients, d.Queue, d.stats.Frame, logger)
	return nil
}

// Validate checks the configuration.
func (d *CDNDashboard) Validate() error {
	for name, p := range map[string]string{"page_path": d.PagePath, "ws_path": d.WSPath, "json_path": d.JSONPath} {
		if !strings.HasPrefix(p, "/") {
			return fmt.Errorf("cdn_dashboard: %s: %q must start with /", name, p)
		}
	}
	switch {
	case d.Interval < caddy.Duration(100*time.Millisecond):
		return fmt.Errorf("cdn_dashboard: interval: %s is below the minimum of 100ms", time.Duration(d.Interval))
	case d.PongWait < caddy.Duration(100*time.Millisecond):
		return fmt.Errorf("cdn_dashboard: pong_wait: %s is below the minimum of 100ms", time.Duration(d.PongWait))
	case d.MaxClients < 1:
		return fmt.Errorf("cdn_dashboard: max_clients: %d is below 1", d.MaxClients)
	case d.Queue < 1:
		return fmt.Errorf("cdn_dashboard: queue: %d is below 1", d.Queue)
	}
	for _, o := range d.AllowedOrigins {
		if _, ok := allowedOrigin(o); !ok {
			return fmt.Errorf("cdn_dashboard: allowed_origins: %q is not an origin like https://ops.example.com", o)
		}
	}
	return nil
}

// Cleanup stops the hub (closing its connections) and lets go of the board.
func (d *CDNDashboard) Cleanup() error {
	if d.hub != nil {
		d.hub.stop()
	}
	if d.cancel != nil {
		d.cancel()
	}
	if d.board != nil {
		err := releaseBoard(d.Pool)
		return err
	}
	return nil
}

// checkOrigin admits a WebSocket handshake from the page's own origin or
// an allowed one, comparing scheme, host and port exactly. A missing
// Origin (a non-browser client) is admitted; "null", an origin with user
// information or a path, and anything but http and https never are.
//
// The page's own origin is the scheme this connection uses with the Host
// it was asked for, but only under a host the site can be reached by: an
// IP address, localhost, or a name one of the server's site addresses
// gives. Any other name is refused, even when Origin and Host agree: a
// site address with no host answers every name, and an attacker's name,
// rebound to this address (DNS rebinding), would otherwise be same-origin.
// Such names go in allowed_origins.
func (d *CDNDashboard) checkOrigin(r *http.Request) bool {
	values := r.Header.Values("Origin")
	switch len(values) {
	case 0:
		return true
	case 1:
	default:
		return false
	}
	o, ok := parseOrigin(values[0])
	if !ok {
		return false
	}
	if slices.Contains(d.allowed, o) {
		return true
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	own, ok := parseOrigin(scheme + "://" + r.Host)
	return ok && o == own && siteHost(r, own.host)
}

// origin is a web origin, normalised: lower-case scheme and host, and the
// port always given.
type origin struct{ scheme, host, port string }

// parseOrigin reads an origin as browsers serialise it in the Origin
// header: scheme://host[:port] and nothing else.
func parseOrigin(s string) (origin, bool) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.User != nil || u.Opaque != "" ||
		u.Path != "" || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(s, "#") ||
		u.Hostname() == "" || strings.HasSuffix(u.Host, ":") {
		return origin{}, false
	}
	port := u.Port()
	switch {
	case port == "" && u.Scheme == "https":
		port = "443"
	case port == "":
		port = "80"
	default:
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return origin{}, false
		}
		port = strconv.Itoa(n)
	}
	return origin{scheme: u.Scheme, host: strings.ToLower(u.Hostname()), port: port}, true
}

// allowedOrigin parses an entry of allowed_origins (a trailing slash is
// allowed there).
func allowedOrigin(s string) (origin, bool) { return parseOrigin(strings.TrimSuffix(s, "/")) }

// siteHost reports whether host (of r's Host) is one the site can be
// reached by without DNS rebinding: an IP address, localhost, or a name
// matched by a host matcher of the server's routes (its site addresses).
func siteHost(r *http.Request, host string) bool {
	if host == "localhost" || net.ParseIP(host) != nil {
		return true
	}
	srv, _ := r.Context().Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server)
	if srv == nil {
		return false
	}
	for _, route := range srv.Routes {
		for _, set := range route.MatcherSets {
			for _, m := range set {
				if hosts, ok := m.(caddyhttp.MatchHost); ok {
					if match, err := hosts.MatchWithError(r); err == nil && match {
						return true
					}
				}
			}
		}
	}
	return false
}

// ServeHTTP serves the dashboard's endpoints and meters everything else.
func (d *CDNDashboard) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	path := r.URL.Path
	switch {
	case path == d.WSPath:
		return d.serveWS(w, r)
	case path == d.JSONPath:
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_, err := w.Write(d.hub.latestFrame())
		return err
	case path == d.PagePath || strings.HasPrefix(path, d.PagePath+"/"):
		if path == d.PagePath {
			// Relative asset URLs need the trailing slash.
			http.Redirect(w, r, d.PagePath+"/", http.StatusFound)
			return nil
		}
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		d.files.ServeHTTP(w, r)
		return nil
	}
	return d.meter.Serve(w, r, next.ServeHTTP)
}

func (d *CDNDashboard) serveWS(w http.ResponseWriter, r *http.Request) error {
	if !websocket.IsWebSocketUpgrade(r) {
		return caddyhttp.Error(http.StatusBadRequest, fmt.Errorf("%s takes WebSocket connections only", d.WSPath))
	}
	if !d.checkOrigin(r) {
		return caddyhttp.Error(http.StatusForbidden, fmt.Errorf("origin %q may not open the dashboard stream", r.Header.Get("Origin")))
	}
	if d.hub.full() {
		w.Header().Set("Retry-After", "5")
		return caddyhttp.Error(http.StatusServiceUnavailable, fmt.Errorf("dashboard has its maximum of %d clients", d.MaxClients))
	}
	conn, err := d.upgrader.Upgrade(hijackWriter{w}, r, nil)
	if err != nil {
		return nil // the upgrader has answered the client
	}
	d.hub.join(conn)
	return nil
}

// parseCDNDashboard sets up the handler from Caddyfile tokens. Syntax:
//
//	cdn_dashboard {
//	    pool            <name>
//	    page_path       <path>
//	    ws_path         <path>
//	    json_path       <path>
//	    interval        <duration>
//	    pong_wait       <duration>
//	    write_timeout   <duration>
//	    max_clients     <n>
//	    queue           <frames>
//	    allowed_origins <origin...>
//	}
func parseCDNDashboard(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	d := new(CDNDashboard)
	err := d.UnmarshalCaddyfile(h.Dispenser)
	return d, err
}

// UnmarshalCaddyfile implements caddyfile.Unmarshaler.
func (d *CDNDashboard) UnmarshalCaddyfile(disp *caddyfile.Dispenser) error {
	const dir = "cdn_dashboard"
	disp.Next()
	if disp.NextArg() {
		return disp.ArgErr()
	}
	seen := map[string]bool{}
	for disp.NextBlock(0) {
		opt := disp.Val()
		if seen[opt] {
			return disp.Errf("%s: option '%s' given twice", dir, opt)
		}
		seen[opt] = true
		if opt == "allowed_origins" {
			d.AllowedOrigins = disp.RemainingArgs()
			if len(d.AllowedOrigins) == 0 {
				return disp.Errf("%s: allowed_origins: missing value", dir)
			}
			for _, o := range d.AllowedOrigins {
				if _, ok := allowedOrigin(o); !ok {
					return disp.Errf("%s: allowed_origins: %q is not an origin like https://ops.example.com", dir, o)
				}
			}
			continue
		}
		val, err := singleArg(disp, dir)
		if err != nil {
			return err
		}
		switch opt {
		case "pool":
			d.Pool = val
		case "page_path", "ws_path", "json_path":
			if !strings.HasPrefix(val, "/") || strings.HasSuffix(val, "/") {
				return disp.Errf("%s: %s: %q must start with / and not end with /", dir, opt, val)
			}
			switch opt {
			case "page_path":
				d.PagePath = val
			case "ws_path":
				d.WSPath = val
			default:
				d.JSONPath = val
			}
		case "interval", "pong_wait", "write_timeout":
			dur, err := caddy.ParseDuration(val)
			if err != nil || dur < 100*time.Millisecond {
				return disp.Errf("%s: %s: %q is not a duration of at least 100ms", dir, opt, val)
			}
			switch opt {
			case "interval":
				d.Interval = caddy.Duration(dur)
			case "pong_wait":
				d.PongWait = caddy.Duration(dur)
			default:
				d.WriteTimeout = caddy.Duration(dur)
			}
		case "max_clients", "queue":
			n, err := strconv.Atoi(val)
			if err != nil || n < 1 || n > 1_000_000 {
				return disp.Errf("%s: %s: %q is not a number between 1 and 1000000", dir, opt, val)
			}
			if opt == "max_clients" {
				d.MaxClients = n
			} else {
				d.Queue = n
			}
		default:
			return disp.Errf("%s: unrecognized option '%s'", dir, opt)
		}
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*CDNDashboard)(nil)
	_ caddy.Validator             = (*CDNDashboard)(nil)
	_ caddy.CleanerUpper          = (*CDNDashboard)(nil)
	_ caddyhttp.MiddlewareHandler = (*CDNDashboard)(nil)
	_ caddyfile.Unmarshaler       = (*CDNDashboard)(nil)
)
