package caddymodule

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/exp/zapslog"

	"github.com/edgetier/edgetier/edgeagent"
)

func init() {
	caddy.RegisterModule(EdgeAgent{})
	httpcaddyfile.RegisterHandlerDirective("edge_agent", parseEdgeAgent)
	// Early, so the agent sees every request of the site, including those
	// inside handle and route blocks, and users need no order line.
	httpcaddyfile.RegisterDirectiveOrder("edge_agent", httpcaddyfile.After, "tracing")
}

// DefaultEdgeHeader is the response header naming the edge that served.
const DefaultEdgeHeader = "X-Edge"

// EdgeAgent counts every request of its site exactly (rate, streams in
// flight, time to first byte, bytes sent), samples the edge's CPU and
// memory, and answers the load balancer's report requests.
//
// Agents with the same configuration are shared across config reloads, so
// a reload keeps their counters, sequence numbers and state.
type EdgeAgent struct {
	// Name of the edge in reports and in the edge header. Default: the host name.
	Name string `json:"name,omitempty"`
	// Header names the response header that carries the edge's name.
	// Default "X-Edge"; "-" turns it off.
	Header string `json:"header,omitempty"`
	// ReportPath is where the report is served. Default /_edgetier/load.
	ReportPath string `json:"report_path,omitempty"`
	// StatePath is where the state is read and changed. Default /_edgetier/state.
	StatePath string `json:"state_path,omitempty"`
	// Token, when set, is the bearer token that report and state requests
	// must carry. State changes need it. Placeholders like {env.X} work.
	Token string `json:"token,omitempty"`
	// Scope of CPU and memory figures: auto (default), host, cgroup, process.
	Scope string `json:"scope,omitempty"`
	// PID whose cgroup or process is measured; 0 means Caddy itself.
	PID int `json:"pid,omitempty"`
	// Interval between samples. Default 1s.
	Interval caddy.Duration `json:"interval,omitempty"`
	// State the edge starts in: ready (default), drain or maint.
	State string `json:"state,omitempty"`
	// Capacity advertised to the balancer, which normalises against it.
	Capacity *CapacityConfig `json:"capacity,omitempty"`
	// LoadHeader: stamp the edge's load on every response it serves, in
	// the Endpoint-Load-Metrics header (ORCA's TEXT form), so a balancer
	// with the edgetier transport sees it between polls. Default true.
	LoadHeader *bool `json:"load_header,omitempty"`

	shared *sharedAgent
	key    string
}

// CapacityConfig is what an edge can take; zero fields are unknown.
type CapacityConfig struct {
	MaxStreams      float64        `json:"max_streams,omitempty"`
	MaxRequests     float64        `json:"max_requests_per_second,omitempty"`
	MaxResponseTime caddy.Duration `json:"max_response_time,omitempty"`
	// LinkBandwidth in bytes per second.
	LinkBandwidth float64 `json:"link_bytes_per_second,omitempty"`
}

func (c *CapacityConfig) report() *edgeagent.Capacity {
	if c == nil {
		return nil
	}
	return &edgeagent.Capacity{
		MaxStreams:             c.MaxStreams,
		MaxRequestsPerSecond:   c.MaxRequests,
		MaxResponseTimeSeconds: time.Duration(c.MaxResponseTime).Seconds(),
		LinkBytesPerSecond:     c.LinkBandwidth,
	}
}

// sharedAgent is one running agent, kept in agents across reloads.
type sharedAgent struct {
	agent  *edgeagent.Agent
	meter  *edgeagent.Meter
	guard  *edgeagent.Guard
	cancel context.CancelFunc
}

func (s *sharedAgent) Destruct() error {
	s.cancel()
	return nil
}

var agents = caddy.NewUsagePool()

// CaddyModule returns the Caddy module information.
func (EdgeAgent) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.edge_agent",
		New: func() caddy.Module { return new(EdgeAgent) },
	}
}

// Provision sets defaults and starts (or takes over) the agent.
func (h *EdgeAgent) Provision(ctx caddy.Context) error {
	repl := caddy.NewReplacer()
	h.Token = repl.ReplaceKnown(h.Token, "")
	if h.Name == "" {
		host, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("edge_agent: no name given and none from the host: %w", err)
		}
		h.Name = host
	}
	h.setDefaults()
	if err := h.Validate(); err != nil {
		return err
	}
	key, err := json.Marshal(h)
	if err != nil {
		return fmt.Errorf("edge_agent: %w", err)
	}
	h.key = string(key)
	logger := ctx.Logger()
	val, _, err := agents.LoadOrNew(h.key, func() (caddy.Destructor, error) {
		return h.start(logger)
	})
	if err != nil {
		return fmt.Errorf("edge_agent: starting agent: %w", err)
	}
	h.shared = val.(*sharedAgent)

	err = ctx.GetMetricsRegistry().Register(edgeagent.NewCollector(h.shared.agent, h.shared.guard))
	if err != nil && !errors.As(err, &prometheus.AlreadyRegisteredError{}) {
		return fmt.Errorf("edge_agent: registering metrics: %w", err)
	}
	return nil
}

// setDefaults fills in every unset option but the name.
func (h *EdgeAgent) setDefaults() {
	if h.Header == "" {
		h.Header = DefaultEdgeHeader
	}
	if h.ReportPath == "" {
		h.ReportPath = edgeagent.DefaultReportPath
	}
	if h.StatePath == "" {
		h.StatePath = edgeagent.DefaultStatePath
	}
	if h.Scope == "" {
		h.Scope = edgeagent.ScopeAuto
	}
	if h.Interval == 0 {
		h.Interval = caddy.Duration(time.Second)
	}
	if h.State == "" {
		h.State = string(edgeagent.StateReady)
	}
	if h.LoadHeader == nil {
		on := true
		h.LoadHeader = &on
	}
}

func (h *EdgeAgent) start(logger *zap.Logger) (*sharedAgent, error) {
	// The sampler outlives this config when a reload keeps the agent, so it
	// runs on its own context, ended when the last config lets go.
	runCtx, cancel := context.WithCancel(context.Background())
	resources, err := edgeagent.NewResourceSampler(runCtx, h.Scope, h.PID)
	if err != nil {
		cancel()
		return nil, err
	}
	meter := new(edgeagent.Meter)
	agent, err := edgeagent.NewAgent(edgeagent.Config{
		Name:     h.Name,
		Interval: time.Duration(h.Interval),
		Capacity: h.Capacity.report(),
	}, resources, meter, slogFrom(logger))
	if err != nil {
		cancel()
		return nil, err
	}
	st, _ := edgeagent.ParseState(h.State)
	agent.SetState(st)
	go agent.Run(runCtx)
	return &sharedAgent{agent: agent, meter: meter, guard: edgeagent.NewGuard(h.Token), cancel: cancel}, nil
}

// Validate checks the configuration.
func (h *EdgeAgent) Validate() error {
	if _, err := edgeagent.ParseScope(h.Scope); err != nil {
		return fmt.Errorf("edge_agent: scope: %w", err)
	}
	if _, err := edgeagent.ParseState(h.State); err != nil {
		return fmt.Errorf("edge_agent: state: %w", err)
	}
	if h.Interval < caddy.Duration(100*time.Millisecond) {
		return fmt.Errorf("edge_agent: interval: %s is below the minimum of 100ms", time.Duration(h.Interval))
	}
	if h.PID < 0 {
		return fmt.Errorf("edge_agent: pid: %d is negative", h.PID)
	}
	if h.ReportPath == h.StatePath {
		return fmt.Errorf("edge_agent: report_path and state_path are both %q", h.ReportPath)
	}
	return nil
}

// Cleanup lets go of the agent; the last config to let go stops it.
func (h *EdgeAgent) Cleanup() error {
	if h.shared == nil {
		return nil
	}
	_, err := agents.Delete(h.key)
	return err
}

// ServeHTTP answers report and state requests and meters every other one.
// It also makes a zero-length suffix range (bytes=-0) unsatisfiable, which
// file_server after it would answer with an empty, inverted 206.
func (h *EdgeAgent) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	switch r.URL.Path {
	case h.ReportPath:
		edgeagent.ServeReport(h.shared.agent, h.shared.guard, w, r)
		return nil
	case h.StatePath:
		edgeagent.ServeState(h.shared.agent, h.shared.guard, w, r)
		return nil
	}
	if h.Header != "-" {
		w.Header().Set(h.Header, h.Name)
	}
	if *h.LoadHeader {
		// Before next, like the edge header: file_server keeps the
		// headers it is handed on every answer (200, 206, 304, 416, 404).
		// This response is about to be counted in flight: it is one of
		// the streams it reports.
		if v, ok := h.shared.agent.LoadHeaderValue(h.shared.meter.InFlight() + 1); ok {
			w.Header()[edgeagent.LoadHeader] = []string{v}
		}
	}
	dropEmptySuffixRanges(r)
	return h.shared.meter.Serve(w, r, next.ServeHTTP)
}

func slogFrom(l *zap.Logger) *slog.Logger {
	return slog.New(zapslog.NewHandler(l.Core()))
}

// parseEdgeAgent sets up the handler from Caddyfile tokens. Syntax:
//
//	edge_agent [<name>] {
//	    name        <name>
//	    header      <field>|off
//	    report_path <path>
//	    state_path  <path>
//	    token       <token>
//	    scope       auto|host|cgroup|process
//	    pid         <pid>
//	    interval    <duration>
//	    state       ready|drain|maint
//	    load_header on|off
//	    capacity {
//	        streams        <n>
//	        requests       <per second>
//	        response_time  <duration>
//	        link_bandwidth <bytes per second>
//	    }
//	}
func parseEdgeAgent(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	a := new(EdgeAgent)
	err := a.UnmarshalCaddyfile(h.Dispenser)
	return a, err
}

// UnmarshalCaddyfile implements caddyfile.Unmarshaler.
func (h *EdgeAgent) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		h.Name = d.Val()
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := map[string]bool{}
	var samePathsErr func() error
	for d.NextBlock(0) {
		opt := d.Val()
		if seen[opt] {
			return d.Errf("edge_agent: option '%s' given twice", opt)
		}
		if opt == "report_path" || opt == "state_path" {
			// Checked against the other path once the block is read.
			samePathsErr = errAt(d, "edge_agent: report_path and state_path must differ")
		}
		seen[opt] = true
		switch opt {
		case "name", "header", "report_path", "state_path", "token", "scope", "pid", "interval", "state":
			val, err := singleArg(d, "edge_agent")
			if err != nil {
				return err
			}
			if err := h.setOption(d, opt, val); err != nil {
				return err
			}
		case "load_header":
			on, err := onOff(d, "edge_agent")
			if err != nil {
				return err
			}
			h.LoadHeader = &on
		case "capacity":
			if d.NextArg() {
				return d.ArgErr()
			}
			c, err := parseCapacityBlock(d, "edge_agent")
			if err != nil {
				return err
			}
			h.Capacity = c
		default:
			return d.Errf("edge_agent: unrecognized option '%s'", opt)
		}
	}
	report, state := cmp.Or(h.ReportPath, edgeagent.DefaultReportPath), cmp.Or(h.StatePath, edgeagent.DefaultStatePath)
	if samePathsErr != nil && report == state {
		return samePathsErr()
	}
	return nil
}

func (h *EdgeAgent) setOption(d *caddyfile.Dispenser, opt, val string) error {
	switch opt {
	case "name":
		h.Name = val
	case "header":
		if val == "off" || val == "-" {
			val = "-"
		} else if !validHeaderName(val) {
			return d.Errf("edge_agent: header: %q is not a valid header field name", val)
		}
		h.Header = val
	case "report_path", "state_path":
		if len(val) == 0 || val[0] != '/' {
			return d.Errf("edge_agent: %s: %q must start with /", opt, val)
		}
		if opt == "report_path" {
			h.ReportPath = val
		} else {
			h.StatePath = val
		}
	case "token":
		h.Token = val
	case "scope":
		if _, err := edgeagent.ParseScope(val); err != nil {
			return d.Errf("edge_agent: scope: %v", err)
		}
		h.Scope = val
	case "pid":
		pid, err := strconv.Atoi(val)
		if err != nil || pid < 0 {
			return d.Errf("edge_agent: pid: %q is not a process id", val)
		}
		h.PID = pid
	case "interval":
		dur, err := caddy.ParseDuration(val)
		if err != nil {
			return d.Errf("edge_agent: interval: %v", err)
		}
		if dur < 100*time.Millisecond {
			return d.Errf("edge_agent: interval: %s is below the minimum of 100ms", dur)
		}
		h.Interval = caddy.Duration(dur)
	case "state":
		if _, err := edgeagent.ParseState(val); err != nil {
			return d.Errf("edge_agent: state: %v", err)
		}
		h.State = val
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*EdgeAgent)(nil)
	_ caddy.Validator             = (*EdgeAgent)(nil)
	_ caddy.CleanerUpper          = (*EdgeAgent)(nil)
	_ caddyhttp.MiddlewareHandler = (*EdgeAgent)(nil)
	_ caddyfile.Unmarshaler       = (*EdgeAgent)(nil)
)
