// Package testenv finds what integration tests need (the built Caddy and
// agent, system programs) and decides whether a missing piece skips the
// test or fails it: under `make test` (EDGETIER_CADDY set) nothing may skip.
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// Strict reports whether missing prerequisites must fail tests.
func Strict() bool { return os.Getenv("EDGETIER_CADDY") != "" || os.Getenv("CI") != "" }

// Missing skips t, or fails it under Strict, saying what is missing.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if Strict() {
		t.Fatalf("prerequisite missing (tests may not skip under make test): "+format, args...)
	}
	t.Skipf("prerequisite missing: "+format, args...)
}

// Caddy returns the path of the built Caddy (bin/caddy via EDGETIER_CADDY).
func Caddy(t testing.TB) string {
	t.Helper()
	return binary(t, "EDGETIER_CADDY", "caddy")
}

// Agent returns the path of the built edgeagent command.
func Agent(t testing.TB) string {
	t.Helper()
	return binary(t, "EDGETIER_AGENT", "edgeagent")
}

func binary(t testing.TB, env, name string) string {
	t.Helper()
	path := os.Getenv(env)
	if path == "" {
		Missing(t, "%s is not set: run `make test`, or `make build` and set %s=bin/%s", env, env, name)
	}
	if _, err := os.Stat(path); err != nil {
		Missing(t, "%s: %v", env, err)
	}
	return path
}

// Program returns the path of a system program such as ffprobe.
func Program(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		Missing(t, "%s is not installed (make deps installs it)", name)
	}
	return path
}
