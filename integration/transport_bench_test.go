package integration

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/edgetier/edgetier/internal/cluster"
)

// BenchmarkTransportOverhead compares the edgetier transport (resume on)
// with Caddy's plain http transport on the same edge and the same traffic
// when no edge fails: two LBs, arms interleaved over rounds (A B, B A, …),
// 4 clients each downloading the 48 MiB file. It reports each arm's median
// throughput and the median ratio edgetier/http with its spread.
//
//	make build && EDGETIER_CADDY=$PWD/bin/caddy go test -run '^$' -bench TransportOverhead -benchtime 1x ./integration/
func BenchmarkTransportOverhead(b *testing.B) {
	edge := startEdge(b, "edge-1", library(b), "", cluster.Options{})
	lb := func(name, transport string) string {
		port := freePort(b)
		startCaddy(b, name, globalOptions+fmt.Sprintf(`
http://:%d {
	bind 127.0.0.1
	reverse_proxy %s {
		lb_policy tiered
		%s
	}
}
`, port, addr(edge.port), transport), cluster.Options{})
		return "http://" + addr(port) + "/big.bin"
	}
	arms := []struct{ name, url string }{
		{"http", lb("lb-http", "transport http")},
		{"edgetier", lb("lb-edgetier", "transport edgetier {\n\t\t\tresume 2\n\t\t}")},
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	run := func(url string) float64 { // MB/s
		const clients, each = 4, 3
		start := time.Now()
		var wg sync.WaitGroup
		var mu sync.Mutex
		var total int64
		for c := 0; c < clients; c++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := 0; k < each; k++ {
					resp, err := client.Get(url)
					if err != nil {
						b.Error(err)
						return
					}
					n, _ := io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					mu.Lock()
					total += n
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		return float64(total) / 1e6 / time.Since(start).Seconds()
	}
	run(arms[0].url) // warm both paths
	run(arms[1].url)
	const rounds = 7
	results := map[string][]float64{}
	var ratios []float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for r := 0; r < rounds; r++ {
			order := []int{0, 1}
			if r%2 == 1 {
				order = []int{1, 0}
			}
			got := map[string]float64{}
			for _, a := range order {
				got[arms[a].name] = run(arms[a].url)
				results[arms[a].name] = append(results[arms[a].name], got[arms[a].name])
			}
			ratios = append(ratios, got["edgetier"]/got["http"])
		}
	}
	median := func(v []float64) float64 {
		s := slices.Clone(v)
		slices.Sort(s)
		return s[len(s)/2]
	}
	b.ReportMetric(median(results["http"]), "http-MB/s")
	b.ReportMetric(median(results["edgetier"]), "edgetier-MB/s")
	b.ReportMetric(median(ratios), "ratio")
	b.ReportMetric(slices.Min(ratios), "ratio-min")
	b.ReportMetric(slices.Max(ratios), "ratio-max")
}
