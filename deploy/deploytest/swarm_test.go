package deploytest

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestSwarm deploys docker-compose.yml as a stack (docker stack deploy)
// on a one-node swarm of the test's own engine: deploy.replicas sets the
// edges, the network is an overlay, the LB finds the tasks by tasks.edge
// (EDGE_HOST). The edge service scales 3 → 5 → 2 under viewer load, and
// the same checks as Compose's hold: the LB's JSON follows within 10 s,
// Prometheus scrapes the LB and every task, no stream breaks, auth, Range.
func TestSwarm(t *testing.T) {
	caddy := caddyBinary(t)
	needEngine(t)
	start := time.Now()
	e := startEngine(t, "swarm")
	e.buildImages(caddy)
	// The engine's namespace has only loopback: the node advertises it.
	e.mustDocker("swarm", "init", "--advertise-addr", "127.0.0.1")
	d := newDeployment(t, e, caddy)
	d.project = "etdswarm"
	d.network = d.project + "_cdn"
	d.edgeLabel = "com.docker.swarm.service.name=" + d.project + "_edge"
	d.gateway = true
	d.prometheus = func() string {
		for _, c := range d.running("com.docker.swarm.service.name=" + d.project + "_prometheus") {
			if ip := d.reach(c); ip != "" {
				return "http://" + ip + ":9090"
			}
		}
		return "http://prometheus-not-running"
	}
	env := d.environ("EDGE_HOST=tasks.edge", "EDGE_REPLICAS=3")

	t.Cleanup(func() {
		if t.Failed() {
			d.dump()
		}
		removeStack(t, e, d.project)
		if out, err := e.docker("swarm", "leave", "--force"); err != nil {
			t.Errorf("docker swarm leave: %v\n%s", err, out)
		}
		// Swarm's gateway bridge stays after the node leaves.
		_, _ = e.docker("network", "rm", "docker_gwbridge")
		e.checkEmpty()
	})

	began := time.Now()
	out, err := e.command(3*time.Minute, env, "docker", "stack", "deploy", "--resolve-image", "never", "--compose-file", "docker-compose.yml", d.project)
	if err != nil {
		t.Fatalf("docker stack deploy: %v\n%s", err, out)
	}
	t.Logf("docker stack deploy: %s", time.Since(began).Round(100*time.Millisecond))

	// What the stack is made of: an overlay, three edges from deploy.replicas,
	// the LB told to find the tasks by tasks.edge.
	if driver := e.mustDocker("network", "inspect", "--format", "{{.Driver}}", d.network); driver != "overlay" {
		t.Errorf("the stack's network %s is %q, want overlay", d.network, driver)
	}
	if n := e.mustDocker("service", "inspect", "--format", "{{.Spec.Mode.Replicated.Replicas}}", d.project+"_edge"); n != "3" {
		t.Errorf("deploy.replicas (EDGE_REPLICAS=3) gave %s edge replicas", n)
	}
	var lbEnv []string
	if err := json.Unmarshal([]byte(e.mustDocker("service", "inspect", "--format", "{{json .Spec.TaskTemplate.ContainerSpec.Env}}", d.project+"_lb")), &lbEnv); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(lbEnv, " "), "EDGE_HOST=tasks.edge") {
		t.Errorf("the LB's environment lacks EDGE_HOST=tasks.edge: %v", lbEnv)
	}

	eventually(t, 2*time.Minute, "the stack's 3 edges and its LB run", func() (bool, string) {
		edges, lbs := len(d.edges()), len(d.running("com.docker.swarm.service.name="+d.project+"_lb"))
		return edges == 3 && lbs == 1, "edges " + strconv.Itoa(edges) + ", LBs " + strconv.Itoa(lbs)
	})
	d.putVideo(d.project + "_videos")
	eventually(t, time.Minute, "the LB lists the first 3 edges", func() (bool, string) {
		_, _, _, _ = d.get(d.lb+"/", "", "Range", "bytes=0-0")
		return d.lbLists(upstreams(d.edges()))
	})

	scale := func(n int) {
		t.Helper()
		began := time.Now()
		out, err := e.command(3*time.Minute, nil, "docker", "service", "scale", "--detach=false", d.project+"_edge="+strconv.Itoa(n))
		if err != nil {
			t.Fatalf("docker service scale: %v\n%s", err, out)
		}
		// Converged: the tasks stopped are gone too.
		eventually(t, time.Minute, "the edge tasks converge", func() (bool, string) {
			got := len(d.edges())
			return got == n, strconv.Itoa(got) + " running"
		})
		t.Logf("docker service scale %s_edge=%d: %s", d.project, n, time.Since(began).Round(100*time.Millisecond))
	}

	v := d.startViewers(6, 4)
	edges := d.follow("3 tasks", 3, nil, v)
	before := d.resumes()
	scale(5)
	edges = d.follow("scaled up to 5", 5, edges, v)
	v.add(4, 0)
	time.Sleep(3 * time.Second)
	scale(2)
	d.follow("scaled down to 2", 2, edges, v)

	d.afterScaleDown(v, before, "3 tasks")
	t.Logf("the Swarm test took %s", time.Since(start).Round(time.Second))
}

// removeStack removes a stack and waits until its containers and networks
// are gone, then removes its volumes (docker stack rm keeps them).
func removeStack(t *testing.T, e *engine, stack string) {
	t.Helper()
	if out, err := e.docker("stack", "rm", stack); err != nil {
		t.Errorf("docker stack rm: %v\n%s", err, out)
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		containers, _ := e.docker("ps", "-aq", "--filter", "label=com.docker.stack.namespace="+stack)
		networks, _ := e.docker("network", "ls", "-q", "--filter", "label=com.docker.stack.namespace="+stack)
		if containers == "" && networks == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("docker stack rm: still there after 90s: containers %q, networks %q", containers, networks)
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
	volumes, _ := e.docker("volume", "ls", "-q", "--filter", "label=com.docker.stack.namespace="+stack)
	for _, v := range strings.Fields(volumes) {
		if out, err := e.docker("volume", "rm", v); err != nil {
			t.Errorf("docker volume rm %s: %v\n%s", v, err, out)
		}
	}
}
