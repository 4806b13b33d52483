package main

import (
	"fmt"
	"net/http"
	"sort"
	"strings"

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
	resp, err := http.Get("http://" + s.lbs[0].Admin + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.LegacyValidation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("parsing the balancer's metrics: %w", err)
	}
	names := map[string]string{}
	for _, e := range s.edges {
		names[e.public] = e.name
	}
	byEdge := map[string]*boardScore{}
	read := func(family string, set func(*boardScore, float64)) {
		for _, m := range families[family].GetMetric() {
			if label(m, "pool") != pool {
				continue
			}
			name := names[label(m, "upstream")]
			if name == "" {
				continue
			}
			if byEdge[name] == nil {
				byEdge[name] = &boardScore{edge: name}
			}
			set(byEdge[name], m.GetGauge().GetValue())
		}
	}
	read("edgetier_upstream_score", func(b *boardScore, v float64) { b.score = v })
	read("edgetier_upstream_tier", func(b *boardScore, v float64) { b.tier = int(v) })
	out := make([]boardScore, 0, len(byEdge))
	for _, b := range byEdge {
		out = append(out, *b)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].edge < out[j].edge })
	return out, nil
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
