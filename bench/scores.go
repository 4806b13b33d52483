package main

import (
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"sort"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// boardScore is one edge's score and tier on a balancer's board, as its
// /metrics (Prometheus) shows them.
type boardScore struct {
	edge  string
	score float64
	tier  int
}

// boardScores reads the scores and tiers of pool's board from the
// balancer's metrics, named as the bench names the edges.
func (s *system) boardScores(pool string) ([]boardScore, error) {
	g, err := s.boardGauges(pool, "edgetier_upstream_score", "edgetier_upstream_tier")
	if err != nil {
		return nil, err
	}
	out := make([]boardScore, 0, len(g))
	for edge, v := range g {
		out = append(out, boardScore{edge: edge, score: v[0], tier: int(v[1])})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].edge < out[j].edge })
	return out, nil
}

// boardGauges reads the gauges of pool's board from the first balancer's
// metrics, by edge (as the bench names them), in the order of families.
func (s *system) boardGauges(pool string, families ...string) (map[string][]float64, error) {
	resp, err := http.Get("http://" + s.lbs[0].Admin + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.LegacyValidation)
	all, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("parsing the balancer's metrics: %w", err)
	}
	names := s.edgeNames()
	out := map[string][]float64{}
	for k, family := range families {
		// family{label=value} picks one series of a family with more.
		family, want, _ := strings.Cut(strings.TrimSuffix(family, "}"), "{")
		wantLabel, wantValue, _ := strings.Cut(want, "=")
		for _, m := range all[family].GetMetric() {
			name := names[label(m, "upstream")]
			if label(m, "pool") != pool || name == "" || (wantLabel != "" && label(m, wantLabel) != wantValue) {
				continue
			}
			if out[name] == nil {
				out[name] = make([]float64, len(families))
			}
			out[name][k] = m.GetGauge().GetValue()
		}
	}
	return out, nil
}

// tracing starts the trace of tiered's board (pool two) while arm runs,
// with -trace; it returns the function that stops it.
func (s *system) tracing(o options, arm string) func() {
	if o.traced(arm) {
		return s.trace("two")
	}
	return func() {}
}

// traceSlower is the startup above which arm's viewers log theirs (-trace:
// tiered's; 0: none).
func (o options) traceSlower(arm string) time.Duration {
	if o.traced(arm) {
		return 150 * time.Millisecond
	}
	return 0
}

// traced reports whether -trace follows arm: tiered only.
func (o options) traced(arm string) bool { return o.trace && arm == "tiered" }

// trace logs pool's board twice a second until the returned function is
// called: each edge's score, tier, link utilisation, capacity estimate
// (requests per second), CPU and request load, and whether it is
// full, slow or ejected (-trace, for development).
func (s *system) trace(pool string) func() {
	seen := map[string]uint64{}
	return every(500*time.Millisecond, func() {
		s.traceEvents(seen)
		g, err := s.boardGauges(pool, "edgetier_upstream_score", "edgetier_upstream_tier",
			"edgetier_upstream_link_utilisation", "edgetier_upstream_link_headroom", "edgetier_upstream_slow", "edgetier_upstream_ejected",
			"edgetier_upstream_capacity{resource=requests_per_second}", "edgetier_upstream_load_ratio{component=cpu}",
			"edgetier_upstream_load_ratio{component=requests}")
		if err != nil {
			log.Printf("    trace: %v", err)
			return
		}
		var parts []string
		for _, e := range s.edges {
			if v := g[e.name]; v != nil {
				full := ""
				if v[3] == 0 {
					full = " FULL"
				}
				if v[4] == 1 {
					full += " SLOW"
				}
				if v[5] == 1 {
					full += " EJECTED"
				}
				parts = append(parts, fmt.Sprintf("%s %.0f t%.0f link %.2f cap %.0f cpu %.2f req %.2f%s", e.name, v[0], v[1], v[2], v[6], v[7], v[8], full))
			}
		}
		log.Printf("    %s: %s", pool, strings.Join(parts, " | "))
	})
}

// traceSite names the balancer site that serves the tiered board's
// dashboard frames while tracing.
const traceSite = "trace"

// traceEvents logs the tiered board's slow and ejection events of each
// balancer after the seq seen of it, and updates seen.
func (s *system) traceEvents(seen map[string]uint64) {
	names := s.edgeNames()
	for k := 1; k <= s.nLBs; k++ {
		site := traceSite
		if k > 1 {
			site = fmt.Sprintf("%s@%d", traceSite, k)
		}
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", s.lbPorts[site]))
		if err != nil {
			log.Printf("    trace: %v", err)
			continue
		}
		var frame struct {
			Events []struct {
				Seq                     uint64
				Upstream, Kind, Message string
			}
		}
		err = json.NewDecoder(resp.Body).Decode(&frame)
		resp.Body.Close()
		if err != nil {
			log.Printf("    trace: reading the board's events: %v", err)
			continue
		}
		last := seen[site]
		for _, ev := range frame.Events {
			if ev.Seq > seen[site] && (ev.Kind == "slow" || ev.Kind == "eject" || ev.Kind == "return") {
				log.Printf("    event (balancer %d): %s %s: %s", k, names[ev.Upstream], ev.Kind, ev.Message)
			}
			last = max(last, ev.Seq)
		}
		seen[site] = last
	}
}

// edgeNames maps each edge's public address (the balancers' upstream
// label) to its name in the bench.
func (s *system) edgeNames() map[string]string {
	names := map[string]string{}
	for _, e := range s.edges {
		names[e.public] = e.name
	}
	return names
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func fmtScores(bs []boardScore) string {
	var parts []string
	for _, b := range bs {
		parts = append(parts, fmt.Sprintf("%s %.1f (tier %d)", b.edge, b.score, b.tier))
	}
	return strings.Join(parts, ", ")
}
