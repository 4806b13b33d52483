package edgeagent

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

func validReport() Report {
	return Report{
		Schema: SchemaVersion, Edge: "edge-1", Timestamp: time.Now(), Seq: 1, IntervalSeconds: 1,
		State: StateReady, CPUPercent: 12, MemoryPercent: 40, RequestsPerSecond: 5, Streams: 3,
		ResponseTimeSeconds: 0.01, EgressBytesPerSecond: 1e6,
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*Report)
		wantErr string
	}{
		{"valid", func(*Report) {}, ""},
		{"minor version newer", func(r *Report) { r.Schema = "1.7" }, ""},
		{"other major", func(r *Report) { r.Schema = "2.0" }, "unsupported schema version"},
		{"schema garbage", func(r *Report) { r.Schema = "x" }, "schema"},
		{"no timestamp", func(r *Report) { r.Timestamp = time.Time{} }, "timestamp"},
		{"bad state", func(r *Report) { r.State = "gone" }, "state"},
		{"negative cpu", func(r *Report) { r.CPUPercent = -5 }, "cpu_percent: negative"},
		{"cpu over 100", func(r *Report) { r.CPUPercent = 101 }, "cpu_percent"},
		{"memory over 100", func(r *Report) { r.MemoryPercent = 250 }, "memory_percent"},
		{"huge streams", func(r *Report) { r.Streams = 1e15 }, "streams"},
		{"negative capacity", func(r *Report) { r.Capacity = &Capacity{MaxStreams: -1} }, "capacity.max_streams"},
		{"long name", func(r *Report) { r.Edge = strings.Repeat("x", 300) }, "edge"},
		// JSON has no NaN or infinity, but a report built in process (the
		// in-Caddy agent) can hold one after a division by zero.
		{"NaN cpu", func(r *Report) { r.CPUPercent = math.NaN() }, "cpu_percent: not a finite number"},
		{"infinite response time", func(r *Report) { r.ResponseTimeSeconds = math.Inf(1) }, "response_time_seconds: not a finite number"},
		{"negative infinite streams", func(r *Report) { r.Streams = math.Inf(-1) }, "streams: not a finite number"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := validReport()
			tt.mutate(&r)
			err := r.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate() = %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestDecode(t *testing.T) {
	good := `{"schema":"1.0","edge":"e","timestamp":"2026-01-01T00:00:00Z","seq":1,"interval_seconds":1,"state":"ready","cpu_percent":10,"memory_percent":20,"requests_per_second":1,"streams":2,"response_time_seconds":0.1,"egress_bytes_per_second":0}`
	tests := []struct {
		name, body, reason string
	}{
		{"good", good, ""},
		{"unknown fields ignored", strings.Replace(good, `"seq":1`, `"seq":1,"gpu_percent":3,"extra":{"a":[1]}`, 1), ""},
		{"overflowing number", strings.Replace(good, `"cpu_percent":10`, `"cpu_percent":1e400`, 1), ReasonMalformed},
		{"negative", strings.Replace(good, `"streams":2`, `"streams":-5`, 1), ReasonInvalid},
		{"NaN", strings.Replace(good, `"cpu_percent":10`, `"cpu_percent":NaN`, 1), ReasonMalformed},
		{"NaN as string", strings.Replace(good, `"cpu_percent":10`, `"cpu_percent":"NaN"`, 1), ReasonMalformed},
		{"truncated", good[:len(good)/2], ReasonMalformed},
		{"html error page", "<html><body>502 Bad Gateway</body></html>", ReasonMalformed},
		{"empty", "", ReasonMalformed},
		{"too large", `{"edge":"` + strings.Repeat("a", MaxReportBytes) + `"}`, ReasonTooLarge},
		{"other major", strings.Replace(good, `"1.0"`, `"2.0"`, 1), ReasonSchema},
		{"link utilisation", strings.Replace(good, `"seq":1`, `"seq":1,"link_utilisation":0.95,"stream_bytes_per_second":250000`, 1), ""},
		{"link utilisation above 1", strings.Replace(good, `"seq":1`, `"seq":1,"link_utilisation":1.01`, 1), ReasonInvalid},
		{"link utilisation negative", strings.Replace(good, `"seq":1`, `"seq":1,"link_utilisation":-0.5`, 1), ReasonInvalid},
		{"link utilisation NaN", strings.Replace(good, `"seq":1`, `"seq":1,"link_utilisation":NaN`, 1), ReasonMalformed},
		{"stream bytes negative", strings.Replace(good, `"seq":1`, `"seq":1,"stream_bytes_per_second":-1`, 1), ReasonInvalid},
		{"stream bytes overflow", strings.Replace(good, `"seq":1`, `"seq":1,"stream_bytes_per_second":1e400`, 1), ReasonMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Decode(strings.NewReader(tt.body))
			if tt.reason == "" {
				if err != nil {
					t.Fatalf("Decode() = %v", err)
				}
				if r.Streams != 2 || r.Edge != "e" {
					t.Fatalf("Decode() = %+v", r)
				}
				return
			}
			var de *DecodeError
			if !errors.As(err, &de) || de.Reason != tt.reason {
				t.Fatalf("Decode() error = %v, want reason %s", err, tt.reason)
			}
		})
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"schema":"1.0","edge":"e","timestamp":"2026-01-01T00:00:00Z","state":"drain","cpu_percent":99.9,"capacity":{"max_streams":5}}`))
	f.Add([]byte(`{"schema":"1.2","timestamp":"2026-01-01T00:00:00Z","state":"ready","streams":1e9}`))
	f.Add([]byte(`{"schema":"1.2","timestamp":"2026-01-01T00:00:00Z","state":"ready","link_utilisation":0.97,"stream_bytes_per_second":3e5,"capacity":{"link_bytes_per_second":1.25e8}}`))
	f.Add([]byte(`{"schema":"1.2","timestamp":"2026-01-01T00:00:00Z","state":"ready","link_utilisation":1.5}`))
	f.Add([]byte(`<html>`))
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := Decode(strings.NewReader(string(body)))
		if err != nil {
			return
		}
		// Everything accepted must pass validation again and be in range.
		if err := r.Validate(); err != nil {
			t.Fatalf("accepted report fails validation: %v", err)
		}
		if !(r.LinkUtilisation >= 0 && r.LinkUtilisation <= 1) {
			t.Fatalf("accepted link utilisation %g out of range", r.LinkUtilisation)
		}
		for _, v := range []float64{r.CPUPercent, r.MemoryPercent} {
			if !(v >= 0 && v <= 100) {
				t.Fatalf("accepted percentage %g out of range", v)
			}
		}
	})
}
