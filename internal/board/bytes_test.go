package board

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/edgetier/edgetier/edgeagent"
)

func (a *fakeAgent) setLink(util, link float64) {
	rep := edgeagent.Report{Schema: edgeagent.SchemaVersion, Edge: "fake", Timestamp: time.Now(), State: edgeagent.StateReady,
		CPUPercent: 10, MemoryPercent: 10, IntervalSeconds: 1, LinkUtilisation: util,
		Capacity: &edgeagent.Capacity{LinkBytesPerSecond: link}}
	b, _ := json.Marshal(rep)
	a.body.Store(string(b))
}

// picks chooses n times from pool and counts each upstream's picks.
func picks(pool *Pool, n, upstreams int) []int {
	out := make([]int, upstreams)
	for range n {
		if i := pool.Choose(); i >= 0 {
			out[i]++
		}
	}
	return out
}

// TestLinkHeadroom: an edge whose link is above link_headroom, as it
// reports it or as the bytes sent it since make it, gets no viewers while
// another has headroom, and gets them back when its link frees; the
// metrics say so.
// TestFullOnlyOnceOverForAWhile: a link over the limit is full only once
// it has stayed over for fullConfirm; under it, the wait starts again.
func TestFullOnlyOnceOverForAWhile(t *testing.T) {
	ms := int64(time.Millisecond)
	steps := []struct {
		at   int64 // ms
		over bool
		full bool
	}{
		{0, true, false},
		{999, true, false},
		{1000, true, true},
		{1100, true, true},
		{1200, false, false},
		{1300, true, false},
		{2299, true, false},
		{2300, true, true},
	}
	var s sentBytes
	base := time.Now().UnixNano()
	for _, st := range steps {
		if got := s.judgeFull(st.over, base+st.at*ms); got != st.full {
			t.Fatalf("at %d ms, over %v: full %v, want %v", st.at, st.over, got, st.full)
		}
	}
}

func TestLinkHeadroom(t *testing.T) {
	full, other := newFakeAgent(t, ""), newFakeAgent(t, "")
	full.setLink(0.95, 1e8)
	other.setLink(0.5, 1e8)
	b := newPolledBoard(t, nil)
	pool, _ := poolOf(b, full.dial(), other.dial())
	trusted := func() bool {
		for _, e := range b.Edges() {
			if v := e.View(); v == nil || !v.Trusted {
				return false
			}
		}
		return len(b.Edges()) == 2
	}
	waitUntil(t, "both upstreams trusted", trusted)
	waitUntil(t, "the full edge left out", func() bool { pool.Replan(); return picks(pool, 200, 2)[0] == 0 })
	if p := picks(pool, 200, 2); p[0] != 0 || p[1] != 200 {
		t.Fatalf("picks %v: the full edge must get none", p)
	}
	expect := func(headroom0, headroom1 int, util0 string) {
		t.Helper()
		want := fmt.Sprintf(`
# HELP edgetier_upstream_link_headroom 1 while the upstream's link utilisation is at most link_headroom, 0 above it: it then takes no new viewers while another upstream has headroom.
# TYPE edgetier_upstream_link_headroom gauge
edgetier_upstream_link_headroom{pool=%[1]q,upstream=%[2]q} %[3]d
edgetier_upstream_link_headroom{pool=%[1]q,upstream=%[4]q} %[5]d
`, b.Name(), full.dial(), headroom0, other.dial(), headroom1)
		if err := testutil.CollectAndCompare(b.Collector(), strings.NewReader(want), "edgetier_upstream_link_headroom"); err != nil {
			t.Fatal(err)
		}
		if got := b.edge(full.dial()).Status(time.Now()).Link.Utilisation; fmt.Sprintf("%.2f", got) != util0 {
			t.Fatalf("link utilisation %g, want %s", got, util0)
		}
	}
	waitUntil(t, "the full edge judged full", func() bool { pool.Replan(); return !b.edge(full.dial()).Status(time.Now()).Link.Headroom })
	expect(0, 1, "0.95")
	if problems, err := testutil.CollectAndLint(b.Collector()); err != nil || len(problems) > 0 {
		t.Fatalf("lint: %v %v", err, problems)
	}

	full.setLink(0.2, 1e8)
	waitUntil(t, "the freed edge chosen again", func() bool { pool.Replan(); return picks(pool, 200, 2)[0] > 0 })
	expect(1, 1, "0.20")

	// The bytes this balancer sends count at once, whatever the report
	// says: 20 MB every 10 ms or so fills a 100 MB/s link (full once over
	// for fullConfirm).
	var sent *atomic.Uint64 = b.SentCounter(full.dial())
	waitUntil(t, "the edge filled by our own bytes left out", func() bool {
		sent.Add(20e6)
		pool.Replan()
		return picks(pool, 200, 2)[0] == 0
	})
	if st := b.edge(full.dial()).Status(time.Now()); st.Link.Headroom || st.Link.Utilisation < 0.9 {
		t.Fatalf("link %+v: want full", st.Link)
	}
	if b.SentCounter("127.0.0.1:1") != nil {
		t.Fatal("an untracked upstream has a counter")
	}
}
