// Package rank holds the tiered policy's decisions as functions over plain
// values: the score of a report, tiers with hysteresis, the view of one
// upstream (peak hold, warm-up, staleness), the latency judgement, and the
// one selection rule that chooses among candidates.
//
// It has no Caddy import, starts no goroutine and reads no clock: time is
// passed in (unix nanoseconds, the balancer's clock). The board
// (internal/board) keeps the state these functions are applied to; the
// Caddy modules (caddymodule) only adapt it. README "How it works" explains
// the design.
package rank
