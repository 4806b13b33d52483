package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"sync/atomic"
	"testing"

	"github.com/edgetier/edgetier/internal/cluster"
)

// Netns is a network namespace a test made (see cluster.Netns).
type Netns struct{ *cluster.Netns }

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
	if err := cluster.Join(a.Netns, b.Netns, "etv"+id+"a", "etv"+id+"b", fmt.Sprintf("10.213.%d.1", n), fmt.Sprintf("10.213.%d.2", n)); err != nil {
		t.Fatal(err)
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

// newNetns makes the namespace edgetier-<id> with loopback up, removed
// when the test ends.
func newNetns(t testing.TB, id string) *Netns {
	t.Helper()
	ns, err := cluster.NewNetns(id)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ns.Remove() })
	return &Netns{ns}
}

// Run runs a command and fails the test if it fails.
func Run(t testing.TB, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

// Shape limits what the namespace's end of the pair sends to rate bits
// per second with a token bucket.
func (n *Netns) Shape(t testing.TB, rate float64) {
	t.Helper()
	if err := n.Netns.Shape(rate); err != nil {
		t.Fatal(err)
	}
}

// LinkHost joins the namespace to this process's own with another veth
// pair, 10.214.N.1 on this side and 10.214.N.2 in the namespace (its
// address, returned), unshaped; it goes with the namespace.
func (n *Netns) LinkHost(t testing.TB) (host, inside string) {
	t.Helper()
	k := pairs.Add(1)
	id := fmt.Sprintf("%d%d", os.Getpid()%100000, k)
	here := "eth" + id + "h"
	host, inside = fmt.Sprintf("10.214.%d.1", k), fmt.Sprintf("10.214.%d.2", k)
	// The namespace keeps its first pair as its Dev: LinkHost is a side door.
	dev, addr := n.Dev, n.Addr
	err := n.Netns.LinkHost(here, "eth"+id+"n", host, inside)
	n.Dev, n.Addr = dev, addr
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", here).Run() })
	if err != nil {
		t.Fatal(err)
	}
	return host, inside
}
