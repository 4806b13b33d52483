package rank

import (
	"testing"
	"time"

	"github.com/edgetier/edgetier/edgeagent"
)

// loadOf is a header's load where cpu and memory are load percent, of
// the agent's sample seq, with streams in flight.
func loadOf(seq uint64, load float64, streams float64) *edgeagent.Load {
	return &edgeagent.Load{Seq: seq, CPU: load / 100, Memory: load / 100, Streams: streams,
		Has: edgeagent.HasCPU | edgeagent.HasMemory | edgeagent.HasStreams}
}

func TestRefresh(t *testing.T) {
	ms := int64(time.Millisecond)
	tests := []struct {
		name string
		// prev is the view refreshed, built from a pool whose upstream 0
		// has had two polls (trusted) at load 10, seq 2, at p.now.
		prev func(p *testPool) *View
		load *edgeagent.Load
		at   int64 // after p.now
		// want: refreshed, else prev returned.
		refreshed bool
		tier      Tier
	}{
		{"same sample, fresher", func(p *testPool) *View { return p.in[0].View }, loadOf(2, 10, 1), 100 * ms, true, 1},
		{"later sample", func(p *testPool) *View { return p.in[0].View }, loadOf(3, 10, 1), 100 * ms, true, 1},
		{"seq went backwards: the agent restarted", func(p *testPool) *View { return p.in[0].View }, loadOf(1, 10, 1), 100 * ms, false, 1},
		{"no seq", func(p *testPool) *View { return p.in[0].View }, loadOf(0, 10, 1), 100 * ms, false, 1},
		{"busier: tier follows", func(p *testPool) *View { return p.in[0].View }, loadOf(2, 90, 90), 100 * ms, true, 3},
		{"within hysteresis: tier kept", func(p *testPool) *View { return p.in[0].View }, loadOf(2, 28, 0), 100 * ms, true, 1},
		{"warming up", func(p *testPool) *View {
			return Accept(nil, p.in[0].View.Report, p.now, 0, Capacity{}, &p.s)
		}, loadOf(2, 10, 1), 100 * ms, false, 0},
		{"down", func(p *testPool) *View { return MarkDown(p.in[0].View) }, loadOf(2, 10, 1), 100 * ms, false, 0},
		{"polls stale", func(p *testPool) *View { return p.in[0].View }, loadOf(2, 10, 1), int64(p0StaleAfter) + ms, false, 0},
		{"older than the view", func(p *testPool) *View { return p.in[0].View }, loadOf(2, 10, 1), -ms, false, 0},
		{"nil", func(*testPool) *View { return nil }, loadOf(2, 10, 1), 100 * ms, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newTestPool(1, nil)
			p.report(0, 10, edgeagent.StateReady, 2)
			prev := tt.prev(p)
			now := p.now + tt.at
			v := Refresh(prev, tt.load, now, 3, Capacity{}, &p.s)
			if !tt.refreshed {
				if v != prev {
					t.Fatalf("refreshed %+v, want prev unchanged", v)
				}
				return
			}
			if v == prev {
				t.Fatal("not refreshed")
			}
			if v.ReceivedAt != now || v.PolledAt != prev.PolledAt || !v.Trusted || v.Streak != prev.Streak {
				t.Fatalf("received %d polled %d trusted %v streak %d: want received now, the poll's time, trust and streak",
					v.ReceivedAt, v.PolledAt, v.Trusted, v.Streak)
			}
			if v.Report.Seq != prev.Report.Seq || v.Report.CPUPercent != tt.load.CPU*100 || v.Report.Streams != tt.load.Streams ||
				v.Report.RequestsPerSecond != prev.Report.RequestsPerSecond {
				t.Fatalf("report %+v: want the poll's seq and the header's figures over the rest of the poll's", v.Report)
			}
			if v.InFlightAtReport != 3 {
				t.Fatalf("in flight at report %d, want 3 (at the response)", v.InFlightAtReport)
			}
			if v.Tier != tt.tier {
				t.Fatalf("tier %d (score %.1f), want %d", v.Tier, v.Corrected(3), tt.tier)
			}
		})
	}
}

// p0StaleAfter is newTestPool's stale_after.
var p0StaleAfter = newTestPool(1, nil).s.StaleAfter

// TestRefreshPeakHold: a refresh that shows a fall is believed only
// gradually, as a poll's would be.
func TestRefreshPeakHold(t *testing.T) {
	p := newTestPool(1, nil)
	p.report(0, 90, edgeagent.StateReady, 2)
	v := Refresh(p.in[0].View, loadOf(p.seq, 0, 0), p.now+int64(10*time.Millisecond), 0, Capacity{}, &p.s)
	if v.Tier != 4 || v.Held < 85 {
		t.Fatalf("10 ms after load 90, a header says idle: tier %d, held %.1f; want still tier 4", v.Tier, v.Held)
	}
}

// TestPollAfterRefreshDecidesTrust: refreshes keep a view fresh, not its
// trust: once polls stop for stale_after, a poll starts the warm-up again.
func TestPollAfterRefreshDecidesTrust(t *testing.T) {
	p := newTestPool(1, nil)
	p.report(0, 10, edgeagent.StateReady, 2)
	stale := int64(p.s.StaleAfter)
	v := p.in[0].View
	for at := int64(0); at < stale; at += int64(100 * time.Millisecond) {
		v = Refresh(v, loadOf(p.seq, 10, 1), p.now+at+1, 1, Capacity{}, &p.s)
	}
	rep := v.Report
	rep.Seq++
	if next := Accept(v, rep, p.now+stale+int64(time.Second), 1, Capacity{}, &p.s); next.Trusted {
		t.Fatal("a poll after stale_after without one is trusted at once: want a new warm-up")
	}
}

func BenchmarkRefresh(b *testing.B) {
	p := newTestPool(1, nil)
	p.report(0, 40, edgeagent.StateReady, 2)
	v := p.in[0].View
	l := loadOf(p.seq, 40, 10)
	now := p.now
	b.ReportAllocs()
	for b.Loop() {
		now++
		v = Refresh(v, l, now, 10, Capacity{}, &p.s)
	}
}
