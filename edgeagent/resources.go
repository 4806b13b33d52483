package edgeagent

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"time"

	"github.com/shirou/gopsutil/v4/cpu"
	"github.com/shirou/gopsutil/v4/mem"
	"github.com/shirou/gopsutil/v4/process"
)

// Scopes of resource figures.
const (
	ScopeAuto    = "auto"    // cgroup when the cgroup has a CPU or memory limit, else host
	ScopeHost    = "host"    // the whole machine
	ScopeCgroup  = "cgroup"  // the cgroup of the process, relative to its limits
	ScopeProcess = "process" // one process, relative to the machine
)

// ParseScope checks a scope name.
func ParseScope(s string) (string, error) {
	switch s {
	case ScopeAuto, ScopeHost, ScopeCgroup, ScopeProcess:
		return s, nil
	}
	return "", fmt.Errorf("unknown scope %q (want auto, host, cgroup or process)", s)
}

// Resources is one sample of an edge's resource use.
type Resources struct {
	Scope         string
	CPUPercent    float64 // since the previous sample
	MemoryPercent float64
	Link          Link // the network namespace's interfaces
}

// ResourceSampler yields resource samples; CPU is measured between calls.
// One goroutine calls it.
type ResourceSampler interface {
	Sample(ctx context.Context) (Resources, error)
}

// NewResourceSampler returns the sampler of scope for process pid (0 means
// this process; the cgroup scope uses the pid's cgroup).
func NewResourceSampler(ctx context.Context, scope string, pid int) (ResourceSampler, error) {
	if pid == 0 {
		pid = os.Getpid()
	}
	hostMem, err := mem.VirtualMemoryWithContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading host memory: %w", err)
	}
	net := newNetCounter(pid)
	switch scope {
	case ScopeHost:
		return &hostSampler{net: net}, nil
	case ScopeProcess:
		p, err := process.NewProcessWithContext(ctx, int32(pid))
		if err != nil {
			return nil, fmt.Errorf("process scope: %w", err)
		}
		return &processSampler{proc: p, hostMemory: hostMem.Total, net: net}, nil
	case ScopeCgroup, ScopeAuto:
		dirs, err := findCgroup("/proc", pid)
		if err != nil {
			if scope == ScopeAuto {
				return &hostSampler{net: net}, nil
			}
			return nil, fmt.Errorf("cgroup scope: %w", err)
		}
		if scope == ScopeAuto && !dirs.limited(hostMem.Total) {
			return &hostSampler{net: net}, nil
		}
		return &cgroupSampler{dirs: dirs, hostMemory: hostMem.Total, hostCPUs: runtime.NumCPU(), net: net}, nil
	}
	_, err = ParseScope(scope)
	return nil, err
}

type hostSampler struct {
	net      netCounter
	prevBusy float64
	prevAll  float64
}

func (h *hostSampler) Sample(ctx context.Context) (Resources, error) {
	r := Resources{Scope: ScopeHost}
	times, err := cpu.TimesWithContext(ctx, false)
	if err != nil || len(times) == 0 {
		return r, fmt.Errorf("reading host cpu: %w", err)
	}
	t := times[0]
	idle := t.Idle + t.Iowait
	all := t.User + t.System + t.Nice + t.Irq + t.Softirq + t.Steal + idle
	busy := all - idle
	if h.prevAll > 0 && all > h.prevAll {
		r.CPUPercent = clampPercent((busy - h.prevBusy) / (all - h.prevAll) * 100)
	}
	h.prevBusy, h.prevAll = busy, all
	vm, err := mem.VirtualMemoryWithContext(ctx)
	if err != nil {
		return r, fmt.Errorf("reading host memory: %w", err)
	}
	// Available counts reclaimable page cache as free: a video edge's
	// file cache is not load.
	r.MemoryPercent = clampPercent(float64(vm.Total-vm.Available) / float64(vm.Total) * 100)
	r.Link, err = h.net.read(ctx)
	return r, err
}

type processSampler struct {
	proc       *process.Process
	hostMemory uint64
	net        netCounter
	prevCPU    float64
	prevAt     time.Time
}

func (p *processSampler) Sample(ctx context.Context) (Resources, error) {
	r := Resources{Scope: ScopeProcess}
	times, err := p.proc.TimesWithContext(ctx)
	if err != nil {
		return r, fmt.Errorf("reading process cpu: %w", err)
	}
	now := time.Now()
	used := times.User + times.System
	if !p.prevAt.IsZero() {
		wall := now.Sub(p.prevAt).Seconds()
		r.CPUPercent = clampPercent((used - p.prevCPU) / wall / float64(runtime.NumCPU()) * 100)
	}
	p.prevCPU, p.prevAt = used, now
	info, err := p.proc.MemoryInfoWithContext(ctx)
	if err != nil {
		return r, fmt.Errorf("reading process memory: %w", err)
	}
	r.MemoryPercent = clampPercent(float64(info.RSS) / float64(p.hostMemory) * 100)
	r.Link, err = p.net.read(ctx)
	return r, err
}

type cgroupSampler struct {
	dirs       cgroupDirs
	hostMemory uint64
	hostCPUs   int
	net        netCounter
	prev       cpuReading
	prevAt     time.Time
}

func (c *cgroupSampler) Sample(ctx context.Context) (Resources, error) {
	r := Resources{Scope: ScopeCgroup}
	cur, err := c.dirs.readCPU()
	if err != nil {
		return r, fmt.Errorf("reading cgroup cpu: %w", err)
	}
	now := time.Now()
	if !c.prevAt.IsZero() {
		r.CPUPercent = cgroupCPUPercent(c.prev, cur, now.Sub(c.prevAt).Seconds(), c.hostCPUs)
	}
	c.prev, c.prevAt = cur, now
	m, err := c.dirs.readMemory()
	if err != nil {
		return r, fmt.Errorf("reading cgroup memory: %w", err)
	}
	limit := m.Limit
	if limit == 0 || limit > c.hostMemory {
		limit = c.hostMemory
	}
	r.MemoryPercent = clampPercent(float64(m.Used) / float64(limit) * 100)
	r.Link, err = c.net.read(ctx)
	return r, err
}
