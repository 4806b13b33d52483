package caddymodule

import (
	"fmt"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
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
//	    weights      <cpu> <memory> <requests> <streams> <response_time>
//	    tiers        <tier1> <tier2> <tier3>
//	    hysteresis   <points>
//	    choices      1|2
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
	var timeoutErr func() error
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
				if _, _, err := reportURL(&boardConfig{ReportURL: val}, "127.0.0.1:1"); err != nil {
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
				p.Interval = caddy.Duration(dur)
			case "timeout":
				p.Timeout = caddy.Duration(dur)
				// Checked against the interval once the block is read.
				timeoutErr = errAt(d, "%s: timeout: %s must be shorter than the interval", dir, dur)
			case "stale_after":
				p.StaleAfter = caddy.Duration(dur)
			case "forget_after":
				p.ForgetAfter = caddy.Duration(dur)
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
			val, err := singleArg(d, dir)
			if err != nil {
				return err
			}
			h, err := parseFinite(d, dir, opt, val)
			if err != nil {
				return err
			}
			if h < 0 || h > 50 {
				return d.Errf("%s: hysteresis: %q is not a number of points between 0 and 50", dir, val)
			}
			p.Hysteresis = &h
		case "weights":
			vals, err := floatArgs(d, dir, 5, "<cpu> <memory> <requests> <streams> <response_time>")
			if err != nil {
				return err
			}
			w := Weights(vals)
			if err := checkWeights(w); err != nil {
				return d.Errf("%s: weights: %v", dir, err)
			}
			p.Weights = &WeightsConfig{CPU: w[0], Memory: w[1], Requests: w[2], Streams: w[3], ResponseTime: w[4]}
		case "tiers":
			vals, err := floatArgs(d, dir, 3, "<tier1> <tier2> <tier3>")
			if err != nil {
				return err
			}
			if err := checkTiers(vals); err != nil {
				return d.Errf("%s: tiers: %v", dir, err)
			}
			p.Tiers = vals
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
	interval := p.Interval
	if interval == 0 {
		interval = caddy.Duration(time.Second)
	}
	if timeoutErr != nil && p.Timeout >= interval {
		return timeoutErr()
	}
	return nil
}

func (p *TieredSelection) parseUpstream(d *caddyfile.Dispenser, dir string) error {
	addr, err := singleArg(d, dir)
	if err != nil {
		return err
	}
	if _, _, err := reportURL(&boardConfig{ReportURL: "http://{upstream}/"}, addr); err != nil {
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
			if _, _, err := reportURL(&boardConfig{ReportURL: val}, addr); err != nil {
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

// errAt returns a function making an error that names the current token's
// file and line, for checks that can only be made later.
func errAt(d *caddyfile.Dispenser, format string, args ...any) func() error {
	err := d.Errf(format, args...)
	return func() error { return fmt.Errorf("%w", err) }
}

// Interface guard
var _ caddyfile.Unmarshaler = (*TieredSelection)(nil)
