package integration

import (
	"fmt"
	"io"
	"net/http"
	"testing"
)

// TestZeroSuffixRangeUnsatisfiable: through the default Caddyfile's LB, a
// suffix range of zero length (bytes=-0) selects nothing, so it is
// unsatisfiable: 416 with Content-Range: bytes */size, never a 206 for an
// empty, inverted range. Beside other ranges it is ignored.
func TestZeroSuffixRangeUnsatisfiable(t *testing.T) {
	s := startShipped(t)
	size := len(readLibrary(t, "sample.mp4"))
	get := func(method, path, rng string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest(method, s.url+path, nil)
		req.Header.Set("Range", rng)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s (Range %s): %v", method, path, rng, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return resp, body
	}
	unsatisfiable := fmt.Sprintf("bytes */%d", size)
	for _, path := range []string{"/", "/videos/sample.mp4"} {
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			for _, rng := range []string{"bytes=-0", "bytes=-000", "bytes= -0 ", "bytes=-0,-0"} {
				resp, _ := get(method, path, rng)
				if resp.StatusCode != http.StatusRequestedRangeNotSatisfiable || resp.Header.Get("Content-Range") != unsatisfiable {
					t.Errorf("%s %s Range %q: %d Content-Range %q, want 416 %q", method, path, rng, resp.StatusCode, resp.Header.Get("Content-Range"), unsatisfiable)
				}
			}
		}
	}
	want := readLibrary(t, "sample.mp4")
	// Beside a satisfiable range, the empty suffix is ignored.
	resp, body := get(http.MethodGet, "/videos/sample.mp4", "bytes=-0,10-19")
	if resp.StatusCode != http.StatusPartialContent || resp.Header.Get("Content-Range") != fmt.Sprintf("bytes 10-19/%d", size) || string(body) != string(want[10:20]) {
		t.Errorf("Range bytes=-0,10-19: %d %q, %d bytes: want 206 of bytes 10-19", resp.StatusCode, resp.Header.Get("Content-Range"), len(body))
	}
	// Other suffix ranges are untouched.
	resp, body = get(http.MethodGet, "/videos/sample.mp4", "bytes=-1")
	if resp.StatusCode != http.StatusPartialContent || string(body) != string(want[size-1:]) {
		t.Errorf("Range bytes=-1: %d, %d bytes: want 206 of the last byte", resp.StatusCode, len(body))
	}
}
