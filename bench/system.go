package main

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/edgetier/edgetier/internal/cluster"
)

// edge is one edge Caddy in its own cgroup; addr is what the balancers
// dial (a delay proxy in front of it when the edge is slowed).
type edge struct {
	name   string
	host   string // what it binds
	port   int
	admin  string
	dir    string
	ns     *cluster.Netns // its network namespace, for an edge behind a link
	link   float64        // the link bytes per second it advertises; 0: none
	caddy  *cluster.Caddy
	group  *cluster.CgroupV1
	delay  *delayProxy
	public string // host:port the balancers use
}

// delayProxy adds latency before every response of an edge.
type delayProxy struct {
	srv   *http.Server
	delay atomic.Int64 // nanoseconds
	addr  string
}

func newDelayProxy(target string) (*delayProxy, error) {
	port, err := cluster.FreePort()
	if err != nil {
		return nil, err
	}
	u, _ := url.Parse("http://" + target)
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = &http.Transport{MaxIdleConnsPerHost: 256}
	d := &delayProxy{addr: fmt.Sprintf("127.0.0.1:%d", port)}
	d.srv = &http.Server{Addr: d.addr, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(time.Duration(d.delay.Load()))
		rp.ServeHTTP(w, r)
	})}
	go func() { _ = d.srv.ListenAndServe() }()
	return d, nil
}

type system struct {
	o      options
	dir    string
	files  []video
	edges  []*edge          // the ones the balancers use: loop or linked
	loop   []*edge          // on loopback
	linked []*edge          // each behind a link of its own (startLinked)
	scale  []*edge          // the twelve of (i) (startScale)
	lbs    []*cluster.Caddy // the balancer processes; most scenarios use the first
	nginx  *exec.Cmd
	// balancers holds the Caddy balancers: no limit, except in the
	// saturation scenario, where a CPU quota makes the balancer the
	// bottleneck rather than the whole shared machine. nginx, not an arm
	// there, stays out: in the group it answered 60 % slower at p50.
	balancers *cluster.CgroupV1
	arms      []arm
	lbPorts   map[string]int
	nLBs      int // the balancers the arms use now
}

type video struct {
	path     string
	size     int64
	duration time.Duration // from its moov
}

// bitrate is the library's mean bitrate in bytes per second: what a paced
// viewer takes.
func (s *system) bitrate() float64 {
	var b float64
	for _, f := range s.files {
		b += float64(f.size) / f.duration.Seconds()
	}
	return b / float64(len(s.files))
}

type arm struct {
	name string
	base string // URL prefix; "" for direct (the player picks an edge)
}

// start builds the library and starts three edges, the Caddy balancers
// (one site per policy) and nginx.
func start(o options) (*system, error) {
	dir, err := os.MkdirTemp("", "edgetier-bench-")
	if err != nil {
		return nil, err
	}
	s := &system{o: o, dir: dir, lbPorts: map[string]int{}}
	if err := s.makeLibrary(); err != nil {
		return s, err
	}
	if s.balancers, err = cluster.NewCgroupV1(fmt.Sprintf("edgetier-bench-%d-balancers", os.Getpid())); err != nil {
		return s, err
	}
	if err := s.balancers.SetQuota(0); err != nil {
		return s, err
	}
	for i := 1; i <= 3; i++ {
		e, err := s.newEdge(fmt.Sprintf("edge-%d", i), "loop", nil, 1)
		if err != nil {
			return s, err
		}
		if e.delay, err = newDelayProxy(e.public); err != nil {
			return s, err
		}
		s.loop = append(s.loop, e)
	}
	s.edges = s.loop
	return s, nil
}

// newEdge starts an edge Caddy in a cgroup of its own held to quota CPUs,
// on loopback, or in ns (on its address) when ns is not nil. set names
// the group of edges it belongs to, for its cgroup and folder.
func (s *system) newEdge(name, set string, ns *cluster.Netns, quota float64) (*edge, error) {
	e := &edge{name: name, host: "127.0.0.1", ns: ns}
	var err error
	if ns != nil {
		e.host, e.port = ns.Addr, 8080
		e.admin = net.JoinHostPort(ns.Addr, "2019")
	} else {
		e.port, _ = cluster.FreePort()
		admin, _ := cluster.FreePort()
		e.admin = fmt.Sprintf("127.0.0.1:%d", admin)
	}
	e.public = net.JoinHostPort(e.host, strconv.Itoa(e.port))
	if e.group, err = cluster.NewCgroupV1(fmt.Sprintf("edgetier-bench-%d-%s-%s", os.Getpid(), set, name)); err != nil {
		return nil, err
	}
	e.dir = filepath.Join(s.dir, set+"-"+name)
	if err := e.group.SetQuota(quota); err != nil {
		return e, err
	}
	return e, s.startEdge(e)
}

// stop stops the edge and removes what it was given: its delay proxy,
// cgroup and network namespace.
func (e *edge) stop() {
	if e.caddy != nil {
		e.caddy.Stop()
	}
	if e.delay != nil {
		_ = e.delay.srv.Close()
	}
	if e.group != nil {
		_ = e.group.Remove()
	}
	if e.ns != nil {
		_ = e.ns.Remove()
	}
}

// startEdge starts (or starts again) an edge's Caddy.
func (s *system) startEdge(e *edge) error {
	wrap := e.group.Wrap()
	if e.ns != nil {
		wrap += e.ns.Wrap()
	}
	var err error
	e.caddy, err = cluster.StartCaddy(s.o.caddy, e.dir, e.admin, s.edgeConfig(e, e.admin, time.Second), cluster.Options{Wrap: wrap})
	if err != nil {
		return fmt.Errorf("%s: %w", e.name, err)
	}
	return nil
}

func (s *system) makeLibrary() error {
	for i, secs := range []string{"12", "20", "30"} {
		path := filepath.Join(s.dir, fmt.Sprintf("video-%d.mp4", i+1))
		out, err := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
			"-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=25:duration="+secs,
			"-f", "lavfi", "-i", "sine=frequency=440:duration="+secs,
			"-c:v", "libx264", "-preset", "ultrafast", "-b:v", "6M", "-g", "50", "-pix_fmt", "yuv420p",
			"-c:a", "aac", "-movflags", "+faststart", path).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ffmpeg: %v: %s", err, out)
		}
		st, err := os.Stat(path)
		if err != nil {
			return err
		}
		d, err := mp4Duration(path)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		s.files = append(s.files, video{path: "/" + filepath.Base(path), size: st.Size(), duration: d})
	}
	return nil
}

// edgeConfig is an edge's Caddyfile: on host:port, its agent reporting at
// interval, advertising link bytes per second (0: none).
func (s *system) edgeConfig(e *edge, admin string, interval time.Duration) string {
	capacity := ""
	if e.link > 0 {
		capacity = fmt.Sprintf("\n\t\tcapacity {\n\t\t\tlink_bandwidth %.0f\n\t\t}", e.link)
	}
	return fmt.Sprintf(`{
	admin %s
	auto_https off
}
http://:%d {
	bind %s
	edge_agent %s {
		scope cgroup
		interval %s%s
	}
	root * %s
	file_server
}
`, admin, e.port, e.host, e.name, interval, capacity, s.dir)
}

// policyOnly is the arm of lb_policy tiered without the edgetier transport.
const policyOnly = "tiered-policy-only"

// configure points the first lbs balancers at the edges' current public
// addresses with the given report interval, starting them the first
// time. The others keep what they had; no arm uses them.
func (s *system) configure(interval time.Duration, lbs int) error {
	var ups []string
	var reports strings.Builder
	for _, e := range s.edges {
		ups = append(ups, e.public)
		fmt.Fprintf(&reports, "\t\t\tupstream %s {\n\t\t\t\treport_url http://%s/_edgetier/load\n\t\t\t}\n", e.public, net.JoinHostPort(e.host, strconv.Itoa(e.port)))
	}
	policies := []struct{ name, policy string }{
		{"tiered", fmt.Sprintf("tiered {\n\t\t\tpool two\n\t\t\tinterval %s\n%s\t\t}", interval, reports.String())},
		{"tiered-1choice", fmt.Sprintf("tiered {\n\t\t\tpool one\n\t\t\tchoices 1\n\t\t\tinterval %s\n%s\t\t}", interval, reports.String())},
		// The policy alone, with Caddy's http transport: what a user who
		// adds only lb_policy tiered gets.
		{policyOnly, fmt.Sprintf("tiered {\n\t\t\tpool policy\n\t\t\tinterval %s\n%s\t\t}", interval, reports.String())},
		{"round_robin", "round_robin"},
		{"least_conn", "least_conn"},
		{"random_choose_2", "random_choose 2"},
	}
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "{\n\tadmin 127.0.0.1:%%d\n\tauto_https off\n}\n")
	for _, p := range policies {
		if s.lbPorts[p.name] == 0 {
			s.lbPorts[p.name], _ = cluster.FreePort()
		}
		// edgetier arms run as the default Caddyfile does, with the
		// edgetier transport; the others with Caddy's http transport.
		transport := "transport http {\n\t\t\tkeepalive_idle_conns_per_host 256\n\t\t}"
		if strings.HasPrefix(p.name, "tiered") && p.name != policyOnly {
			transport = "transport edgetier {\n\t\t\tpool " + strings.Fields(p.policy)[3] + "\n\t\t\thttp {\n\t\t\t\tkeepalive_idle_conns_per_host 256\n\t\t\t}\n\t\t}"
		}
		fmt.Fprintf(&cfg, "http://:%d {\n\tbind 127.0.0.1\n\treverse_proxy %s {\n\t\tlb_policy %s\n\t\t%s\n\t}\n}\n",
			s.lbPorts[p.name], strings.Join(ups, " "), p.policy, transport)
	}
	if s.o.trace {
		// The tiered board's events (slow, ejected), for the trace.
		if s.lbPorts[traceSite] == 0 {
			s.lbPorts[traceSite], _ = cluster.FreePort()
		}
		fmt.Fprintf(&cfg, "http://:%d {\n\tbind 127.0.0.1\n\tcdn_dashboard {\n\t\tpool two\n\t}\n}\n", s.lbPorts[traceSite])
	}
	text := cfg.String()
	for k := 0; k < lbs; k++ {
		// Balancer k+1 has the same sites on ports of its own.
		own := text
		if k > 0 {
			for name, port := range s.lbPorts {
				if strings.Contains(name, "@") {
					continue
				}
				at := fmt.Sprintf("%s@%d", name, k+1)
				if s.lbPorts[at] == 0 {
					s.lbPorts[at], _ = cluster.FreePort()
				}
				own = strings.ReplaceAll(own, fmt.Sprintf("http://:%d ", port), fmt.Sprintf("http://:%d ", s.lbPorts[at]))
			}
		}
		var err error
		if k < len(s.lbs) {
			err = s.lbs[k].Reload(fmt.Sprintf(own, adminPortOf(s.lbs[k])))
		} else {
			admin, _ := cluster.FreePort()
			var c *cluster.Caddy
			c, err = cluster.StartCaddy(s.o.caddy, filepath.Join(s.dir, fmt.Sprintf("lb%d", k+1)), fmt.Sprintf("127.0.0.1:%d", admin), fmt.Sprintf(own, admin), cluster.Options{Wrap: s.balancers.Wrap()})
			if err == nil {
				s.lbs = append(s.lbs, c)
			}
		}
		if err != nil {
			return err
		}
	}
	if err := s.startNginx(ups); err != nil {
		return err
	}
	s.arms = nil
	for _, p := range policies {
		s.arms = append(s.arms, arm{name: p.name, base: fmt.Sprintf("http://127.0.0.1:%d", s.lbPorts[p.name])})
	}
	s.nLBs = lbs
	s.arms = append(s.arms, arm{name: "nginx_least_conn", base: fmt.Sprintf("http://127.0.0.1:%d", s.lbPorts["nginx"])}, arm{name: "direct"})
	// Let the tiered boards learn the upstreams and trust them.
	for _, a := range s.arms[:3] {
		for _, base := range s.bases(a.name) {
			for i := 0; i < 5; i++ {
				if resp, err := http.Get(base + s.files[0].path); err == nil {
					resp.Body.Close()
				}
			}
		}
	}
	time.Sleep(3*interval + time.Second)
	return nil
}

func (s *system) startNginx(ups []string) error {
	if s.nginx != nil {
		_ = s.nginx.Process.Signal(syscall.SIGTERM)
		_ = s.nginx.Wait()
	}
	if s.lbPorts["nginx"] == 0 {
		s.lbPorts["nginx"], _ = cluster.FreePort()
	}
	prefix := filepath.Join(s.dir, "nginx")
	if err := os.MkdirAll(filepath.Join(prefix, "logs"), 0o755); err != nil {
		return err
	}
	var servers strings.Builder
	for _, u := range ups {
		fmt.Fprintf(&servers, "\t\tserver %s;\n", u)
	}
	conf := fmt.Sprintf(`worker_processes 1;
daemon off;
pid %[1]s/nginx.pid;
error_log stderr error;
events { worker_connections 4096; }
http {
	access_log off;
	client_body_temp_path %[1]s/body;
	proxy_temp_path %[1]s/proxy;
	fastcgi_temp_path %[1]s/fastcgi;
	uwsgi_temp_path %[1]s/uwsgi;
	scgi_temp_path %[1]s/scgi;
	upstream edges {
		least_conn;
%[2]s		keepalive 256;
	}
	server {
		listen 127.0.0.1:%[3]d;
		location / {
			proxy_pass http://edges;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
			proxy_buffering off;
		}
	}
}
`, prefix, servers.String(), s.lbPorts["nginx"])
	path := filepath.Join(prefix, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return err
	}
	s.nginx = exec.Command("nginx", "-c", path, "-p", prefix)
	s.nginx.Stderr = os.Stderr
	if err := s.nginx.Start(); err != nil {
		return fmt.Errorf("nginx: %w", err)
	}
	for i := 0; i < 50; i++ {
		if resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d%s", s.lbPorts["nginx"], s.files[0].path)); err == nil {
			resp.Body.Close()
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("nginx did not start")
}

// impair sets one edge's CPU quota (cpus) and added latency.
func (s *system) impair(i int, cpus float64, delay time.Duration) error {
	e := s.edges[i]
	if err := e.group.SetQuota(cpus); err != nil {
		return err
	}
	e.delay.delay.Store(int64(delay))
	if delay > 0 {
		e.public = e.delay.addr
	} else {
		e.public = fmt.Sprintf("127.0.0.1:%d", e.port)
	}
	return nil
}

func (s *system) stop() {
	if s.nginx != nil {
		_ = s.nginx.Process.Signal(syscall.SIGTERM)
		_ = s.nginx.Wait()
	}
	for _, c := range s.lbs {
		c.Stop()
	}
	s.stopLinked()
	s.stopScale()
	for _, e := range s.loop {
		e.stop()
	}
	if s.balancers != nil {
		_ = s.balancers.Remove()
	}
	_ = os.RemoveAll(s.dir)
}

// bases are the URL prefixes of the named arm, one per balancer it runs
// on now (the Caddy arms on each of nLBs; nginx on one); none for direct.
func (s *system) bases(name string) []string {
	switch name {
	case "direct":
		return nil
	case "nginx_least_conn":
		return []string{fmt.Sprintf("http://127.0.0.1:%d", s.lbPorts["nginx"])}
	}
	if s.lbPorts[name] == 0 {
		panic("bench: no arm " + name)
	}
	out := []string{fmt.Sprintf("http://127.0.0.1:%d", s.lbPorts[name])}
	for k := 2; k <= s.nLBs; k++ {
		out = append(out, fmt.Sprintf("http://127.0.0.1:%d", s.lbPorts[fmt.Sprintf("%s@%d", name, k)]))
	}
	return out
}

func adminPortOf(c *cluster.Caddy) int {
	_, port, _ := strings.Cut(c.Admin, ":")
	n, _ := strconv.Atoi(port)
	return n
}
