package caddymodule

import (
	"cmp"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/edgetier/edgetier/internal/board"
	"github.com/edgetier/edgetier/internal/rank"
)

// UnmarshalCaddyfile sets up the policy from Caddyfile tokens. Syntax:
//
//	lb_policy tiered {
//	    pool         <name>
//	    interval     <duration>
//	    timeout      <duration>
//	    stale_after  <duration>
//	    forget_after <duration>
//	    warmup       <reports>
//	    report_url   <template>
//	    token        <token>
//	    weights      <cpu> <memory> <requests> <streams> <response_time> [<bandwidth>]
//	    link_headroom <utilisation>
//	    tiers        <tier1> <tier2> <tier3>
//	    hysteresis   <points>
//	    choices      1|2
//	    calibrate    on|off
//	    eject_errors      <percent>|off
//	    eject_min_answers <answers>
//	    eject_time        <duration>
//	    eject_max_time    <duration>
//	    max_ejected       <percent>
//	    slow_start        <duration>|off
//	    capacity {
//	        streams       <n>
//	        requests      <per second>
//	        response_time <duration>
//	    }
//	    upstream <address> {
//	        report_url <url>
//	        token      <token>
//	        capacity { … }
//	    }
//	}
func (p *TieredSelection) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	const dir = "lb_policy tiered"
	d.Next() // policy name
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := map[string]bool{}
	// Where the options checked against each other once the block is read
	// were given, so their errors name the line.
	var intervalAt, timeoutAt, staleAt, forgetAt, ejectTimeAt, ejectMaxAt func(string, ...any) error
	for d.NextBlock(0) {
		opt := d.Val()
		if opt != "upstream" && seen[opt] {
			return d.Errf("%s: option '%s' given twice", dir, opt)
		}
		seen[opt] = true
		switch opt {
		case "pool", "report_url", "token":
			val, err := singleArg(d, dir)
			if err != nil {
				return err
			}
			switch opt {
			case "pool":
				p.Pool = val
			case "report_url":
				if err := board.ValidateReportURL(val, "127.0.0.1:1"); err != nil {
					return d.Errf("%s: report_url: %v", dir, err)
				}
				p.ReportURL = val
			case "token":
				p.Token = val
			}
		case "interval", "timeout", "stale_after", "forget_after":
			val, err := singleArg(d, dir)
			if err != nil {
				return err
			}
			dur, err := caddy.ParseDuration(val)
			if err != nil || dur <= 0 {
				return d.Errf("%s: %s: %q is not a positive duration", dir, opt, val)
			}
			switch opt {
			case "interval":
				if dur < minPollInterval {
					return d.Errf("%s: interval: %s is below the minimum of %s", dir, dur, minPollInterval)
				}
				p.Interval = caddy.Duration(dur)
				intervalAt = errLater(d)
			case "timeout":
				p.Timeout = caddy.Duration(dur)
				timeoutAt = errLater(d)
			case "stale_after":
				p.StaleAfter = caddy.Duration(dur)
				staleAt = errLater(d)
			case "forget_after":
				p.ForgetAfter = caddy.Duration(dur)
				forgetAt = errLater(d)
			}
		case "warmup", "choices":
			val, err := singleArg(d, dir)
			if err != nil {
				return err
			}
			n, err := strconv.Atoi(val)
			if opt == "warmup" && (err != nil || n < 1 || n > 100) {
				return d.Errf("%s: warmup: %q is not a number of reports between 1 and 100", dir, val)
			}
			if opt == "choices" && (err != nil || (n != 1 && n != 2)) {
				return d.Errf("%s: choices: %q is not 1 or 2", dir, val)
			}
			if opt == "warmup" {
				p.Warmup = n
			} else {
				p.Choices = n
			}
		case "hysteresis":
			h, err := numberArg(d, dir, func(h float64) bool { return h >= 0 && h <= 50 }, "a number of points between 0 and 50")
			if err != nil {
				return err
			}
			p.Hysteresis = &h
		case "weights":
			w, err := parseWeights(d, dir)
			if err != nil {
				return err
			}
			p.Weights = &WeightsConfig{CPU: w[0], Memory: w[1], Requests: w[2], Streams: w[3], ResponseTime: w[4], Bandwidth: w[5]}
		case "link_headroom":
			h, err := numberArg(d, dir, func(h float64) bool { return h > 0 && h <= 1 }, "a link utilisation above 0 and at most 1")
			if err != nil {
				return err
			}
			p.LinkHeadroom = &h
		case "tiers":
			vals, err := floatArgs(d, dir, 3, "<tier1> <tier2> <tier3>")
			if err != nil {
				return err
			}
			if err := rank.CheckThresholds(vals); err != nil {
				return d.Errf("%s: tiers: %v", dir, err)
			}
			p.Tiers = vals
		case "calibrate":
			val, err := singleArg(d, dir)
			if err != nil {
				return err
			}
			switch val {
			case "on":
				p.FixedCapacity = false
			case "off":
				p.FixedCapacity = true
			default:
				return d.Errf("%s: calibrate: %q is not on or off", dir, val)
			}
		case "eject_errors", "max_ejected":
			val, err := singleArg(d, dir)
			if err != nil {
				return err
			}
			pct := 0.0
			if val != "off" || opt != "eject_errors" {
				if pct, err = parsePercent(d, dir, opt, val); err != nil {
					return err
				}
				if opt == "eject_errors" && pct == 0 {
					return d.Errf("%s: eject_errors: %q turns ejection off: write off", dir, val)
				}
			}
			if opt == "eject_errors" {
				p.EjectErrors = &pct
			} else {
				p.MaxEjected = &pct
			}
		case "eject_min_answers":
			val, err := singleArg(d, dir)
			if err != nil {
				return err
			}
			n, err := strconv.Atoi(val)
			if err != nil || n < 1 || n > maxEjectMinAnswers {
				return d.Errf("%s: eject_min_answers: %q is not a number of answers between 1 and %d", dir, val, maxEjectMinAnswers)
			}
			p.EjectMinAnswers = n
		case "eject_time", "eject_max_time", "slow_start":
			val, err := singleArg(d, dir)
			if err != nil {
				return err
			}
			if opt == "slow_start" && val == "off" {
				p.SlowStart = 0
				break
			}
			dur, err := caddy.ParseDuration(val)
			if err != nil || dur <= 0 {
				return d.Errf("%s: %s: %q is not a positive duration", dir, opt, val)
			}
			switch opt {
			case "eject_time":
				p.EjectTime = caddy.Duration(dur)
				ejectTimeAt = errLater(d)
			case "eject_max_time":
				p.EjectMaxTime = caddy.Duration(dur)
				ejectMaxAt = errLater(d)
			case "slow_start":
				if dur > maxSlowStart {
					return d.Errf("%s: slow_start: %s is longer than the maximum of %s", dir, dur, maxSlowStart)
				}
				p.SlowStart = caddy.Duration(dur)
			}
		case "capacity":
			if d.NextArg() {
				return d.ArgErr()
			}
			c, err := parseCapacityBlock(d, dir)
			if err != nil {
				return err
			}
			if c.LinkBandwidth != 0 {
				return d.Errf("%s: capacity: link_bandwidth is an agent setting", dir)
			}
			p.Capacity = c
		case "upstream":
			if err := p.parseUpstream(d, dir); err != nil {
				return err
			}
		default:
			return d.Errf("%s: unrecognized option '%s'", dir, opt)
		}
	}
	if err := p.checkDurations(dir, intervalAt, timeoutAt, staleAt, forgetAt); err != nil {
		return err
	}
	return p.checkEjectTimes(dir, ejectTimeAt, ejectMaxAt)
}

// minPollInterval is the shortest poll interval the policy takes.
const minPollInterval = 10 * time.Millisecond

// The bounds of the ejection and slow start options.
const (
	maxEjectMinAnswers = 10000
	maxSlowStart       = time.Hour
)

// checkEjectTimes checks that eject_max_time is not shorter than
// eject_time (with Provision's defaults for the one not given), naming
// the line of the one given last of the two.
func (p *TieredSelection) checkEjectTimes(dir string, baseAt, maxAt func(string, ...any) error) error {
	base := cmp.Or(time.Duration(p.EjectTime), rank.DefaultEjection.BaseTime)
	errf := maxAt
	if errf == nil {
		errf = baseAt
	}
	if errf == nil || p.EjectMaxTime == 0 {
		return nil // the default maximum follows a longer eject_time
	}
	if limit := time.Duration(p.EjectMaxTime); limit < base {
		return errf("%s: eject_max_time: %s is shorter than eject_time %s", dir, limit, base)
	}
	return nil
}

// parsePercent parses a percentage, 0 to 100, with or without a % sign.
func parsePercent(d *caddyfile.Dispenser, dir, opt, val string) (float64, error) {
	f, err := parseFinite(d, dir, opt, strings.TrimSuffix(val, "%"))
	if err != nil {
		return 0, err
	}
	if f < 0 || f > 100 {
		return 0, d.Errf("%s: %s: %q is not a percentage between 0 and 100", dir, opt, val)
	}
	return f, nil
}

// checkDurations makes the checks of Validate that relate the durations
// to each other (with Provision's defaults for those not given), naming
// the line of the option given that breaks them: Validate names none.
func (p *TieredSelection) checkDurations(dir string, intervalAt, timeoutAt, staleAt, forgetAt func(string, ...any) error) error {
	interval := cmp.Or(time.Duration(p.Interval), time.Second)
	stale := cmp.Or(time.Duration(p.StaleAfter), 3*interval)
	forget := cmp.Or(time.Duration(p.ForgetAfter), 5*time.Minute)
	// The first option given of those the check relates, from the last.
	at := func(candidates ...func(string, ...any) error) func(string, ...any) error {
		for _, c := range candidates {
			if c != nil {
				return c
			}
		}
		return nil
	}
	if timeoutAt != nil && time.Duration(p.Timeout) >= interval {
		return timeoutAt("%s: timeout: %s must be shorter than the interval", dir, time.Duration(p.Timeout))
	}
	if staleAt != nil && stale < interval {
		return staleAt("%s: stale_after: %s is shorter than the interval %s", dir, stale, interval)
	}
	if errf := at(forgetAt, staleAt, intervalAt); errf != nil && forget < stale {
		return errf("%s: forget_after: %s is shorter than stale_after %s", dir, forget, stale)
	}
	return nil
}

func (p *TieredSelection) parseUpstream(d *caddyfile.Dispenser, dir string) error {
	addr, err := singleArg(d, dir)
	if err != nil {
		return err
	}
	if err := board.ValidateReportURL("http://{upstream}/", addr); err != nil {
		return d.Errf("%s: upstream: %q is not a host:port address", dir, addr)
	}
	if _, dup := p.Upstreams[addr]; dup {
		return d.Errf("%s: upstream %s given twice", dir, addr)
	}
	var u UpstreamConfig
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		switch opt {
		case "report_url", "token":
			val, err := singleArg(d, dir+": upstream "+addr)
			if err != nil {
				return err
			}
			if opt == "token" {
				u.Token = val
				break
			}
			if err := board.ValidateReportURL(val, addr); err != nil {
				return d.Errf("%s: upstream %s: report_url: %v", dir, addr, err)
			}
			u.ReportURL = val
		case "capacity":
			if d.NextArg() {
				return d.ArgErr()
			}
			c, err := parseCapacityBlock(d, dir+": upstream "+addr)
			if err != nil {
				return err
			}
			u.Capacity = c
		default:
			return d.Errf("%s: upstream %s: unrecognized option '%s'", dir, addr, opt)
		}
	}
	if p.Upstreams == nil {
		p.Upstreams = map[string]UpstreamConfig{}
	}
	p.Upstreams[addr] = u
	return nil
}

// floatArgs reads exactly n numbers for the current option.
func floatArgs(d *caddyfile.Dispenser, dir string, n int, usage string) ([]float64, error) {
	out := make([]float64, n)
	opt := d.Val()
	args := d.RemainingArgs()
	if len(args) != n {
		return nil, d.Errf("%s: %s: want %d numbers (%s), got %d", dir, opt, n, usage, len(args))
	}
	for i, a := range args {
		f, err := parseFinite(d, dir, opt, a)
		if err != nil {
			return nil, err
		}
		out[i] = f
	}
	return out, nil
}

// errLater returns a function making an error, as d.Errf does, that names
// the current token's file and line: for checks made once a block is read.
func errLater(d *caddyfile.Dispenser) func(format string, args ...any) error {
	at := caddyfile.NewDispenser([]caddyfile.Token{d.Token()})
	at.Next()
	return at.Errf
}

// errAt returns a function making the error format and args name the
// current token's file and line, for checks that can only be made later.
func errAt(d *caddyfile.Dispenser, format string, args ...any) func() error {
	errf := errLater(d)
	return func() error { return errf(format, args...) }
}

// Interface guard
var _ caddyfile.Unmarshaler = (*TieredSelection)(nil)
