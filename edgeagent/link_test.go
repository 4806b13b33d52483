package edgeagent

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

func TestLinkFigures(t *testing.T) {
	tests := []struct {
		name                   string
		link                   Link
		advertised, egress     float64
		sent                   float64
		wantCapacity, wantUtil float64
	}{
		{"kernel's speed", Link{Interfaces: 1, BytesPerSecond: 125e6}, 0, 100e6, 5e6, 125e6, 0.8},
		{"kernel's speed beats the advertised", Link{Interfaces: 1, BytesPerSecond: 125e6}, 25e6, 100e6, 0, 125e6, 0.8},
		{"veth: the advertised", Link{Interfaces: 1}, 25e6, 20e6, 1e6, 25e6, 0.8},
		{"loopback only: served bytes stand in", Link{}, 25e6, 100e6, 5e6, 25e6, 0.2},
		{"above the link: full", Link{Interfaces: 1}, 10e6, 30e6, 0, 10e6, 1},
		{"nothing known", Link{Interfaces: 1}, 0, 30e6, 0, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, u := linkFigures(tt.link, tt.advertised, tt.egress, tt.sent)
			if c != tt.wantCapacity || u != tt.wantUtil {
				t.Fatalf("linkFigures = %g, %g; want %g, %g", c, u, tt.wantCapacity, tt.wantUtil)
			}
		})
	}
}

func TestNetCounterRead(t *testing.T) {
	dir := t.TempDir()
	dev := filepath.Join(dir, "dev")
	write := func(path, s string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	const header = "Inter-|   Receive                                                |  Transmit\n" +
		" face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n"
	sys := filepath.Join(dir, "sys")
	write(filepath.Join(sys, "eth0", "speed"), "1000\n")
	write(filepath.Join(sys, "eth0", "device", "x"), "")
	write(filepath.Join(sys, "veth0", "speed"), "10000\n") // virtual: no device
	write(filepath.Join(sys, "eth1", "speed"), "-1\n")
	write(filepath.Join(sys, "eth1", "device", "x"), "")

	tests := []struct {
		name      string
		dev       string
		wantBytes uint64
		wantIfs   int
		wantSpeed float64
	}{
		{"loopback left out", "    lo: 1 1 0 0 0 0 0 0 900 9 0 0 0 0 0 0\n  eth0: 1 1 0 0 0 0 0 0 100 1 0 0 0 0 0 0\n", 100, 1, 125e6},
		{"loopback only", "    lo: 1 1 0 0 0 0 0 0 900 9 0 0 0 0 0 0\n", 900, 0, 0},
		{"veth has no speed", "  eth0: 1 1 0 0 0 0 0 0 100 1 0 0 0 0 0 0\n veth0: 1 1 0 0 0 0 0 0 50 1 0 0 0 0 0 0\n", 150, 2, 0},
		{"-1 is no speed", "  eth1: 1 1 0 0 0 0 0 0 70 1 0 0 0 0 0 0\n", 70, 1, 0},
		{"another namespace's interface", "  eth7: 1 1 0 0 0 0 0 0 70 1 0 0 0 0 0 0\n", 70, 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			write(dev, header+tt.dev)
			l, err := netCounter{path: dev, sysDir: sys}.read(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if l.EgressBytes != tt.wantBytes || l.Interfaces != tt.wantIfs || l.BytesPerSecond != tt.wantSpeed {
				t.Fatalf("read = %+v, want %d bytes, %d interfaces, %g B/s", l, tt.wantBytes, tt.wantIfs, tt.wantSpeed)
			}
		})
	}
}
