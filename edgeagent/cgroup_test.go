package edgeagent

import (
	"math"
	"os"
	"path/filepath"
	"testing"
)

// writeTree writes files (path → content) under root.
func writeTree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for path, content := range files {
		full := filepath.Join(root, path)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestFindCgroup(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  func(root string) cgroupDirs
	}{
		{
			name: "v1 hybrid prefers controllers",
			files: map[string]string{
				"proc/42/cgroup": "4:memory:/svc/edge\n2:cpuacct:/svc/edge\n1:cpu:/svc/edge\n0::/\n",
				"proc/42/mountinfo": "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n" +
					"33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct\n" +
					"35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n" +
					"41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n",
			},
			want: func(string) cgroupDirs {
				return cgroupDirs{CPU: "/sys/fs/cgroup/cpu/svc/edge", CPUAcc: "/sys/fs/cgroup/cpuacct/svc/edge", Memory: "/sys/fs/cgroup/memory/svc/edge"}
			},
		},
		{
			name: "v1 joint cpu,cpuacct mount",
			files: map[string]string{
				"proc/42/cgroup":    "3:cpu,cpuacct:/docker/abc\n",
				"proc/42/mountinfo": "30 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n",
			},
			want: func(string) cgroupDirs {
				return cgroupDirs{CPU: "/sys/fs/cgroup/cpu,cpuacct/docker/abc", CPUAcc: "/sys/fs/cgroup/cpu,cpuacct/docker/abc"}
			},
		},
		{
			name: "v2 unified",
			files: map[string]string{
				"proc/42/cgroup":    "0::/system.slice/edge.service\n",
				"proc/42/mountinfo": "29 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n",
			},
			want: func(string) cgroupDirs { return cgroupDirs{V2: "/sys/fs/cgroup/system.slice/edge.service"} },
		},
		{
			name: "v2 namespaced mount of a sub-tree",
			files: map[string]string{
				"proc/42/cgroup":    "0::/\n",
				"proc/42/mountinfo": "29 23 0:26 /kubepods/pod1 /sys/fs/cgroup ro - cgroup2 cgroup2 rw\n",
			},
			want: func(string) cgroupDirs { return cgroupDirs{V2: "/sys/fs/cgroup"} },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			writeTree(t, root, tt.files)
			got, err := findCgroup(filepath.Join(root, "proc"), 42)
			if err != nil {
				t.Fatal(err)
			}
			if want := tt.want(root); got != want {
				t.Fatalf("findCgroup() = %+v, want %+v", got, want)
			}
		})
	}
}

func TestReadCgroupV2(t *testing.T) {
	tests := []struct {
		name      string
		files     map[string]string
		wantCPU   cpuReading
		wantMem   memReading
		wantLimit bool
	}{
		{
			name: "quota and memory limit",
			files: map[string]string{
				"cpu.max":        "5000 100000\n",
				"cpu.stat":       "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\nnr_periods 100\nnr_throttled 90\nthrottled_usec 4000000\n",
				"memory.current": "104857600\n",
				"memory.max":     "209715200\n",
				"memory.stat":    "anon 50000000\nfile 54857600\ninactive_file 52428800\nactive_file 1000\n",
			},
			wantCPU:   cpuReading{UsageNanos: 2500000000, Periods: 100, Throttled: 90, LimitCPUs: 0.05},
			wantMem:   memReading{Used: 104857600 - 52428800, Limit: 209715200},
			wantLimit: true,
		},
		{
			name: "unlimited",
			files: map[string]string{
				"cpu.max":        "max 100000\n",
				"cpu.stat":       "usage_usec 10\n",
				"memory.current": "1000\n",
				"memory.max":     "max\n",
				"memory.stat":    "inactive_file 2000\n",
			},
			wantCPU: cpuReading{UsageNanos: 10000},
			wantMem: memReading{Used: 0},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeTree(t, dir, tt.files)
			d := cgroupDirs{V2: dir}
			cpu, err := d.readCPU()
			if err != nil {
				t.Fatal(err)
			}
			if math.Abs(cpu.LimitCPUs-tt.wantCPU.LimitCPUs) > 1e-9 {
				t.Fatalf("limit = %g, want %g", cpu.LimitCPUs, tt.wantCPU.LimitCPUs)
			}
			cpu.LimitCPUs = tt.wantCPU.LimitCPUs
			if cpu != tt.wantCPU {
				t.Fatalf("readCPU() = %+v, want %+v", cpu, tt.wantCPU)
			}
			mem, err := d.readMemory()
			if err != nil {
				t.Fatal(err)
			}
			if mem != tt.wantMem {
				t.Fatalf("readMemory() = %+v, want %+v", mem, tt.wantMem)
			}
			if got := d.limited(1 << 40); got != tt.wantLimit {
				t.Fatalf("limited() = %v, want %v", got, tt.wantLimit)
			}
		})
	}
}

func TestReadCgroupV1(t *testing.T) {
	root := t.TempDir()
	writeTree(t, root, map[string]string{
		"cpu/cpu.cfs_quota_us":            "20000\n",
		"cpu/cpu.cfs_period_us":           "100000\n",
		"cpu/cpu.stat":                    "nr_periods 10\nnr_throttled 3\nthrottled_time 123\n",
		"cpuacct/cpuacct.usage":           "777\n",
		"memory/memory.usage_in_bytes":    "5000\n",
		"memory/memory.limit_in_bytes":    "9223372036854771712\n",
		"memory/memory.stat":              "cache 3000\ninactive_file 100\ntotal_inactive_file 2000\n",
		"unlimited/cpu.cfs_quota_us":      "-1\n",
		"unlimited/cpu.cfs_period_us":     "100000\n",
		"unlimited/cpu.stat":              "nr_periods 0\n",
		"unlimited/cpuacct.usage":         "1\n",
		"unlimited/memory.usage_in_bytes": "1\n",
	})
	d := cgroupDirs{CPU: filepath.Join(root, "cpu"), CPUAcc: filepath.Join(root, "cpuacct"), Memory: filepath.Join(root, "memory")}
	cpu, err := d.readCPU()
	if err != nil {
		t.Fatal(err)
	}
	if want := (cpuReading{UsageNanos: 777, Periods: 10, Throttled: 3, LimitCPUs: 0.2}); cpu != want {
		t.Fatalf("readCPU() = %+v, want %+v", cpu, want)
	}
	mem, err := d.readMemory()
	if err != nil {
		t.Fatal(err)
	}
	if want := (memReading{Used: 3000}); mem != want {
		t.Fatalf("readMemory() = %+v, want %+v (no limit, total_inactive_file left out)", mem, want)
	}
	u := filepath.Join(root, "unlimited")
	cpu, err = cgroupDirs{CPU: u, CPUAcc: u}.readCPU()
	if err != nil || cpu.LimitCPUs != 0 {
		t.Fatalf("unlimited readCPU() = %+v, %v", cpu, err)
	}
}

func TestCgroupCPUPercent(t *testing.T) {
	tests := []struct {
		name      string
		prev, cur cpuReading
		wall      float64
		hostCPUs  int
		want      float64
	}{
		{"quota fully used", cpuReading{}, cpuReading{UsageNanos: 50e6, LimitCPUs: 0.05}, 1, 2, 100},
		{"throttled in every period counts as full", cpuReading{}, cpuReading{UsageNanos: 40e6, Periods: 10, Throttled: 10, LimitCPUs: 0.05}, 1, 2, 100},
		{"half the quota", cpuReading{}, cpuReading{UsageNanos: 25e6, Periods: 10, LimitCPUs: 0.05}, 1, 2, 50},
		{"no quota: share of host", cpuReading{}, cpuReading{UsageNanos: 1e9}, 1, 2, 50},
		{"idle", cpuReading{UsageNanos: 5}, cpuReading{UsageNanos: 5, LimitCPUs: 1}, 1, 2, 0},
		{"counter reset", cpuReading{UsageNanos: 5e9}, cpuReading{UsageNanos: 1}, 1, 2, 0},
		{"quota above host", cpuReading{}, cpuReading{UsageNanos: 2e9, LimitCPUs: 8}, 1, 2, 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := cgroupCPUPercent(tt.prev, tt.cur, tt.wall, tt.hostCPUs); math.Abs(got-tt.want) > 1e-6 {
				t.Fatalf("cgroupCPUPercent() = %g, want %g", got, tt.want)
			}
		})
	}
}
