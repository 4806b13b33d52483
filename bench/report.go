package main

import (
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// armStats condenses one arm's rounds: medians over rounds of each
// round's figure, and the arm's p99 ratio to least_conn round by round.
type armStats struct {
	p50, p99, mbps        spread
	chunkP99              spread // ms, the whole download
	errors                int
	share                 map[string]float64
	ratioP50, ratioP99    spread
	ratioRR, ratioThrough spread
}

func statsOf(r *scenarioResult, name string) armStats {
	var st armStats
	var p50, p99, mbps, cp99, rp50, rp99, rrr, rtp []float64
	total := 0
	st.share = map[string]float64{}
	for i, s := range r.samples[name] {
		p50 = append(p50, ms(s.percentile(0.5)))
		p99 = append(p99, ms(s.percentile(0.99)))
		mbps = append(mbps, s.throughputMBps())
		cp99 = append(cp99, ms(quantile(s.chunks, 0.99)))
		st.errors += s.errors
		for e, n := range s.perEdge {
			st.share[e] += float64(n)
			total += n
		}
		if lcs := r.samples["least_conn"]; i < len(lcs) {
			lc := lcs[i]
			rp50 = append(rp50, ms(s.percentile(0.5))/ms(lc.percentile(0.5)))
			rp99 = append(rp99, ms(s.percentile(0.99))/ms(lc.percentile(0.99)))
			rtp = append(rtp, s.throughputMBps()/lc.throughputMBps())
		}
		if rrs := r.samples["round_robin"]; i < len(rrs) {
			rrr = append(rrr, ms(s.percentile(0.99))/ms(rrs[i].percentile(0.99)))
		}
	}
	for e := range st.share {
		st.share[e] /= float64(max(total, 1))
	}
	st.p50, st.p99, st.mbps, st.chunkP99 = spreadOf(p50), spreadOf(p99), spreadOf(mbps), spreadOf(cp99)
	st.ratioP50, st.ratioP99, st.ratioRR, st.ratioThrough = spreadOf(rp50), spreadOf(rp99), spreadOf(rrr), spreadOf(rtp)
	return st
}

func fmtSpread(s spread, digits int) string {
	return fmt.Sprintf("%.*f [%.*f–%.*f]", digits, s.median, digits, s.lo, digits, s.hi)
}

func report(o options, res *results, took time.Duration) error {
	var b strings.Builder
	mode := "full"
	if o.quick || o.only != "" || o.arms != "" {
		mode = "development: not a result to quote"
	}
	cmd := strings.TrimSpace("make build && go run ./bench " + strings.Join(os.Args[1:], " "))
	fmt.Fprintf(&b, "# Benchmark results\n\nMade by `%s` (%s mode) on %s: %s. %d round(s) of %s per arm and scenario, each after a second of unmeasured traffic through the same arm, arms interleaved (each round in another order, seeded by the scenario and round), %d players; the run took %s.\n\n",
		cmd, mode, time.Now().UTC().Format("2006-01-02"), machine(), o.rounds, o.duration, o.players, took.Round(time.Second))
	b.WriteString(`Three edges (separate Caddy processes: ` + "`file_server` + `edge_agent`" + `), each in its own cgroup
held to one CPU, serve three MP4 files (6 Mbit/s, 12–30 s). The Caddy balancers (one process with a
site per policy; a second one in (e)) share a cgroup of their own, without a limit except in (s),
where a quota of half a CPU makes the balancer the bottleneck rather than the whole shared machine.
Players fetch like video players: the first 256 KiB, then sequential Range chunks of 256 KiB–2 MiB
with 0–40 ms between them, and one seek in ten. Time to first byte is measured at the player. Ratios are per round against the same
round's ` + "`least_conn`" + ` (or ` + "`round_robin`" + `), shown as median [min–max] over rounds. ` + "`direct`" + ` is the players
going to the edges themselves, round robin: the ceiling without a balancer hop. The greedy players of
(b), (c) and (d) go through the policies only, without ` + "`direct`" + ` and ` + "`tiered-1choice`" + ` (the original rule, measured in (a) and (e)).

`)
	if res.viewers > 0 {
		fmt.Fprintf(&b, `**Paced viewers.** After the greedy players, each round runs %d paced viewers through each of the
viewer arms, for %s after %s of unmeasured start. Each is taken up mid-title, playing with its buffer between the marks, as a viewer already watching: a population joining at once would fill its buffers together, and the window would measure that rush, not the steady state. `, res.viewers, o.viewing, viewerWarmup)
		if res.capacity > 0 {
			fmt.Fprintf(&b, "The healthy system delivered %.0f MB/s to the greedy players through `least_conn` at the start of the run; the viewers' number is set so that they take %.0f %% of that. ", res.capacity, 100*o.load)
		}
		fmt.Fprintf(&b, `Each plays a title at its bitrate (read from its moov; %.2f Mbit/s on average), starts once it holds %s of media,
fetches %s of media per Range request to keep its buffer between %s and %s, resumes after a stall at %s, seeks
about once in 20 s of play, and zaps to another title after 6–14 s. Startup is from joining a title to playing;
the rebuffer ratio is stall time over watch time (playing or stalled); "viewers stalled" is the share of viewers
with any stall; a chunk's time is its whole download. Startups, stalls and chunks are counted in the measured
window only. Medians over rounds [min–max].

`, 8*res.bitrate/1e6, startAt, chunkPlay, lowMark, highMark, startAt)
	}
	b.WriteString(`**Links.** In (f) and (g) each edge runs in a network namespace of its own as well, the bench's
own test host, joined to the balancers by a veth pair whose edge end ` + "`tc tbf`" + ` shapes: the viewers'
bytes cross it as they would an edge's uplink, and its agent measures it (veth has no speed, so
an edge whose link is shaped advertises it with ` + "`capacity { link_bandwidth }`" + `; the others
advertise none). **Scale.** (i) runs twelve edges, each in a cgroup holding it to a sixth of a CPU
(together, the machine's two cores), one of them in a network namespace behind a shaped link, and
three balancer processes over them with every policy; the viewers use the three in turn. The viewers'
number is set from that system's own capacity, healthy, as above (without ` + "`direct`" + `, which over twelve edges is
` + "`round_robin`" + ` without the hop). A viewer's chunk still downloading 10 s after the window is cut off there and counts
with the time it took so far.

`)
	goals := []string{}
	check := func(ok bool, text string) {
		mark := "met"
		if !ok {
			mark = "**not met**"
		}
		goals = append(goals, fmt.Sprintf("| %s | %s |", text, mark))
	}
	for _, r := range res.scenarios {
		fmt.Fprintf(&b, "## (%s) %s\n\n", r.key, r.title)
		var intro []string
		if len(r.arms) > 0 && len(r.arms) < len(res.scenarios[0].arms) {
			intro = append(intro, fmt.Sprintf("Greedy players through %s only.", strings.Join(r.arms, ", ")))
		}
		if r.rounds != o.rounds {
			intro = append(intro, fmt.Sprintf("Over %d rounds: from one round to the next, an arm's p99 varies by up to 15 %% and its throughput by a few per cent on this shared machine, as much as the goal's margin.", r.rounds))
		}
		if len(intro) > 0 {
			b.WriteString(strings.Join(intro, " ") + "\n\n")
		}
		if len(r.arms) > 0 {
			b.WriteString("| arm | p50 TTFB ms | p99 TTFB ms | p99 chunk ms | MB/s | errors | share edge-1 / 2 / 3 | p99 vs least_conn | p50 vs least_conn |\n|---|---|---|---|---|---|---|---|---|\n")
			for _, name := range r.arms {
				st := statsOf(r, name)
				fmt.Fprintf(&b, "| %s | %s | %s | %.0f | %.0f | %d | %.0f / %.0f / %.0f %% | %s | %s |\n", name,
					fmtSpread(st.p50, 1), fmtSpread(st.p99, 1), st.chunkP99.median, st.mbps.median, st.errors,
					100*st.share["edge-1"], 100*st.share["edge-2"], 100*st.share["edge-3"],
					fmtSpread(st.ratioP99, 2), fmtSpread(st.ratioP50, 2))
			}
			b.WriteString("\n")
		}
		if len(r.views) > 0 {
			viewTable(&b, r)
		}
		if len(r.link) > 0 {
			fmt.Fprintf(&b, "edge-1's own reports while tiered's viewers watched: link utilisation median %.2f (%d reports read, 4 a second).\n\n", spreadOf(r.link).median, len(r.link))
		}
		if r.key == "c" && len(r.scores) > 0 {
			fmt.Fprintf(&b, "The %s board at the end of each round, from the balancer's `/metrics` (`edgetier_upstream_score`, `edgetier_upstream_tier`), from the edges' reports alone: edge-1 is the starved one.\n\n", policyOnly)
			for i, bs := range r.scores {
				fmt.Fprintf(&b, "- round %d: %s\n", i+1, fmtScores(bs))
			}
			b.WriteString("\n")
		}
		t := statsOf(r, "tiered")
		switch r.key {
		case "a":
			check(t.ratioP50.median <= 1.05 && t.ratioP99.median <= 1.05, fmt.Sprintf("(a) p50 and p99 within 1.05× least_conn: %.2f× and %.2f×", t.ratioP50.median, t.ratioP99.median))
			var shares []float64
			for _, e := range []string{"edge-1", "edge-2", "edge-3"} {
				shares = append(shares, t.share[e])
			}
			mx := math.Max(shares[0], math.Max(shares[1], shares[2]))
			check(mx/mean(shares) <= 1.05, fmt.Sprintf("(a) per-edge share max/mean ≤ 1.05: %.2f", mx/mean(shares)))
		case "b":
			check(t.ratioP99.median <= 0.9, fmt.Sprintf("(b) p99 ≤ 0.9× least_conn: %.2f×", t.ratioP99.median))
		case "c":
			check(t.ratioP99.median <= 0.6, fmt.Sprintf("(c) p99 ≤ 0.6× least_conn: %.2f×", t.ratioP99.median))
			if slices.Contains(r.arms, policyOnly) {
				po := statsOf(r, policyOnly)
				check(po.ratioP99.median <= 0.7, fmt.Sprintf("(c) %s p99 ≤ 0.7× least_conn: %.2f×", policyOnly, po.ratioP99.median))
				check(po.share["edge-1"] <= 0.02, fmt.Sprintf("(c) %s: the starved edge's share ≤ 2 %%: %.1f %%", policyOnly, 100*po.share["edge-1"]))
			}
			check(t.ratioRR.median <= 0.2, fmt.Sprintf("(c) p99 ≤ 0.2× round_robin: %.2f×", t.ratioRR.median))
		case "d":
			check(t.ratioP99.median <= 0.8, fmt.Sprintf("(d) p99 ≤ 0.8× least_conn: %.2f×", t.ratioP99.median))
		case "s":
			check(t.ratioThrough.median >= 0.97, fmt.Sprintf("saturation throughput ≥ 0.97× least_conn: %.3f× (rounds %.2f–%.2f)", t.ratioThrough.median, t.ratioThrough.lo, t.ratioThrough.hi))
		}
		if r.key != "s" && len(r.samples["tiered"]) > 0 {
			check(t.ratioThrough.median >= 0.97, fmt.Sprintf("(%s) greedy players' throughput ≥ 0.97× least_conn: %.3f×", r.key, t.ratioThrough.median))
		}
		if len(r.views["tiered"]) > 0 && len(r.views["least_conn"]) > 0 {
			viewerGoals(r, check)
		}
	}
	if len(res.herding) > 0 {
		b.WriteString("## (e) stale reports: two balancer processes share the edges\n\nSpread (coefficient of variation across the three edges) of the requests each edge received in each 100 ms window, the load arriving on it, mean over the windows of the run; median [min–max] over rounds. Half the players use each balancer. The one-choice arm always takes the single best edge, as the original design's algorithm did.\n\n| report interval | tiered | tiered, one choice | ratio | tiered, policy only |\n|---|---|---|---|---|\n")
		for _, h := range res.herding {
			two, one := spreadOf(h.cv["tiered"]), spreadOf(h.cv["tiered-1choice"])
			fmt.Fprintf(&b, "| %s | %s | %s | %.2f | %s |\n", h.interval, fmtSpread(two, 3), fmtSpread(one, 3), two.median/one.median, fmtSpread(spreadOf(h.cv[policyOnly]), 3))
			check(two.median <= 0.5*one.median, fmt.Sprintf("(e) in-flight spread ≤ 0.5× one choice at %s: %.2f×", h.interval, two.median/one.median))
		}
	}
	b.WriteString("\n## Goals\n\n| goal (median ratios in this run) | |\n|---|---|\n")
	b.WriteString(strings.Join(goals, "\n") + "\n\n")
	b.WriteString("## Plots\n\n![p99 time to first byte per arm and scenario](p99.png)\n\n![Per-edge share of tiered's requests over time, one edge starved](share-c.png)\n")
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	if err := plotP99(res, filepath.Join(o.out, "p99.png")); err != nil {
		return err
	}
	if err := plotShare(res, filepath.Join(o.out, "share-c.png")); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(o.out, "RESULTS.md"), []byte(b.String()), 0o644)
}

func machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "model name") {
				model = strings.TrimSpace(strings.SplitN(line, ":", 2)[1])
				break
			}
		}
	}
	kernel, _ := exec.Command("uname", "-r").Output()
	return fmt.Sprintf("%d × %s, Linux %s, %s", runtime.NumCPU(), model, strings.TrimSpace(string(kernel)), runtime.Version())
}

func plotP99(res *results, path string) error {
	if len(res.scenarios) == 0 {
		return nil // (e) alone (-scenarios e): no greedy arms to plot
	}
	p := plot.New()
	p.Title.Text = "p99 time to first byte (median over rounds)"
	p.Y.Label.Text = "ms"
	arms := res.scenarios[0].arms
	w := vg.Points(8)
	var names []string
	for _, r := range res.scenarios {
		names = append(names, "("+r.key+")")
	}
	for i, name := range arms {
		var vals plotter.Values
		for _, r := range res.scenarios {
			v := 0.0 // an arm the scenario does not run
			if len(r.samples[name]) > 0 {
				v = statsOf(r, name).p99.median
			}
			vals = append(vals, v)
		}
		bars, err := plotter.NewBarChart(vals, w)
		if err != nil {
			return err
		}
		bars.Color = plotutil.Color(i)
		bars.LineStyle.Width = 0
		bars.Offset = w * vg.Length(i-len(arms)/2)
		p.Add(bars)
		p.Legend.Add(name, bars)
	}
	p.Legend.Top = true
	p.NominalX(names...)
	return p.Save(9*vg.Inch, 4.5*vg.Inch, path)
}

func plotShare(res *results, path string) error {
	p := plot.New()
	p.Title.Text = "(c) tiered: share of requests per edge, per second"
	p.X.Label.Text = "seconds (rounds back to back)"
	p.Y.Label.Text = "share"
	p.Y.Min, p.Y.Max = 0, 1
	var c *scenarioResult
	for _, r := range res.scenarios {
		if r.key == "c" {
			c = r
		}
	}
	if c == nil {
		return nil
	}
	for i, edge := range []string{"edge-1", "edge-2", "edge-3"} {
		var pts plotter.XYs
		x := 0.0
		for _, s := range c.samples["tiered"] {
			for _, sec := range s.perSec {
				total := 0
				for _, n := range sec {
					total += n
				}
				if total > 0 {
					pts = append(pts, plotter.XY{X: x, Y: float64(sec[edge]) / float64(total)})
				}
				x++
			}
		}
		line, err := plotter.NewLine(pts)
		if err != nil {
			return err
		}
		line.Color = plotutil.Color(i)
		line.Width = vg.Points(1.5)
		p.Add(line)
		p.Legend.Add(edge, line)
	}
	p.Legend.Top = true
	return p.Save(9*vg.Inch, 3.5*vg.Inch, path)
}
