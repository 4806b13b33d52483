package cluster

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// CgroupV1 is a cgroup under the v1 cpu and cpuacct controllers, used to
// give one edge its own CPU budget on a shared machine.
type CgroupV1 struct {
	dirs []string // cpu, cpuacct
}

// NewCgroupV1 creates the cgroup name under both controllers.
func NewCgroupV1(name string) (*CgroupV1, error) {
	g := &CgroupV1{}
	for _, ctrl := range []string{"cpu", "cpuacct"} {
		base := filepath.Join("/sys/fs/cgroup", ctrl)
		if _, err := os.Stat(filepath.Join(base, "cgroup.procs")); err != nil {
			return nil, fmt.Errorf("cgroup v1 %s controller is not mounted at %s", ctrl, base)
		}
		dir := filepath.Join(base, name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("creating cgroup (needs root): %w", err)
		}
		g.dirs = append(g.dirs, dir)
	}
	return g, nil
}

// SetQuota limits the cgroup to cpus CPUs (0.05 is 5 % of one); 0 lifts
// the limit.
func (g *CgroupV1) SetQuota(cpus float64) error {
	const period = 100000
	quota := "-1"
	if cpus > 0 {
		quota = strconv.Itoa(int(cpus * period))
	}
	if err := os.WriteFile(filepath.Join(g.dirs[0], "cpu.cfs_period_us"), []byte(strconv.Itoa(period)), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(g.dirs[0], "cpu.cfs_quota_us"), []byte(quota), 0o644)
}

// Join moves a process (all its threads) into the cgroup.
func (g *CgroupV1) Join(pid int) error {
	for _, dir := range g.dirs {
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
			return fmt.Errorf("joining %s: %w", dir, err)
		}
	}
	return nil
}

// Wrap is a shell snippet for Options.Wrap that joins the cgroup before
// Caddy starts, so its agent finds itself in the cgroup from the start.
func (g *CgroupV1) Wrap() string {
	var b strings.Builder
	for _, dir := range g.dirs {
		fmt.Fprintf(&b, "echo $$ > %s/cgroup.procs\n", dir)
	}
	return b.String()
}

// Remove deletes the cgroup once its processes are gone (it waits a
// little for them to exit).
func (g *CgroupV1) Remove() error {
	var err error
	for _, dir := range g.dirs {
		for i := 0; i < 100; i++ {
			if err = os.Remove(dir); err == nil || os.IsNotExist(err) {
				err = nil
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return err
}
