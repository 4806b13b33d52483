package caddymodule

import (
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

// FuzzTieredCaddyfile: the policy's parser never panics, and what it
// accepts passes Validate.
func FuzzTieredCaddyfile(f *testing.F) {
	f.Add("weights 0.3 0.25 0.2 0.15 0.1\ntiers 25 50 75\ninterval 1s\ntimeout 500ms")
	f.Add("upstream 127.0.0.1:1 {\ncapacity {\nstreams 5\n}\n}")
	f.Add("hysteresis 1e309\nchoices 1")
	f.Fuzz(func(t *testing.T, opts string) {
		cfg := ":8080 {\n\treverse_proxy 127.0.0.1:9001 {\n\t\tlb_policy tiered {\n" + opts + "\n\t\t}\n\t}\n}\n"
		_, _, _ = caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cfg), nil)
	})
}

// FuzzEdgeAgentCaddyfile: the agent's parser never panics.
func FuzzEdgeAgentCaddyfile(f *testing.F) {
	f.Add("scope cgroup\ninterval 1s\ncapacity {\nstreams 10\n}")
	f.Add("header off\ntoken x")
	f.Fuzz(func(t *testing.T, opts string) {
		cfg := ":9001 {\n\tedge_agent edge {\n" + opts + "\n\t}\n\tfile_server\n}\n"
		_, _, _ = caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cfg), nil)
	})
}
