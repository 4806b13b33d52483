// Command edgeagent reports an edge's load to edgetier's load balancer, for
// edges that are not edgetier's Caddy build. It reads the edge's request
// figures from its Prometheus endpoint (Caddy's, by default) and samples
// CPU, memory and network itself.
//
// It serves the report at /_edgetier/load, the state at /_edgetier/state
// and Prometheus text at /metrics. SIGUSR1 drains the edge, SIGUSR2 makes
// it ready again; SIGINT and SIGTERM stop the agent.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/edgetier/edgetier/edgeagent"
)

type options struct {
	listen, name, source, match, scope, tokenFile, state string
	pid                                                  int
	maxScrapeBytes                                       int64
	interval                                             time.Duration
	names                                                edgeagent.MetricNames
	capacity                                             edgeagent.Capacity
	maxResponseTime                                      time.Duration
}

func parseFlags(args []string) (options, error) {
	var o options
	host, _ := os.Hostname()
	fs := flag.NewFlagSet("edgeagent", flag.ContinueOnError)
	fs.StringVar(&o.listen, "listen", ":9100", "address to serve the report and /metrics on")
	fs.StringVar(&o.name, "name", host, "the edge's name in reports")
	fs.StringVar(&o.source, "source", "http://127.0.0.1:2019/metrics", "the edge's Prometheus endpoint (Caddy's admin /metrics needs its global `metrics` option)")
	fs.StringVar(&o.match, "match", "", "only sum series with these labels, e.g. server=srv0,handler=file_server")
	fs.Int64Var(&o.maxScrapeBytes, "max-scrape-bytes", edgeagent.DefaultMaxScrapeBytes, "largest metrics page read from -source; a larger one fails the sample")
	fs.StringVar(&o.names.Requests, "metric-requests", edgeagent.CaddyMetricNames.Requests, "counter of requests")
	fs.StringVar(&o.names.InFlight, "metric-in-flight", edgeagent.CaddyMetricNames.InFlight, "gauge of requests in flight")
	fs.StringVar(&o.names.TTFB, "metric-ttfb", edgeagent.CaddyMetricNames.TTFB, "histogram of seconds to first byte")
	fs.StringVar(&o.names.ResponseSize, "metric-response-size", edgeagent.CaddyMetricNames.ResponseSize, "histogram of response bytes")
	fs.StringVar(&o.scope, "scope", edgeagent.ScopeAuto, "resource scope: auto, host, cgroup or process")
	fs.IntVar(&o.pid, "pid", 0, "process whose cgroup (cgroup scope) or own use (process scope) is measured; 0 = this one")
	fs.DurationVar(&o.interval, "interval", time.Second, "sampling interval")
	fs.StringVar(&o.tokenFile, "token-file", "", "file holding the bearer token that report and state requests must carry")
	fs.StringVar(&o.state, "state", string(edgeagent.StateReady), "initial state: ready, drain or maint")
	fs.Float64Var(&o.capacity.MaxStreams, "max-streams", 0, "advertised capacity: concurrent streams (0 = let the balancer decide)")
	fs.Float64Var(&o.capacity.MaxRequestsPerSecond, "max-requests", 0, "advertised capacity: requests per second")
	fs.DurationVar(&o.maxResponseTime, "max-response-time", 0, "advertised capacity: worst acceptable time to first byte")
	fs.Float64Var(&o.capacity.LinkBytesPerSecond, "link-bytes-per-second", 0, "advertised capacity: link bandwidth")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if o.interval < 100*time.Millisecond {
		return o, fmt.Errorf("-interval: %s is below the minimum of 100ms", o.interval)
	}
	if _, err := edgeagent.ParseScope(o.scope); err != nil {
		return o, fmt.Errorf("-scope: %w", err)
	}
	if _, err := edgeagent.ParseState(o.state); err != nil {
		return o, fmt.Errorf("-state: %w", err)
	}
	if _, err := edgeagent.ParseMatch(o.match); err != nil {
		return o, fmt.Errorf("-match: %w", err)
	}
	if o.maxScrapeBytes < 1 {
		return o, fmt.Errorf("-max-scrape-bytes: %d is not a positive size", o.maxScrapeBytes)
	}
	if o.pid < 0 {
		return o, fmt.Errorf("-pid: %d is negative", o.pid)
	}
	for name, v := range map[string]float64{"-max-streams": o.capacity.MaxStreams, "-max-requests": o.capacity.MaxRequestsPerSecond, "-link-bytes-per-second": o.capacity.LinkBytesPerSecond} {
		if !(v >= 0 && v <= 1e12) {
			return o, fmt.Errorf("%s: %g is not a number between 0 and 1e12", name, v)
		}
	}
	if o.maxResponseTime < 0 {
		return o, fmt.Errorf("-max-response-time: %s is negative", o.maxResponseTime)
	}
	o.capacity.MaxResponseTimeSeconds = o.maxResponseTime.Seconds()
	return o, nil
}

func readToken(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("-token-file: %w", err)
	}
	token := strings.TrimSpace(string(b))
	if token == "" {
		return "", fmt.Errorf("-token-file: %s is empty", path)
	}
	return token, nil
}

func main() {
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(os.Args[1:], logger); err != nil {
		fmt.Fprintln(os.Stderr, "edgeagent:", err)
		os.Exit(2)
	}
}

func run(args []string, logger *slog.Logger) error {
	o, err := parseFlags(args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	token, err := readToken(o.tokenFile)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	resources, err := edgeagent.NewResourceSampler(ctx, o.scope, o.pid)
	if err != nil {
		return err
	}
	match, _ := edgeagent.ParseMatch(o.match)
	source := &edgeagent.PromSource{URL: o.source, Names: o.names, Match: match, Timeout: o.interval * 8 / 10, MaxBytes: o.maxScrapeBytes}
	var capacity *edgeagent.Capacity
	if o.capacity != (edgeagent.Capacity{}) {
		capacity = &o.capacity
	}
	agent, err := edgeagent.NewAgent(edgeagent.Config{Name: o.name, Interval: o.interval, Capacity: capacity}, resources, source, logger)
	if err != nil {
		return err
	}
	st, _ := edgeagent.ParseState(o.state)
	agent.SetState(st)
	guard := edgeagent.NewGuard(token)

	reg := prometheus.NewRegistry()
	reg.MustRegister(edgeagent.NewCollector(agent, guard))
	mux := http.NewServeMux()
	mux.HandleFunc(edgeagent.DefaultReportPath, func(w http.ResponseWriter, r *http.Request) { edgeagent.ServeReport(agent, guard, w, r) })
	mux.HandleFunc(edgeagent.DefaultStatePath, func(w http.ResponseWriter, r *http.Request) { edgeagent.ServeState(agent, guard, w, r) })
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{
		Addr:              o.listen,
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
	}
	go agent.Run(ctx)
	go handleStateSignals(ctx, agent, logger)
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	logger.Info("edgeagent serving", "listen", o.listen, "edge", o.name, "source", o.source, "scope", o.scope)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(shutdownCtx)
}

// handleStateSignals drains the edge on SIGUSR1 and readies it on SIGUSR2.
func handleStateSignals(ctx context.Context, agent *edgeagent.Agent, logger *slog.Logger) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGUSR1, syscall.SIGUSR2)
	defer signal.Stop(sigs)
	for {
		select {
		case <-ctx.Done():
			return
		case s := <-sigs:
			st := edgeagent.StateReady
			if s == syscall.SIGUSR1 {
				st = edgeagent.StateDrain
			}
			agent.SetState(st)
			logger.Info("state changed by signal", "signal", s.String(), "state", st)
		}
	}
}
