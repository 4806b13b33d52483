// Package caddymodule holds edgetier's Caddy modules: the tiered selection
// policy, the edge_agent handler and the cdn_dashboard handler.
package caddymodule
