package caddymodule

import (
	"math"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// singleArg reads the one argument of the current option.
func singleArg(d *caddyfile.Dispenser, directive string) (string, error) {
	opt := d.Val()
	if !d.NextArg() {
		return "", d.Errf("%s: %s: missing value", directive, opt)
	}
	val := d.Val()
	if d.NextArg() {
		return "", d.Errf("%s: %s: takes one value, got another: '%s'", directive, opt, d.Val())
	}
	return val, nil
}

// parseFinite parses the number val of option opt. NaN and ±Inf are
// refused here, by name: range checks written as comparisons let NaN
// through (every comparison with it is false), and a NaN in a module's
// config cannot be encoded as JSON, so Caddy's adapter would drop the
// whole module without an error.
func parseFinite(d *caddyfile.Dispenser, directive, opt, val string) (float64, error) {
	f, err := strconv.ParseFloat(val, 64)
	switch {
	case math.IsNaN(f) || math.IsInf(f, 0):
		// ParseFloat gives ±Inf, with an error, for numbers out of range too.
		return 0, d.Errf("%s: %s: %q is not a finite number", directive, opt, val)
	case err != nil:
		return 0, d.Errf("%s: %s: %q is not a number", directive, opt, val)
	}
	return f, nil
}

// parseNonNegative parses a finite number ≥ 0 for option opt.
func parseNonNegative(d *caddyfile.Dispenser, directive, opt, val string) (float64, error) {
	f, err := parseFinite(d, directive, opt, val)
	if err != nil {
		return 0, err
	}
	if f < 0 || f > 1e12 {
		return 0, d.Errf("%s: %s: %q is not a number between 0 and 1e12", directive, opt, val)
	}
	return f, nil
}

// parseCapacityBlock parses a capacity { … } block.
func parseCapacityBlock(d *caddyfile.Dispenser, directive string) (*CapacityConfig, error) {
	c := new(CapacityConfig)
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		val, err := singleArg(d, directive+": capacity")
		if err != nil {
			return nil, err
		}
		switch opt {
		case "streams":
			c.MaxStreams, err = parseNonNegative(d, directive, "capacity streams", val)
		case "requests":
			c.MaxRequests, err = parseNonNegative(d, directive, "capacity requests", val)
		case "link_bandwidth":
			c.LinkBandwidth, err = parseNonNegative(d, directive, "capacity link_bandwidth", val)
		case "response_time":
			var dur time.Duration
			dur, err = caddy.ParseDuration(val)
			if err != nil || dur <= 0 {
				return nil, d.Errf("%s: capacity response_time: %q is not a positive duration", directive, val)
			}
			c.MaxResponseTime = caddy.Duration(dur)
		default:
			return nil, d.Errf("%s: capacity: unrecognized option '%s'", directive, opt)
		}
		if err != nil {
			return nil, err
		}
	}
	return c, nil
}

// validHeaderName reports whether s is an HTTP token.
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == '!' || c == '#' || c == '$' || c == '%' || c == '&' || c == '\'' || c == '*' || c == '+' || c == '^' || c == '`' || c == '|' || c == '~') {
			return false
		}
	}
	return true
}

// onOff reads the one argument of the current option, on or off.
func onOff(d *caddyfile.Dispenser, directive string) (bool, error) {
	opt := d.Val()
	val, err := singleArg(d, directive)
	if err != nil {
		return false, err
	}
	switch val {
	case "on":
		return true, nil
	case "off":
		return false, nil
	}
	return false, d.Errf("%s: %s: %q is not on or off", directive, opt, val)
}
