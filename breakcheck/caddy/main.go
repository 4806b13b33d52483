//go:build breakcheck

// Command caddy is Caddy with the standard modules and edgetier's, for
// breakcheck: a plain `go build` reuses the build cache, so each broken
// build takes seconds instead of an xcaddy build's minutes. Users build
// with xcaddy (see the README).
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/edgetier/edgetier"
)

func main() { caddycmd.Main() }
