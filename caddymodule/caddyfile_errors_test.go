package caddymodule

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
)

// Caddyfiles with opts (lines) in the block of each directive.
func inPolicy(opts string) string {
	return ":8080 {\n\treverse_proxy 127.0.0.1:9001 {\n\t\tlb_policy tiered {\n" + opts + "\n\t\t}\n\t}\n}\n"
}

func inAgent(opts string) string {
	return ":9001 {\n\tedge_agent edge {\n" + opts + "\n\t}\n\tfile_server\n}\n"
}

func inTransport(opts string) string {
	return ":8080 {\n\treverse_proxy 127.0.0.1:9001 {\n\t\ttransport edgetier {\n" + opts + "\n\t\t}\n\t}\n}\n"
}

func inDashboard(opts string) string {
	return ":8080 {\n\tcdn_dashboard {\n" + opts + "\n\t}\n}\n"
}

// TestCaddyfileErrors: every bad option of every directive fails to adapt
// with a message naming the option and the line.
func TestCaddyfileErrors(t *testing.T) {
	tests := []struct {
		name, caddyfile, want string
	}{
		{"transport resume", inTransport("resume 99"), `transport edgetier: resume: "99" is not off or a number of resumes between 1 and 10, at Caddyfile:4`},
		{"transport budget", inTransport("resume_budget soon"), `transport edgetier: resume_budget: "soon" is not a positive duration, at Caddyfile:4`},
		{"transport unknown", inTransport("colour red"), "transport edgetier: unrecognized option 'colour', at Caddyfile:4"},
		{"transport http option", inTransport("http {\nwarp_speed 9\n}"), "warp_speed"},
		{"transport repeated", inTransport("pool a\npool b"), "option 'pool' given twice, at Caddyfile:5"},
		{"transport strip_load_header", inTransport("strip_load_header no"), `transport edgetier: strip_load_header: "no" is not on or off, at Caddyfile:4`},
		{"transport strip_load_header missing", inTransport("strip_load_header"), "transport edgetier: strip_load_header: missing value, at Caddyfile:4"},
		{"dashboard interval", inDashboard("interval 1ms"), `cdn_dashboard: interval: "1ms" is not a duration of at least 100ms, at Caddyfile:3`},
		{"dashboard path", inDashboard("ws_path ws"), `cdn_dashboard: ws_path: "ws" must start with / and not end with /, at Caddyfile:3`},
		{"dashboard clients", inDashboard("max_clients 0"), `cdn_dashboard: max_clients: "0" is not a number between 1 and 1000000, at Caddyfile:3`},
		{"dashboard origin", inDashboard("allowed_origins ops.example.com"), `cdn_dashboard: allowed_origins: "ops.example.com" is not an origin like https://ops.example.com, at Caddyfile:3`},
		{"dashboard unknown", inDashboard("theme dark"), "cdn_dashboard: unrecognized option 'theme', at Caddyfile:3"},
		{"dashboard repeated", inDashboard("pool a\npool b"), "cdn_dashboard: option 'pool' given twice, at Caddyfile:4"},
		{"weights not summing to 1", inPolicy("weights 0.5 0.5 0.5 0 0"), "weights: must sum to 1, they sum to 1.5, at Caddyfile:4"},
		{"weights count", inPolicy("weights 0.5 0.5"), "weights: want 5 or 6 numbers"},
		{"weights seven", inPolicy("weights 0.3 0.25 0.2 0.15 0.1 0 0"), "weights: want 5 or 6 numbers (<cpu> <memory> <requests> <streams> <response_time> [<bandwidth>]), got 7, at Caddyfile:4"},
		{"bandwidth weight breaks the sum", inPolicy("weights 0.3 0.25 0.2 0.15 0.1 0.2"), "weights: must sum to 1, they sum to 1.2, at Caddyfile:4"},
		{"bandwidth weight negative", inPolicy("weights 0.3 0.25 0.2 0.15 0.3 -0.2"), "bandwidth weight -0.2 is not between 0 and 1, at Caddyfile:4"},
		{"link_headroom above 1", inPolicy("link_headroom 1.5"), `lb_policy tiered: link_headroom: "1.5" is not a link utilisation above 0 and at most 1, at Caddyfile:4`},
		{"link_headroom zero", inPolicy("link_headroom 0"), `link_headroom: "0" is not a link utilisation above 0 and at most 1, at Caddyfile:4`},
		{"link_headroom missing", inPolicy("link_headroom"), "link_headroom"},
		{"link_headroom repeated", inPolicy("link_headroom 0.8\nlink_headroom 0.9"), "option 'link_headroom' given twice, at Caddyfile:5"},
		{"agent link_bandwidth negative", inAgent("capacity {\nlink_bandwidth -5\n}"), `edge_agent: capacity link_bandwidth: "-5" is not a number between 0 and 1e12, at Caddyfile:4`},
		{"agent link_bandwidth not a number", inAgent("capacity {\nlink_bandwidth 1gbit\n}"), `capacity link_bandwidth: "1gbit" is not a number, at Caddyfile:4`},
		{"agent link_bandwidth too large", inAgent("capacity {\nlink_bandwidth 1e13\n}"), `capacity link_bandwidth: "1e13" is not a number between 0 and 1e12, at Caddyfile:4`},
		{"weight not a number", inPolicy("weights a 0.5 0 0 0"), `weights: "a" is not a number, at Caddyfile:4`},
		{"negative weight", inPolicy("weights -0.5 1.5 0 0 0"), "cpu weight -0.5 is not between 0 and 1"},
		{"thresholds out of order", inPolicy("tiers 50 25 75"), "tiers: [50 25 75] must be strictly increasing, between 0 and 100, at Caddyfile:4"},
		{"thresholds count", inPolicy("tiers 25 50"), "tiers: want 3 numbers"},
		{"timeout not below interval", inPolicy("interval 1s\ntimeout 1s"), "timeout: 1s must be shorter than the interval, at Caddyfile:5"},
		{"timeout above default interval", inPolicy("timeout 2s"), "timeout: 2s must be shorter than the interval, at Caddyfile:4"},
		{"bad interval", inPolicy("interval soon"), `interval: "soon" is not a positive duration, at Caddyfile:4`},
		{"interval too short", inPolicy("interval 5ms"), "interval: 5ms is below the minimum of 10ms, at Caddyfile:4"},
		{"stale_after below interval", inPolicy("stale_after 1ms"), "stale_after: 1ms is shorter than the interval 1s, at Caddyfile:4"},
		{"forget_after below stale_after", inPolicy("stale_after 10m\nforget_after 6m"), "forget_after: 6m0s is shorter than stale_after 10m0s, at Caddyfile:5"},
		{"default forget_after below stale_after", inPolicy("stale_after 10m"), "forget_after: 5m0s is shorter than stale_after 10m0s, at Caddyfile:4"},
		{"default forget_after below the default stale_after", inPolicy("interval 2m\nwarmup 2"), "forget_after: 5m0s is shorter than stale_after 6m0s, at Caddyfile:4"},
		{"unknown option", inPolicy("speed 11"), "unrecognized option 'speed', at Caddyfile:4"},
		{"repeated option", inPolicy("pool a\npool b"), "option 'pool' given twice, at Caddyfile:5"},
		{"missing value", inPolicy("pool"), "pool: missing value, at Caddyfile:4"},
		{"two values", inPolicy("pool a b"), "pool: takes one value"},
		{"warmup zero", inPolicy("warmup 0"), "warmup: \"0\" is not a number of reports between 1 and 100, at Caddyfile:4"},
		{"choices 3", inPolicy("choices 3"), `choices: "3" is not 1 or 2`},
		{"calibrate maybe", inPolicy("calibrate maybe"), `calibrate: "maybe" is not on or off, at Caddyfile:4`},
		{"hysteresis negative", inPolicy("hysteresis -1"), "hysteresis: \"-1\" is not a number of points"},
		{"report_url not http", inPolicy("report_url ftp://{upstream}/x"), "report_url: report URL \"ftp://127.0.0.1:1/x\" for upstream 127.0.0.1:1 is not an http(s) URL, at Caddyfile:4"},
		{"capacity unknown", inPolicy("capacity {\nwidth 3\n}"), "capacity: unrecognized option 'width', at Caddyfile:5"},
		{"capacity negative", inPolicy("capacity {\nstreams -3\n}"), `capacity streams: "-3" is not a number between 0 and 1e12, at Caddyfile:5`},
		{"capacity response_time", inPolicy("capacity {\nresponse_time 0s\n}"), `capacity response_time: "0s" is not a positive duration`},
		{"upstream address", inPolicy("upstream nowhere {\n}"), `upstream: "nowhere" is not a host:port address, at Caddyfile:4`},
		{"upstream option", inPolicy("upstream 127.0.0.1:9001 {\ncolour red\n}"), "upstream 127.0.0.1:9001: unrecognized option 'colour', at Caddyfile:5"},
		{"upstream twice", inPolicy("upstream 127.0.0.1:9001\nupstream 127.0.0.1:9001"), "upstream 127.0.0.1:9001 given twice, at Caddyfile:5"},
		{"eject_errors above 100", inPolicy("eject_errors 150%"), `eject_errors: "150%" is not a percentage between 0 and 100, at Caddyfile:4`},
		{"eject_errors zero", inPolicy("eject_errors 0"), `eject_errors: "0" turns ejection off: write off, at Caddyfile:4`},
		{"eject_errors word", inPolicy("eject_errors many"), `eject_errors: "many" is not a number, at Caddyfile:4`},
		{"max_ejected negative", inPolicy("max_ejected -5"), `max_ejected: "-5" is not a percentage between 0 and 100, at Caddyfile:4`},
		{"eject_min_answers zero", inPolicy("eject_min_answers 0"), `eject_min_answers: "0" is not a number of answers between 1 and 10000, at Caddyfile:4`},
		{"eject_time not a duration", inPolicy("eject_time long"), `eject_time: "long" is not a positive duration, at Caddyfile:4`},
		{"eject_max_time below eject_time", inPolicy("eject_time 1m\neject_max_time 30s"), "eject_max_time: 30s is shorter than eject_time 1m0s, at Caddyfile:5"},
		{"eject_max_time below the default eject_time", inPolicy("eject_max_time 10s"), "eject_max_time: 10s is shorter than eject_time 30s, at Caddyfile:4"},
		{"slow_start negative", inPolicy("slow_start -10s"), `slow_start: "-10s" is not a positive duration, at Caddyfile:4`},
		{"slow_start too long", inPolicy("slow_start 2h"), "slow_start: 2h0m0s is longer than the maximum of 1h0m0s, at Caddyfile:4"},
		{"slow_start repeated", inPolicy("slow_start 10s\nslow_start off"), "option 'slow_start' given twice, at Caddyfile:5"},
		{"policy argument", ":8080 {\n\treverse_proxy 127.0.0.1:9001 {\n\t\tlb_policy tiered fast\n\t}\n}\n", "wrong argument count or unexpected line ending after 'fast', at Caddyfile:3"},

		{"agent scope", inAgent("scope galaxy"), `edge_agent: scope: unknown scope "galaxy" (want auto, host, cgroup or process), at Caddyfile:3`},
		{"agent state", inAgent("state asleep"), `edge_agent: state: unknown state "asleep"`},
		{"agent interval", inAgent("interval 10ms"), "edge_agent: interval: 10ms is below the minimum of 100ms, at Caddyfile:3"},
		{"agent pid", inAgent("pid -4"), `edge_agent: pid: "-4" is not a process id`},
		{"agent report_path", inAgent("report_path load"), `edge_agent: report_path: "load" must start with /`},
		{"agent header", inAgent("header X Edge"), "edge_agent: header: takes one value"},
		{"agent header name", inAgent("header X:Edge"), `edge_agent: header: "X:Edge" is not a valid header field name`},
		{"agent load_header", inAgent("load_header sometimes"), `edge_agent: load_header: "sometimes" is not on or off, at Caddyfile:3`},
		{"agent unknown", inAgent("colour red"), "edge_agent: unrecognized option 'colour', at Caddyfile:3"},
		{"agent repeated", inAgent("token a\ntoken b"), "edge_agent: option 'token' given twice, at Caddyfile:4"},
		{"agent capacity", inAgent("capacity {\nstreams many\n}"), `capacity streams: "many" is not a number`},
		{"agent same paths", inAgent("report_path /load\nstate_path /load"), "edge_agent: report_path and state_path must differ, at Caddyfile:4"},
		{"agent state_path default", inAgent("report_path /_edgetier/state"), "report_path and state_path must differ, at Caddyfile:3"},
		{"agent two names", ":9001 {\n\tedge_agent a b\n}\n", "wrong argument count or unexpected line ending after 'b', at Caddyfile:2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(tt.caddyfile), nil)
			if err == nil {
				t.Fatalf("adapted without error:\n%s", tt.caddyfile)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %q\nwant it to contain %q", err, tt.want)
			}
		})
	}
}

// nonFinite are the spellings of NaN and ±Inf that strconv.ParseFloat
// accepts without an error.
var nonFinite = []string{"NaN", "nan", "Inf", "+Inf", "-Inf", "inf", "infinity", "-Infinity"}

// TestCaddyfileNonFinite: every number option of every directive refuses
// NaN and ±Inf with an error naming the option and its line. (A NaN that
// got through could not be encoded as JSON: Caddy's adapter dropped the
// whole policy without an error, and the proxy ran with its default one.)
func TestCaddyfileNonFinite(t *testing.T) {
	// X marks the number; want is what the error must name.
	options := []struct{ caddyfile, want string }{
		{inPolicy("hysteresis X"), "hysteresis"},
		{inPolicy("weights X 0.25 0.2 0.15 0.1"), "weights"},
		{inPolicy("weights 0.3 X 0.2 0.15 0.1"), "weights"},
		{inPolicy("weights 0.3 0.25 X 0.15 0.1"), "weights"},
		{inPolicy("weights 0.3 0.25 0.2 X 0.1"), "weights"},
		{inPolicy("weights 0.3 0.25 0.2 0.15 X"), "weights"},
		{inPolicy("weights 0.3 0.25 0.2 0.15 0.1 X"), "weights"},
		{inPolicy("link_headroom X"), "link_headroom"},
		{inPolicy("tiers X 50 75"), "tiers"},
		{inPolicy("tiers 25 X 75"), "tiers"},
		{inPolicy("tiers 25 50 X"), "tiers"},
		{inPolicy("capacity {\nstreams X\n}"), "capacity streams"},
		{inPolicy("capacity {\nrequests X\n}"), "capacity requests"},
		{inPolicy("capacity {\nresponse_time Xs\n}"), "capacity response_time"},
		{inPolicy("upstream 127.0.0.1:9001 {\ncapacity {\nstreams X\n}\n}"), "capacity streams"},
		{inPolicy("upstream 127.0.0.1:9001 {\ncapacity {\nrequests X\n}\n}"), "capacity requests"},
		{inPolicy("warmup X"), "warmup"},
		{inPolicy("choices X"), "choices"},
		{inPolicy("interval Xs"), "interval"},
		{inPolicy("timeout Xms"), "timeout"},
		{inPolicy("stale_after Xd"), "stale_after"},
		{inPolicy("eject_errors X"), "eject_errors"},
		{inPolicy("eject_errors X%"), "eject_errors"},
		{inPolicy("max_ejected X"), "max_ejected"},
		{inPolicy("eject_min_answers X"), "eject_min_answers"},
		{inPolicy("eject_time Xs"), "eject_time"},
		{inPolicy("eject_max_time Xs"), "eject_max_time"},
		{inPolicy("slow_start Xs"), "slow_start"},
		{inAgent("capacity {\nstreams X\n}"), "capacity streams"},
		{inAgent("capacity {\nrequests X\n}"), "capacity requests"},
		{inAgent("capacity {\nlink_bandwidth X\n}"), "capacity link_bandwidth"},
		{inAgent("capacity {\nresponse_time Xs\n}"), "capacity response_time"},
		{inAgent("pid X"), "pid"},
		{inAgent("interval Xs"), "interval"},
		{inTransport("resume X"), "resume"},
		{inTransport("resume_budget Xs"), "resume_budget"},
		{inDashboard("max_clients X"), "max_clients"},
		{inDashboard("queue X"), "queue"},
		{inDashboard("pong_wait Xs"), "pong_wait"},
	}
	for _, o := range options {
		for _, v := range nonFinite {
			cfg := strings.Replace(o.caddyfile, "X", v, 1)
			line := 1 + strings.Count(cfg[:strings.Index(cfg, v)], "\n")
			t.Run(strings.ReplaceAll(o.want, " ", "_")+"="+v, func(t *testing.T) {
				_, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cfg), nil)
				if err == nil {
					t.Fatalf("adapted without error (warnings %v):\n%s", warnings, cfg)
				}
				if at := fmt.Sprintf(", at Caddyfile:%d", line); !strings.Contains(err.Error(), o.want) || !strings.Contains(err.Error(), at) {
					t.Fatalf("error = %q\nwant it to name %q and end with %q", err, o.want, at)
				}
			})
		}
	}
}

// numberToken matches the numbers of a Caddyfile, alone or before a
// duration's unit.
var numberToken = regexp.MustCompile(`(^|[\s{])[-+]?[0-9][0-9.e+-]*`)

// withNonFinite calls check with opts, then with each of its numbers (the
// first 8) replaced in turn by each spelling of NaN and ±Inf, so the
// fuzzers reach every number option with the values that slip past range
// checks written as comparisons.
func withNonFinite(opts string, check func(string)) {
	check(opts)
	locs := numberToken.FindAllStringIndex(opts, 8)
	for _, loc := range locs {
		start := loc[0]
		if start < len(opts) && (opts[start] == ' ' || opts[start] == '\t' || opts[start] == '\n' || opts[start] == '{') {
			start++
		}
		for _, v := range nonFinite {
			check(opts[:start] + v + opts[loc[1]:])
		}
	}
}

// adaptedHandler adapts cfg; when it is accepted, there must be no
// warnings (but about formatting) and the JSON must hold the module (found
// by its key and value). It returns the first handler of the first route.
func adaptedHandler(t *testing.T, cfg, key, value string) (handler json.RawMessage, ok bool) {
	t.Helper()
	out, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cfg), nil)
	if err != nil {
		return nil, false
	}
	for _, w := range warnings {
		if !strings.Contains(w.Message, "input is not formatted") {
			t.Fatalf("accepted with the warning %q:\n%s", w, cfg)
		}
	}
	if !strings.Contains(string(out), fmt.Sprintf("%q:%q", key, value)) {
		t.Fatalf("accepted, but the adapted JSON has no %s %s:\n%s\n%s", key, value, cfg, out)
	}
	var adapted struct {
		Apps struct {
			HTTP struct {
				Servers map[string]struct {
					Routes []struct {
						Handle []json.RawMessage `json:"handle"`
					} `json:"routes"`
				} `json:"servers"`
			} `json:"http"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(out, &adapted); err != nil {
		t.Fatalf("decoding the adapted JSON: %v\n%s", err, out)
	}
	return adapted.Apps.HTTP.Servers["srv0"].Routes[0].Handle[0], true
}

// FuzzTieredCaddyfile: the policy's parser never panics; what it accepts
// keeps the policy (no warning, no value JSON cannot encode) and passes
// Validate, so no bad setting waits for Provision, which names no line.
func FuzzTieredCaddyfile(f *testing.F) {
	f.Add("weights 0.3 0.25 0.2 0.15 0.1\ntiers 25 50 75\ninterval 1s\ntimeout 500ms")
	f.Add("upstream 127.0.0.1:1 {\ncapacity {\nstreams 5\n}\n}")
	f.Add("hysteresis 1e309\nchoices 1")
	f.Add("hysteresis 5\nwarmup 2\ncapacity {\nstreams 100\nrequests 200\nresponse_time 500ms\n}")
	f.Add("interval 250ms\nstale_after 1s\nforget_after 5m")
	f.Add("stale_after 1ms")
	f.Add("interval 5ms\ntimeout 1ms")
	f.Add("stale_after 10m")
	f.Add("interval 10s\nforget_after 20s")
	f.Add("hysteresis NaN")
	f.Add("calibrate off\ncapacity {\nrequests 1e3\n}")
	f.Add("weights 0.3 0.25 0.2 0.15 Inf")
	f.Add("tiers -Inf 50 75")
	f.Add("eject_errors 50%\neject_min_answers 5\neject_time 30s\neject_max_time 5m\nmax_ejected 50%\nslow_start 10s")
	f.Add("eject_errors off\nslow_start off")
	f.Add("eject_time 10m")
	f.Add("eject_max_time 1s")
	f.Add("max_ejected 100\neject_errors 0.5")
	f.Add("weights 0.25 0.2 0.15 0.1 0.1 0.2\nlink_headroom 0.85")
	f.Add("weights 0.3 0.25 0.2 0.15 0.1 0\nlink_headroom 1")
	f.Add("weights 0.3 0.25 0.2 0.15 0.1 NaN")
	f.Add("link_headroom 1e-300")
	f.Fuzz(func(t *testing.T, opts string) {
		withNonFinite(opts, func(opts string) {
			cfg := inPolicy(opts)
			handler, ok := adaptedHandler(t, cfg, "policy", "tiered")
			if !ok {
				return
			}
			var proxy struct {
				LoadBalancing struct {
					SelectionPolicy *TieredSelection `json:"selection_policy"`
				} `json:"load_balancing"`
			}
			if err := json.Unmarshal(handler, &proxy); err != nil {
				t.Fatalf("decoding the policy: %v\n%s", err, handler)
			}
			p := proxy.LoadBalancing.SelectionPolicy
			p.setDefaults()
			if err := p.Validate(); err != nil {
				t.Fatalf("accepted, but Validate fails: %v\n%s", err, cfg)
			}
		})
	})
}

// FuzzEdgeAgentCaddyfile: the agent's parser never panics; what it
// accepts keeps the handler and passes Validate.
func FuzzEdgeAgentCaddyfile(f *testing.F) {
	f.Add("scope cgroup\ninterval 1s\ncapacity {\nstreams 10\n}")
	f.Add("header off\ntoken x")
	f.Add("load_header off\nheader X-Served-By")
	f.Add("load_header on")
	f.Add("pid 1\ncapacity {\nstreams 400\nrequests 50\nresponse_time 250ms\nlink_bandwidth 1.25e9\n}")
	f.Add("capacity {\nlink_bandwidth 25000000\n}")
	f.Add("capacity {\nlink_bandwidth 1e13\n}")
	f.Add("capacity {\nlink_bandwidth -1\n}")
	f.Add("report_path /load\nstate_path /load")
	f.Add("capacity {\nlink_bandwidth NaN\n}")
	f.Fuzz(func(t *testing.T, opts string) {
		withNonFinite(opts, func(opts string) {
			cfg := inAgent(opts)
			handler, ok := adaptedHandler(t, cfg, "handler", "edge_agent")
			if !ok {
				return
			}
			a := new(EdgeAgent)
			if err := json.Unmarshal(handler, a); err != nil {
				t.Fatalf("decoding the agent: %v\n%s", err, handler)
			}
			a.setDefaults()
			if err := a.Validate(); err != nil {
				t.Fatalf("accepted, but Validate fails: %v\n%s", err, cfg)
			}
		})
	})
}
