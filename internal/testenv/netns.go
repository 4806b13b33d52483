package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"
)

// Netns is a network namespace a test made, with one end of a veth pair.
type Netns struct {
	Name string // as `ip netns` knows it
	Dev  string // its end of the veth pair
	Addr string // that end's IPv4 address
}

var pairs atomic.Int32

// VethPair makes two network namespaces joined by a veth pair with the
// addresses 10.213.N.1 and 10.213.N.2, each with loopback up, and removes
// them (and so the pair) when the test ends. Traffic between them never
// leaves them. It needs root, ip and tc; without them the test is
// skipped, or fails under Strict.
func VethPair(t testing.TB) (a, b *Netns) {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, "network namespaces need root")
	}
	Program(t, "ip")
	Program(t, "tc")
	n := pairs.Add(1)
	id := fmt.Sprintf("%d%d", os.Getpid()%100000, n)
	a, b = newNetns(t, id+"a"), newNetns(t, id+"b")
	a.Dev, a.Addr = "etv"+id+"a", fmt.Sprintf("10.213.%d.1", n)
	b.Dev, b.Addr = "etv"+id+"b", fmt.Sprintf("10.213.%d.2", n)
	Run(t, "ip", "link", "add", a.Dev, "netns", a.Name, "type", "veth", "peer", "name", b.Dev, "netns", b.Name)
	for _, ns := range []*Netns{a, b} {
		ns.Run(t, "ip", "addr", "add", ns.Addr+"/30", "dev", ns.Dev)
		ns.Run(t, "ip", "link", "set", ns.Dev, "up")
	}
	return a, b
}

// LoopbackOnly makes a network namespace with loopback alone (up), and
// removes it when the test ends. It needs root and ip.
func LoopbackOnly(t testing.TB) *Netns {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, "network namespaces need root")
	}
	Program(t, "ip")
	return newNetns(t, fmt.Sprintf("%d%dl", os.Getpid()%100000, pairs.Add(1)))
}

// newNetns makes the namespace edgetier-<id> with loopback up.
func newNetns(t testing.TB, id string) *Netns {
	t.Helper()
	ns := &Netns{Name: "edgetier-" + id}
	Run(t, "ip", "netns", "add", ns.Name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns.Name).Run() })
	ns.Run(t, "ip", "link", "set", "lo", "up")
	return ns
}

// Run runs a command and fails the test if it fails.
func Run(t testing.TB, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// Run runs a command in the namespace and fails the test if it fails.
func (n *Netns) Run(t testing.TB, name string, args ...string) {
	t.Helper()
	Run(t, "ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Command is a command to be run in the namespace.
func (n *Netns) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Shape limits what the namespace's end of the pair sends to rate (as tc
// writes it, e.g. 200mbit) with a token bucket.
func (n *Netns) Shape(t testing.TB, rate string) {
	t.Helper()
	n.Run(t, "tc", "qdisc", "replace", "dev", n.Dev, "root", "tbf", "rate", rate, "burst", "32kbit", "latency", "400ms")
}

// Do runs fn on an OS thread in the namespace: sockets fn opens belong to
// the namespace for good. The thread is discarded afterwards.
func (n *Netns) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: the thread, in another namespace, dies with the goroutine.
		runtime.LockOSThread()
		f, err := os.Open("/run/netns/" + n.Name)
		if err != nil {
			errc <- err
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("entering %s: %w", n.Name, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// LinkHost joins the namespace to this process's own with another veth
// pair, 10.214.N.1 on this side and 10.214.N.2 in the namespace (its
// address, returned), unshaped; it goes with the namespace.
func (n *Netns) LinkHost(t testing.TB) (host, inside string) {
	t.Helper()
	k := pairs.Add(1)
	id := fmt.Sprintf("%d%d", os.Getpid()%100000, k)
	here, there := "eth"+id+"h", "eth"+id+"n"
	host, inside = fmt.Sprintf("10.214.%d.1", k), fmt.Sprintf("10.214.%d.2", k)
	Run(t, "ip", "link", "add", here, "type", "veth", "peer", "name", there, "netns", n.Name)
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", here).Run() })
	Run(t, "ip", "addr", "add", host+"/30", "dev", here)
	Run(t, "ip", "link", "set", here, "up")
	n.Run(t, "ip", "addr", "add", inside+"/30", "dev", there)
	n.Run(t, "ip", "link", "set", there, "up")
	return host, inside
}
