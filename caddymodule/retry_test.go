package caddymodule

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"go.uber.org/zap"

	"github.com/edgetier/edgetier/internal/board"
)

// withVars is a request as Caddy's server hands it on: with a variables map.
func withVars(method string) *http.Request {
	r := httptest.NewRequest(method, "http://lb/video.mp4", nil)
	return r.WithContext(context.WithValue(r.Context(), caddyhttp.VarsCtxKey, map[string]any{}))
}

// TestRetryLeavesOutFailedEdges: a retry does not go back to an edge that
// failed the request while another can serve, even the lone best edge of
// the plan; when every edge failed it, one of them serves rather than none.
func TestRetryLeavesOutFailedEdges(t *testing.T) {
	for _, tt := range []struct {
		name  string
		loads []int64
	}{
		{"equal edges", []int64{10, 10, 10}},
		{"the failed edge is the lone best", []int64{5, 35, 40}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, dials, r := newTestPolicy(t, 3)
			pool := plainPool(dials)
			for i, load := range tt.loads {
				r.load[pool[i].Dial].Store(load)
			}
			trust(t, p, pool, r)
			req := withVars(http.MethodGet)
			noteFailure(req, pool[0].Dial, time.Now())
			for k := 0; k < 300; k++ {
				if u := p.Select(pool, req, nil); u == pool[0] || u == nil {
					t.Fatalf("retry chose %v, want an edge that did not fail the request", u)
				}
			}
			noteFailure(req, pool[1].Dial, time.Now())
			for k := 0; k < 300; k++ {
				if u := p.Select(pool, req, nil); u != pool[2] {
					t.Fatalf("retry chose %v, want the one edge that did not fail the request", u)
				}
			}
			noteFailure(req, pool[2].Dial, time.Now())
			if u := p.Select(pool, req, nil); u == nil {
				t.Fatal("every edge failed the request once: want one of them, got none")
			}
			if u := p.Select(pool, withVars(http.MethodGet), nil); u == nil {
				t.Fatal("another request: no upstream")
			}
		})
	}
}

// TestFailedTriesCountedWhileServed: a request that failed a try counts
// among the failing until its context is done, once however many tries it
// failed; while none is counted, Select need not look up a request's tries.
func TestFailedTriesCountedWhileServed(t *testing.T) {
	before := failing.Load()
	ctx, cancel := context.WithCancel(withVars(http.MethodGet).Context())
	req := httptest.NewRequest(http.MethodGet, "http://lb/video.mp4", nil).WithContext(ctx)
	noteFailure(req, "127.0.0.1:1", time.Now())
	noteFailure(req, "127.0.0.1:2", time.Now())
	if n := failing.Load() - before; n != 1 {
		t.Errorf("a request that failed two tries counts %d times among the failing, want 1", n)
	}
	if tr := requestTries(req); tr == nil || len(tr.failed) != 2 {
		t.Fatalf("the request's tries = %+v, want its two failures", tr)
	}
	cancel()
	for deadline := time.Now().Add(5 * time.Second); failing.Load() != before; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the request was served, still %d more failing than before it", failing.Load()-before)
		}
	}
}

type closeCounter struct {
	io.Reader
	closed *int
}

func (c closeCounter) Close() error { *c.closed++; return nil }

// TestAnsweredRetries: an edge's 5xx answer to a GET or HEAD becomes an
// error Caddy retries while Caddy would try again (lb_retries,
// lb_try_duration, lb_retry_match), its body closed; the last try's answer
// goes through as it is. Every error is recorded, none as a fast answer.
func TestAnsweredRetries(t *testing.T) {
	getHead := caddyhttp.MatcherSets{caddyhttp.MatcherSet{caddyhttp.MatchMethod{"GET", "HEAD"}}}
	tests := []struct {
		name      string
		lb        *reverseproxy.LoadBalancing
		method    string
		status    int
		failed    int           // tries failed before this one
		started   time.Duration // before now, the first try
		wantRetry bool
	}{
		{"503 to a GET, first of three tries", &reverseproxy.LoadBalancing{Retries: 2}, "GET", 503, 0, 0, true},
		{"503 to a GET, second of three", &reverseproxy.LoadBalancing{Retries: 2}, "GET", 503, 1, 0, true},
		{"503 to a GET, the last try", &reverseproxy.LoadBalancing{Retries: 2}, "GET", 503, 2, 0, false},
		{"no retries configured", &reverseproxy.LoadBalancing{}, "GET", 503, 0, 0, false},
		{"no load balancing block", nil, "GET", 503, 0, 0, false},
		{"a success", &reverseproxy.LoadBalancing{Retries: 2}, "GET", 200, 0, 0, false},
		{"a viewer's error", &reverseproxy.LoadBalancing{Retries: 2}, "GET", 404, 0, 0, false},
		{"POST is never sent twice", &reverseproxy.LoadBalancing{Retries: 2, RetryMatch: caddyhttp.MatcherSets{caddyhttp.MatcherSet{caddyhttp.MatchMethod{"POST"}}}}, "POST", 503, 0, 0, false},
		{"HEAD without lb_retry_match: Caddy would not retry", &reverseproxy.LoadBalancing{Retries: 2}, "HEAD", 503, 0, 0, false},
		{"HEAD matched by lb_retry_match", &reverseproxy.LoadBalancing{Retries: 2, RetryMatch: getHead}, "HEAD", 503, 0, 0, true},
		{"lb_try_duration with time left", &reverseproxy.LoadBalancing{TryDuration: caddy.Duration(5 * time.Second)}, "GET", 502, 0, time.Second, true},
		{"lb_try_duration spent", &reverseproxy.LoadBalancing{TryDuration: caddy.Duration(time.Second)}, "GET", 502, 1, 2 * time.Second, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := board.New("retry-"+t.Name(), zap.NewNop())
			t.Cleanup(func() { _ = b.Destruct() })
			dial := "127.0.0.1:1"
			b.Pool([]string{dial}, []board.Upstream{&reverseproxy.Upstream{Host: new(reverseproxy.Host), Dial: dial}})
			tr := &ResumeTransport{board: b, handler: &reverseproxy.Handler{LoadBalancing: tt.lb}}
			req := withVars(tt.method)
			for k := 0; k < tt.failed; k++ {
				noteFailure(req, "127.0.0.1:2", time.Now().Add(-tt.started))
			}
			closed := 0
			resp := &http.Response{StatusCode: tt.status, Status: http.StatusText(tt.status), Body: closeCounter{strings.NewReader("x"), &closed}}
			got, err := tr.answered(req, dial, resp, nil, time.Now().Add(-tt.started), 1)
			switch {
			case tt.wantRetry && (err == nil || !errors.Is(err, errRetryStatus) || closed != 1):
				t.Errorf("got %v, %v (body closed %d times): want a retryable error, the body closed", got, err, closed)
			case !tt.wantRetry && (err != nil || got != resp || closed != 0):
				t.Errorf("got %v, %v (body closed %d times): want the answer itself", got, err, closed)
			}
			if st := b.Edges()[0].Status(time.Now()); tt.status >= 500 && (st.Errors != 1 || st.Answers != 1) {
				t.Errorf("%d answers, %d errors: want the one error recorded, not a fast answer", st.Answers, st.Errors)
			}
		})
	}
	t.Run("transport error", func(t *testing.T) {
		b := board.New("retry-transport-error", zap.NewNop())
		t.Cleanup(func() { _ = b.Destruct() })
		dial := "127.0.0.1:1"
		b.Pool([]string{dial}, []board.Upstream{&reverseproxy.Upstream{Host: new(reverseproxy.Host), Dial: dial}})
		tr := &ResumeTransport{board: b, handler: &reverseproxy.Handler{LoadBalancing: &reverseproxy.LoadBalancing{Retries: 2}}}
		req := withVars(http.MethodGet)
		reset := errors.New("connection reset by peer")
		if _, err := tr.answered(req, dial, nil, reset, time.Now(), 1); err != reset {
			t.Errorf("error %v, want the transport's own", err)
		}
		if st := b.Edges()[0].Status(time.Now()); st.Errors != 1 {
			t.Errorf("%d errors recorded, want 1", st.Errors)
		}
		if !requestTries(req).failedBy(dial) {
			t.Error("the edge that failed the try is not remembered for the retry")
		}
	})
}
