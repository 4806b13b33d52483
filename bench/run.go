package main

import (
	"fmt"
	"log"
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
	players    int
	arms       []string // nil: every arm
	rounds     int      // 0: the run's rounds
}

type scenarioResult struct {
	key, title string
	arms       []string
	rounds     int
	samples    map[string][]*sample // by arm, one per round
	// scores holds, for the policy-only arm, its board's scores at the
	// end of each round (from the balancer's Prometheus metrics).
	scores [][]boardScore
}

type herdResult struct {
	interval time.Duration
	cv       map[string][]float64 // by arm: mean CV of in-flight per round
}

type results struct {
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
	res := &results{}
	reset := func(s *system) error {
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
	scenarios := []scenario{
		// (a) runs twice the rounds: its goal is a ratio of p99s within
		// 5 %, and one round's p99 ratio varies by ±15 % on this shared
		// machine.
		{"a", "all edges equal", reset, o.players, nil, o.rounds * 2},
		{"b", "one edge slowed (+50 ms per response)", func(s *system) error {
			if err := reset(s); err != nil {
				return err
			}
			return s.impair(0, 1, 50*time.Millisecond)
		}, o.players, nil, 0},
		{"c", "one edge starved of CPU (cgroup quota 5 % of a CPU)", func(s *system) error {
			if err := reset(s); err != nil {
				return err
			}
			return s.impair(0, 0.05, 0)
		}, o.players, nil, 0},
		{"d", "two of three edges impaired (one starved, one slowed)", func(s *system) error {
			if err := reset(s); err != nil {
				return err
			}
			if err := s.impair(0, 0.05, 0); err != nil {
				return err
			}
			return s.impair(1, 1, 50*time.Millisecond)
		}, o.players, nil, 0},
		// Saturation runs only the goal's two arms, over more rounds: an
		// arm's throughput varies by 3-5 % from round to round on this
		// shared machine, as much as the goal's margin, and only many
		// rounds bound the median.
		{"s", fmt.Sprintf("saturation: the balancer held to %.2g CPU, all edges equal, three times the players", balancerCPUs), func(s *system) error {
			if err := reset(s); err != nil {
				return err
			}
			return s.balancers.SetQuota(balancerCPUs)
		}, 3 * o.players, []string{"tiered", policyOnly, "least_conn"}, o.rounds * 10 / 3},
	}
	for _, sc := range scenarios {
		if !o.runs(sc.key) {
			continue
		}
		log.Printf("scenario %s: %s", sc.key, sc.title)
		if err := sc.impair(sys); err != nil {
			return nil, err
		}
		if err := sys.configure(time.Second, false); err != nil {
			return nil, err
		}
		r := &scenarioResult{key: sc.key, title: sc.title, samples: map[string][]*sample{}}
		var arms []arm
		for _, a := range sys.arms {
			if (sc.arms == nil || slices.Contains(sc.arms, a.name)) && o.runsArm(a.name) {
				arms = append(arms, a)
				r.arms = append(r.arms, a.name)
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
			order := rand.New(rand.NewPCG(uint64(round), uint64(sc.key[0]))).Perm(len(arms))
			for _, k := range order {
				a := arms[k]
				var bases []string
				if a.base != "" {
					bases = []string{a.base}
				}
				s := play(sys, bases, sc.players, warmup, o.duration)
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
		log.Printf("scenario e: report interval %s, two balancers", interval)
		if err := sys.configure(interval, true); err != nil {
			return nil, err
		}
		h := &herdResult{interval: interval, cv: map[string][]float64{}}
		for round := 0; round < o.rounds; round++ {
			herdArms := []string{"tiered", "tiered-1choice", policyOnly}
			for k := range herdArms {
				name := herdArms[(k+round)%len(herdArms)] // each round in another order
				bases := []string{fmt.Sprintf("http://127.0.0.1:%d", sys.lbPorts[name]), fmt.Sprintf("http://127.0.0.1:%d", sys.lbPorts[name+"@2"])}
				s := play(sys, bases, o.players, warmup, o.duration)
				cv := s.herdingCV([]string{"edge-1", "edge-2", "edge-3"})
				h.cv[name] = append(h.cv[name], cv)
				log.Printf("  round %d %-16s spread (CV) per 100 ms %.3f  %v", round+1, name, cv, s.perEdge)
			}
		}
		res.herding = append(res.herding, h)
	}
	return res, nil
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
