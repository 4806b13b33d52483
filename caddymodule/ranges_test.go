package caddymodule

import "testing"

func TestWithoutEmptySuffixRanges(t *testing.T) {
	tests := []struct {
		in, want string
		changed  bool
	}{
		{"bytes=-0", unsatisfiableRange, true},
		{"bytes=-000", unsatisfiableRange, true},
		{"bytes= - 0 ", unsatisfiableRange, true},
		{"bytes=-0,,-0", unsatisfiableRange, true},
		{"bytes=-0,10-19", "bytes=10-19", true},
		{"bytes=0-0, -0, 5-", "bytes=0-0, 5-", true},
		{"bytes=-1", "bytes=-1", false},
		{"bytes=-10", "bytes=-10", false},
		{"bytes=0-", "bytes=0-", false},
		{"bytes=5-1", "bytes=5-1", false},
		{"bytes=-", "bytes=-", false},
		{"items=-0", "items=-0", false},
		{"", "", false},
	}
	for _, tt := range tests {
		got, changed := withoutEmptySuffixRanges(tt.in)
		if got != tt.want || changed != tt.changed {
			t.Errorf("withoutEmptySuffixRanges(%q) = %q, %v; want %q, %v", tt.in, got, changed, tt.want, tt.changed)
		}
	}
}
