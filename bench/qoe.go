package main

import (
	"fmt"
	"math"
	"strings"
)

// viewStats condenses one arm's paced-viewer rounds: medians over rounds
// of each round's figure.
type viewStats struct {
	startP50, startP95     spread // ms
	seekP95                spread // ms
	rebuffer, stalledShare spread // 0–1
	chunkP50, chunkP99     spread // ms, the whole download
	ttfbP99                spread // ms
	mbps                   spread
	errors                 int
	share                  map[string]float64 // of bytes
	ratioStartP95          spread             // per round, against least_conn's
	ratioChunkP99          spread
	ratioThrough           spread // of the media played
}

func viewStatsOf(r *scenarioResult, name string) viewStats {
	var st viewStats
	var sp50, sp95, seek, reb, stall, cp50, cp99, tp99, mbps, rs, rc, rt []float64
	var total int64
	st.share = map[string]float64{}
	for i, v := range r.views[name] {
		sp50 = append(sp50, ms(quantile(v.startups, 0.5)))
		sp95 = append(sp95, ms(quantile(v.startups, 0.95)))
		seek = append(seek, ms(quantile(v.seeks, 0.95)))
		reb = append(reb, v.rebufferRatio())
		stall = append(stall, v.stalledShare())
		cp50 = append(cp50, ms(quantile(v.chunks, 0.5)))
		cp99 = append(cp99, ms(quantile(v.chunks, 0.99)))
		tp99 = append(tp99, ms(quantile(v.ttfb, 0.99)))
		mbps = append(mbps, v.throughputMBps())
		st.errors += v.errors
		for e, n := range v.perEdge {
			st.share[e] += float64(n)
			total += n
		}
		if lcs := r.views["least_conn"]; i < len(lcs) {
			lc := lcs[i]
			rs = append(rs, ms(quantile(v.startups, 0.95))/ms(quantile(lc.startups, 0.95)))
			rc = append(rc, ms(quantile(v.chunks, 0.99))/ms(quantile(lc.chunks, 0.99)))
			rt = append(rt, v.playedPerSecond()/lc.playedPerSecond())
		}
	}
	for e := range st.share {
		st.share[e] /= float64(max(total, 1))
	}
	st.startP50, st.startP95, st.seekP95 = spreadOf(sp50), spreadOf(sp95), spreadOf(seek)
	st.rebuffer, st.stalledShare = spreadOf(reb), spreadOf(stall)
	st.chunkP50, st.chunkP99, st.ttfbP99, st.mbps = spreadOf(cp50), spreadOf(cp99), spreadOf(tp99), spreadOf(mbps)
	st.ratioStartP95, st.ratioChunkP99, st.ratioThrough = spreadOf(rs), spreadOf(rc), spreadOf(rt)
	return st
}

// viewTable is the scenario's paced-viewer table.
func viewTable(b *strings.Builder, r *scenarioResult) {
	fmt.Fprintf(b, "Paced viewers (%d), %d round(s):\n\n", r.viewers, len(r.views["least_conn"]))
	shares := "bytes edge-1 / 2 / 3"
	if r.key == "i" {
		shares = "bytes edge-1 (starved) / 2 (capped) / 11 / 12 (killed) / each other (mean)"
	}
	fmt.Fprintf(b, "| arm | startup p50 ms | startup p95 ms | rebuffering %% | viewers stalled %% | seek p95 ms | chunk p50 ms | chunk p99 ms | TTFB p99 ms | MB/s | errors | %s | startup p95 vs least_conn | chunk p99 vs least_conn | media played vs least_conn |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n", shares)
	for _, name := range r.viewerArms {
		st := viewStatsOf(r, name)
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %.0f | %.0f | %s | %.0f | %.0f | %d | %s | %s | %s | %s |\n", name,
			fmtSpread(st.startP50, 0), fmtSpread(st.startP95, 0), fmtSpread(scaled(st.rebuffer, 100), 2), fmtSpread(scaled(st.stalledShare, 100), 1),
			st.seekP95.median, st.chunkP50.median, fmtSpread(st.chunkP99, 0), st.ttfbP99.median, st.mbps.median, st.errors,
			fmtShares(r.key, st.share), fmtSpread(st.ratioStartP95, 2), fmtSpread(st.ratioChunkP99, 2), fmtSpread(st.ratioThrough, 3))
	}
	b.WriteString("\n")
}

// fmtShares is the shares of the edges the scenario's table names.
func fmtShares(key string, share map[string]float64) string {
	if key != "i" {
		return fmt.Sprintf("%.0f / %.0f / %.0f %%", 100*share["edge-1"], 100*share["edge-2"], 100*share["edge-3"])
	}
	others, n := 0.0, 0
	for i := 3; i <= scaleEdges; i++ {
		if i-1 != scaleKilledA && i-1 != scaleKilledB {
			others += share[fmt.Sprintf("edge-%d", i)]
			n++
		}
	}
	return fmt.Sprintf("%.1f / %.1f / %.1f / %.1f / %.1f %%", 100*share["edge-1"], 100*share["edge-2"], 100*share["edge-11"], 100*share["edge-12"], 100*others/float64(n))
}

func scaled(s spread, k float64) spread { return spread{s.median * k, s.lo * k, s.hi * k} }

// rebufferGoal is "tiered's rebuffer ratio is at most k × least_conn's":
// medians over rounds; where least_conn's is 0, tiered's must be 0 too.
func rebufferGoal(r *scenarioResult, k float64) (bool, string) {
	t, lc := viewStatsOf(r, "tiered").rebuffer.median, viewStatsOf(r, "least_conn").rebuffer.median
	return t <= k*lc, fmt.Sprintf("(%s) viewers' rebuffer ratio ≤ %.2g× least_conn: %.3f %% against %.3f %%", r.key, k, 100*t, 100*lc)
}

// viewerGoals checks the scenario's goals on what its viewers felt.
func viewerGoals(r *scenarioResult, check func(bool, string)) {
	t, lc := viewStatsOf(r, "tiered"), viewStatsOf(r, "least_conn")
	check(t.ratioThrough.median >= 0.97, fmt.Sprintf("(%s) viewers' delivered throughput (media played) ≥ 0.97× least_conn: %.3f×", r.key, t.ratioThrough.median))
	switch r.key {
	case "a":
		check(t.rebuffer.median <= 1.05*lc.rebuffer.median, fmt.Sprintf("(a) viewers' rebuffer ratio within 1.05× least_conn: %.3f %% against %.3f %%", 100*t.rebuffer.median, 100*lc.rebuffer.median))
		check(t.rebuffer.median <= 0.005, fmt.Sprintf("(a) viewers' rebuffer ratio ≤ 0.5 %%: %.3f %%", 100*t.rebuffer.median))
	case "b", "c", "d", "f", "i":
		check(rebufferGoal(r, 0.5))
		if rr := viewStatsOf(r, "round_robin"); len(r.views["round_robin"]) > 0 {
			check(rr.rebuffer.median > 0, fmt.Sprintf("(%s) the impairment makes round_robin's viewers stall: rebuffer ratio %.2f %%, %.0f %% of viewers", r.key, 100*rr.rebuffer.median, 100*rr.stalledShare.median))
		}
	}
	switch r.key {
	case "c", "d", "f", "i":
		check(t.ratioStartP95.median <= 0.7, fmt.Sprintf("(%s) viewers' startup p95 ≤ 0.7× least_conn: %.2f×", r.key, t.ratioStartP95.median))
	}
	switch r.key {
	case "f":
		check(t.ratioChunkP99.median <= 0.5 && t.errors == 0, fmt.Sprintf("(f) viewers' p99 chunk time ≤ 0.5× least_conn, 0 errors: %.2f×, %d errors", t.ratioChunkP99.median, t.errors))
		if len(r.link) > 0 {
			u := spreadOf(r.link).median
			check(u <= 0.95, fmt.Sprintf("(f) the capped edge's reported link utilisation, median ≤ link_headroom + 0.05 = 0.95: %.2f", u))
		}
	case "g":
		// edge-1 has 3 of the 5 link units, the others 1 each.
		capShare := map[string]float64{"edge-1": 0.6, "edge-2": 0.2, "edge-3": 0.2}
		worst := 0.0
		for e, c := range capShare {
			worst = max(worst, math.Abs(t.share[e]/c-1))
		}
		check(worst <= 0.1, fmt.Sprintf("(g) each edge's share of bytes within 10 %% of its share of the links (60 / 20 / 20 %%): %.0f / %.0f / %.0f %%", 100*t.share["edge-1"], 100*t.share["edge-2"], 100*t.share["edge-3"]))
		check(t.ratioChunkP99.median <= 0.8, fmt.Sprintf("(g) viewers' p99 chunk time ≤ 0.8× least_conn: %.2f×", t.ratioChunkP99.median))
	}
}
