package edgeagent

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/edgetier/edgetier/internal/testenv"
)

// cgroupV1 makes a cgroup under the v1 cpu and cpuacct controllers with the
// given quota (in microseconds per 100 ms period; -1 for none) and returns
// a function that moves a process into it.
func cgroupV1(t *testing.T, name string, quotaUS int) func(pid int) {
	t.Helper()
	var dirs []string
	for _, ctrl := range []string{"cpu", "cpuacct"} {
		base := filepath.Join("/sys/fs/cgroup", ctrl)
		if _, err := os.Stat(filepath.Join(base, "cgroup.procs")); err != nil {
			testenv.Missing(t, "cgroup v1 %s controller is not mounted at %s", ctrl, base)
		}
		dir := filepath.Join(base, fmt.Sprintf("edgetier-test-%d-%s", os.Getpid(), name))
		if err := os.Mkdir(dir, 0o755); err != nil {
			testenv.Missing(t, "cannot create a cgroup (needs root): %v", err)
		}
		dirs = append(dirs, dir)
	}
	t.Cleanup(func() {
		for _, dir := range dirs {
			// Move leftovers out, then remove; rmdir fails while tasks remain.
			for i := 0; i < 50 && os.Remove(dir) != nil; i++ {
				time.Sleep(20 * time.Millisecond)
			}
		}
	})
	write := func(path, v string) {
		if err := os.WriteFile(path, []byte(v), 0o644); err != nil {
			t.Fatalf("writing %s: %v", path, err)
		}
	}
	write(filepath.Join(dirs[0], "cpu.cfs_period_us"), "100000")
	write(filepath.Join(dirs[0], "cpu.cfs_quota_us"), strconv.Itoa(quotaUS))
	return func(pid int) {
		for _, dir := range dirs {
			write(filepath.Join(dir, "cgroup.procs"), strconv.Itoa(pid))
		}
	}
}

func startProcess(t *testing.T, args ...string) int {
	t.Helper()
	cmd := exec.Command(args[0], args[1:]...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd.Process.Pid
}

// TestCgroupScopeLive runs a busy process in a cgroup held to 5 % of a CPU
// and an idle one in an unlimited cgroup, and samples both in cgroup scope.
func TestCgroupScopeLive(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Missing(t, "cgroup test needs root")
	}
	// Cgroups first: cleanups run last-in first-out, so the processes are
	// killed before their cgroups are removed.
	joinBusy, joinIdle := cgroupV1(t, "busy", 5000), cgroupV1(t, "idle", -1)
	busy := startProcess(t, "sh", "-c", "while :; do :; done")
	joinBusy(busy)
	idle := startProcess(t, "sleep", "60")
	joinIdle(idle)

	ctx := context.Background()
	busySampler, err := NewResourceSampler(ctx, ScopeCgroup, busy)
	if err != nil {
		t.Fatal(err)
	}
	idleSampler, err := NewResourceSampler(ctx, ScopeCgroup, idle)
	if err != nil {
		t.Fatal(err)
	}
	// auto picks the cgroup for the limited process and the host otherwise.
	if s, _ := NewResourceSampler(ctx, ScopeAuto, busy); s == nil {
		t.Fatal("auto sampler is nil")
	} else if _, ok := s.(*cgroupSampler); !ok {
		t.Fatalf("auto scope for a cgroup with a CPU quota chose %T, want the cgroup", s)
	}
	for _, s := range []ResourceSampler{busySampler, idleSampler} {
		if _, err := s.Sample(ctx); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(1500 * time.Millisecond)
	b, err := busySampler.Sample(ctx)
	if err != nil {
		t.Fatal(err)
	}
	i, err := idleSampler.Sample(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("busy cgroup (5%% quota): cpu %.1f%%, idle cgroup: cpu %.1f%%", b.CPUPercent, i.CPUPercent)
	if b.CPUPercent < 80 {
		t.Errorf("busy process held to 5%% of a CPU reports %.1f%% CPU, want near 100%%", b.CPUPercent)
	}
	if i.CPUPercent > 5 {
		t.Errorf("idle process reports %.1f%% CPU, want near 0", i.CPUPercent)
	}
	if b.Scope != ScopeCgroup || b.MemoryPercent < 0 || b.MemoryPercent > 100 {
		t.Errorf("busy sample = %+v", b)
	}
}
