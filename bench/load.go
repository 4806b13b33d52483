package main

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"
)

// sample is what one run of one arm measured.
type sample struct {
	ttfb    []time.Duration
	chunks  []time.Duration // the whole download of each
	bytes   int64
	elapsed time.Duration
	errors  int
	perEdge map[string]int
	perSec  []map[string]int // requests per edge in each second
	windows []map[string]int // requests started per edge in each 100 ms window
}

// herdingCV is the mean, over 100 ms windows, of the coefficient of
// variation of the requests each edge received in the window: 0 when the
// balancers spread every burst evenly, high when they herd.
func (s *sample) herdingCV(edges []string) float64 {
	var cvs []float64
	for _, w := range s.windows {
		var v []float64
		for _, e := range edges {
			v = append(v, float64(w[e]))
		}
		if cv, ok := coefficientOfVariation(v); ok {
			cvs = append(cvs, cv)
		}
	}
	return mean(cvs)
}

func (s *sample) throughputMBps() float64 { return float64(s.bytes) / 1e6 / s.elapsed.Seconds() }

func (s *sample) percentile(p float64) time.Duration { return quantile(s.ttfb, p) }

// play runs players against bases (one per balancer; players are spread
// over them) for warm and then d, the way video players fetch: the head of
// a file, then sequential chunks of 256 KiB–2 MiB, sometimes a seek. With
// no base (direct), each player request goes straight to an edge, round
// robin. Only requests started after warm are measured: by then every
// player has its connection and the arm runs as it would in the middle of
// a longer run, whatever ran before it.
func play(sys *system, bases []string, players int, warm, d time.Duration) *sample {
	s := &sample{perEdge: map[string]int{}}
	var mu sync.Mutex
	transport := &http.Transport{MaxIdleConnsPerHost: players, DisableCompression: true}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport, Timeout: 30 * time.Second}
	start := time.Now().Add(warm)
	deadline := start.Add(d)
	direct := 0
	var wg sync.WaitGroup
	for p := 0; p < players; p++ {
		wg.Add(1)
		go func(p int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(p), uint64(start.UnixNano())))
			for time.Now().Before(deadline) {
				f := sys.files[rng.IntN(len(sys.files))]
				offset, size := int64(0), int64(256<<10)
				for offset < f.size && time.Now().Before(deadline) {
					end := min(offset+size, f.size) - 1
					base := ""
					if len(bases) > 0 {
						base = bases[p%len(bases)]
					} else {
						mu.Lock()
						base = "http://" + sys.edges[direct%len(sys.edges)].public
						direct++
						mu.Unlock()
					}
					req, _ := http.NewRequest(http.MethodGet, base+f.path, nil)
					req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", offset, end))
					t0 := time.Now()
					resp, err := client.Do(req)
					var n int64
					ok := false
					if err == nil {
						ttfb := time.Since(t0)
						n, err = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						ok = err == nil && resp.StatusCode == http.StatusPartialContent && n == end-offset+1
						mu.Lock()
						if ok && !t0.Before(start) { // requests of the warm-up are not measured
							s.ttfb = append(s.ttfb, ttfb)
							s.chunks = append(s.chunks, time.Since(t0))
							s.bytes += n
							edge := resp.Header.Get("X-Edge")
							s.perEdge[edge]++
							sec := int(time.Since(start) / time.Second)
							for len(s.perSec) <= sec {
								s.perSec = append(s.perSec, map[string]int{})
							}
							s.perSec[sec][edge]++
							win := int(t0.Sub(start) / (100 * time.Millisecond))
							for len(s.windows) <= win {
								s.windows = append(s.windows, map[string]int{})
							}
							s.windows[win][edge]++
						}
						mu.Unlock()
					}
					if !ok {
						mu.Lock()
						s.errors++
						mu.Unlock()
						break
					}
					offset = end + 1
					size = int64(256<<10 + rng.IntN(7<<18)) // 256 KiB – 2 MiB
					if rng.IntN(10) == 0 {
						offset = rng.Int64N(f.size) // a seek
					}
					time.Sleep(time.Duration(rng.IntN(40)) * time.Millisecond) // the player decodes
				}
			}
		}(p)
	}
	wg.Wait()
	s.elapsed = time.Since(start)
	return s
}
