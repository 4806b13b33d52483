package edgeagent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/shirou/gopsutil/v4/net"
)

// Link is one sample of the interfaces of an edge's network namespace.
type Link struct {
	// EgressBytes is the cumulative bytes sent on the non-loopback
	// interfaces (on loopback when it is the only one).
	EgressBytes uint64
	// Interfaces is how many non-loopback interfaces there are: with none,
	// no link is identified and the bytes the edge served stand in.
	Interfaces int
	// BytesPerSecond is their summed speed as the kernel knows it
	// (/sys/class/net/<if>/speed), 0 when it does not know every one's:
	// a virtual interface such as veth has none (or a nominal one).
	BytesPerSecond float64
}

// netCounter reads the interfaces of a network namespace: that of the
// process whose /proc/PID/net/dev it reads. sysDir is /sys/class/net as
// this process sees it, "" when the process is in another namespace: an
// interface of the same name there (a container's eth0 and the host's)
// is another interface, so none has a known speed.
type netCounter struct {
	path   string
	sysDir string
}

func newNetCounter(pid int) netCounter {
	n := netCounter{path: filepath.Join("/proc", strconv.Itoa(pid), "net", "dev")}
	theirs, err1 := os.Readlink(filepath.Join("/proc", strconv.Itoa(pid), "ns", "net"))
	ours, err2 := os.Readlink("/proc/self/ns/net")
	if err1 == nil && err2 == nil && theirs == ours {
		n.sysDir = "/sys/class/net"
	}
	return n
}

func (n netCounter) read(ctx context.Context) (Link, error) {
	stats, err := net.IOCountersByFileWithContext(ctx, true, n.path)
	if err != nil {
		return Link{}, fmt.Errorf("reading network counters: %w", err)
	}
	var l Link
	var loopback uint64
	known := true
	for _, s := range stats {
		if s.Name == "lo" {
			loopback = s.BytesSent
			continue
		}
		l.Interfaces++
		l.EgressBytes += s.BytesSent
		speed := interfaceSpeed(n.sysDir, s.Name)
		known = known && speed > 0
		l.BytesPerSecond += speed
	}
	if l.Interfaces == 0 {
		l.EgressBytes = loopback
	}
	if !known || l.Interfaces == 0 {
		l.BytesPerSecond = 0
	}
	return l, nil
}

// interfaceSpeed is the speed of interface name in bytes per second, 0
// when the kernel does not know it: the file is missing or unreadable
// (a link that is down), says -1, or the interface is virtual (no device
// behind it: veth reports a nominal 10 Gbit/s whatever shapes it).
func interfaceSpeed(sysDir, name string) float64 {
	if sysDir == "" || strings.ContainsAny(name, "/\x00") || name == "." || name == ".." {
		return 0
	}
	dir := filepath.Join(sysDir, name)
	if _, err := os.Stat(filepath.Join(dir, "device")); err != nil {
		return 0
	}
	b, err := os.ReadFile(filepath.Join(dir, "speed"))
	if err != nil {
		return 0
	}
	mbits, err := strconv.ParseFloat(strings.TrimSpace(string(b)), 64)
	if err != nil || !(mbits > 0) || mbits > maxBytesPerSec*8/1e6 {
		return 0
	}
	return mbits * 1e6 / 8
}

// linkFigures is what an agent reports of its link over an interval:
// the link's capacity (the kernel's, else the advertised one) and its
// utilisation, 0–1, when the capacity is known. Without an identified
// link (loopback only) the bytes the edge served stand in for egress.
func linkFigures(l Link, advertised, egressPerSec, sentPerSec float64) (capacity, utilisation float64) {
	capacity = l.BytesPerSecond
	if capacity <= 0 {
		capacity = advertised
	}
	if capacity <= 0 {
		return 0, 0
	}
	rate := egressPerSec
	if l.Interfaces == 0 {
		rate = sentPerSec
	}
	return capacity, min(max(rate/capacity, 0), 1)
}
