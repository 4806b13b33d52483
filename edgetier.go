// Package edgetier is a load-aware video CDN built as Caddy plugins.
//
// This root package only imports the Caddy modules, so that
//
//	xcaddy build --with github.com/edgetier/edgetier=./
//
// produces a Caddy with every edgetier module.
package edgetier

import (
	// Register every edgetier Caddy module.
	_ "github.com/edgetier/edgetier/caddymodule"
)
