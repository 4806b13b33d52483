package main

import (
	"strings"
	"testing"
)

// TestParseFlagsCapacity: the advertised capacity takes finite numbers in
// range only; a NaN would make every report invalid.
func TestParseFlagsCapacity(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string // "" for accepted
	}{
		{[]string{"-link-bytes-per-second", "25000000"}, ""},
		{[]string{"-link-bytes-per-second", "NaN"}, "-link-bytes-per-second: NaN is not a number between 0 and 1e12"},
		{[]string{"-link-bytes-per-second", "-1"}, "is not a number between 0 and 1e12"},
		{[]string{"-link-bytes-per-second", "1e13"}, "is not a number between 0 and 1e12"},
		{[]string{"-max-streams", "Inf"}, "-max-streams: +Inf is not a number between 0 and 1e12"},
	} {
		o, err := parseFlags(tt.args)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("parseFlags(%q) = %v", tt.args, err)
		case tt.want == "" && o.capacity.LinkBytesPerSecond != 25e6:
			t.Errorf("parseFlags(%q): link %g", tt.args, o.capacity.LinkBytesPerSecond)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("parseFlags(%q) = %v, want an error containing %q", tt.args, err, tt.want)
		}
	}
}
