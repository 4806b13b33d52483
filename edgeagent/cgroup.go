package edgeagent

import (
	"bufio"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// cgroupDirs locates the cgroup files of one process. Either v2 is set
// (one unified directory) or the v1 controller directories are.
type cgroupDirs struct {
	V2     string // cgroup v2 directory
	CPU    string // v1 cpu controller directory
	CPUAcc string // v1 cpuacct controller directory
	Memory string // v1 memory controller directory
}

// cpuReading is a cumulative CPU reading of a cgroup.
type cpuReading struct {
	UsageNanos uint64
	Periods    uint64
	Throttled  uint64
	// LimitCPUs is the quota in CPUs (0.05 for 5 % of one), 0 when unlimited.
	LimitCPUs float64
}

// memReading is a cgroup's memory use without reclaimable file cache.
type memReading struct {
	Used  uint64
	Limit uint64 // 0 when unlimited
}

// findCgroup returns the cgroup directories of pid, reading procRoot
// ("/proc" outside tests). With cgroup v1 controllers mounted (a hybrid
// host) it prefers them, since v2 then holds no controllers.
func findCgroup(procRoot string, pid int) (cgroupDirs, error) {
	pidDir := filepath.Join(procRoot, strconv.Itoa(pid))
	membership, err := os.ReadFile(filepath.Join(pidDir, "cgroup"))
	if err != nil {
		return cgroupDirs{}, fmt.Errorf("reading cgroup membership: %w", err)
	}
	mounts, err := readCgroupMounts(filepath.Join(pidDir, "mountinfo"))
	if err != nil {
		return cgroupDirs{}, err
	}
	var dirs cgroupDirs
	for _, line := range strings.Split(strings.TrimSpace(string(membership)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		controllers, path := parts[1], parts[2]
		if parts[0] == "0" && controllers == "" {
			if m, ok := mounts["cgroup2"]; ok {
				dirs.V2 = m.join(path)
			}
			continue
		}
		for _, c := range strings.Split(controllers, ",") {
			m, ok := mounts[c]
			if !ok {
				continue
			}
			switch c {
			case "cpu":
				dirs.CPU = m.join(path)
			case "cpuacct":
				dirs.CPUAcc = m.join(path)
			case "memory":
				dirs.Memory = m.join(path)
			}
		}
	}
	if dirs.CPU != "" || dirs.CPUAcc != "" || dirs.Memory != "" {
		dirs.V2 = ""
		return dirs, nil
	}
	if dirs.V2 == "" {
		return dirs, errors.New("no cgroup of this process is mounted")
	}
	return dirs, nil
}

type cgroupMount struct{ root, point string }

// join maps a cgroup path from /proc/PID/cgroup to a directory under the
// mount point, allowing for a mount of a sub-tree (cgroup namespaces).
func (m cgroupMount) join(path string) string {
	rel := path
	if m.root != "/" {
		rel = strings.TrimPrefix(path, m.root)
	}
	return filepath.Join(m.point, rel)
}

// readCgroupMounts maps each v1 controller, and "cgroup2", to its mount.
func readCgroupMounts(mountinfo string) (map[string]cgroupMount, error) {
	f, err := os.Open(mountinfo)
	if err != nil {
		return nil, fmt.Errorf("reading mounts: %w", err)
	}
	defer f.Close()
	mounts := map[string]cgroupMount{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent maj:min root mountpoint opts [optional...] - fstype source superopts
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		pf, qf := strings.Fields(pre), strings.Fields(post)
		if len(pf) < 5 || len(qf) < 3 {
			continue
		}
		m := cgroupMount{root: pf[3], point: pf[4]}
		switch qf[0] {
		case "cgroup2":
			mounts["cgroup2"] = m
		case "cgroup":
			for _, opt := range strings.Split(qf[2], ",") {
				mounts[opt] = m
			}
		}
	}
	return mounts, sc.Err()
}

// limited reports whether the cgroup has a CPU quota or a memory limit,
// which is what the "auto" scope looks for.
func (d cgroupDirs) limited(hostMemory uint64) bool {
	cpu, err := d.readCPU()
	if err == nil && cpu.LimitCPUs > 0 {
		return true
	}
	mem, err := d.readMemory()
	return err == nil && mem.Limit > 0 && mem.Limit < hostMemory
}

func (d cgroupDirs) readCPU() (cpuReading, error) {
	if d.V2 != "" {
		return readCPUV2(d.V2)
	}
	return readCPUV1(d.CPU, d.CPUAcc)
}

func (d cgroupDirs) readMemory() (memReading, error) {
	if d.V2 != "" {
		return readMemoryV2(d.V2)
	}
	return readMemoryV1(d.Memory)
}

func readCPUV1(cpuDir, cpuacctDir string) (cpuReading, error) {
	var r cpuReading
	usage, err := readUint(filepath.Join(cpuacctDir, "cpuacct.usage"))
	if err != nil {
		return r, err
	}
	r.UsageNanos = usage
	quota, err := readInt(filepath.Join(cpuDir, "cpu.cfs_quota_us"))
	if err != nil {
		return r, err
	}
	period, err := readInt(filepath.Join(cpuDir, "cpu.cfs_period_us"))
	if err != nil {
		return r, err
	}
	if quota > 0 && period > 0 {
		r.LimitCPUs = float64(quota) / float64(period)
	}
	stat, err := readKeyValues(filepath.Join(cpuDir, "cpu.stat"))
	if err != nil {
		return r, err
	}
	r.Periods, r.Throttled = stat["nr_periods"], stat["nr_throttled"]
	return r, nil
}

func readCPUV2(dir string) (cpuReading, error) {
	var r cpuReading
	stat, err := readKeyValues(filepath.Join(dir, "cpu.stat"))
	if err != nil {
		return r, err
	}
	r.UsageNanos = stat["usage_usec"] * 1000
	r.Periods, r.Throttled = stat["nr_periods"], stat["nr_throttled"]
	// cpu.max is absent in the root cgroup: no limit.
	max, err := os.ReadFile(filepath.Join(dir, "cpu.max"))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return r, nil
		}
		return r, err
	}
	fields := strings.Fields(string(max))
	if len(fields) == 2 && fields[0] != "max" {
		quota, err1 := strconv.ParseFloat(fields[0], 64)
		period, err2 := strconv.ParseFloat(fields[1], 64)
		if err1 != nil || err2 != nil || period <= 0 {
			return r, fmt.Errorf("parsing %s: %q", filepath.Join(dir, "cpu.max"), max)
		}
		r.LimitCPUs = quota / period
	}
	return r, nil
}

// noLimitV1 is above any real memory size: v1 writes a huge page-aligned
// number for "no limit".
const noLimitV1 = 1 << 62

func readMemoryV1(dir string) (memReading, error) {
	var r memReading
	usage, err := readUint(filepath.Join(dir, "memory.usage_in_bytes"))
	if err != nil {
		return r, err
	}
	limit, err := readUint(filepath.Join(dir, "memory.limit_in_bytes"))
	if err != nil {
		return r, err
	}
	if limit < noLimitV1 {
		r.Limit = limit
	}
	stat, err := readKeyValues(filepath.Join(dir, "memory.stat"))
	if err != nil {
		return r, err
	}
	inactive, ok := stat["total_inactive_file"]
	if !ok {
		inactive = stat["inactive_file"]
	}
	r.Used = subFloor(usage, inactive)
	return r, nil
}

func readMemoryV2(dir string) (memReading, error) {
	var r memReading
	usage, err := readUint(filepath.Join(dir, "memory.current"))
	if err != nil {
		return r, err
	}
	if max, err := os.ReadFile(filepath.Join(dir, "memory.max")); err == nil {
		if s := strings.TrimSpace(string(max)); s != "max" {
			limit, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				return r, fmt.Errorf("parsing %s: %w", filepath.Join(dir, "memory.max"), err)
			}
			r.Limit = limit
		}
	}
	stat, err := readKeyValues(filepath.Join(dir, "memory.stat"))
	if err != nil {
		return r, err
	}
	r.Used = subFloor(usage, stat["inactive_file"])
	return r, nil
}

// cgroupCPUPercent is the CPU use between two readings relative to what
// the cgroup may use: its quota, else hostCPUs. Throttling counts as load:
// a cgroup throttled in every period is saturated whatever its usage says.
func cgroupCPUPercent(prev, cur cpuReading, wallSeconds float64, hostCPUs int) float64 {
	if wallSeconds <= 0 || cur.UsageNanos < prev.UsageNanos {
		return 0
	}
	limit := cur.LimitCPUs
	if limit <= 0 || limit > float64(hostCPUs) {
		limit = float64(hostCPUs)
	}
	pct := float64(cur.UsageNanos-prev.UsageNanos) / 1e9 / wallSeconds / limit * 100
	if periods := cur.Periods - prev.Periods; cur.Periods > prev.Periods && cur.Throttled >= prev.Throttled {
		pct = math.Max(pct, float64(cur.Throttled-prev.Throttled)/float64(periods)*100)
	}
	return clampPercent(pct)
}

func clampPercent(v float64) float64 {
	switch {
	case math.IsNaN(v) || v < 0:
		return 0
	case v > 100:
		return 100
	}
	return v
}

func subFloor(a, b uint64) uint64 {
	if b > a {
		return 0
	}
	return a - b
}

func readUint(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parsing %s: %w", path, err)
	}
	return v, nil
}

func readInt(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parsing %s: %w", path, err)
	}
	return v, nil
}

// readKeyValues parses "key value" lines (cpu.stat, memory.stat).
func readKeyValues(path string) (map[string]uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	kv := map[string]uint64{}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), " ")
		if !ok {
			continue
		}
		if n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64); err == nil {
			kv[k] = n
		}
	}
	return kv, nil
}
