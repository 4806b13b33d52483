// Command bench measures edgetier's tiered policy against what a user
// would pick instead, on the same real edges and the same player-like
// traffic, and writes bench/RESULTS.md with plots.
//
//	make build && go run ./bench            # the full run (under 30 minutes)
//	make build && go run ./bench -quick     # one short round, for development
//	make build && go run ./bench -scenarios s   # only the saturation scenario
//
// It needs root (each edge runs in its own cgroup v1 cpu/cpuacct group),
// nginx (Debian's) and ffmpeg.
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"runtime"
	"time"
)

type options struct {
	quick    bool
	caddy    string
	out      string
	rounds   int
	duration time.Duration
	players  int
	viewers  int     // paced viewers; 0: load × the measured capacity
	load     float64 // the share of the healthy system's capacity the paced viewers take
	viewing  time.Duration
	trace    bool
	only     string // scenario keys to run, e.g. "s"; "" runs all
	arms     string // comma-separated arms to run; "" runs each scenario's
	// intervals: comma-separated report intervals (e) runs; "" runs all
	intervals string
}

func main() {
	var o options
	flag.BoolVar(&o.quick, "quick", false, "one short round per scenario")
	flag.StringVar(&o.caddy, "caddy", "bin/caddy", "the Caddy built with edgetier (make build)")
	flag.StringVar(&o.out, "out", "bench", "folder for RESULTS.md and the plots")
	flag.IntVar(&o.players, "players", 24, "concurrent players")
	flag.StringVar(&o.only, "scenarios", "", "run only these scenarios, e.g. \"s\" or \"abe\" (for development: the goals need them all)")
	flag.StringVar(&o.arms, "arms", "", "run only these arms, e.g. \"tiered,least_conn\" (for development)")
	flag.StringVar(&o.intervals, "intervals", "", "run (e) only at these report intervals, e.g. \"2s,5s\" (for development)")
	flag.IntVar(&o.viewers, "viewers", 0, "paced viewers (default: -load of the capacity measured at the start)")
	flag.Float64Var(&o.load, "load", 0.7, "the paced viewers' share of the healthy system's capacity")
	flag.BoolVar(&o.trace, "trace", false, "log the tiered board twice a second while tiered's players and viewers run, and its viewers' startups over 150 ms (for development)")
	rounds := flag.Int("rounds", 0, "rounds per scenario (default 3, or 1 with -quick)")
	duration := flag.Duration("duration", 0, "greedy players' measured time per arm and round, after a second of warm-up (default 4s; (e) takes 5s at least)")
	flag.Parse()
	o.rounds, o.duration, o.viewing = 3, 4*time.Second, 6*time.Second
	if o.quick {
		o.rounds, o.duration, o.viewing = 1, 4*time.Second, 5*time.Second
	}
	if *rounds > 0 {
		o.rounds = *rounds
	}
	if *duration > 0 {
		o.duration = *duration
	}
	if os.Geteuid() != 0 {
		log.Fatal("bench: needs root for the edges' cgroups")
	}
	if runtime.GOOS != "linux" {
		log.Fatal("bench: needs Linux (cgroups)")
	}
	abs, err := filepath.Abs(o.caddy)
	if err != nil {
		log.Fatal(err)
	}
	o.caddy = abs
	start := time.Now()
	results, err := run(o)
	if err != nil {
		log.Fatalf("bench: %v", err)
	}
	if err := report(o, results, time.Since(start)); err != nil {
		log.Fatalf("bench: writing results: %v", err)
	}
	fmt.Printf("bench: done in %s; see %s\n", time.Since(start).Round(time.Second), filepath.Join(o.out, "RESULTS.md"))
}
