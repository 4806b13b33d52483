// Package dashboard holds the live dashboard's page, embedded so it needs
// no network at run time: HTML, CSS, the app module and the chart library
// (copied from node_modules by `make dashboard-vendor`, pinned by
// package-lock.json).
package dashboard

import (
	"embed"
	"io/fs"
)

//go:embed static
var static embed.FS

// FS returns the dashboard's files: index.html at the root.
func FS() fs.FS {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embed pattern guarantees the folder
	}
	return sub
}
