package integration

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestReloadBreaksNoStreamInProgress: `caddy reload` of the default
// Caddyfile (LB and edges in one Caddy), five times while six viewers
// stream a 48 MiB file through the LB: every stream in progress completes
// with every byte. Meanwhile eight loops make new requests: a request on a
// connection opened at a reload instant may fail (the connection closes
// before an answer: curl's 52 or 56), as with stock Caddy, and so may one
// whose first try an edge closed at that instant: stock Caddy answers it
// 502, empty, since the old config's end also ends the wait before its
// retry (reverseproxy's tryAgain). The test counts those, at most one a
// reload, and checks that every other answer is right.
func TestReloadBreaksNoStreamInProgress(t *testing.T) {
	want := readLibrary(t, "big.bin")
	s := startShipped(t)
	// The board learns the edges before the streams start.
	for i := 0; i < 3; i++ {
		getBody(t, s.url+"/videos/sample.mp4")
	}

	streamErrs := make(chan error, 6)
	var streams sync.WaitGroup
	var started atomic.Int64
	for i := 0; i < 6; i++ {
		streams.Add(1)
		go func() {
			defer streams.Done()
			resp, err := http.Get(s.url + "/videos/big.bin")
			if err != nil {
				streamErrs <- fmt.Errorf("starting a stream: %w", err)
				return
			}
			defer resp.Body.Close()
			started.Add(1)
			var got bytes.Buffer
			buf := make([]byte, 256<<10)
			for {
				n, err := resp.Body.Read(buf)
				got.Write(buf[:n])
				time.Sleep(30 * time.Millisecond) // a viewer: about 8 MB/s, the file lasts ~6 s
				if err == io.EOF {
					break
				}
				if err != nil {
					streamErrs <- fmt.Errorf("stream broken after %d of %d bytes: %w", got.Len(), len(want), err)
					return
				}
			}
			if !bytes.Equal(got.Bytes(), want) {
				streamErrs <- fmt.Errorf("stream of %d bytes differs from the file", got.Len())
			}
		}()
	}

	// New requests all along.
	stop := make(chan struct{})
	var loops sync.WaitGroup
	var requests, dropped, cut, wrong atomic.Int64
	sample := readLibrary(t, "sample.mp4")
	for i := 0; i < 8; i++ {
		loops.Add(1)
		go func() {
			defer loops.Done()
			client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
			for {
				select {
				case <-stop:
					return
				default:
				}
				requests.Add(1)
				resp, err := client.Get(s.url + "/videos/sample.mp4")
				if err != nil {
					dropped.Add(1)
					continue
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				switch {
				case err != nil:
					dropped.Add(1)
				case resp.StatusCode == http.StatusBadGateway && len(body) == 0:
					cut.Add(1)
				case resp.StatusCode != http.StatusOK || !bytes.Equal(body, sample):
					wrong.Add(1)
					t.Errorf("a new request during the reloads: %d, %d bytes: want 200 and the file", resp.StatusCode, len(body))
				}
				time.Sleep(10 * time.Millisecond)
			}
		}()
	}

	eventually(t, 5*time.Second, "the streams to start", func() (bool, string) {
		return started.Load() == 6, fmt.Sprint(started.Load(), " started")
	})
	const reloads = 5
	for i := 0; i < reloads; i++ {
		time.Sleep(500 * time.Millisecond)
		s.reload(t)
	}
	streams.Wait()
	close(stop)
	loops.Wait()
	close(streamErrs)
	for err := range streamErrs {
		t.Error(err)
	}
	if cut.Load() > reloads {
		t.Errorf("%d new requests answered 502 during %d reloads: more than one a reload instant", cut.Load(), reloads)
	}
	t.Logf("new requests during %d reloads: %d, %d dropped at a reload instant, %d answered 502 there, %d wrong", reloads, requests.Load(), dropped.Load(), cut.Load(), wrong.Load())
}
