package board

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/edgetier/edgetier/edgeagent"
)

// newInBandBoard is a board tracking one agent that serves a report of
// seq 5 and polls it only every 5 s; a second report (seq 6) makes it
// trusted at once. It returns the board, the edge and its log.
func newInBandBoard(t *testing.T) (*Board, *Edge, *observer.ObservedLogs) {
	t.Helper()
	a := newFakeAgent(t, "")
	rep := edgeagent.Report{Schema: edgeagent.SchemaVersion, Edge: "fake", Timestamp: time.Now(), Seq: 5,
		State: edgeagent.StateReady, CPUPercent: 10, MemoryPercent: 10, IntervalSeconds: 1}
	body, _ := json.Marshal(rep)
	a.body.Store(string(body))
	core, logs := observer.New(zapcore.InfoLevel)
	b := New(fmt.Sprintf("inband-%s", t.Name()), zap.New(core))
	t.Cleanup(func() { _ = b.Destruct() })
	cfg := DefaultConfig()
	cfg.Interval, cfg.Timeout, cfg.Scoring.StaleAfter = 5*time.Second, time.Second, 15*time.Second
	b.Configure(cfg)
	poolOf(b, a.dial())
	e := b.edge(a.dial())
	waitUntil(t, "the first poll", func() bool { return e.View() != nil })
	rep.Seq = 6
	b.Report(a.dial(), rep)
	if !e.View().Trusted {
		t.Fatal("not trusted after two reports")
	}
	return b, e, logs
}

func header(seq int, cpu float64, streams int) []string {
	return []string{fmt.Sprintf("TEXT cpu_utilization=%g, mem_utilization=0.1, named_metrics.seq=%d, named_metrics.streams=%d", cpu, seq, streams)}
}

// TestBoardInBand: a good header refreshes the view between polls (fresh,
// rescored, tier event), at most once per minInBandGap; a header of an
// older sample is ignored; a bad one is counted by reason, logged once per
// change of reason, and leaves the view as it was.
func TestBoardInBand(t *testing.T) {
	b, e, logs := newInBandBoard(t)
	polled := e.View()

	b.InBand(e.dial, header(6, 0.9, 80), 3)
	v := e.View()
	if v == polled || v.ReceivedAt <= polled.ReceivedAt || v.Report.CPUPercent != 90 || v.Report.Streams != 80 ||
		v.InFlightAtReport != 3 || v.Tier != 2 || v.Report.Seq != 6 {
		t.Fatalf("after a busy header: %+v", v)
	}
	if evs := b.Events(0); len(evs) == 0 || evs[len(evs)-1].Message != "tier 1 → 2 (score 41.5)" {
		t.Fatalf("events %+v: want the tier change last", evs)
	}
	e.lastInBand.Store(time.Now().UnixNano()) // as if the header above came just now, however slow this machine
	b.InBand(e.dial, header(6, 0.1, 1), 1)
	if e.View() != v || e.inBand[inBandCoalesced].Load() != 1 {
		t.Fatal("a second header at once was taken in: want it coalesced")
	}
	time.Sleep(2 * minInBandGap)
	b.InBand(e.dial, header(5, 0.1, 1), 1)
	if e.View() != v || e.inBand[inBandIgnored].Load() != 1 {
		t.Fatal("a header of an older sample was taken in")
	}

	bad := []struct {
		values []string
		result inBandResult
	}{
		{[]string{"TEXT cpu_utilization=NaN, named_metrics.seq=6"}, inBandMalformed},
		{[]string{"TEXT cpu_utilization=nan, named_metrics.seq=6"}, inBandMalformed},
		{[]string{"TEXT cpu_utilization=7, named_metrics.seq=6"}, inBandInvalid},
		{[]string{`JSON {"cpu_utilization":0.1}`}, inBandUnsupported},
		{append(header(6, 0.1, 1), header(6, 0.1, 1)...), inBandMalformed},
	}
	for _, c := range bad {
		b.InBand(e.dial, c.values, 1)
	}
	if e.View() != v {
		t.Fatal("a bad header changed the view")
	}
	for r, want := range map[inBandResult]uint64{inBandAccepted: 1, inBandMalformed: 3, inBandInvalid: 1, inBandUnsupported: 1} {
		if got := e.inBand[r].Load(); got != want {
			t.Errorf("%s: %d, want %d", inBandLabels[r], got, want)
		}
	}
	// malformed (twice in a row: once), invalid, unsupported, malformed.
	if n := logs.FilterMessage("agent load header rejected").Len(); n != 4 {
		t.Errorf("%d rejections logged, want 4 (one per change of reason)", n)
	}
	time.Sleep(2 * minInBandGap)
	b.InBand(e.dial, header(7, 0.1, 1), 1)
	if e.View() == v || logs.FilterMessage("agent load headers good again").Len() != 1 {
		t.Error("a good header after bad ones: want it taken in, and logged once")
	}
	b.InBand("127.0.0.1:1", header(7, 0.1, 1), 1) // not tracked: dropped
}

// TestBoardInBandConcurrent: headers from many goroutines (as the proxy's
// responses arrive) while the board polls and plans; run with -race.
// Refreshes are limited to one per minInBandGap.
func TestBoardInBandConcurrent(t *testing.T) {
	b, e, _ := newInBandBoard(t)
	pool, _ := poolOf(b, e.dial)
	start := time.Now()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range 2000 {
				b.InBand(e.dial, header(6, float64(k%10)/10, g), k%5)
				pool.Choose()
				if k%200 == 0 {
					time.Sleep(time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	accepted := e.inBand[inBandAccepted].Load()
	if max := uint64(elapsed/minInBandGap) + 1; accepted == 0 || accepted > max {
		t.Fatalf("%d refreshes in %s: want between 1 and %d", accepted, elapsed, max)
	}
	if n := accepted + e.inBand[inBandCoalesced].Load(); n != 8000 {
		t.Fatalf("%d headers counted, want 8000", n)
	}
}

func BenchmarkBoardInBand(b *testing.B) {
	bd := New("inband-bench", zap.NewNop())
	defer bd.Destruct()
	a := newFakeAgent(b, "")
	poolOf(bd, a.dial())
	e := bd.edge(a.dial())
	for e.View() == nil || !e.View().Trusted {
		time.Sleep(10 * time.Millisecond)
	}
	h := header(0, 0.4, 10)
	b.ReportAllocs()
	for b.Loop() {
		bd.InBand(e.dial, h, 10)
	}
}
