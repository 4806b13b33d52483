package board

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/edgetier/edgetier/edgeagent"
	"github.com/edgetier/edgetier/internal/rank"
)

// fakeAgent serves reports whose body the test controls.
type fakeAgent struct {
	hang  atomic.Bool  // never answer in time
	delay atomic.Int64 // nanoseconds before each answer
	srv   *httptest.Server
	body  atomic.Value // string
	hits  atomic.Int64
	token string
}

func newFakeAgent(t testing.TB, token string) *fakeAgent {
	a := &fakeAgent{token: token}
	a.setLoad(10, edgeagent.StateReady)
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.hits.Add(1)
		time.Sleep(time.Duration(a.delay.Load()))
		if a.hang.Load() {
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
			return
		}
		if a.token != "" && r.Header.Get("Authorization") != "Bearer "+a.token {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		_, _ = w.Write([]byte(a.body.Load().(string)))
	}))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *fakeAgent) setLoad(load float64, state edgeagent.State) {
	rep := edgeagent.Report{Schema: edgeagent.SchemaVersion, Edge: "fake", Timestamp: time.Now(), State: state,
		CPUPercent: load, MemoryPercent: load, IntervalSeconds: 1}
	b, _ := json.Marshal(rep)
	a.body.Store(string(b))
}

func (a *fakeAgent) dial() string { return strings.TrimPrefix(a.srv.URL, "http://") }

// fakeUpstream is an upstream whose in-flight count and availability the
// test sets.
type fakeUpstream struct {
	inflight    atomic.Int64
	unavailable atomic.Bool
}

func (u *fakeUpstream) Available() bool  { return !u.unavailable.Load() }
func (u *fakeUpstream) NumRequests() int { return int(u.inflight.Load()) }

// newPolledBoard starts a board that polls every 100 ms.
func newPolledBoard(t *testing.T, configure func(*Config)) *Board {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Interval, cfg.Timeout = 100*time.Millisecond, 50*time.Millisecond
	cfg.Scoring.StaleAfter = 300 * time.Millisecond
	if configure != nil {
		configure(cfg)
	}
	b := New(fmt.Sprintf("polled-%s", t.Name()), zap.NewNop())
	t.Cleanup(func() { _ = b.Destruct() })
	b.Configure(cfg)
	return b
}

// poolOf tracks one upstream per agent (or address) on b.
func poolOf(b *Board, dials ...string) (*Pool, []Upstream) {
	ups := make([]Upstream, len(dials))
	for i := range ups {
		ups[i] = new(fakeUpstream)
	}
	return b.Pool(dials, ups), ups
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestBoardPollsConcurrently: Select from many goroutines while pollers
// publish reports (run under -race by make test); the loaded agent loses
// its share once its report arrives.
func TestBoardPollsConcurrently(t *testing.T) {
	agents := []*fakeAgent{newFakeAgent(t, "tok"), newFakeAgent(t, "tok"), newFakeAgent(t, "tok")}
	b := newPolledBoard(t, func(c *Config) { c.Token = "tok" })
	pool, _ := poolOf(b, agents[0].dial(), agents[1].dial(), agents[2].dial())
	var wg sync.WaitGroup
	stop := make(chan struct{})
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}()
	var picks [3]atomic.Int64
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; ; k++ {
				select {
				case <-stop:
					return
				default:
				}
				if k%100 == 0 {
					time.Sleep(time.Millisecond) // requests arrive, they do not spin
				}
				if i := pool.Choose(); i >= 0 {
					picks[i].Add(1)
				}
			}
		}()
	}
	waitUntil(t, "every upstream trusted", func() bool {
		for _, e := range b.Edges() {
			if v := e.View(); v == nil || !v.Trusted {
				return false
			}
		}
		return len(b.Edges()) == 3
	})
	agents[0].setLoad(95, edgeagent.StateReady)
	waitUntil(t, "the loaded upstream in tier 3", func() bool {
		v := b.edge(agents[0].dial()).View()
		return v != nil && v.Tier == 3
	})
	for i := range picks {
		picks[i].Store(0)
	}
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	if picks[0].Load() != 0 || picks[1].Load() == 0 || picks[2].Load() == 0 {
		t.Fatalf("picks = %d %d %d: the tier-3 upstream must get none", picks[0].Load(), picks[1].Load(), picks[2].Load())
	}
}

// TestBoardBadReports: every kind of bad report is rejected with its
// counted reason and the last good report is kept until it goes stale.
func TestBoardBadReports(t *testing.T) {
	a := newFakeAgent(t, "")
	b := newPolledBoard(t, nil)
	poolOf(b, a.dial())
	e := b.edge(a.dial())
	waitUntil(t, "trusted", func() bool { v := e.View(); return v != nil && v.Trusted })
	future := time.Now().Add(100 * 365 * 24 * time.Hour).Format(time.RFC3339)
	cases := []struct{ body, reason string }{
		{`{"schema":"1.0","timestamp":"2026-01-01T00:00:00Z","state":"ready","cpu_percent":1e400}`, edgeagent.ReasonMalformed},
		{`{"schema":"1.0","timestamp":"2026-01-01T00:00:00Z","state":"ready","cpu_percent":-5}`, edgeagent.ReasonInvalid},
		{`{"schema":"1.0","timestamp":"2026-01-01T00:00:00Z","state":"ready","cpu_percent":NaN}`, edgeagent.ReasonMalformed},
		{`{"schema":"1.0","timest`, edgeagent.ReasonMalformed},
		{`<html><body>502 Bad Gateway</body></html>`, edgeagent.ReasonMalformed},
		{`{"edge":"` + strings.Repeat("x", 10<<20) + `"}`, edgeagent.ReasonTooLarge},
		{`{"schema":"2.0","timestamp":"2026-01-01T00:00:00Z","state":"ready"}`, edgeagent.ReasonSchema},
	}
	for _, c := range cases {
		r := decodeReason(c.reason)
		before := e.errors[r].Load()
		a.body.Store(c.body)
		waitUntil(t, "a "+c.reason+" rejection", func() bool { return e.errors[r].Load() > before })
		if v := e.View(); v == nil || v.Report.Edge != "fake" {
			t.Fatalf("after %s the last good report is gone", c.reason)
		}
	}
	// Timestamps far away are accepted: freshness is judged by the LB's clock.
	a.body.Store(`{"schema":"1.0","edge":"past","timestamp":"1971-01-01T00:00:00Z","state":"ready","cpu_percent":3}`)
	waitUntil(t, "the report from the past", func() bool { return e.View().Report.Edge == "past" })
	a.body.Store(`{"schema":"1.0","edge":"skewed","timestamp":"` + future + `","state":"ready","cpu_percent":3}`)
	waitUntil(t, "the skewed report", func() bool { return e.View().Report.Edge == "skewed" })
	waitUntil(t, "the skewed report trusted", func() bool { return e.View().Trusted })
	// A hung agent: polls time out (counted), the report goes stale and the
	// upstream becomes unknown, neither down nor trusted.
	a.hang.Store(true)
	waitUntil(t, "a timeout", func() bool { return e.errors[reasonTimeout].Load() > 0 })
	waitUntil(t, "staleness", func() bool {
		return e.View().Code(time.Now().UnixNano(), int64(b.Config().Scoring.StaleAfter)) != rank.CodeTrusted
	})
	if v := e.View(); v.Down || v.Report.Edge != "skewed" {
		t.Errorf("hung agent: view down=%v edge=%q, want the last report kept and not down", v.Down, v.Report.Edge)
	}
	a.hang.Store(false)
}

// TestBoardRefusedOwnAddressIsDown: an agent on the upstream's own address
// that refuses connections makes it down; a separate agent that is down
// leaves it unknown.
func TestBoardRefusedOwnAddressIsDown(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()
	b := newPolledBoard(t, nil)
	poolOf(b, dead)
	e := b.edge(dead)
	waitUntil(t, "down", func() bool { v := e.View(); return v != nil && v.Down })

	b2 := newPolledBoard(t, func(c *Config) { c.ReportURL = "http://" + dead + "/_edgetier/load?for={upstream}" })
	poolOf(b2, "127.0.0.1:1")
	e2 := b2.edge("127.0.0.1:1")
	waitUntil(t, "a refused poll", func() bool { return e2.errors[reasonRefused].Load() > 0 })
	if v := e2.View(); v != nil && v.Down {
		t.Fatal("an upstream whose separate agent refuses was marked down")
	}
}

// TestBoardForgetsUnseenUpstreams: an upstream no pool holds any more
// stops being polled after forget_after.
func TestBoardForgetsUnseenUpstreams(t *testing.T) {
	a := newFakeAgent(t, "")
	b := newPolledBoard(t, func(c *Config) { c.ForgetAfter = time.Second })
	poolOf(b, a.dial())
	waitUntil(t, "polls", func() bool { return a.hits.Load() >= 3 })
	waitUntil(t, "the upstream to be forgotten", func() bool { return len(b.Edges()) == 0 })
	hits := a.hits.Load()
	time.Sleep(400 * time.Millisecond)
	if a.hits.Load() > hits+1 {
		t.Fatalf("still polling a forgotten upstream: %d → %d", hits, a.hits.Load())
	}
}

// TestAgentStringsStayText: an edge name with placeholders and HTML is
// shown as given (never expanded, never an address) in the frame.
func TestAgentStringsStayText(t *testing.T) {
	a := newFakeAgent(t, "")
	const name = `{env.HOME}{http.request.host}<img src=x onerror=alert(1)>`
	body, _ := json.Marshal(edgeagent.Report{Schema: edgeagent.SchemaVersion, Edge: name, Timestamp: time.Now(), State: edgeagent.StateReady})
	a.body.Store(string(body))
	b := newPolledBoard(t, nil)
	poolOf(b, a.dial())
	e := b.edge(a.dial())
	waitUntil(t, "the report", func() bool { v := e.View(); return v != nil && v.Report.Edge == name })
	fb := NewFrameBuilder(b, new(edgeagent.Meter), fixedHost{}, time.Second)
	var f Frame
	if err := json.Unmarshal(fb.Frame(), &f); err != nil {
		t.Fatal(err)
	}
	if len(f.Edges) != 1 || f.Edges[0].Edge != name || f.Edges[0].Upstream != a.dial() {
		t.Fatalf("frame edges = %+v", f.Edges)
	}
	if e.reportURL != "http://"+a.dial()+"/_edgetier/load" {
		t.Fatalf("report URL %q is not built from the upstream's address alone", e.reportURL)
	}
}

type fixedHost struct{}

func (fixedHost) Sample(context.Context) (edgeagent.Resources, error) {
	return edgeagent.Resources{Scope: edgeagent.ScopeHost}, nil
}
