package integration

import (
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/prometheus/client_golang/prometheus"
)

// edgeNamed is the edge called name, or nil.
func edgeNamed(edges []*edgeProc, name string) *edgeProc {
	for _, e := range edges {
		if e.name == name {
			return e
		}
	}
	return nil
}

// servingEdge finds, among the live edges, the one holding a stream.
func servingEdge(t *testing.T, edges []*edgeProc) *edgeProc {
	t.Helper()
	var found *edgeProc
	eventually(t, 5*time.Second, "the edge serving the stream", func() (bool, string) {
		for _, e := range edges {
			if e.caddy.Exited() {
				continue
			}
			if r := getReport(t, "http://"+addr(e.port)+"/_edgetier/load", ""); r.Streams >= 1 {
				found = e
				return true, e.name
			}
		}
		return false, "no edge holds a stream"
	})
	return found
}

// download is what the client of fetchKilling got.
type download struct {
	status int
	header http.Header
	body   []byte
	err    error
}

// fetchKilling downloads url (through the LB), reading slowly, and calls
// kill once after each of the given offsets.
func fetchKilling(t *testing.T, url, rng string, killAt []int64, kill func(k int, served string)) download {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if rng != "" {
		req.Header.Set("Range", rng)
	}
	client := &http.Client{Timeout: 60 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	d := download{status: resp.StatusCode, header: resp.Header}
	buf := make([]byte, 64<<10)
	k := 0
	for {
		if k < len(killAt) && int64(len(d.body)) >= killAt[k] {
			kill(k, resp.Header.Get("X-Edge"))
			k++
		}
		n, err := resp.Body.Read(buf)
		d.body = append(d.body, buf[:n]...)
		if err != nil {
			if !errors.Is(err, io.EOF) {
				d.err = err
			}
			return d
		}
	}
}

// TestResumeOnAnotherEdge: the serving edge is killed (-9) after the first
// MiB of a 50 MB file; the client still gets status, headers and bytes
// equal to the file's: for a whole-file GET, for a Range from the middle,
// and when the second edge dies too (the third finishes). With resume off
// the client sees an abort, so the test tells the difference.
func TestResumeOnAnotherEdge(t *testing.T) {
	lib := library(t)
	want := readLibrary(t, "big.bin")
	wantSum := sha256.Sum256(want)
	const mib = 1 << 20
	mid := int64(len(want) / 2)

	tests := []struct {
		name    string
		resume  string
		rng     string
		kills   int
		wantErr bool
	}{
		{"whole file", "2", "", 1, false},
		{"range from the middle", "2", fmt.Sprintf("bytes=%d-", mid), 1, false},
		{"second edge dies too", "2", "", 2, false},
		{"resume off: the client sees the abort", "off", "", 1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			edges := startEdges(t, lib, lib, lib)
			lb, lbURL := startResumeLB(t, edges, tt.resume)
			waitTrusted(t, lb, lbURL, edgeAddrs(edges)...)
			killAt := []int64{mib, 3 * mib}[:tt.kills]
			var killed []string
			d := fetchKilling(t, lbURL+"/big.bin", tt.rng, killAt, func(k int, first string) {
				victim := edgeNamed(edges, first)
				if k > 0 {
					victim = servingEdge(t, edges)
				}
				victim.caddy.Kill()
				killed = append(killed, victim.name)
			})
			t.Logf("killed %v; got %d bytes, status %d, err %v", killed, len(d.body), d.status, d.err)
			expected, status := want, http.StatusOK
			if tt.rng != "" {
				expected, status = want[mid:], http.StatusPartialContent
			}
			if tt.wantErr {
				if d.err == nil || len(d.body) >= len(expected) {
					t.Fatalf("with resume off the client got a clean response of %d bytes (err %v): want an abort", len(d.body), d.err)
				}
				// The failure is remembered, and the player's next Range
				// request, from where it stopped, goes to a healthy edge;
				// the joined bytes equal the file.
				if v := upstreamMetric(t, lb, "edgetier_upstream_stream_failures_total", addr(edgeNamed(edges, killed[0]).port)); v < 1 {
					t.Errorf("the failure of %s was not remembered", killed[0])
				}
				req, _ := http.NewRequest(http.MethodGet, lbURL+"/big.bin", nil)
				req.Header.Set("Range", fmt.Sprintf("bytes=%d-", len(d.body)))
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				rest, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != http.StatusPartialContent || resp.Header.Get("X-Edge") == killed[0] {
					t.Fatalf("next Range request: %d from %s, err %v", resp.StatusCode, resp.Header.Get("X-Edge"), err)
				}
				if sha256.Sum256(append(d.body, rest...)) != wantSum {
					t.Fatal("the joined bytes differ from the file")
				}
				return
			}
			if d.err != nil || d.status != status || d.header.Get("Content-Length") != fmt.Sprint(len(expected)) {
				t.Fatalf("status %d, Content-Length %s, err %v: want %d with the file's length %d", d.status, d.header.Get("Content-Length"), d.err, status, len(expected))
			}
			if got := sha256.Sum256(d.body); got != sha256.Sum256(expected) || (tt.rng == "" && got != wantSum) {
				t.Fatalf("body of %d bytes differs from the file's", len(d.body))
			}
			if v := scrapeAdmin(t, lb).value("edgetier_resumes_total", prometheus.Labels{"outcome": "ok", "pool": "default"}); v != float64(tt.kills) {
				t.Errorf("resumes_total{ok} = %g, want %d", v, tt.kills)
			}
			for _, name := range killed {
				if v := upstreamMetric(t, lb, "edgetier_upstream_stream_failures_total", addr(edgeNamed(edges, name).port)); v < 1 {
					t.Errorf("the failure of %s was not remembered", name)
				}
			}
		})
	}
}

// TestResumeNeverMixesVersions: every edge holds a different version of
// the file (another ETag); when the serving edge dies, no other can
// continue the same representation, so the client connection is aborted,
// and what it got is a prefix of one version only.
func TestResumeNeverMixesVersions(t *testing.T) {
	var roots []string
	versions := map[string][]byte{}
	for i := 0; i < 3; i++ {
		dir := t.TempDir()
		data := make([]byte, 48<<20)
		_, _ = rand.Read(data)
		if err := os.WriteFile(filepath.Join(dir, "big.bin"), data, 0o644); err != nil {
			t.Fatal(err)
		}
		roots = append(roots, dir)
		versions[fmt.Sprintf("edge-%d", i+1)] = data
	}
	edges := startEdges(t, roots...)
	lb, lbURL := startResumeLB(t, edges, "2")
	var first string
	d := fetchKilling(t, lbURL+"/big.bin", "", []int64{1 << 20}, func(_ int, served string) {
		first = served
		edgeNamed(edges, served).caddy.Kill()
	})
	t.Logf("served by %s, killed; got %d bytes, err %v", first, len(d.body), d.err)
	if d.err == nil {
		t.Fatalf("the client got a clean response of %d bytes: want an abort", len(d.body))
	}
	if v := versions[first]; len(d.body) > len(v) || string(d.body) != string(v[:len(d.body)]) {
		t.Fatal("the received bytes are not a prefix of the serving edge's version: mixed versions")
	}
	if v := scrapeAdmin(t, lb).value("edgetier_resumes_total", prometheus.Labels{"outcome": "mismatch", "pool": "default"}); v < 1 {
		t.Errorf("resumes_total{mismatch} = %g, want 1", v)
	}
}

// TestResumeDuringPlayback: headless Chromium plays a video through the
// LB; the serving edge is killed during playback; currentTime keeps
// advancing with no stall longer than 1 s.
func TestResumeDuringPlayback(t *testing.T) {
	hugeVideo(t)
	lib := library(t)
	edges := startEdges(t, lib, lib, lib)
	lb, lbURL := startResumeLB(t, edges, "2")
	waitTrusted(t, lb, lbURL, edgeAddrs(edges)...)
	ctx := browser(t)
	if err := chromedp.Do(ctx, chromedp.Navigate(lbURL+"/huge.mp4")); err != nil {
		t.Fatal(err)
	}
	evalUntil(t, ctx, 15*time.Second, "the video to play",
		`(() => { const v = document.querySelector('video'); if (!v) return false; v.muted = true; if (v.paused) v.play(); return v.readyState >= 3 && v.currentTime > 1; })()`)
	victim := servingEdge(t, edges)
	victim.caddy.Kill()
	t.Logf("killed %s during playback", victim.name)

	// Sample currentTime for 4 s: it must keep advancing.
	var longest, stalled time.Duration
	last, lastAt := -1.0, time.Now()
	for end := time.Now().Add(4 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		cur, err := chromedp.Run(ctx, chromedp.Evaluate[float64](`document.querySelector('video').currentTime`))
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		if cur > last {
			last, lastAt = cur, now
		}
		if stalled = now.Sub(lastAt); stalled > longest {
			longest = stalled
		}
	}
	failed, _ := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.querySelector('video').error !== null`))
	t.Logf("currentTime %.1f s, longest stall %s", last, longest)
	if failed || longest > time.Second {
		t.Errorf("playback stalled %s after the kill (media error: %v)", longest, failed)
	}
	// The player may still be playing from its buffer; the failure shows
	// once it asks the dead edge's stream for more.
	t.Logf("failures remembered against %s: %g", victim.name, upstreamMetric(t, lb, "edgetier_upstream_stream_failures_total", addr(victim.port)))
}
