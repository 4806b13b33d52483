package edgeagent

import (
	"context"
	"errors"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/edgetier/edgetier/internal/testenv"
)

// pump sends zeros to addr, dialled from inside ns, until ctx ends.
func pump(t *testing.T, ctx context.Context, ns *testenv.Netns, addr string, wg *sync.WaitGroup) {
	t.Helper()
	var conn net.Conn
	err := ns.Do(func() error {
		var err error
		conn, err = (&net.Dialer{Timeout: 2 * time.Second}).DialContext(ctx, "tcp", addr)
		return err
	})
	if err != nil {
		t.Fatalf("dialling %s in %s: %v", addr, ns.Name, err)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer conn.Close()
		buf := make([]byte, 64<<10)
		for ctx.Err() == nil {
			_ = conn.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
			if _, err := conn.Write(buf); err != nil && !errors.Is(err, context.DeadlineExceeded) && !isTimeout(err) {
				return
			}
		}
	}()
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// sink accepts connections on addr inside ns and discards what they send.
func sink(t *testing.T, ns *testenv.Netns, addr string) string {
	t.Helper()
	var ln net.Listener
	if err := ns.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		t.Fatalf("listening on %s in %s: %v", addr, ns.Name, err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(io.Discard, c)
			}()
		}
	}()
	return ln.Addr().String()
}

// TestAgentMeasuresShapedLink: on a veth pair shaped to 200 Mbit/s, the
// agent of the sending namespace measures its egress at the shaped rate
// and its link as nearly full against the advertised 200 Mbit/s (veth
// has no real speed), while loopback traffic in the same namespace is
// left out; with the link idle it measures it idle.
func TestAgentMeasuresShapedLink(t *testing.T) {
	edge, viewer := testenv.VethPair(t)
	edge.Shape(t, 200e6)
	const link = 200e6 / 8

	pid := processIn(t, edge)
	if n := newNetCounter(pid); n.sysDir != "" {
		t.Fatalf("the agent would read interface speeds of its own namespace (%s) for another's", n.sysDir)
	}
	if n := newNetCounter(os.Getpid()); n.sysDir == "" {
		t.Fatal("the agent reads no interface speeds of its own namespace")
	}

	res, err := NewResourceSampler(context.Background(), ScopeHost, pid)
	if err != nil {
		t.Fatal(err)
	}
	agent, err := NewAgent(Config{Name: "veth", Interval: time.Second, Capacity: &Capacity{LinkBytesPerSecond: link}}, res, new(Meter), nil)
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()

	// Loopback in the edge's namespace, at whatever rate it goes: never egress.
	loop := sink(t, edge, "127.0.0.1:0")
	pump(t, ctx, edge, loop, &wg)

	agent.Sample(ctx) // the baseline
	idle := func() Report {
		time.Sleep(1500 * time.Millisecond)
		agent.Sample(ctx)
		r, err := agent.Current()
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := idle(); r.EgressBytesPerSecond > 0.02*link || r.LinkUtilisation > 0.02 {
		t.Fatalf("idle link (loopback busy): egress %.0f B/s, utilisation %.3f; want about 0", r.EgressBytesPerSecond, r.LinkUtilisation)
	}

	full, stop := context.WithCancel(ctx)
	target := sink(t, viewer, net.JoinHostPort(viewer.Addr, "0"))
	for range 4 {
		pump(t, full, edge, target, &wg)
	}
	time.Sleep(500 * time.Millisecond) // past TCP's slow start
	agent.Sample(ctx)
	time.Sleep(3 * time.Second)
	agent.Sample(ctx)
	r, err := agent.Current()
	if err != nil {
		t.Fatal(err)
	}
	stop()
	t.Logf("egress %.3g B/s (shaped to %.3g), utilisation %.3f, link %s B/s", r.EgressBytesPerSecond, link, r.LinkUtilisation,
		strconv.FormatFloat(r.Capacity.LinkBytesPerSecond, 'g', 4, 64))
	if r.EgressBytesPerSecond < 0.85*link || r.EgressBytesPerSecond > 1.1*link {
		t.Fatalf("egress %.3g B/s, want about the shaped %.3g", r.EgressBytesPerSecond, link)
	}
	if r.LinkUtilisation < 0.85 || r.Capacity == nil || r.Capacity.LinkBytesPerSecond != link {
		t.Fatalf("utilisation %.3f of %+v, want nearly full against the advertised %g", r.LinkUtilisation, r.Capacity, link)
	}
	time.Sleep(500 * time.Millisecond) // the queue drains
	agent.Sample(ctx)
	if r := idle(); r.LinkUtilisation > 0.02 {
		t.Fatalf("link idle again (loopback still busy): utilisation %.3f", r.LinkUtilisation)
	}
}

// processIn starts a process in ns for the rest of the test and returns
// its pid once it is in the namespace: an agent reads its /proc/PID/net/dev.
func processIn(t *testing.T, ns *testenv.Netns) int {
	t.Helper()
	sleeper := ns.Command("sleep", "60")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sleeper.Process.Kill(); _ = sleeper.Wait() })
	own, _ := os.Readlink("/proc/self/ns/net")
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		// ip netns exec becomes sleep, in the namespace, in the same process.
		if theirs, err := os.Readlink("/proc/" + strconv.Itoa(sleeper.Process.Pid) + "/ns/net"); err == nil && theirs != own {
			return sleeper.Process.Pid
		}
	}
	t.Fatalf("the sleeper never entered %s", ns.Name)
	return 0
}

// TestAgentLoopbackOnly: in a namespace with loopback alone no link is
// identified, and the bytes the edge served stand in for its egress
// against the advertised link.
func TestAgentLoopbackOnly(t *testing.T) {
	ns := testenv.LoopbackOnly(t)
	pid := processIn(t, ns)
	meter := new(Meter)
	const link = 400e6
	res, err := NewResourceSampler(context.Background(), ScopeHost, pid)
	if err != nil {
		t.Fatal(err)
	}
	agent, err := NewAgent(Config{Name: "lo", Interval: time.Second, Capacity: &Capacity{LinkBytesPerSecond: link}}, res, meter, nil)
	if err != nil {
		t.Fatal(err)
	}

	chunk := make([]byte, 256<<10)
	var ln net.Listener
	if err := ns.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = meter.Serve(w, r, func(w http.ResponseWriter, r *http.Request) error {
			_, err := w.Write(chunk)
			return err
		})
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			err := ns.Do(func() error {
				var err error
				c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
				return err
			})
			return c, err
		},
	}}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	agent.Sample(ctx)
	for end := time.Now().Add(1500 * time.Millisecond); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		resp, err := client.Get("http://" + ln.Addr().String() + "/")
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	agent.Sample(ctx)
	r, err := agent.Current()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("served %.3g B/s, loopback %.3g B/s, utilisation %.3f of %g", r.SentBytesPerSecond, r.EgressBytesPerSecond, r.LinkUtilisation, link)
	want := min(r.SentBytesPerSecond/link, 1)
	if r.SentBytesPerSecond <= 0 || r.LinkUtilisation <= 0 || math.Abs(r.LinkUtilisation-want) > 1e-9 {
		t.Fatalf("utilisation %g, want the served bytes over the link: %g", r.LinkUtilisation, want)
	}
	// The two are sampled a moment apart: about equal, not to the byte.
	if r.EgressBytesPerSecond < 0.8*r.SentBytesPerSecond {
		t.Fatalf("egress %g below the bytes served %g: loopback, the only interface, must count", r.EgressBytesPerSecond, r.SentBytesPerSecond)
	}
}
