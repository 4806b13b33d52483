package main

import (
	"fmt"
	"log"
	"math"
	"math/rand/v2"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"
)

type scenario struct {
	key, title string
	impair     func(*system) error
	players    int      // greedy players; 0: no greedy phase
	arms       []string // nil: every arm
	rounds     int      // 0: the run's rounds
	// viewerArms are the arms paced viewers watch through in each round
	// (watch), after the greedy ones.
	viewerArms []string
	// linkOf, when set, is the edge whose reported link utilisation is
	// sampled while tiered's viewers watch.
	linkOf *int
}

type scenarioResult struct {
	key, title string
	arms       []string
	rounds     int
	samples    map[string][]*sample // by arm, one per round
	viewers    int                  // paced viewers per arm and round
	viewerArms []string
	views      map[string][]*viewing // by arm, one per round
	// link holds the sampled link utilisation reports of the scenario's
	// linkOf edge while tiered's viewers watched.
	link []float64
	// scores holds, for the policy-only arm, its board's scores at the
	// end of each round (from the balancer's Prometheus metrics).
	scores [][]boardScore
}

type herdResult struct {
	interval time.Duration
	cv       map[string][]float64 // by arm: mean CV of in-flight per round
}

type results struct {
	// capacity is what the healthy system delivered to greedy players
	// through least_conn (MB/s); viewers is the paced viewers' number,
	// set from it.
	capacity  float64
	viewers   int
	bitrate   float64 // the library's mean, bytes per second
	scenarios []*scenarioResult
	herding   []*herdResult
}

func run(o options) (*results, error) {
	sys, err := start(o)
	if sys != nil {
		defer sys.stop()
		// An interrupted run still removes its cgroups and processes.
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
		go func() {
			<-sigs
			sys.stop()
			os.Exit(1)
		}()
	}
	if err != nil {
		return nil, err
	}
	res := &results{bitrate: sys.bitrate()}
	reset := func(s *system) error {
		s.edges = s.loop
		if err := s.balancers.SetQuota(0); err != nil {
			return err
		}
		for i := range s.edges {
			if err := s.impair(i, 1, 0); err != nil {
				return err
			}
		}
		return nil
	}
	if err := reset(sys); err != nil {
		return nil, err
	}
	if err := sys.configure(time.Second, 1); err != nil {
		return nil, err
	}
	res.capacity, res.viewers = calibrate(sys, o)
	// The viewers watch through the arms of the goals (round_robin: the
	// impairments must make its viewers stall); in the link scenarios the
	// policy alone too.
	viewerArms := []string{"tiered", "least_conn", "round_robin"}
	// The impaired scenarios' greedy players go through the policies
	// only: the ceiling (direct) and the original rule (tiered-1choice)
	// are measured where they say something, in (a) and (e), and the run
	// stays within its 30 minutes.
	policyArms := []string{"tiered", policyOnly, "round_robin", "least_conn", "random_choose_2", "nginx_least_conn"}
	linkArms := []string{"tiered", policyOnly, "least_conn", "round_robin"}
	// linked is the first linked scenario's set-up: the edges behind
	// links, started once.
	linked := func(s *system) error {
		if err := reset(s); err != nil {
			return err
		}
		if s.linked == nil {
			if err := s.startLinked(); err != nil {
				return err
			}
		}
		s.edges = s.linked
		return nil
	}
	// offered is what the viewers take, in bytes per second.
	offered := float64(res.viewers) * res.bitrate
	if res.capacity > 0 {
		offered = o.load * res.capacity * 1e6
	}
	first := 0
	scenarios := []scenario{
		// (a) runs a round more: its goal is a ratio of p99s within 5 %,
		// and one round's p99 ratio varies by ±15 % on this shared
		// machine.
		{key: "a", title: "all edges equal", impair: reset, players: o.players, rounds: o.rounds + 1, viewerArms: viewerArms},
		{key: "b", title: "one edge slowed (+50 ms per response)", impair: func(s *system) error {
			if err := reset(s); err != nil {
				return err
			}
			return s.impair(0, 1, 50*time.Millisecond)
		}, players: o.players, arms: policyArms, viewerArms: viewerArms},
		{key: "c", title: "one edge starved of CPU (cgroup quota 5 % of a CPU)", impair: func(s *system) error {
			if err := reset(s); err != nil {
				return err
			}
			return s.impair(0, 0.05, 0)
		}, players: o.players, arms: policyArms, viewerArms: viewerArms},
		{key: "d", title: "two of three edges impaired (one starved, one slowed)", impair: func(s *system) error {
			if err := reset(s); err != nil {
				return err
			}
			if err := s.impair(0, 0.05, 0); err != nil {
				return err
			}
			return s.impair(1, 1, 50*time.Millisecond)
		}, players: o.players, arms: policyArms, viewerArms: viewerArms},
		// Saturation runs only the goal's two arms, over more rounds: an
		// arm's throughput varies by 3-5 % from round to round on this
		// shared machine, as much as the goal's margin, and only many
		// rounds bound the median.
		{key: "s", title: fmt.Sprintf("saturation: the balancer held to %.2g CPU, all edges equal, three times the players", balancerCPUs), impair: func(s *system) error {
			if err := reset(s); err != nil {
				return err
			}
			return s.balancers.SetQuota(balancerCPUs)
		}, players: 3 * o.players, arms: []string{"tiered", policyOnly, "least_conn"}, rounds: o.rounds * 8 / 3},
		// The link scenarios: each edge in a network namespace of its own,
		// behind a veth pair; paced viewers only, whose chunks cross the
		// links. In (f) edge-1's link carries half of its third of the
		// viewers' bytes, and its agent is told so; the others' are not
		// shaped, and their agents know no link (veth has no speed).
		{key: "f", title: fmt.Sprintf("one edge's link capped (%.0f Mbit/s, half its third of the viewers' bytes)", 8*offered/6/1e6), impair: func(s *system) error {
			if err := linked(s); err != nil {
				return err
			}
			return s.setLinks([]float64{offered / 6, 0, 0}, []float64{offered / 6, 0, 0})
		}, viewerArms: linkArms, linkOf: &first},
		// (g): edge-1 has three times the link of the others; the viewers
		// take 80 % of the three links.
		{key: "g", title: fmt.Sprintf("one edge with three times the link of the others (%.0f / %.0f / %.0f Mbit/s; the viewers offer 80 %%)", 8*offered*3/4/1e6, 8*offered/4/1e6, 8*offered/4/1e6), impair: func(s *system) error {
			if err := linked(s); err != nil {
				return err
			}
			l := offered / 4
			return s.setLinks([]float64{3 * l, l, l}, []float64{3 * l, l, l})
		}, viewerArms: linkArms},
	}
	for _, sc := range scenarios {
		if !o.runs(sc.key) {
			continue
		}
		log.Printf("scenario %s: %s", sc.key, sc.title)
		if err := sc.impair(sys); err != nil {
			return nil, err
		}
		if err := sys.configure(time.Second, 1); err != nil {
			return nil, err
		}
		r := &scenarioResult{key: sc.key, title: sc.title, samples: map[string][]*sample{}, views: map[string][]*viewing{}, viewers: res.viewers}
		var arms []arm
		for _, a := range sys.arms {
			if sc.players > 0 && (sc.arms == nil || slices.Contains(sc.arms, a.name)) && o.runsArm(a.name) {
				arms = append(arms, a)
				r.arms = append(r.arms, a.name)
			}
		}
		for _, name := range sc.viewerArms {
			if o.runsArm(name) {
				r.viewerArms = append(r.viewerArms, name)
			}
		}
		rounds := o.rounds
		if sc.rounds > 0 {
			rounds = sc.rounds
		}
		r.rounds = rounds
		for round := 0; round < rounds; round++ {
			// Interleave in a new order each round (seeded, so a run can
			// be repeated): no arm always follows the same one, whose
			// traffic the edges' load reports still show in the first
			// seconds of the next.
			rng := rand.New(rand.NewPCG(uint64(round), uint64(sc.key[0])))
			for _, k := range rng.Perm(len(arms)) {
				a := arms[k]
				var bases []string
				if a.base != "" {
					bases = []string{a.base}
				}
				stopTrace := sys.tracing(o, a.name)
				s := play(sys, bases, sc.players, warmup, o.duration)
				stopTrace()
				r.samples[a.name] = append(r.samples[a.name], s)
				if a.name == policyOnly {
					if bs, err := sys.boardScores("policy"); err == nil {
						r.scores = append(r.scores, bs)
						log.Printf("  round %d %s board: %s", round+1, policyOnly, fmtScores(bs))
					} else {
						log.Printf("  reading the %s board's scores: %v", policyOnly, err)
					}
				}
				log.Printf("  round %d %-16s p50 %6.1f ms  p99 %7.1f ms  %7.1f MB/s  errors %d  %v", round+1, a.name,
					ms(s.percentile(0.5)), ms(s.percentile(0.99)), s.throughputMBps(), s.errors, s.perEdge)
			}
			// Paced viewers, in three rounds at most: their figures are
			// per viewer, and each round has hundreds.
			if round >= o.rounds {
				continue
			}
			for _, k := range rng.Perm(len(r.viewerArms)) {
				name := r.viewerArms[k]
				stopTrace := sys.tracing(o, name)
				var stopSampling func() []float64
				if sc.linkOf != nil && name == "tiered" {
					stopSampling = sys.sampleLink(sys.edges[*sc.linkOf])
				}
				v := watch(sys, sys.bases(name), res.viewers, viewerWarmup, o.viewing, uint64(round+1)<<8|uint64(sc.key[0]), o.traceSlower(name))
				stopTrace()
				r.views[name] = append(r.views[name], v)
				if stopSampling != nil {
					r.link = append(r.link, stopSampling()...)
				}
				logViewing(round, name, v)
			}
		}
		res.scenarios = append(res.scenarios, r)
	}
	if o.runs("i") {
		r, err := runScale(sys, o, res)
		if err != nil {
			return nil, err
		}
		res.scenarios = append(res.scenarios, r)
	}

	// (e) stale reports: two balancer processes share the edges.
	if !o.runs("e") {
		return res, nil
	}
	if err := reset(sys); err != nil {
		return nil, err
	}
	for _, interval := range []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 5 * time.Second} {
		if o.intervals != "" && !slices.Contains(strings.Split(o.intervals, ","), interval.String()) {
			continue
		}
		// The spread depends on where the reports fall in the window: it
		// spans an interval at least.
		herdWindow := max(o.duration, interval)
		log.Printf("scenario e: report interval %s, two balancers", interval)
		if err := sys.configure(interval, 2); err != nil {
			return nil, err
		}
		h := &herdResult{interval: interval, cv: map[string][]float64{}}
		for round := 0; round < o.rounds; round++ {
			herdArms := []string{"tiered", "tiered-1choice", policyOnly}
			if o.arms != "" {
				herdArms = strings.Split(o.arms, ",")
			}
			for k := range herdArms {
				name := herdArms[(k+round)%len(herdArms)] // each round in another order
				bases := sys.bases(name)
				stopTrace := sys.tracing(o, name)
				s := play(sys, bases, o.players, warmup, herdWindow)
				stopTrace()
				cv := s.herdingCV([]string{"edge-1", "edge-2", "edge-3"})
				h.cv[name] = append(h.cv[name], cv)
				log.Printf("  round %d %-16s spread (CV) per 100 ms %.3f  %v", round+1, name, cv, s.perEdge)
			}
		}
		res.herding = append(res.herding, h)
	}
	return res, nil
}

// calibrate measures the healthy system's capacity: what greedy players
// get through least_conn (MB/s); and the number of paced viewers that
// take o.load of it (or o.viewers when set, with no capacity measured).
func calibrate(sys *system, o options) (capacity float64, viewers int) {
	if o.viewers > 0 {
		return 0, o.viewers
	}
	lc := sys.bases("least_conn")
	capacity = play(sys, lc, o.players, warmup, 4*time.Second).throughputMBps()
	// A viewer fetches more than its bitrate: what it buffered when it
	// zaps or seeks is thrown away. So the number is set from what a first
	// guess of viewers took, half the number at the bitrate alone, so that
	// the guess does not fill the system.
	guess := int(math.Round(o.load * capacity * 1e6 / sys.bitrate() / 2))
	took := watch(sys, lc, guess, viewerWarmup, o.viewing, 0, 0).throughputMBps()
	viewers = int(math.Round(float64(guess) * o.load * capacity / took))
	log.Printf("capacity: %.0f MB/s through least_conn; %d viewers took %.0f MB/s at %.2f Mbit/s each: %d viewers take %.0f %% of it",
		capacity, guess, took, 8*sys.bitrate()/1e6, viewers, 100*o.load)
	return capacity, viewers
}

func logViewing(round int, name string, v *viewing) {
	log.Printf("  round %d %-16s viewers: startup p50 %4.0f p95 %5.0f ms  rebuffering %.2f %%  stalled %4.1f %%  chunk p99 %5.0f ms  %5.1f MB/s  errors %d  %v",
		round+1, name, ms(quantile(v.startups, 0.5)), ms(quantile(v.startups, 0.95)), 100*v.rebufferRatio(), 100*v.stalledShare(),
		ms(quantile(v.chunks, 0.99)), v.throughputMBps(), v.errors, v.perEdge)
}

// runs says whether the scenario with this key is part of the run.
func (o options) runs(key string) bool { return o.only == "" || strings.Contains(o.only, key) }

func (o options) runsArm(name string) bool {
	return o.arms == "" || slices.Contains(strings.Split(o.arms, ","), name)
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

// balancerCPUs is the saturation scenario's CPU quota for the balancers.
const balancerCPUs = 0.5

// warmup is the unmeasured traffic that starts each arm's measurement.
const warmup = time.Second

// viewerWarmup is the paced viewers' unmeasured start: taken up
// mid-title (takeUp), they make their first requests within its first two
// thirds, and have settled into zaps, seeks and refills by its end.
const viewerWarmup = 3 * time.Second
