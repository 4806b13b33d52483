package caddymodule

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
)

// TestCaddyfileErrors: every bad option of every directive fails to adapt
// with a message naming the option and the line.
func TestCaddyfileErrors(t *testing.T) {
	policy := func(opts string) string {
		return ":8080 {\n\treverse_proxy 127.0.0.1:9001 {\n\t\tlb_policy tiered {\n" + opts + "\n\t\t}\n\t}\n}\n"
	}
	agent := func(opts string) string {
		return ":9001 {\n\tedge_agent edge {\n" + opts + "\n\t}\n\tfile_server\n}\n"
	}
	transport := func(opts string) string {
		return ":8080 {\n\treverse_proxy 127.0.0.1:9001 {\n\t\ttransport edgetier {\n" + opts + "\n\t\t}\n\t}\n}\n"
	}
	dashboard := func(opts string) string {
		return ":8080 {\n\tcdn_dashboard {\n" + opts + "\n\t}\n}\n"
	}
	tests := []struct {
		name, caddyfile, want string
	}{
		{"transport resume", transport("resume 99"), `transport edgetier: resume: "99" is not off or a number of resumes between 1 and 10, at Caddyfile:4`},
		{"transport budget", transport("resume_budget soon"), `transport edgetier: resume_budget: "soon" is not a positive duration, at Caddyfile:4`},
		{"transport unknown", transport("colour red"), "transport edgetier: unrecognized option 'colour', at Caddyfile:4"},
		{"transport http option", transport("http {\nwarp_speed 9\n}"), "warp_speed"},
		{"transport repeated", transport("pool a\npool b"), "option 'pool' given twice, at Caddyfile:5"},
		{"dashboard interval", dashboard("interval 1ms"), `cdn_dashboard: interval: "1ms" is not a duration of at least 100ms, at Caddyfile:3`},
		{"dashboard path", dashboard("ws_path ws"), `cdn_dashboard: ws_path: "ws" must start with / and not end with /, at Caddyfile:3`},
		{"dashboard clients", dashboard("max_clients 0"), `cdn_dashboard: max_clients: "0" is not a number between 1 and 1000000, at Caddyfile:3`},
		{"dashboard origin", dashboard("allowed_origins ops.example.com"), `cdn_dashboard: allowed_origins: "ops.example.com" is not an origin like https://ops.example.com, at Caddyfile:3`},
		{"dashboard unknown", dashboard("theme dark"), "cdn_dashboard: unrecognized option 'theme', at Caddyfile:3"},
		{"dashboard repeated", dashboard("pool a\npool b"), "cdn_dashboard: option 'pool' given twice, at Caddyfile:4"},
		{"weights not summing to 1", policy("weights 0.5 0.5 0.5 0 0"), "weights: must sum to 1, they sum to 1.5, at Caddyfile:4"},
		{"weights count", policy("weights 0.5 0.5"), "weights: want 5 numbers"},
		{"weight not a number", policy("weights a 0.5 0 0 0"), `weights: "a" is not a number, at Caddyfile:4`},
		{"negative weight", policy("weights -0.5 1.5 0 0 0"), "cpu weight -0.5 is not between 0 and 1"},
		{"thresholds out of order", policy("tiers 50 25 75"), "tiers: [50 25 75] must be strictly increasing, between 0 and 100, at Caddyfile:4"},
		{"thresholds count", policy("tiers 25 50"), "tiers: want 3 numbers"},
		{"timeout not below interval", policy("interval 1s\ntimeout 1s"), "timeout: 1s must be shorter than the interval, at Caddyfile:5"},
		{"timeout above default interval", policy("timeout 2s"), "timeout: 2s must be shorter than the interval, at Caddyfile:4"},
		{"bad interval", policy("interval soon"), `interval: "soon" is not a positive duration, at Caddyfile:4`},
		{"interval too short", policy("interval 5ms"), "interval: 5ms is below the minimum of 10ms, at Caddyfile:4"},
		{"stale_after below interval", policy("stale_after 1ms"), "stale_after: 1ms is shorter than the interval 1s, at Caddyfile:4"},
		{"forget_after below stale_after", policy("stale_after 10m\nforget_after 6m"), "forget_after: 6m0s is shorter than stale_after 10m0s, at Caddyfile:5"},
		{"default forget_after below stale_after", policy("stale_after 10m"), "forget_after: 5m0s is shorter than stale_after 10m0s, at Caddyfile:4"},
		{"default forget_after below the default stale_after", policy("interval 2m\nwarmup 2"), "forget_after: 5m0s is shorter than stale_after 6m0s, at Caddyfile:4"},
		{"unknown option", policy("speed 11"), "unrecognized option 'speed', at Caddyfile:4"},
		{"repeated option", policy("pool a\npool b"), "option 'pool' given twice, at Caddyfile:5"},
		{"missing value", policy("pool"), "pool: missing value, at Caddyfile:4"},
		{"two values", policy("pool a b"), "pool: takes one value"},
		{"warmup zero", policy("warmup 0"), "warmup: \"0\" is not a number of reports between 1 and 100, at Caddyfile:4"},
		{"choices 3", policy("choices 3"), `choices: "3" is not 1 or 2`},
		{"hysteresis negative", policy("hysteresis -1"), "hysteresis: \"-1\" is not a number of points"},
		{"report_url not http", policy("report_url ftp://{upstream}/x"), "report_url: report URL \"ftp://127.0.0.1:1/x\" for upstream 127.0.0.1:1 is not an http(s) URL, at Caddyfile:4"},
		{"capacity unknown", policy("capacity {\nwidth 3\n}"), "capacity: unrecognized option 'width', at Caddyfile:5"},
		{"capacity negative", policy("capacity {\nstreams -3\n}"), `capacity streams: "-3" is not a number between 0 and 1e12, at Caddyfile:5`},
		{"capacity response_time", policy("capacity {\nresponse_time 0s\n}"), `capacity response_time: "0s" is not a positive duration`},
		{"upstream address", policy("upstream nowhere {\n}"), `upstream: "nowhere" is not a host:port address, at Caddyfile:4`},
		{"upstream option", policy("upstream 127.0.0.1:9001 {\ncolour red\n}"), "upstream 127.0.0.1:9001: unrecognized option 'colour', at Caddyfile:5"},
		{"upstream twice", policy("upstream 127.0.0.1:9001\nupstream 127.0.0.1:9001"), "upstream 127.0.0.1:9001 given twice, at Caddyfile:5"},
		{"policy argument", ":8080 {\n\treverse_proxy 127.0.0.1:9001 {\n\t\tlb_policy tiered fast\n\t}\n}\n", "wrong argument count or unexpected line ending after 'fast', at Caddyfile:3"},

		{"agent scope", agent("scope galaxy"), `edge_agent: scope: unknown scope "galaxy" (want auto, host, cgroup or process), at Caddyfile:3`},
		{"agent state", agent("state asleep"), `edge_agent: state: unknown state "asleep"`},
		{"agent interval", agent("interval 10ms"), "edge_agent: interval: 10ms is below the minimum of 100ms, at Caddyfile:3"},
		{"agent pid", agent("pid -4"), `edge_agent: pid: "-4" is not a process id`},
		{"agent report_path", agent("report_path load"), `edge_agent: report_path: "load" must start with /`},
		{"agent header", agent("header X Edge"), "edge_agent: header: takes one value"},
		{"agent header name", agent("header X:Edge"), `edge_agent: header: "X:Edge" is not a valid header field name`},
		{"agent unknown", agent("colour red"), "edge_agent: unrecognized option 'colour', at Caddyfile:3"},
		{"agent repeated", agent("token a\ntoken b"), "edge_agent: option 'token' given twice, at Caddyfile:4"},
		{"agent capacity", agent("capacity {\nstreams many\n}"), `capacity streams: "many" is not a number`},
		{"agent same paths", agent("report_path /load\nstate_path /load"), "edge_agent: report_path and state_path must differ, at Caddyfile:4"},
		{"agent state_path default", agent("report_path /_edgetier/state"), "report_path and state_path must differ, at Caddyfile:3"},
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
// whole policy with a warning, and the proxy ran with its default policy.)
func TestCaddyfileNonFinite(t *testing.T) {
	policy := func(opts string) string {
		return ":8080 {\n\treverse_proxy 127.0.0.1:9001 {\n\t\tlb_policy tiered {\n" + opts + "\n\t\t}\n\t}\n}\n"
	}
	agent := func(opts string) string {
		return ":9001 {\n\tedge_agent edge {\n" + opts + "\n\t}\n\tfile_server\n}\n"
	}
	transport := func(opts string) string {
		return ":8080 {\n\treverse_proxy 127.0.0.1:9001 {\n\t\ttransport edgetier {\n" + opts + "\n\t\t}\n\t}\n}\n"
	}
	dashboard := func(opts string) string {
		return ":8080 {\n\tcdn_dashboard {\n" + opts + "\n\t}\n}\n"
	}
	// X marks the number; want is what the error must name.
	options := []struct{ caddyfile, want string }{
		{policy("hysteresis X"), "hysteresis"},
		{policy("weights X 0.25 0.2 0.15 0.1"), "weights"},
		{policy("weights 0.3 X 0.2 0.15 0.1"), "weights"},
		{policy("weights 0.3 0.25 X 0.15 0.1"), "weights"},
		{policy("weights 0.3 0.25 0.2 X 0.1"), "weights"},
		{policy("weights 0.3 0.25 0.2 0.15 X"), "weights"},
		{policy("tiers X 50 75"), "tiers"},
		{policy("tiers 25 X 75"), "tiers"},
		{policy("tiers 25 50 X"), "tiers"},
		{policy("capacity {\nstreams X\n}"), "capacity streams"},
		{policy("capacity {\nrequests X\n}"), "capacity requests"},
		{policy("capacity {\nresponse_time Xs\n}"), "capacity response_time"},
		{policy("upstream 127.0.0.1:9001 {\ncapacity {\nstreams X\n}\n}"), "capacity streams"},
		{policy("upstream 127.0.0.1:9001 {\ncapacity {\nrequests X\n}\n}"), "capacity requests"},
		{policy("warmup X"), "warmup"},
		{policy("choices X"), "choices"},
		{policy("interval Xs"), "interval"},
		{policy("timeout Xms"), "timeout"},
		{policy("stale_after Xd"), "stale_after"},
		{agent("capacity {\nstreams X\n}"), "capacity streams"},
		{agent("capacity {\nrequests X\n}"), "capacity requests"},
		{agent("capacity {\nlink_bandwidth X\n}"), "capacity link_bandwidth"},
		{agent("capacity {\nresponse_time Xs\n}"), "capacity response_time"},
		{agent("pid X"), "pid"},
		{agent("interval Xs"), "interval"},
		{transport("resume X"), "resume"},
		{transport("resume_budget Xs"), "resume_budget"},
		{dashboard("max_clients X"), "max_clients"},
		{dashboard("queue X"), "queue"},
		{dashboard("pong_wait Xs"), "pong_wait"},
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
// warnings (a value JSON cannot encode drops the module with a warning)
// and the JSON must hold the module (found by its key and value).
func adaptedHandler(t *testing.T, cfg, key, value string) (out []byte, ok bool) {
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
	return out, true
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
	f.Add("weights 0.3 0.25 0.2 0.15 Inf")
	f.Add("tiers -Inf 50 75")
	f.Fuzz(func(t *testing.T, opts string) {
		withNonFinite(opts, func(opts string) {
			cfg := ":8080 {\n\treverse_proxy 127.0.0.1:9001 {\n\t\tlb_policy tiered {\n" + opts + "\n\t\t}\n\t}\n}\n"
			out, ok := adaptedHandler(t, cfg, "policy", "tiered")
			if !ok {
				return
			}
			var adapted struct {
				Apps struct {
					HTTP struct {
						Servers map[string]struct {
							Routes []struct {
								Handle []struct {
									LoadBalancing struct {
										SelectionPolicy *TieredSelection `json:"selection_policy"`
									} `json:"load_balancing"`
								} `json:"handle"`
							} `json:"routes"`
						} `json:"servers"`
					} `json:"http"`
				} `json:"apps"`
			}
			if err := json.Unmarshal(out, &adapted); err != nil {
				t.Fatalf("decoding the adapted JSON: %v\n%s", err, out)
			}
			p := adapted.Apps.HTTP.Servers["srv0"].Routes[0].Handle[0].LoadBalancing.SelectionPolicy
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
	f.Add("pid 1\ncapacity {\nstreams 400\nrequests 50\nresponse_time 250ms\nlink_bandwidth 1.25e9\n}")
	f.Add("report_path /load\nstate_path /load")
	f.Add("capacity {\nlink_bandwidth NaN\n}")
	f.Fuzz(func(t *testing.T, opts string) {
		withNonFinite(opts, func(opts string) {
			cfg := ":9001 {\n\tedge_agent edge {\n" + opts + "\n\t}\n\tfile_server\n}\n"
			out, ok := adaptedHandler(t, cfg, "handler", "edge_agent")
			if !ok {
				return
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
			a := new(EdgeAgent)
			if err := json.Unmarshal(adapted.Apps.HTTP.Servers["srv0"].Routes[0].Handle[0], a); err != nil {
				t.Fatalf("decoding the agent: %v\n%s", err, out)
			}
			a.setDefaults()
			if err := a.Validate(); err != nil {
				t.Fatalf("accepted, but Validate fails: %v\n%s", err, cfg)
			}
		})
	})
}
