package edgeagent

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

func TestLoadHeaderRoundTrip(t *testing.T) {
	rep := validReport()
	rep.Seq, rep.CPUPercent, rep.MemoryPercent = 41, 33.3, 100
	rep.RequestsPerSecond, rep.ResponseTimeSeconds = 123.456, 0.0125
	rep.EgressBytesPerSecond, rep.SentBytesPerSecond = 9.87654e9, 1.25e6
	rep.LinkUtilisation, rep.StreamBytesPerSecond = 0.875, 312500
	v := string(AppendStreams(AppendLoadPrefix(nil, &rep), 17))
	if !strings.HasPrefix(v, "TEXT cpu_utilization=0.333, mem_utilization=1, rps_fractional=123.456, named_metrics.seq=41,") ||
		!strings.HasSuffix(v, ", named_metrics.streams=17") {
		t.Fatalf("formatted %q", v)
	}
	l, err := ParseLoadHeader(v)
	if err != nil {
		t.Fatalf("ParseLoadHeader(%q) = %v", v, err)
	}
	got := l.Apply(Report{})
	want := rep
	want.Streams = 17
	near := func(name string, got, want float64) {
		if math.Abs(got-want) > 1e-3*math.Abs(want) {
			t.Errorf("%s = %g after the round trip, want %g", name, got, want)
		}
	}
	near("cpu", got.CPUPercent, want.CPUPercent)
	near("memory", got.MemoryPercent, want.MemoryPercent)
	near("requests", got.RequestsPerSecond, want.RequestsPerSecond)
	near("streams", got.Streams, want.Streams)
	near("response time", got.ResponseTimeSeconds, want.ResponseTimeSeconds)
	near("egress", got.EgressBytesPerSecond, want.EgressBytesPerSecond)
	near("sent", got.SentBytesPerSecond, want.SentBytesPerSecond)
	near("link", got.LinkUtilisation, want.LinkUtilisation)
	near("stream bytes", got.StreamBytesPerSecond, want.StreamBytesPerSecond)
	if l.Seq != 41 || l.Has != HasCPU|HasMemory|HasRequests|HasStreams|HasResponseTime|HasEgress|HasSent|HasLink|HasStreamBytes {
		t.Errorf("seq %d, fields %b", l.Seq, l.Has)
	}
}

func TestParseLoadHeader(t *testing.T) {
	const good = "TEXT cpu_utilization=0.3, mem_utilization=0.2, rps_fractional=41, named_metrics.seq=7, named_metrics.streams=17"
	tests := []struct {
		name, header, reason string
	}{
		{"good", good, ""},
		{"lower-case form, tabs, no spaces", "text cpu_utilization=0.3,\tmem_utilization=0.2,rps_fractional=41 , named_metrics.seq=7,named_metrics.streams=17", ""},
		{"unknown keys ignored", good + ", eps=2, utilization.gpu=0.5, named_metrics.other-thing=1e3", ""},
		{"only seq", "TEXT named_metrics.seq=7", ""},
		{"no seq", "TEXT cpu_utilization=0.3", ReasonInvalid},
		{"seq not whole", "TEXT named_metrics.seq=7.5", ReasonInvalid},
		{"seq negative", "TEXT named_metrics.seq=-7", ReasonInvalid},
		{"NaN", strings.Replace(good, "0.3", "NaN", 1), ReasonMalformed},
		{"Inf", strings.Replace(good, "0.3", "Inf", 1), ReasonMalformed},
		{"overflow to Inf", strings.Replace(good, "=41", "=1e400", 1), ReasonInvalid},
		{"link utilisation above 1", good + ", named_metrics.link_utilisation=1.5", ReasonInvalid},
		{"link utilisation negative", good + ", named_metrics.link_utilisation=-0.1", ReasonInvalid},
		{"link utilisation NaN", good + ", named_metrics.link_utilisation=NaN", ReasonMalformed},
		{"stream bytes negative", good + ", named_metrics.stream_bytes_per_second=-1", ReasonInvalid},
		{"hex", strings.Replace(good, "0.3", "0x1p-2", 1), ReasonMalformed},
		{"negative", strings.Replace(good, "=17", "=-1", 1), ReasonInvalid},
		{"cpu above 1", strings.Replace(good, "0.3", "1.5", 1), ReasonInvalid},
		{"huge rate", strings.Replace(good, "=41", "=1e12", 1), ReasonInvalid},
		{"twice", good + ", cpu_utilization=0.1", ReasonMalformed},
		{"seq twice", good + ", named_metrics.seq=8", ReasonMalformed},
		{"trailing comma", good + ",", ReasonMalformed},
		{"no value", "TEXT cpu_utilization=, named_metrics.seq=7", ReasonMalformed},
		{"no equals", "TEXT cpu_utilization 0.3, named_metrics.seq=7", ReasonMalformed},
		{"bad key", "TEXT cpu utilization=0.3, named_metrics.seq=7", ReasonMalformed},
		{"TEXT alone", "TEXT", ReasonMalformed},
		{"no form", "cpu_utilization=0.3, named_metrics.seq=7", ReasonMalformed},
		{"empty", "", ReasonMalformed},
		{"JSON", `JSON {"cpu_utilization": 0.3}`, ReasonUnsupported},
		{"BIN", "BIN CgkJMzMzMzMz0z8=", ReasonUnsupported},
		{"too long", good + ", named_metrics.pad=" + strings.Repeat("1", MaxLoadHeaderBytes), ReasonTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := ParseLoadHeader(tt.header)
			if tt.reason == "" {
				if err != nil || l.Seq != 7 {
					t.Fatalf("ParseLoadHeader() = %+v, %v", l, err)
				}
				return
			}
			var de *DecodeError
			if !errors.As(err, &de) || de.Reason != tt.reason {
				t.Fatalf("ParseLoadHeader() = %+v, %v: want reason %s", l, err, tt.reason)
			}
		})
	}
}

// TestLoadHeaderValue: the agent stamps its latest sample with the live
// stream count, and stamps nothing once it cannot vouch for its sample.
func TestLoadHeaderValue(t *testing.T) {
	res := &switchResources{}
	a, err := NewAgent(Config{Name: "edge-a", Interval: 100 * time.Millisecond}, res, new(Meter), nil)
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := a.LoadHeaderValue(1); ok {
		t.Fatalf("before any sample: %q", v)
	}
	a.Sample(context.Background())
	v, ok := a.LoadHeaderValue(3)
	l, err := ParseLoadHeader(v)
	if !ok || err != nil || l.Seq != 1 || l.Streams != 3 || l.CPU != 0.05 {
		t.Fatalf("after a sample: %q, %v: %+v, %v", v, ok, l, err)
	}
	res.fail.Store(true)
	a.Sample(context.Background())
	if v, ok := a.LoadHeaderValue(1); ok {
		t.Fatalf("with sampling failing: %q", v)
	}
	res.fail.Store(false)
	a.Sample(context.Background())
	time.Sleep(StaleIntervals*100*time.Millisecond + 50*time.Millisecond)
	if v, ok := a.LoadHeaderValue(1); ok {
		t.Fatalf("with the latest sample stale: %q", v)
	}
}

func FuzzParseLoadHeader(f *testing.F) {
	rep := validReport()
	f.Add(string(AppendStreams(AppendLoadPrefix(nil, &rep), 3)))
	f.Add("TEXT cpu_utilization=0.3, named_metrics.seq=1, eps=4")
	f.Add("JSON {}")
	f.Add("TEXT named_metrics.seq=1, rps_fractional=1e-400")
	f.Add("TEXT named_metrics.seq=2, named_metrics.link_utilisation=0.97, named_metrics.stream_bytes_per_second=312500")
	f.Add("TEXT named_metrics.seq=2, named_metrics.link_utilisation=1.0000001")
	f.Add("TEXT named_metrics.seq=2, named_metrics.link_utilisation=0.5, named_metrics.link_utilisation=0.6")
	f.Fuzz(func(t *testing.T, header string) {
		l, err := ParseLoadHeader(header)
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) || de.Reason == "" {
				t.Fatalf("error without a reason: %v", err)
			}
			return
		}
		// Everything accepted makes a valid report.
		r := l.Apply(validReport())
		if err := r.Validate(); err != nil {
			t.Fatalf("accepted %q makes an invalid report: %v", header, err)
		}
		if !(l.CPU >= 0 && l.CPU <= 1 && l.Memory >= 0 && l.Memory <= 1 && l.LinkUtilisation >= 0 && l.LinkUtilisation <= 1) {
			t.Fatalf("accepted utilisation out of range: %+v", l)
		}
	})
}

func BenchmarkParseLoadHeader(b *testing.B) {
	rep := validReport()
	v := string(AppendStreams(AppendLoadPrefix(nil, &rep), 17))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseLoadHeader(v); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLoadHeaderValue(b *testing.B) {
	a, err := NewAgent(Config{Name: "edge-a", Interval: time.Second}, &switchResources{}, new(Meter), nil)
	if err != nil {
		b.Fatal(err)
	}
	a.Sample(context.Background())
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := a.LoadHeaderValue(17); !ok {
			b.Fatal("no header")
		}
	}
}
