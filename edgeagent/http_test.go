package edgeagent

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

type fixedResources struct{ r Resources }

func (f fixedResources) Sample(context.Context) (Resources, error) { return f.r, nil }

func newTestAgent(t *testing.T) (*Agent, *Meter) {
	t.Helper()
	m := new(Meter)
	a, err := NewAgent(Config{Name: "edge-a", Interval: time.Second}, fixedResources{Resources{Scope: ScopeHost, CPUPercent: 42, MemoryPercent: 10}}, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	a.Sample(context.Background())
	return a, m
}

func TestReportAndStateEndpoints(t *testing.T) {
	a, _ := newTestAgent(t)
	guard := NewGuard("s3cret")
	mux := http.NewServeMux()
	mux.HandleFunc(DefaultReportPath, func(w http.ResponseWriter, r *http.Request) { ServeReport(a, guard, w, r) })
	mux.HandleFunc(DefaultStatePath, func(w http.ResponseWriter, r *http.Request) { ServeState(a, guard, w, r) })

	do := func(method, path, token, body string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		return rec
	}
	tests := []struct {
		name         string
		method, path string
		token, body  string
		wantCode     int
		wantBody     string
	}{
		{"report without token", "GET", DefaultReportPath, "", "", 401, "bearer token"},
		{"report with wrong token", "GET", DefaultReportPath, "nope", "", 401, ""},
		{"report with token", "GET", DefaultReportPath, "s3cret", "", 200, `"cpu_percent":42`},
		{"report by POST", "POST", DefaultReportPath, "s3cret", "", 405, ""},
		{"state change without token", "PUT", DefaultStatePath, "", "drain", 401, ""},
		{"bad state", "PUT", DefaultStatePath, "s3cret", "sleepy", 400, "unknown state"},
		{"drain", "PUT", DefaultStatePath, "s3cret", "drain", 200, `"state":"drain"`},
		{"report shows drain", "GET", DefaultReportPath, "s3cret", "", 200, `"state":"drain"`},
		{"ready by JSON", "POST", DefaultStatePath, "s3cret", `{"state":"ready"}`, 200, `"state":"ready"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := do(tt.method, tt.path, tt.token, tt.body)
			if rec.Code != tt.wantCode || !strings.Contains(rec.Body.String(), tt.wantBody) {
				t.Fatalf("%s %s = %d %q, want %d containing %q", tt.method, tt.path, rec.Code, rec.Body, tt.wantCode, tt.wantBody)
			}
			if rec.Code == 401 && strings.Contains(rec.Body.String(), "cpu_percent") {
				t.Fatal("401 response leaks the report")
			}
		})
	}
	if got := guard.Unauthorized.Load(); got != 3 {
		t.Fatalf("unauthorized count = %d, want 3", got)
	}

	// Without a token the state can be read but not changed.
	open := NewGuard("")
	rec := httptest.NewRecorder()
	ServeState(a, open, rec, httptest.NewRequest("PUT", DefaultStatePath, strings.NewReader("maint")))
	if rec.Code != http.StatusForbidden || a.State() != StateReady {
		t.Fatalf("state change without a configured token = %d, state %s", rec.Code, a.State())
	}
}

func TestCollectorLint(t *testing.T) {
	a, _ := newTestAgent(t)
	c := NewCollector(a, NewGuard("x"))
	problems, err := testutil.CollectAndLint(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	if n := testutil.CollectAndCount(c); n != 13 {
		t.Fatalf("collected %d series, want 13", n)
	}
}
