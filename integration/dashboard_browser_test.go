package integration

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/edgetier/edgetier/internal/cluster"
)

// TestDashboardInBrowser loads /dashboard in headless Chromium from a
// running system, sees the charts update and an edge's tier change after
// the test loads that edge for real, checks that an agent-supplied name
// with HTML renders as text, and saves a screenshot.
func TestDashboardInBrowser(t *testing.T) {
	lib := library(t)
	edges := startCgroupEdges(t, 2)
	// A third edge whose agent names itself with HTML.
	const evilName = `<img src=x onerror="window.pwned=1">`
	evil := &edgeProc{name: "evil", port: freePort(t)}
	evil.caddy = startCaddy(t, "evil", strings.Replace(edgeConfig(evil.port, "evil", lib, ""), "edge_agent evil", "edge_agent `"+evilName+"`", 1), cluster.Options{})
	all := append(edges, evil)

	lbPort := freePort(t)
	startCaddy(t, "lb", lbDashboardConfig(lbPort, edgeAddrs(all), "interval 500ms"), cluster.Options{})
	lbURL := "http://" + addr(lbPort)

	// Steady background traffic so the charts have something to show.
	steadyTraffic(t, 3, lbURL+"/big.bin", "bytes=0-1048575", 20*time.Millisecond)

	ctx := browser(t)
	if err := chromedp.Do(ctx, chromedp.Navigate(lbURL+"/dashboard")); err != nil {
		t.Fatal(err)
	}
	evalUntil(t, ctx, 15*time.Second, "three edges in the table, all trusted",
		`document.querySelectorAll('#edges tbody tr').length === 3 && [...document.querySelectorAll('#edges tbody .tier')].every(e => e.textContent !== '–')`)
	evalUntil(t, ctx, 5*time.Second, "the connection status to say live", `document.getElementById('conn').textContent === 'live'`)

	points := chromedp.Evaluate[int](`Chart.getChart('c-traffic').data.datasets[0].data.length`)
	before, err := chromedp.Run(ctx, points)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	after, err := chromedp.Run(ctx, points)
	if err != nil {
		t.Fatal(err)
	}
	if after < before+3 {
		t.Errorf("traffic chart went from %d to %d points in 2 s: not updating", before, after)
	}

	// The agent's name shows as text, never as HTML.
	pwned, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.pwned === 1 || document.querySelector('#edges img') !== null`))
	if err != nil {
		t.Fatal(err)
	}
	shown, err := chromedp.Run(ctx, chromedp.Evaluate[string](`[...document.querySelectorAll('.edge-name')].map(e => e.textContent).join('|')`))
	if err != nil {
		t.Fatal(err)
	}
	if pwned || !strings.Contains(shown, evilName) {
		t.Errorf("edge name rendered as HTML (pwned %v); names shown: %q", pwned, shown)
	}

	// Load edge-1 for real: its tier changes on the page, with an event.
	busy := edges[0]
	if err := busy.group.SetQuota(0.2); err != nil {
		t.Fatal(err)
	}
	burnCPU(t, busy)
	row := fmt.Sprintf(`document.querySelector('tr[data-upstream="%s"]')`, addr(busy.port))
	evalUntil(t, ctx, 15*time.Second, "edge-1's tier to rise on the page",
		row+` && Number(`+row+`.querySelector('.tier').textContent) >= 2`)
	evalUntil(t, ctx, 5*time.Second, "a tier event in the list",
		`[...document.querySelectorAll('#events li')].some(li => li.textContent.includes('tier') && li.textContent.includes('`+addr(busy.port)+`'))`)
	time.Sleep(3 * time.Second) // let the charts show the change
	screenshot(t, ctx, "dashboard.png")

	// The page keeps working when the server restarts: it reconnects.
	status, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById('conn').textContent`))
	if status != "live" {
		t.Errorf("connection status = %q", status)
	}
}
