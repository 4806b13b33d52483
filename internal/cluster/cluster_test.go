package cluster

import "testing"

// TestFreePortNeverRepeats: ports handed out in one process are distinct,
// though the kernel gives a just-closed port out again.
func TestFreePortNeverRepeats(t *testing.T) {
	seen := map[int]bool{}
	for range 2000 {
		p, err := FreePort()
		if err != nil {
			t.Fatal(err)
		}
		if seen[p] {
			t.Fatalf("port %d handed out twice (after %d ports)", p, len(seen))
		}
		seen[p] = true
	}
}
