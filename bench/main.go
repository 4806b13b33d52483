// Command bench measures edgetier's tiered policy against what a user
// would pick instead, on the same real edges and the same player-like
// traffic, and writes bench/RESULTS.md with plots.
//
//	make build && go run ./bench            # the full run (under 20 minutes)
//	make build && go run ./bench -quick     # one short round, for development
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
}

func main() {
	var o options
	flag.BoolVar(&o.quick, "quick", false, "one short round per scenario")
	flag.StringVar(&o.caddy, "caddy", "bin/caddy", "the Caddy built with edgetier (make build)")
	flag.StringVar(&o.out, "out", "bench", "folder for RESULTS.md and the plots")
	flag.IntVar(&o.players, "players", 24, "concurrent players")
	flag.Parse()
	o.rounds, o.duration = 3, 8*time.Second
	if o.quick {
		o.rounds, o.duration = 1, 4*time.Second
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
