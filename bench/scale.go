package main

import (
	"fmt"
	"log"
	"math/rand/v2"
	"sync"
	"time"
)

// The scale scenario's edges: twelve, sharing two cores.
const (
	scaleEdges = 12
	scaleQuota = 2.0 / scaleEdges // each edge's CPUs: all of them fit 2 cores
	scaleLBs   = 3
)

// The roles of edges in (i), by index.
const (
	scaleStarved = 0  // edge-1: held to 1 % of a CPU
	scaleCapped  = 1  // edge-2: behind a link that carries half its share
	scaleKilledA = 10 // edge-11 and edge-12: killed and started again in every arm's window
	scaleKilledB = 11
)

// startScale starts the twelve edges of (i): edge-2 in a network
// namespace behind a link of its own, the others on loopback, each in a
// cgroup of its own.
func (s *system) startScale() error {
	for i := 1; i <= scaleEdges; i++ {
		name := fmt.Sprintf("edge-%d", i)
		var e *edge
		var err error
		if i-1 == scaleCapped {
			e, err = s.linkedEdge(name, "scale", 4, scaleQuota)
		} else {
			e, err = s.newEdge(name, "scale", nil, scaleQuota)
		}
		if e != nil {
			s.scale = append(s.scale, e)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// runScale runs (i): twelve edges, three balancers sharing them, one edge
// starved, one behind a capped link, two killed and started again while
// each arm's viewers watch. The viewers' number is set from this system's
// own capacity, healthy, as for the others.
func runScale(sys *system, o options, res *results) (*scenarioResult, error) {
	if sys.scale == nil {
		if err := sys.startScale(); err != nil {
			return nil, err
		}
	}
	defer sys.stopScale()
	sys.edges = sys.scale
	if err := sys.configure(time.Second, scaleLBs); err != nil {
		return nil, err
	}
	capacity, viewers := calibrate(sys, o)
	offered := o.load * capacity * 1e6
	link := offered / scaleEdges / 2
	title := fmt.Sprintf("twelve edges of %.2g CPU each, three balancers: edge-1 starved (1 %% of a CPU), edge-2's link capped (%.0f Mbit/s, half its share), edge-11 and edge-12 killed and started again in every window; %d viewers (%.0f %% of the healthy system's %.0f MB/s)",
		scaleQuota, 8*link/1e6, viewers, 100*o.load, capacity)
	log.Printf("scenario i: %s", title)
	if err := sys.scale[scaleStarved].group.SetQuota(0.01); err != nil {
		return nil, err
	}
	if err := sys.setLink(sys.scale[scaleCapped], link, link); err != nil {
		return nil, err
	}
	time.Sleep(3 * time.Second) // the boards take the new reports in
	r := &scenarioResult{key: "i", title: title, views: map[string][]*viewing{}, rounds: o.rounds, viewers: viewers}
	for _, a := range sys.arms {
		// Without a balancer, round robin over twelve edges is the
		// round_robin arm without its hop: no ceiling, and half a minute
		// of the run.
		if o.runsArm(a.name) && a.name != "direct" {
			r.viewerArms = append(r.viewerArms, a.name)
		}
	}
	for round := 0; round < o.rounds; round++ {
		rng := rand.New(rand.NewPCG(uint64(round), 'i'))
		for _, k := range rng.Perm(len(r.viewerArms)) {
			name := r.viewerArms[k]
			chaos := sys.killAndRestart(viewerWarmup, o.viewing, sys.scale[scaleKilledA], sys.scale[scaleKilledB])
			v := watch(sys, sys.bases(name), viewers, viewerWarmup, o.viewing, uint64(round+1)<<8|'i', o.traceSlower(name))
			if err := chaos(); err != nil {
				return nil, err
			}
			r.views[name] = append(r.views[name], v)
			logViewing(round, name, v)
		}
	}
	return r, nil
}

// killAndRestart kills edge a an eighth into the window that starts after
// warm and lasts d, and starts it again at three eighths; b at a half, and
// again at seven eighths. The returned function waits for both to be back.
func (s *system) killAndRestart(warm, d time.Duration, a, b *edge) func() error {
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for k, e := range []*edge{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(warm + d*time.Duration(1+3*k)/8)
			e.caddy.Kill()
			time.Sleep(d * time.Duration(2+k) / 8)
			errs[k] = s.startEdge(e)
		}()
	}
	return func() error {
		wg.Wait()
		if errs[0] != nil {
			return errs[0]
		}
		return errs[1]
	}
}

// stopScale stops the twelve edges and the balancers beyond the first
// two, which only (i) uses.
func (s *system) stopScale() {
	for _, e := range s.scale {
		e.stop()
	}
	s.scale = nil
	for len(s.lbs) > 2 {
		s.lbs[len(s.lbs)-1].Stop()
		s.lbs = s.lbs[:len(s.lbs)-1]
	}
}
