package integration

import (
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestDashboardListsEdgesAtStartup: opened right after the default system
// starts (what `make run` runs), before any viewer, the dashboard lists
// the three edges within 2 s: the policy knows its static upstreams from
// the config, not from the first request.
func TestDashboardListsEdgesAtStartup(t *testing.T) {
	ctx := browser(t)
	_, lb := startDefaultSystem(t, defaultCaddyfile(t))
	started := time.Now()
	if err := chromedp.Do(ctx, chromedp.Navigate("http://"+lb+"/dashboard")); err != nil {
		t.Fatal(err)
	}
	evalUntil(t, ctx, 2*time.Second-time.Since(started), "the three edges listed, before any viewer",
		`document.querySelectorAll('#edges tbody tr').length === 3`)
	t.Logf("edges listed %s after the system answered", time.Since(started).Round(10*time.Millisecond))
}
