package deploytest

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestCompose runs docker-compose.yml, unchanged but for the images (built
// offline: edgetier-caddy:latest as the file names it, and
// PROMETHEUS_IMAGE), on an engine of its own, and checks what the
// deployment promises while the edges scale 3 → 6 → 2 under viewer load:
// within 10 s of each change the LB's JSON lists exactly the running
// edges and sends viewers to each; Prometheus scrapes the LB and every
// edge; no viewer's stream breaks (an edge stopped mid-stream is resumed
// on another); the operator endpoints need the password and the agents
// the token; a Range request is byte-exact. The `docker compose` (v2)
// form runs too where the engine's CLI has it.
func TestCompose(t *testing.T) {
	caddy := caddyBinary(t)
	needEngine(t, "docker-compose")
	start := time.Now()
	e := startEngine(t, "compose")
	e.buildImages(caddy)
	d := newDeployment(t, e, caddy)
	d.project = "etdcompose"
	d.network = d.project + "_cdn"
	d.edgeLabel = "com.docker.compose.service=edge"
	d.prometheus = func() string { return "http://127.0.0.1:9090" }

	compose := func(args ...string) string {
		t.Helper()
		out, err := e.command(3*time.Minute, d.environ(), "docker-compose", append([]string{"-p", d.project}, args...)...)
		if err != nil {
			t.Fatalf("docker-compose %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	t.Cleanup(func() {
		if t.Failed() {
			d.dump()
		}
		out, err := e.command(3*time.Minute, d.environ(), "docker-compose", "-p", d.project, "down", "--volumes", "--remove-orphans", "--timeout", "5")
		if err != nil {
			t.Errorf("docker-compose down: %v\n%s", err, out)
		}
		e.checkEmpty()
	})
	scale := func(n int) time.Duration {
		t.Helper()
		began := time.Now()
		compose("up", "--detach", "--no-build", "--scale", "edge="+strconv.Itoa(n))
		return time.Since(began)
	}

	took := scale(3)
	t.Logf("docker-compose up --scale edge=3: %s", took.Round(100*time.Millisecond))
	d.putVideo(d.project + "_videos")
	eventually(t, time.Minute, "the LB lists the first 3 edges", func() (bool, string) {
		// A viewer's request makes the LB look the edges up (its health
		// check does too, every second).
		_, _, _, _ = d.get(d.lb+"/", "", "Range", "bytes=0-0")
		return d.lbLists(upstreams(d.edges()))
	})

	v := d.startViewers(6, 4)
	edges := d.follow("3 edges", 3, nil, v)
	before := d.resumes()

	took = scale(6)
	t.Logf("scale to 6 edges: %s", took.Round(100*time.Millisecond))
	edges = d.follow("scaled up to 6", 6, edges, v)
	// More viewers, on the new edges, which the scale-down stops mid-stream.
	v.add(6, 0)
	time.Sleep(3 * time.Second)

	took = scale(2)
	t.Logf("scale to 2 edges (stopping 4 under load): %s", took.Round(100*time.Millisecond))
	d.follow("scaled down to 2", 2, edges, v)

	d.afterScaleDown(v, before, "4 edges")
	if t.Failed() {
		return // the deployment as it failed, for the dump
	}

	if composeV2(e) {
		t.Run("docker compose v2", func(t *testing.T) {
			compose("down", "--volumes", "--timeout", "5")
			v2 := func(args ...string) {
				t.Helper()
				out, err := e.command(3*time.Minute, d.environ(), "docker", append([]string{"compose", "-p", d.project}, args...)...)
				if err != nil {
					t.Fatalf("docker compose %s: %v\n%s", strings.Join(args, " "), err, out)
				}
			}
			v2("up", "--detach", "--no-build", "--scale", "edge=2")
			eventually(t, time.Minute, "docker compose v2: the LB lists 2 edges", func() (bool, string) {
				_, _, _, _ = d.get(d.lb+"/", "", "Range", "bytes=0-0")
				return d.lbLists(upstreams(d.edges()))
			})
			if n := len(d.edges()); n != 2 {
				t.Errorf("docker compose v2 --scale edge=2: %d edges", n)
			}
			d.checkRange()
			v2("down", "--volumes", "--timeout", "5")
		})
	} else {
		t.Log("docker compose (v2) is not available with this Docker CLI: only docker-compose ran")
	}
	t.Logf("the Compose test took %s", time.Since(start).Round(time.Second))
}

// composeV2 reports whether the Docker CLI has the compose plugin.
func composeV2(e *engine) bool {
	out, err := e.docker("compose", "version")
	return err == nil && strings.Contains(strings.ToLower(out), "compose")
}

// checkEmpty fails the test if the engine still has containers, networks
// (besides its built-in ones) or volumes.
func (e *engine) checkEmpty() {
	e.t.Helper()
	if out, err := e.docker("ps", "-aq"); err != nil || out != "" {
		e.t.Errorf("containers left: %q %v", out, err)
	}
	if out, err := e.docker("volume", "ls", "-q"); err != nil || out != "" {
		e.t.Errorf("volumes left: %q %v", out, err)
	}
	out, err := e.docker("network", "ls", "--format", "{{.Name}}")
	if err != nil {
		e.t.Errorf("docker network ls: %v", err)
	}
	for _, n := range strings.Fields(out) {
		if !slices.Contains([]string{"bridge", "host", "none"}, n) {
			e.t.Errorf("network left: %s", n)
		}
	}
}
