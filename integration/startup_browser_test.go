package integration

import (
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/edgetier/edgetier/internal/cluster"
)

// TestDashboardListsEdgesAtStartup: opened right after the default system
// starts (what `make run` runs), before any viewer, the dashboard lists
// the three edges within 2 s: the policy knows its static upstreams from
// the config, not from the first request.
func TestDashboardListsEdgesAtStartup(t *testing.T) {
	caddyfile, err := os.ReadFile("../Caddyfile")
	if err != nil {
		t.Fatal(err)
	}
	ctx := browser(t)
	lbPort := freePort(t)
	startCaddy(t, "default", string(caddyfile), cluster.Options{Env: []string{
		"EDGETIER_ADMIN=%ADMIN%",
		"LB_SITE=http://:" + strconv.Itoa(lbPort),
		"VIDEO_DIR=" + library(t),
	}})
	started := time.Now()
	if err := chromedp.Do(ctx, chromedp.Navigate("http://"+addr(lbPort)+"/dashboard")); err != nil {
		t.Fatal(err)
	}
	evalUntil(t, ctx, 2*time.Second-time.Since(started), "the three edges listed, before any viewer",
		`document.querySelectorAll('#edges tbody tr').length === 3`)
	t.Logf("edges listed %s after the system answered", time.Since(started).Round(10*time.Millisecond))
}
