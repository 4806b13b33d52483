package board

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/edgetier/edgetier/edgeagent"
	"github.com/edgetier/edgetier/internal/agentfarm"
	"github.com/edgetier/edgetier/internal/rank"
)

// How the board's costs grow with the pool (bench/README.md, "Cost
// growth"). Each benchmark runs only with -bench.

// agentsEnv, set to a number, has this test binary serve that many agents
// instead of running tests: BenchmarkBoardPollers polls agents in such a
// process, so that its own CPU time is the board's alone.
const agentsEnv = "EDGETIER_BENCH_AGENTS"

func TestMain(m *testing.M) {
	if n := os.Getenv(agentsEnv); n != "" {
		os.Exit(serveAgents(n))
	}
	os.Exit(m.Run())
}

// serveAgents serves n agents (agentfarm) sampling every second, writes
// their addresses to stdout, one a line, then an empty line, and serves
// until stdin closes.
func serveAgents(n string) int {
	count, err := strconv.Atoi(n)
	if err != nil || count < 1 {
		fmt.Fprintf(os.Stderr, "%s=%q: want a number of agents\n", agentsEnv, n)
		return 2
	}
	farm, err := agentfarm.Start(count, time.Second)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer farm.Close()
	w := bufio.NewWriter(os.Stdout)
	for _, d := range farm.Dials {
		fmt.Fprintln(w, d)
	}
	fmt.Fprintln(w)
	if err := w.Flush(); err != nil {
		return 1
	}
	_, _ = io.Copy(io.Discard, os.Stdin)
	return 0
}

// startAgentProcess runs n agents in a process of their own (this test
// binary, see TestMain) and returns their addresses; the process ends
// with the benchmark.
func startAgentProcess(b *testing.B, n int) []string {
	b.Helper()
	self, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(self, "-test.run=^$")
	cmd.Env = append(os.Environ(), agentsEnv+"="+strconv.Itoa(n))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		stdin.Close() // the agents stop when their stdin closes
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	var dials []string
	for sc := bufio.NewScanner(stdout); sc.Scan() && sc.Text() != ""; {
		dials = append(dials, sc.Text())
	}
	if len(dials) != n {
		b.Fatalf("the agent process gave %d addresses, want %d", len(dials), n)
	}
	return dials
}

// cpuTime is the CPU time (user and system) this process has used.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// loopCPU runs op as b.Loop does and reports, besides the wall time, the
// process's CPU time per op (cpu-ns/op): on a machine shared with other
// work it stays close to the work's own cost where the wall time does not.
// It counts the board's own goroutines too (its clock, the GC).
func loopCPU(b *testing.B, op func()) {
	b.ReportAllocs()
	start := cpuTime(b)
	for b.Loop() {
		op()
	}
	b.ReportMetric(float64((cpuTime(b)-start).Nanoseconds())/float64(b.N), "cpu-ns/op")
}

// keepPlan has the board rebuild pool's plan on every change and tick, as
// the tiered policy does for the pool it chooses from (its replan).
func keepPlan(b *testing.B, bd *Board, pool *Pool) {
	b.Cleanup(bd.Subscribe(func() { pool.Replan() }))
}

// BenchmarkBoardPollers is the board's CPU per polled edge per second
// with 10, 100 and 1,000 edges, each an agent on its own loopback port
// (agentfarm, in another process) polled at the default interval and
// timeout: the pollers (request, answer, decoding, scoring), the plan
// rebuilt after every report and every tick, and the clock's ticks. No
// requests are proxied. It measures this process's CPU time over 5 s once
// every edge is trusted, per edge and second and as a share of one core.
//
//	go test -run '^$' -bench BoardPollers -benchtime 1x -count 5 ./internal/board/
func BenchmarkBoardPollers(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("edges=%d", n), func(b *testing.B) {
			dials := startAgentProcess(b, n)
			bd := New(fmt.Sprintf("pollers-%d", n), zap.NewNop())
			b.Cleanup(func() { _ = bd.Destruct() })
			pool, _ := poolOf(bd, dials...)
			keepPlan(b, bd, pool)
			waitTrusted(b, bd, 10*time.Second)
			time.Sleep(time.Second) // past the first polls, which all start at once

			const window = 5 * time.Second
			var cpu time.Duration
			var polls, failed uint64
			for b.Loop() {
				polls0, failed0 := pollCounts(bd)
				cpu0 := cpuTime(b)
				time.Sleep(window)
				cpu = cpuTime(b) - cpu0
				polls1, failed1 := pollCounts(bd)
				polls, failed = polls1-polls0, failed1-failed0
			}
			if failed > 0 {
				b.Errorf("%d of %d polls failed", failed, polls)
			}
			edgeSeconds := float64(n) * window.Seconds()
			b.ReportMetric(float64(cpu.Microseconds())/edgeSeconds, "cpu-us/edge/s")
			b.ReportMetric(float64(polls)/edgeSeconds, "polls/edge/s")
			b.ReportMetric(cpu.Seconds()/window.Seconds()*100, "%core")
		})
	}
}

// waitTrusted waits until every edge of bd has a trusted view.
func waitTrusted(b *testing.B, bd *Board, within time.Duration) {
	b.Helper()
	deadline := time.Now().Add(within)
	for {
		trusted := 0
		for _, e := range bd.Edges() {
			if v := e.View(); v != nil && v.Trusted {
				trusted++
			}
		}
		if trusted == len(bd.Edges()) {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d edges trusted after %s", trusted, len(bd.Edges()), within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// pollCounts is the polls bd has made and those that failed.
func pollCounts(bd *Board) (polls, failed uint64) {
	for _, e := range bd.Edges() {
		polls += e.polls.Load()
		for r := range e.errors {
			failed += e.errors[r].Load()
		}
	}
	return polls, failed
}

// reportedBoard is a board of n upstreams whose agents it never reaches
// (the benchmark hands their reports in), each trusted after two reports
// of load 10 + i%50 percent, which stay fresh for a minute. It returns the board, the pool, the
// upstreams' addresses and their reports, to be handed in again with a
// new Seq.
func reportedBoard(b *testing.B, n int) (*Board, *Pool, []string, []edgeagent.Report) {
	b.Helper()
	bd := New(fmt.Sprintf("reported-%d", n), zap.NewNop())
	b.Cleanup(func() { _ = bd.Destruct() })
	cfg := DefaultConfig()
	cfg.Interval, cfg.ReportURL = 10*time.Minute, "http://127.0.0.1:9/_edgetier/load?for={upstream}"
	cfg.Scoring.StaleAfter = time.Minute
	bd.Configure(cfg)
	dials := make([]string, n)
	reps := make([]edgeagent.Report, n)
	for i := range dials {
		dials[i] = fmt.Sprintf("127.0.%d.%d:8080", 1+i/250, 1+i%250)
		l := float64(10 + i%50)
		reps[i] = edgeagent.Report{Schema: edgeagent.SchemaVersion, Edge: fmt.Sprintf("edge-%d", i+1), Timestamp: time.Now(),
			IntervalSeconds: 1, Scope: edgeagent.ScopeHost, State: edgeagent.StateReady, CPUPercent: l, MemoryPercent: l,
			RequestsPerSecond: l / 100 * rank.DefaultCapacity.Requests, Streams: l / 100 * rank.DefaultCapacity.Streams,
			ResponseTimeSeconds: l / 100 * rank.DefaultCapacity.ResponseTime, EgressBytesPerSecond: l * 1e6,
			SentBytesPerSecond: l * 1e6, StreamBytesPerSecond: 1e6 / (l / 100 * rank.DefaultCapacity.Streams)}
	}
	pool, _ := poolOf(bd, dials...)
	for range 2 {
		for i := range reps {
			reps[i].Seq++
			bd.Report(dials[i], reps[i])
		}
	}
	waitTrusted(b, bd, time.Second)
	return bd, pool, dials, reps
}

// BenchmarkBoardReport is what taking in one report costs with 10, 100
// and 1,000 upstreams in the pool: scoring it (rank.Accept), publishing
// the view, and rebuilding the pool's plan, which the tiered policy does
// after every change. The reports come round the pool in turn, each a new
// sample (Seq) of the same load, as the pollers hand them in.
//
//	go test -run '^$' -bench 'BoardReport|BoardReplan' -benchmem -count 10 ./internal/board/
func BenchmarkBoardReport(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("upstreams=%d", n), func(b *testing.B) {
			bd, pool, dials, reps := reportedBoard(b, n)
			keepPlan(b, bd, pool)
			i := 0
			loopCPU(b, func() {
				reps[i].Seq++
				reps[i].Timestamp = time.Now()
				bd.Report(dials[i], reps[i])
				i = (i + 1) % n
			})
		})
	}
}

// BenchmarkBoardReplan is the plan's rebuild alone (Pool.Replan), the part
// of BenchmarkBoardReport that grows with the pool; the board also
// rebuilds it every tick of its clock (50 ms).
func BenchmarkBoardReplan(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("upstreams=%d", n), func(b *testing.B) {
			_, pool, _, _ := reportedBoard(b, n)
			loopCPU(b, func() { pool.Replan() })
		})
	}
}

// BenchmarkFrame builds the dashboard's frame (the JSON each WebSocket
// client gets every interval) for 10, 50, 200 and 1,000 trusted edges,
// each selected since the last frame, and reports its size.
//
//	go test -run '^$' -bench Frame -benchmem -count 10 ./internal/board/
func BenchmarkFrame(b *testing.B) {
	for _, n := range []int{10, 50, 200, 1000} {
		b.Run(fmt.Sprintf("edges=%d", n), func(b *testing.B) {
			bd, pool, _, _ := reportedBoard(b, n)
			fb := NewFrameBuilder(bd, new(edgeagent.Meter), fixedHost{}, time.Second)
			var frame []byte
			loopCPU(b, func() {
				for i := range n {
					pool.Count(i, rank.KindTier1)
				}
				frame = fb.Frame()
			})
			b.ReportMetric(float64(len(frame)), "bytes/frame")
		})
	}
}
