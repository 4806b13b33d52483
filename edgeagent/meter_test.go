package edgeagent

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestMeterCountsStreams(t *testing.T) {
	m := new(Meter)
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = m.Serve(w, r, func(w http.ResponseWriter, r *http.Request) error {
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write([]byte("head"))
			http.NewResponseController(w).Flush()
			select {
			case <-release:
				_, _ = w.Write([]byte("tail"))
			case <-r.Context().Done():
			}
			return nil
		})
	}))
	defer srv.Close()

	const n = 5
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Get(srv.URL)
			if err != nil {
				t.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}()
	}
	waitFor(t, "5 streams in flight", func() bool { return m.InFlight() == n })
	close(release)
	wg.Wait()
	waitFor(t, "streams to end", func() bool { return m.InFlight() == 0 })
	c, _ := m.Counters()
	if c.Requests != n || c.TTFBCount != n || c.BytesSent != n*8 {
		t.Fatalf("counters = %+v, want %d requests, %d first bytes, %d bytes", c, n, n, n*8)
	}

	// A client that goes away ends its stream too.
	ctx, cancel := context.WithCancel(context.Background())
	blocked := make(chan struct{})
	srv2 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = m.Serve(w, r, func(w http.ResponseWriter, r *http.Request) error {
			w.WriteHeader(http.StatusOK)
			http.NewResponseController(w).Flush()
			close(blocked)
			<-r.Context().Done()
			return nil
		})
	}))
	defer srv2.Close()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv2.URL, nil)
	go func() {
		if resp, err := http.DefaultClient.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}()
	<-blocked
	if got := m.InFlight(); got != 1 {
		t.Fatalf("in flight = %d, want 1", got)
	}
	cancel()
	waitFor(t, "aborted stream to end", func() bool { return m.InFlight() == 0 })
}
