package cluster

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// Netns is a network namespace made for a test or a bench, with one end
// of a veth pair: its own test host. Traffic to it never leaves the
// machine.
type Netns struct {
	Name string // as `ip netns` knows it
	Dev  string // its end of the veth pair
	Addr string // that end's IPv4 address
}

// NewNetns makes the namespace edgetier-<id> with loopback up.
func NewNetns(id string) (*Netns, error) {
	ns := &Netns{Name: "edgetier-" + id}
	if err := run("ip", "netns", "add", ns.Name); err != nil {
		return nil, err
	}
	if err := ns.Run("ip", "link", "set", "lo", "up"); err != nil {
		_ = ns.Remove()
		return nil, err
	}
	return ns, nil
}

// Remove deletes the namespace, and with it its ends of any veth pairs.
func (n *Netns) Remove() error { return run("ip", "netns", "del", n.Name) }

// Join adds a veth pair between two namespaces, with addrA and addrB (a
// /30 each side).
func Join(a, b *Netns, devA, devB, addrA, addrB string) error {
	if err := run("ip", "link", "add", devA, "netns", a.Name, "type", "veth", "peer", "name", devB, "netns", b.Name); err != nil {
		return err
	}
	a.Dev, a.Addr = devA, addrA
	b.Dev, b.Addr = devB, addrB
	for _, ns := range []*Netns{a, b} {
		if err := ns.Run("ip", "addr", "add", ns.Addr+"/30", "dev", ns.Dev); err != nil {
			return err
		}
		if err := ns.Run("ip", "link", "set", ns.Dev, "up"); err != nil {
			return err
		}
	}
	return nil
}

// LinkHost joins the namespace to this process's own with a veth pair,
// here (addressed host) on this side and there (addressed inside) in the
// namespace, which becomes its Dev and Addr. Deleting here, or the
// namespace, removes the pair.
func (n *Netns) LinkHost(here, there, host, inside string) error {
	if err := run("ip", "link", "add", here, "type", "veth", "peer", "name", there, "netns", n.Name); err != nil {
		return err
	}
	for _, args := range [][]string{{"addr", "add", host + "/30", "dev", here}, {"link", "set", here, "up"}} {
		if err := run("ip", args...); err != nil {
			return err
		}
	}
	n.Dev, n.Addr = there, inside
	if err := n.Run("ip", "addr", "add", inside+"/30", "dev", there); err != nil {
		return err
	}
	return n.Run("ip", "link", "set", there, "up")
}

// Shape limits what the namespace's end of its pair sends to rate bits per
// second with a token bucket whose burst is 10 ms at that rate (tbf needs
// at least one timer tick's worth to reach its rate). rate 0 lifts it.
func (n *Netns) Shape(rate float64) error {
	if rate <= 0 {
		_ = n.Run("tc", "qdisc", "del", "dev", n.Dev, "root")
		return nil
	}
	burst := max(4e3, rate/8/100) // bytes
	return n.Run("tc", "qdisc", "replace", "dev", n.Dev, "root", "tbf",
		"rate", fmt.Sprintf("%.0fbit", rate), "burst", fmt.Sprintf("%.0fb", burst), "latency", "100ms")
}

// Run runs a command in the namespace.
func (n *Netns) Run(name string, args ...string) error {
	return run("ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Command is a command to be run in the namespace.
func (n *Netns) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Wrap is a shell snippet for Options.Wrap that runs Caddy in the
// namespace; after another Wrap (a cgroup's), both hold. It enters the
// namespace with nsenter, not `ip netns exec`, which mounts a sysfs of the
// namespace's own and so hides the cgroup hierarchy from the agent.
func (n *Netns) Wrap() string {
	return fmt.Sprintf("exec nsenter --net=/run/netns/%s \"$@\"", n.Name)
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

func run(name string, args ...string) error {
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
