package edgeagent

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// failingCounters is a request source whose scrapes fail while fail is set.
type failingCounters struct {
	fail atomic.Bool
	m    Meter
}

func (f *failingCounters) Counters() (Counters, error) {
	if f.fail.Load() {
		return Counters{}, errors.New("scraping http://edge/metrics: status 500 Internal Server Error")
	}
	return f.m.Counters()
}

// TestReportRefusedWhileSamplingFails: the report endpoint answers 503
// with Retry-After before the first sample, while sampling fails (request
// figures or resources), and when the latest good sample is stale; a
// good sample makes it answer again, with the next seq.
func TestReportRefusedWhileSamplingFails(t *testing.T) {
	src := new(failingCounters)
	res := &switchResources{}
	a, err := NewAgent(Config{Name: "edge-a", Interval: 100 * time.Millisecond}, res, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	guard := NewGuard("")
	get := func() *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		ServeReport(a, guard, rec, httptest.NewRequest(http.MethodGet, DefaultReportPath, nil))
		return rec
	}
	want503 := func(when string) {
		t.Helper()
		rec := get()
		if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") != "1" {
			t.Fatalf("%s: %d, Retry-After %q: want 503, Retry-After 1", when, rec.Code, rec.Header().Get("Retry-After"))
		}
	}
	want503("before any sample")
	a.Sample(context.Background())
	if rec := get(); rec.Code != http.StatusOK {
		t.Fatalf("after a sample: %d %s", rec.Code, rec.Body)
	}
	src.fail.Store(true)
	a.Sample(context.Background())
	want503("with the request source failing")
	src.fail.Store(false)
	a.Sample(context.Background())
	rep, err := Decode(get().Body)
	if err != nil || rep.Seq != 2 {
		t.Fatalf("healed: %+v, %v: want seq 2", rep, err)
	}
	res.fail.Store(true)
	a.Sample(context.Background())
	want503("with the resources failing")
	res.fail.Store(false)
	a.Sample(context.Background())
	time.Sleep(StaleIntervals*100*time.Millisecond + 50*time.Millisecond)
	want503("with the latest sample older than three intervals")
	if got := a.SampleFailures(); got != 2 {
		t.Fatalf("%d sample failures counted, want 2", got)
	}
	if guard.Reports.Load() != 2 {
		t.Fatalf("%d reports counted as served, want the 2 answered with 200", guard.Reports.Load())
	}
}

type switchResources struct{ fail atomic.Bool }

func (s *switchResources) Sample(context.Context) (Resources, error) {
	if s.fail.Load() {
		return Resources{}, errors.New("reading process cpu: process gone")
	}
	return Resources{Scope: ScopeProcess, CPUPercent: 5, MemoryPercent: 5}, nil
}
