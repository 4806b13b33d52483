package deploytest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	mathrand "math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// followWithin is how soon after a scaling change the LB's JSON must list
// exactly the running edges (the deployment's promise; deploy/lb.Caddyfile
// looks the edges up every second and forgets one 4 s after the last
// request that could have chosen it).
const followWithin = 10 * time.Second

// edge is a running edge container.
type edge struct {
	container string
	upstream  string // ip:8080 on the deployment's network, as the LB sees it
	reach     string // an address of it that the test reaches from the engine's namespace
}

// deployment is docker-compose.yml running on an engine, as Compose or as a
// Swarm stack: what the checks need to know of it.
type deployment struct {
	t         *testing.T
	e         *engine
	project   string // Compose project or stack name
	network   string // the cdn network's full name
	edgeLabel string // docker ps filter that finds the running edge containers
	// gateway: the edges' addresses on docker_gwbridge (Swarm's overlay is
	// not reachable from the engine's namespace; its gateway bridge is).
	gateway bool

	token, user, password, hash string
	lb                          string // the LB's published port, from the engine's namespace
	prometheus                  func() string
	sample, load                []byte // testdata/sample.mp4; a bigger file for the viewers
}

func newDeployment(t *testing.T, e *engine, caddy string) *deployment {
	t.Helper()
	d := &deployment{t: t, e: e, token: secret(t), user: "ops", password: secret(t), lb: "http://127.0.0.1:80"}
	hash, err := exec.Command(caddy, "hash-password", "--plaintext", d.password).Output()
	if err != nil {
		t.Fatalf("caddy hash-password: %v", err)
	}
	d.hash = strings.TrimSpace(string(hash))
	d.sample, err = os.ReadFile(filepath.Join(repoRoot(t), "testdata", "sample.mp4"))
	if err != nil {
		t.Fatal(err)
	}
	// 64 MiB: more than the socket buffers between an edge and a viewer
	// hold (a few MiB each way), so a viewer watching at 1 MiB/s keeps its
	// edge sending for most of a minute, longer than the 10 s an edge is
	// given to stop.
	d.load = make([]byte, 64<<20)
	r := mathrand.NewChaCha8([32]byte{'e', 'd', 'g', 'e', 't', 'i', 'e', 'r'})
	_, _ = r.Read(d.load)
	return d
}

// environ is the deployment's settings, as a user would export them.
func (d *deployment) environ(extra ...string) []string {
	return append([]string{
		"EDGE_TOKEN=" + d.token,
		"DASHBOARD_USER=" + d.user,
		"DASHBOARD_PASSWORD_HASH=" + d.hash,
		// The only change to docker-compose.yml: the offline Prometheus image.
		"PROMETHEUS_IMAGE=edgetier-prometheus:offline",
	}, extra...)
}

// putVideo writes the viewers' file into the video volume, through a
// container that is created and never started.
func (d *deployment) putVideo(volume string) {
	d.t.Helper()
	file := filepath.Join(d.t.TempDir(), "load.mp4")
	if err := os.WriteFile(file, d.load, 0o644); err != nil {
		d.t.Fatal(err)
	}
	id := d.e.mustDocker("create", "-v", volume+":/srv/videos", "edgetier-caddy:latest", "true")
	defer d.e.docker("rm", id)
	d.e.mustDocker("cp", file, id+":/srv/videos/load.mp4")
}

// container is a running container of the deployment: its ID and its
// addresses by network.
type container struct {
	ID       string
	Networks map[string]string
}

// running lists the running containers with the label.
func (d *deployment) running(label string) []container {
	d.t.Helper()
	ids := strings.Fields(d.e.mustDocker("ps", "-q", "--filter", "status=running", "--filter", "label="+label))
	var list []container
	for _, id := range ids {
		var info []struct {
			ID              string
			NetworkSettings struct {
				Networks map[string]struct{ IPAddress string }
			}
		}
		out, err := d.e.docker("inspect", id)
		if err != nil {
			continue // gone since
		}
		if err := json.Unmarshal([]byte(out), &info); err != nil || len(info) != 1 {
			d.t.Fatalf("docker inspect %s: %v", id, err)
		}
		c := container{ID: info[0].ID, Networks: map[string]string{}}
		for name, n := range info[0].NetworkSettings.Networks {
			c.Networks[name] = n.IPAddress
		}
		list = append(list, c)
	}
	return list
}

// gateways maps container IDs to their docker_gwbridge addresses (Swarm).
func (d *deployment) gateways() map[string]string {
	d.t.Helper()
	var containers map[string]struct{ IPv4Address string }
	if err := json.Unmarshal([]byte(d.e.mustDocker("network", "inspect", "docker_gwbridge", "--format", "{{json .Containers}}")), &containers); err != nil {
		d.t.Fatalf("docker_gwbridge: %v", err)
	}
	gw := map[string]string{}
	for id, c := range containers {
		ip, _, _ := strings.Cut(c.IPv4Address, "/")
		gw[id] = ip
	}
	return gw
}

// reach is an address of c that the test reaches from the engine's
// namespace: on the deployment's network (a bridge) in Compose, on the
// gateway bridge in Swarm (an overlay is not reachable from there).
func (d *deployment) reach(c container) string {
	if d.gateway {
		return d.gateways()[c.ID]
	}
	return c.Networks[d.network]
}

// edges lists the running edge containers.
func (d *deployment) edges() []edge {
	d.t.Helper()
	var list []edge
	for _, c := range d.running(d.edgeLabel) {
		ip, reach := c.Networks[d.network], d.reach(c)
		if ip == "" || reach == "" {
			continue // not attached yet
		}
		list = append(list, edge{container: c.ID, upstream: ip + ":8080", reach: reach})
	}
	sort.Slice(list, func(i, j int) bool { return list[i].upstream < list[j].upstream })
	return list
}

func upstreams(list []edge) []string {
	out := make([]string, len(list))
	for i, e := range list {
		out[i] = e.upstream
	}
	return out
}

// get asks url from inside the engine's namespace; auth is "basic",
// "bearer" or "".
func (d *deployment) get(url, auth string, header ...string) (int, []byte, http.Header, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, nil, err
	}
	switch auth {
	case "basic":
		req.SetBasicAuth(d.user, d.password)
	case "bearer":
		req.Header.Set("Authorization", "Bearer "+d.token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	client := *d.e.http
	client.Timeout = 10 * time.Second
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	return resp.StatusCode, body, resp.Header, err
}

// frameEdge is what the checks read of the LB's JSON (/metrics).
type frameEdge struct {
	Upstream        string `json:"upstream"`
	Health          string `json:"health"`
	SelectionsTotal uint64 `json:"selections_total"`
}

func (d *deployment) lbFrame() ([]frameEdge, error) {
	code, body, _, err := d.get(d.lb+"/metrics", "basic")
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("/metrics: %d", code)
	}
	var frame struct {
		Edges []frameEdge `json:"edges"`
	}
	if err := json.Unmarshal(body, &frame); err != nil {
		return nil, fmt.Errorf("/metrics: %w", err)
	}
	return frame.Edges, nil
}

// lbLists reports whether the LB's JSON lists exactly want.
func (d *deployment) lbLists(want []string) (bool, string) {
	frame, err := d.lbFrame()
	if err != nil {
		return false, err.Error()
	}
	var got []string
	for _, e := range frame {
		got = append(got, e.Upstream)
	}
	sort.Strings(got)
	return slices.Equal(got, want), fmt.Sprintf("LB lists %v, running %v", got, want)
}

// follow checks, after a scaling change, that the LB's JSON lists exactly
// the running edges within followWithin, that viewers reach the new edges
// (of those not in before) soon after, and that Prometheus scrapes the LB
// and every edge. It returns the running edges.
func (d *deployment) follow(what string, want int, before []edge, v *viewers) []edge {
	d.t.Helper()
	running := d.edges()
	if len(running) != want {
		d.t.Fatalf("%s: %d edges running, want %d", what, len(running), want)
	}
	took := eventually(d.t, followWithin, what+": the LB's JSON lists exactly the running edges", func() (bool, string) {
		return d.lbLists(upstreams(running))
	})
	d.t.Logf("%s: the LB listed the %d running edges after %s", what, want, took.Round(100*time.Millisecond))
	var added []edge
	for _, e := range running {
		if !slices.ContainsFunc(before, func(b edge) bool { return b.container == e.container }) {
			added = append(added, e)
		}
	}
	if len(added) > 0 && v != nil {
		eventually(d.t, 30*time.Second, what+": new edges serve viewers", func() (bool, string) {
			for _, e := range added {
				if v.served(e.container[:12]) > 0 { // an edge names itself by its host name
					return true, ""
				}
			}
			return false, fmt.Sprintf("no viewer served by a new edge %v", upstreams(added))
		})
	}
	d.checkPrometheus(what, running)
	return running
}

// checkPrometheus waits until Prometheus's active targets are the LB and
// exactly the running edges, every one up.
func (d *deployment) checkPrometheus(what string, running []edge) {
	d.t.Helper()
	want := []string{"lb lb:9180"}
	for _, e := range running {
		host, _, _ := strings.Cut(e.upstream, ":")
		want = append(want, "edges "+host+":9180")
	}
	sort.Strings(want)
	took := eventually(d.t, 30*time.Second, what+": Prometheus scrapes the LB and every edge, all up", func() (bool, string) {
		code, body, _, err := d.get(d.prometheus()+"/api/v1/targets?state=active", "")
		if err != nil || code != http.StatusOK {
			return false, fmt.Sprintf("targets API: %d %v", code, err)
		}
		var r struct {
			Data struct {
				ActiveTargets []struct {
					Labels    map[string]string `json:"labels"`
					Health    string            `json:"health"`
					LastError string            `json:"lastError"`
				} `json:"activeTargets"`
			} `json:"data"`
		}
		if err := json.Unmarshal(body, &r); err != nil {
			return false, err.Error()
		}
		var got, down []string
		for _, tg := range r.Data.ActiveTargets {
			name := tg.Labels["job"] + " " + tg.Labels["instance"]
			got = append(got, name)
			if tg.Health != "up" {
				down = append(down, name+": "+tg.Health+" "+tg.LastError)
			}
		}
		sort.Strings(got)
		return slices.Equal(got, want) && len(down) == 0, fmt.Sprintf("targets %v (want %v), not up: %v", got, want, down)
	})
	d.t.Logf("%s: Prometheus scraped the LB and %d edges, all up, after %s", what, len(running), took.Round(100*time.Millisecond))
}

// afterScaleDown stops the viewers and checks what must hold once the
// edges scaled down under load: no stream broke and one at least was
// resumed (else the scale-down stopped no edge mid-stream and proved
// nothing), the operator endpoints and agents need their secrets, a Range
// request is byte-exact.
func (d *deployment) afterScaleDown(v *viewers, resumesBefore map[string]float64, stopped string) {
	d.t.Helper()
	v.check()
	after := d.resumes()
	d.t.Logf("resumes during the scaling: %v (before: %v)", after, resumesBefore)
	if after["ok"] <= resumesBefore["ok"] {
		d.t.Errorf("no stream was resumed while %s stopped under load: the test did not exercise resume (resumes %v)", stopped, after)
	}
	d.checkAuth()
	d.checkRange()
}

// dump logs the LB's JSON and the containers' last lines, for a failed test.
func (d *deployment) dump() {
	d.dumpLB()
	d.e.dump()
}

// dumpLB logs the LB's JSON (edges and events).
func (d *deployment) dumpLB() {
	_, body, _, err := d.get(d.lb+"/metrics", "basic")
	var frame struct {
		Edges  []json.RawMessage `json:"edges"`
		Events []json.RawMessage `json:"events"`
	}
	if err == nil {
		err = json.Unmarshal(body, &frame)
	}
	if err != nil {
		d.t.Logf("the LB's JSON: %v", err)
		return
	}
	var b strings.Builder
	for _, e := range frame.Edges {
		fmt.Fprintf(&b, "edge %s\n", e)
	}
	for _, e := range frame.Events {
		fmt.Fprintf(&b, "event %s\n", e)
	}
	d.t.Logf("the LB's JSON:\n%s", b.String())
}

// checkAuth: the operator endpoints need the password, the agents the token.
func (d *deployment) checkAuth() {
	d.t.Helper()
	for _, path := range []string{"/dashboard", "/ws", "/metrics", "/prometheus"} {
		code, _, _, err := d.get(d.lb+path, "")
		if err != nil || code != http.StatusUnauthorized {
			d.t.Errorf("GET %s without the password: %d %v, want 401", path, code, err)
		}
		code, _, _, err = d.get(d.lb+path, "basic")
		if err != nil || code == http.StatusUnauthorized || code >= 500 {
			d.t.Errorf("GET %s with the password: %d %v", path, code, err)
		}
	}
	for _, e := range d.edges() {
		url := "http://" + e.reach + ":8080/_edgetier/load"
		code, _, _, err := d.get(url, "")
		if err != nil || code != http.StatusUnauthorized {
			d.t.Errorf("edge agent without the token (%s): %d %v, want 401", e.upstream, code, err)
		}
		code, body, _, err := d.get(url, "bearer")
		if err != nil || code != http.StatusOK || !bytes.Contains(body, []byte(`"schema"`)) {
			d.t.Errorf("edge agent with the token (%s): %d %v %.100s", e.upstream, code, err, body)
		}
	}
}

// checkRange: a viewer's Range request, and the whole default video, are
// byte-exact copies of the bundled sample.
func (d *deployment) checkRange() {
	d.t.Helper()
	code, body, h, err := d.get(d.lb+"/", "", "Range", "bytes=1000-99999")
	want := fmt.Sprintf("bytes 1000-99999/%d", len(d.sample))
	if err != nil || code != http.StatusPartialContent || h.Get("Content-Range") != want || !bytes.Equal(body, d.sample[1000:100000]) {
		d.t.Errorf("Range bytes=1000-99999 through the LB: %d %v, Content-Range %q (want %q), %d bytes equal: %v",
			code, err, h.Get("Content-Range"), want, len(body), bytes.Equal(body, d.sample[1000:100000]))
	}
	if h.Get("X-Edge") == "" {
		d.t.Errorf("the answer names no edge (X-Edge)")
	}
	code, body, _, err = d.get(d.lb+"/videos/sample.mp4", "")
	if err != nil || code != http.StatusOK || !bytes.Equal(body, d.sample) {
		d.t.Errorf("GET /videos/sample.mp4: %d %v, %d bytes, equal: %v", code, err, len(body), bytes.Equal(body, d.sample))
	}
}

// resumes reads edgetier_resumes_total by outcome from the LB's /prometheus.
func (d *deployment) resumes() map[string]float64 {
	d.t.Helper()
	code, body, _, err := d.get(d.lb+"/prometheus", "basic")
	if err != nil || code != http.StatusOK {
		d.t.Fatalf("/prometheus: %d %v", code, err)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "edgetier_resumes_total{") {
			continue
		}
		labels, value, _ := strings.Cut(strings.TrimPrefix(line, "edgetier_resumes_total{"), "} ")
		v, _ := strconv.ParseFloat(value, 64)
		for _, l := range strings.Split(labels, ",") {
			if k, val, ok := strings.Cut(l, "="); ok && k == "outcome" {
				out[strings.Trim(val, `"`)] += v
			}
		}
	}
	return out
}

// viewers use the LB as players do. Watchers play the load file, whole
// or from a random offset (a seek), at 1 MiB/s, so their streams outlive
// an edge's stop grace period; seekers ask short ranges twice a second
// (the new requests by which the LB keeps looking its edges up). Every
// byte is checked.
type viewers struct {
	d    *deployment
	stop chan struct{}
	fast chan struct{} // closed when stopping: finish the current stream at full speed
	wg   sync.WaitGroup
	// started counts the viewers (seeds their choices).
	started int

	mu       sync.Mutex
	streams  int
	bytes    int64
	edges    map[string]int
	failures []string
}

const (
	watchRate  = 1 << 20   // bytes per second a watcher reads
	seekLength = 256 << 10 // bytes a seeker asks
)

func (d *deployment) startViewers(watchers, seekers int) *viewers {
	v := &viewers{d: d, stop: make(chan struct{}), fast: make(chan struct{}), edges: map[string]int{}}
	v.add(watchers, seekers)
	d.t.Cleanup(func() { v.halt() })
	return v
}

// add starts more viewers (new watchers go to the least busy edges: after
// a scale-up, the new ones).
func (v *viewers) add(watchers, seekers int) {
	for i := range watchers + seekers {
		v.wg.Add(1)
		v.started++
		go v.view(uint64(v.started), i >= watchers)
	}
}

func (v *viewers) view(seed uint64, seeker bool) {
	defer v.wg.Done()
	rng := mathrand.New(mathrand.NewPCG(seed, 7))
	for {
		select {
		case <-v.stop:
			return
		default:
		}
		from, to := 0, len(v.d.load)
		switch {
		case seeker:
			from = rng.IntN(len(v.d.load) - seekLength)
			to = from + seekLength
		case rng.IntN(2) == 1:
			from = rng.IntN(len(v.d.load) - 1)
		}
		name, n, err := v.stream(from, to, !seeker)
		v.mu.Lock()
		v.bytes += n
		if err != nil {
			v.failures = append(v.failures, fmt.Sprintf("%s bytes %d-%d (edge %s): %v", time.Now().Format("15:04:05.0"), from, to-1, name, err))
		} else {
			v.streams++
			v.edges[name]++
		}
		v.mu.Unlock()
		if seeker || err != nil {
			time.Sleep(500 * time.Millisecond)
		}
	}
}

// stream plays bytes [from, to) of the load file, checking every byte;
// paced, at watchRate.
func (v *viewers) stream(from, to int, paced bool) (string, int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, v.d.lb+"/videos/load.mp4", nil)
	want := http.StatusOK
	if from > 0 || to < len(v.d.load) {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", from, to-1))
		want = http.StatusPartialContent
	}
	resp, err := v.d.e.http.Do(req)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	name := resp.Header.Get("X-Edge")
	if resp.StatusCode != want {
		return name, 0, fmt.Errorf("status %d, want %d", resp.StatusCode, want)
	}
	buf := make([]byte, 32<<10)
	off := from
	start := time.Now()
	for off < to {
		n, err := resp.Body.Read(buf[:min(len(buf), to-off)])
		if n > 0 {
			if !bytes.Equal(buf[:n], v.d.load[off:off+n]) {
				return name, int64(off - from), fmt.Errorf("wrong bytes at %d", off)
			}
			off += n
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return name, int64(off - from), fmt.Errorf("broken after %d bytes: %w", off-from, err)
		}
		if !paced {
			continue
		}
		select {
		case <-v.fast:
		default:
			time.Sleep(time.Until(start.Add(time.Duration(off-from) * time.Second / watchRate)))
		}
	}
	if off != to {
		return name, int64(off - from), fmt.Errorf("short body: %d of %d bytes", off-from, to-from)
	}
	if n, _ := resp.Body.Read(buf[:1]); n != 0 {
		return name, int64(off - from), fmt.Errorf("body longer than asked")
	}
	return name, int64(off - from), nil
}

// served counts the streams that the edge named name served.
func (v *viewers) served(name string) int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.edges[name]
}

// halt ends the viewers: the current streams finish at full speed.
func (v *viewers) halt() {
	select {
	case <-v.stop:
		return
	default:
	}
	close(v.stop)
	close(v.fast)
	done := make(chan struct{})
	go func() { v.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		v.d.t.Errorf("viewers did not finish within 60s")
	}
}

// check stops the viewers and fails on any broken stream.
func (v *viewers) check() {
	v.d.t.Helper()
	v.halt()
	v.mu.Lock()
	defer v.mu.Unlock()
	v.d.t.Logf("viewers: %d streams, %.1f MiB, by edge %v", v.streams, float64(v.bytes)/(1<<20), v.edges)
	if v.streams == 0 {
		v.d.t.Errorf("no viewer stream completed")
	}
	for _, f := range v.failures {
		v.d.t.Errorf("broken stream: %s", f)
	}
}
