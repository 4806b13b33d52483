package caddymodule

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/edgetier/edgetier/internal/rank"
)

// headroom is the policy's link_headroom, its default when unset.
func (p *TieredSelection) headroom() float64 {
	if p.LinkHeadroom == nil {
		return rank.DefaultHeadroom
	}
	return *p.LinkHeadroom
}

// parseWeights parses the weights option: the five original components,
// and optionally bandwidth (0 when left out, so five values keep the
// original formula).
func parseWeights(d *caddyfile.Dispenser, dir string) (rank.Weights, error) {
	const usage = "<cpu> <memory> <requests> <streams> <response_time> [<bandwidth>]"
	var w rank.Weights
	args := d.RemainingArgs()
	if len(args) != 5 && len(args) != 6 {
		return w, d.Errf("%s: weights: want 5 or 6 numbers (%s), got %d", dir, usage, len(args))
	}
	for i, a := range args {
		f, err := parseFinite(d, dir, "weights", a)
		if err != nil {
			return w, err
		}
		w[i] = f
	}
	if err := rank.CheckWeights(w); err != nil {
		return w, d.Errf("%s: weights: %v", dir, err)
	}
	return w, nil
}

// numberArg parses the single finite number of the current option, which
// ok must accept; want says what it must be.
func numberArg(d *caddyfile.Dispenser, dir string, ok func(float64) bool, want string) (float64, error) {
	opt := d.Val()
	val, err := singleArg(d, dir)
	if err != nil {
		return 0, err
	}
	f, err := parseFinite(d, dir, opt, val)
	if err != nil {
		return 0, err
	}
	if !ok(f) {
		return 0, d.Errf("%s: %s: %q is not %s", dir, opt, val, want)
	}
	return f, nil
}
