package rank

import (
	"testing"
	"time"

	"github.com/edgetier/edgetier/edgeagent"
)

// TestPeakHold: a score that falls is believed only gradually, so an edge
// saturated when busy does not win the next burst as soon as it is idle;
// it comes back once the hold has faded.
func TestPeakHold(t *testing.T) {
	p := newTestPool(1, nil)
	p.report(0, 90, edgeagent.StateReady, 2)
	p.report(0, 10, edgeagent.StateReady, 1)
	if v := p.in[0].View; v.Tier != 4 || v.Corrected(0) < 85 {
		t.Fatalf("right after a fall from 90 to 10: tier %d, score %.1f; want still tier 4", v.Tier, v.Corrected(0))
	}
	p.age(0, 30*time.Second)
	p.report(0, 10, edgeagent.StateReady, 2)
	if v := p.in[0].View; v.Tier != 1 {
		t.Fatalf("30 s later: tier %d, score %.1f; want tier 1", v.Tier, v.Corrected(0))
	}
}

func TestWarmupAndStaleness(t *testing.T) {
	p := newTestPool(1, nil)
	stale := int64(p.s.StaleAfter)
	p.report(0, 10, edgeagent.StateReady, 1)
	if c := p.in[0].View.Code(p.now, stale); c != CodeUnknown {
		t.Fatalf("after one report: code %d, want unknown (warming up)", c)
	}
	p.report(0, 10, edgeagent.StateReady, 1)
	if c := p.in[0].View.Code(p.now, stale); c != CodeTrusted {
		t.Fatalf("after two reports: code %d, want trusted", c)
	}
	if c := p.in[0].View.Code(p.now+stale+1, stale); c != CodeUnknown {
		t.Fatalf("past stale_after: code %d, want unknown", c)
	}
	p.age(0, 2*p.s.StaleAfter)
	p.report(0, 10, edgeagent.StateReady, 1)
	if p.in[0].View.Trusted {
		t.Fatal("a report after a stale one is trusted at once: want a new warm-up")
	}
	p.in[0].View = MarkDown(p.in[0].View)
	if c := p.in[0].View.Code(p.now+10*stale, stale); c != CodeDown {
		t.Fatalf("down: code %d, want down whatever its age", c)
	}
}

// TestRepeatedSampleIsNotFresh: an agent that stopped sampling serves the
// same report again; its sequence number does not advance, and its view
// goes stale.
func TestRepeatedSampleIsNotFresh(t *testing.T) {
	s := Scoring{Weights: DefaultWeights, Thresholds: DefaultThresholds, Hysteresis: 5, Capacity: DefaultCapacity, Warmup: 2, StaleAfter: 3 * time.Second}
	rep := edgeagent.Report{Schema: edgeagent.SchemaVersion, Seq: 7, State: edgeagent.StateReady, CPUPercent: 10}
	now := time.Now().UnixNano()
	v := Accept(nil, rep, now, 0, Capacity{}, &s)
	again := Accept(v, rep, now+int64(5*time.Second), 0, Capacity{}, &s)
	if again != v || again.Stale(now+int64(5*time.Second), int64(s.StaleAfter)) != true {
		t.Fatalf("the same sample 5 s later: received at %d, want still %d (stale)", again.ReceivedAt, v.ReceivedAt)
	}
	rep.Seq = 8
	if next := Accept(v, rep, now+int64(time.Second), 0, Capacity{}, &s); next == v || next.ReceivedAt == v.ReceivedAt {
		t.Fatal("a new sample was not taken")
	}
}
