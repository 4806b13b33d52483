// Package board is the memory of the tiered policy: for one pool of edges,
// the pollers of their agents, the latest view of each (published through
// atomic pointers for lock-free reads), the proxy's own latency windows,
// mid-stream failures, events, counters, the mean load, and the Prometheus
// collector and dashboard frames built from them.
//
// It sees an upstream through the small Upstream interface, which Caddy's
// *reverseproxy.Upstream satisfies, and decides nothing itself: the
// decisions are internal/rank's. Policies subscribe to its changes; it never
// constructs one.
package board
