package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/edgetier/edgetier/internal/board"
	"github.com/edgetier/edgetier/internal/testenv"
)

// TestPlaybackInBrowser: headless Chromium opens / through the LB, plays
// the video (currentTime advances, readyState ≥ 3), seeks to the middle
// and plays on from there; the Range requests were spread over edges.
func TestPlaybackInBrowser(t *testing.T) {
	_, lbURL := startVideoSystem(t)
	// A video big enough that the browser streams it in Range requests
	// rather than buffering it whole.
	hugeVideo(t)
	// Let the board trust the edges, as on a running system.
	eventually(t, 10*time.Second, "every edge trusted", func() (bool, string) {
		resp, err := http.Get(lbURL + "/")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		frame := decodeFrame(t, []byte(getBody(t, lbURL+"/metrics")))
		ok := len(frame.Edges) == 3
		for _, e := range frame.Edges {
			ok = ok && e.Health == "ok"
		}
		return ok, fmt.Sprint(frame.Edges)
	})
	before := selectionsInFrame(decodeFrame(t, []byte(getBody(t, lbURL+"/metrics"))).Edges)
	ctx := browser(t)
	if err := chromedp.Do(ctx, chromedp.Navigate(lbURL+"/videos/huge.mp4")); err != nil {
		t.Fatal(err)
	}
	evalUntil(t, ctx, 15*time.Second, "the video to play",
		`(() => { const v = document.querySelector('video'); if (!v) return false; v.muted = true; if (v.paused) v.play(); return v.readyState >= 3 && v.currentTime > 0.5; })()`)
	// Seeks far apart make the player ask for new ranges. Enough of them
	// that the spread over edges below is not left to a few coin tosses:
	// between reports the best-scored edge wins two of three picks.
	for _, at := range []string{"0.8", "0.3", "0.9", "0.1", "0.65", "0.2"} {
		evalUntil(t, ctx, 5*time.Second, "a seek to "+at,
			`(() => { const v = document.querySelector('video'); if (window.seekTo !== `+at+`) { window.seekTo = `+at+`; v.currentTime = v.duration * `+at+`; } return v.readyState >= 3 && Math.abs(v.currentTime - v.duration * `+at+`) < 2; })()`)
	}
	evalUntil(t, ctx, 5*time.Second, "a seek to the middle",
		`(() => { const v = document.querySelector('video'); if (!window.seeked) { window.seeked = true; v.currentTime = v.duration / 2; } return v.currentTime >= v.duration / 2 - 0.1; })()`)
	evalUntil(t, ctx, 10*time.Second, "playback to continue after the seek",
		`(() => { const v = document.querySelector('video'); return !v.paused && v.readyState >= 3 && v.currentTime > v.duration / 2 + 1; })()`)
	screenshot(t, ctx, "playback.png")

	// The LB's own figures show where the browser's Range requests went.
	after := selectionsInFrame(decodeFrame(t, []byte(getBody(t, lbURL+"/metrics"))).Edges)
	used := 0
	for edge, n := range after {
		if n > before[edge] {
			used++
		}
	}
	t.Logf("selections per edge before playback %v, after %v", before, after)
	if used < 2 {
		t.Errorf("the browser's requests all went to one edge: before %v, after %v", before, after)
	}
}

// TestRangeRequestsSpreadOverEdges: a player's Range requests through the
// LB land on more than one edge (X-Edge), each with the right bytes.
func TestRangeRequestsSpreadOverEdges(t *testing.T) {
	_, lbURL := startVideoSystem(t)
	want := readLibrary(t, "big.bin")
	served := traffic(t, lbURL+"/videos", 4, 120, want)
	if len(served) < 2 {
		t.Errorf("Range requests all went to %v", served)
	}
}

// selectionsInFrame is each edge's selection count in a dashboard frame,
// by the edge's name.
func selectionsInFrame(edges []board.EdgeFigures) map[string]uint64 {
	out := map[string]uint64{}
	for _, e := range edges {
		out[e.Edge] = e.SelectionsTotal
	}
	return out
}

// readBody reads and closes resp's body.
func readBody(t *testing.T, resp *http.Response) []byte {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestFFprobeThroughLB: ffprobe reading the video through the LB's URL
// sees the same duration and streams as reading the file.
func TestFFprobeThroughLB(t *testing.T) {
	_, lbURL := startVideoSystem(t)
	ffprobe := testenv.Program(t, "ffprobe")
	probe := func(input string) string {
		out, err := exec.Command(ffprobe, "-v", "error", "-show_entries",
			"format=duration,format_name:stream=index,codec_type,codec_name,width,height,sample_rate,channels,nb_frames",
			"-of", "json", input).Output()
		if err != nil {
			t.Fatalf("ffprobe %s: %v", input, err)
		}
		var v any
		_ = json.Unmarshal(out, &v)
		norm, _ := json.Marshal(v)
		return string(norm)
	}
	file := probe(filepath.Join(library(t), "sample.mp4"))
	for _, url := range []string{lbURL + "/", lbURL + "/videos/sample.mp4"} {
		if got := probe(url); got != file {
			t.Errorf("ffprobe %s:\n%s\nfile:\n%s", url, got, file)
		}
	}
	if !strings.Contains(file, `"codec_name":"h264"`) || !strings.Contains(file, `"codec_name":"aac"`) {
		t.Errorf("sample is not H.264/AAC: %s", file)
	}
}

// TestRangeCorrectnessThroughLB: single, suffix, open-ended, multi-range
// and unsatisfiable ranges through the LB answer as HTTP says, with the
// file's bytes; CORS exposes what players need.
func TestRangeCorrectnessThroughLB(t *testing.T) {
	_, lbURL := startVideoSystem(t)
	file := readLibrary(t, "sample.mp4")
	n := len(file)
	tests := []struct {
		name, rng string
		status    int
		want      []byte // single-part body
		parts     [][]byte
	}{
		{"whole file", "", 200, file, nil},
		{"single", "bytes=100-199", 206, file[100:200], nil},
		{"suffix", "bytes=-500", 206, file[n-500:], nil},
		{"open-ended", fmt.Sprintf("bytes=%d-", n-1000), 206, file[n-1000:], nil},
		{"first byte", "bytes=0-0", 206, file[:1], nil},
		{"end past the file is clipped", fmt.Sprintf("bytes=%d-%d", n-10, n+1000), 206, file[n-10:], nil},
		{"multi-range", "bytes=0-9,1000-1099", 206, nil, [][]byte{file[:10], file[1000:1100]}},
		{"unsatisfiable", fmt.Sprintf("bytes=%d-%d", n+10, n+20), 416, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, lbURL+"/videos/sample.mp4", nil)
			req.Header.Set("Origin", "https://player.example.com")
			if tt.rng != "" {
				req.Header.Set("Range", tt.rng)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body := readBody(t, resp)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
			if resp.Header.Get("X-Edge") == "" {
				t.Error("no X-Edge header")
			}
			if tt.status == 206 || tt.status == 200 {
				if resp.Header.Get("Access-Control-Allow-Origin") == "" || !strings.Contains(resp.Header.Get("Access-Control-Expose-Headers"), "Content-Range") {
					t.Errorf("CORS headers missing: %v", resp.Header)
				}
			}
			if tt.want != nil && !bytes.Equal(body, tt.want) {
				t.Fatalf("%d bytes differ from the file's %d", len(body), len(tt.want))
			}
			if tt.parts != nil {
				_, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
				if err != nil {
					t.Fatal(err)
				}
				r := multipart.NewReader(bytes.NewReader(body), params["boundary"])
				for i, want := range tt.parts {
					p, err := r.NextPart()
					if err != nil {
						t.Fatalf("part %d: %v", i, err)
					}
					got, _ := io.ReadAll(p)
					if !bytes.Equal(got, want) {
						t.Fatalf("part %d: bytes differ", i)
					}
				}
			}
		})
	}
}
