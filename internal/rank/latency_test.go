package rank

import (
	"testing"
	"time"
)

// latencyCase is one row of a table of a predicate of a Latency against
// the pool's best.
type latencyCase struct {
	name string
	l    Latency
	best Latency
	want bool
}

// checkLatencies runs a table of what predicate (named what) says.
func checkLatencies(t *testing.T, what string, predicate func(l, best Latency) bool, tests []latencyCase) {
	t.Helper()
	for _, tt := range tests {
		if got := predicate(tt.l, tt.best); got != tt.want {
			t.Errorf("%s: %s = %v, want %v", tt.name, what, got, tt.want)
		}
	}
}

func ms(n int64) int64 { return n * int64(time.Millisecond) }

func TestSlowerThan(t *testing.T) {
	checkLatencies(t, "SlowerThan", Latency.SlowerThan, []latencyCase{
		{"base far above the best", Latency{Base: ms(53)}, Latency{Base: ms(3), Typical: ms(4)}, true},
		{"base 3x and 20 ms above", Latency{Base: ms(30)}, Latency{Base: ms(10), Typical: ms(12)}, true},
		{"4x but only 6 ms: noise at this scale", Latency{Base: ms(8)}, Latency{Base: ms(2), Typical: ms(2)}, false},
		{"15 ms more but 2.5x", Latency{Base: ms(25)}, Latency{Base: ms(10), Typical: ms(10)}, false},
		{"below what the quickest typically answers in", Latency{Base: ms(53)}, Latency{Base: ms(3), Typical: ms(60)}, false},
		{"no best known", Latency{Base: ms(53)}, Latency{}, false},
		{"service time far above the best", Latency{Base: ms(3), Service: ms(100)}, Latency{Base: ms(3), Typical: ms(3), Service: ms(5)}, true},
		{"service time 3x: not clearly", Latency{Base: ms(3), Service: ms(60)}, Latency{Base: ms(3), Typical: ms(3), Service: ms(20)}, false},
	})
}

func TestHelps(t *testing.T) {
	checkLatencies(t, "Helps", Latency.Helps, []latencyCase{
		{"the quickest typically answer later than its fastest", Latency{Base: ms(53), Typical: ms(66)}, Latency{Base: ms(3), Typical: ms(80)}, true},
		{"the quickest still answer sooner", Latency{Base: ms(53), Typical: ms(66)}, Latency{Base: ms(3), Typical: ms(12)}, false},
		{"starved: its answers queue far beyond its fastest", Latency{Base: ms(1), Typical: ms(35)}, Latency{Base: ms(1), Typical: ms(80)}, false},
		{"loaded itself past twice its fastest", Latency{Base: ms(53), Typical: ms(110)}, Latency{Base: ms(3), Typical: ms(120)}, false},
		{"no answers of its own", Latency{}, Latency{Base: ms(3), Typical: ms(80)}, false},
	})
}

func TestBestLatency(t *testing.T) {
	got := BestLatency([]Latency{{}, {Base: 5, Typical: 9, Service: 7}, {Base: 3, Typical: 12, Service: 2}})
	if want := (Latency{Base: 3, Typical: 9, Service: 2}); got != want {
		t.Fatalf("BestLatency = %+v, want %+v (unknown ones left out)", got, want)
	}
}
