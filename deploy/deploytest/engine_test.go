// Package deploytest runs the deployments for real: docker-compose.yml on
// a Docker engine of the test's own (Compose, and a one-node Swarm), with
// images built offline from the Caddy built here, and checks the
// Kubernetes manifests against the Caddyfiles.
//
// `make test` reaches these tests through `go test ./...` with
// EDGETIER_CADDY set (then a missing prerequisite fails, never skips);
// `make compose-test` runs only the Compose and Swarm ones.
package deploytest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/edgetier/edgetier/internal/testenv"
)

// repoRoot is the repository's top directory (tests run in their package's).
func repoRoot(t testing.TB) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// caddyBinary is the Caddy built by make build (EDGETIER_CADDY).
func caddyBinary(t testing.TB) string {
	t.Helper()
	bin := os.Getenv("EDGETIER_CADDY")
	if bin == "" {
		testenv.Missing(t, "EDGETIER_CADDY is not set: run `make compose-test`, or `make build` and set EDGETIER_CADDY=bin/caddy")
	}
	if _, err := os.Stat(bin); err != nil {
		testenv.Missing(t, "EDGETIER_CADDY: %v", err)
	}
	return bin
}

// needEngine checks what a Docker engine of our own needs.
func needEngine(t testing.TB, programs ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.Missing(t, "a Docker engine of the test's own needs root")
	}
	for _, p := range append([]string{"docker", "dockerd", "containerd", "runc", "unshare", "ip", "iptables", "busybox", "prometheus"}, programs...) {
		if _, err := exec.LookPath(p); err != nil {
			testenv.Missing(t, "%s is not installed (make deps installs it)", p)
		}
	}
}

// engine is a Docker engine of the test's own (deploy/deploytest/sandbox.sh):
// data under build/docker/, sockets under a short directory in /tmp, and
// its own network, mount and PID namespaces. Stopping it, or the test
// process dying, ends every process it started.
type engine struct {
	t      testing.TB
	name   string
	data   string // data roots, under the repository's build/docker/
	run    string // sockets, exec root
	cgroup string // cgroup parent, under every controller
	host   string // DOCKER_HOST
	cmd    *exec.Cmd
	exited chan struct{}
	netns  *os.File // the engine's network namespace
	http   *http.Client

	stopOnce sync.Once
}

var (
	enginesMu sync.Mutex
	engines   = map[*engine]bool{}
	onSignal  sync.Once
)

// startEngine starts an engine and registers its stop with t.Cleanup and
// with SIGINT/SIGTERM (an interrupted test leaves nothing behind either).
func startEngine(t testing.TB, name string) *engine {
	t.Helper()
	root := repoRoot(t)
	id := fmt.Sprintf("%s-%d", name, os.Getpid())
	e := &engine{
		t:      t,
		name:   name,
		data:   filepath.Join(root, "build", "docker", id),
		run:    filepath.Join(os.TempDir(), "etd-"+id),
		cgroup: "/etd-" + id,
		exited: make(chan struct{}),
	}
	e.host = "unix://" + filepath.Join(e.run, "docker.sock")
	sweep(t, root)
	e.remove() // what a killed run with the same pid left

	e.cmd = exec.Command("unshare", "--net", "--mount", "--pid", "--fork", "--mount-proc",
		"--propagation", "slave", "--kill-child", "--",
		"sh", filepath.Join(root, "deploy", "deploytest", "sandbox.sh"), e.data, e.run, e.cgroup)
	var out bytes.Buffer
	e.cmd.Stdout, e.cmd.Stderr = &out, &out
	// Its own process group (a Ctrl-C reaches the test, which stops the
	// engine in order), and killed with the test process.
	e.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := e.cmd.Start(); err != nil {
		t.Fatalf("starting the Docker engine: %v", err)
	}
	go func() { _ = e.cmd.Wait(); close(e.exited) }()
	enginesMu.Lock()
	engines[e] = true
	enginesMu.Unlock()
	onSignal.Do(stopEnginesOnSignal)
	t.Cleanup(e.stop)

	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := e.docker("version", "--format", "{{.Server.Version}}"); err == nil {
			break
		}
		select {
		case <-e.exited:
			t.Fatalf("the Docker engine ended while starting:\n%s\n%s", out.String(), e.logs())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the Docker engine did not answer within 60s:\n%s", e.logs())
		}
		time.Sleep(200 * time.Millisecond)
	}
	// unshare entered the new namespaces before it forked the script, which
	// started dockerd: now that dockerd answers, unshare's is the engine's.
	ns, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", e.cmd.Process.Pid))
	if err != nil {
		t.Fatalf("the engine's network namespace: %v", err)
	}
	e.netns = ns
	if sameFile(ns.Name(), "/proc/self/ns/net") {
		t.Fatalf("the engine runs in the test's own network namespace")
	}
	e.http = &http.Client{Transport: &http.Transport{DialContext: e.dial, MaxIdleConnsPerHost: 16}}
	return e
}

func sameFile(a, b string) bool {
	sa, errA := os.Stat(a)
	sb, errB := os.Stat(b)
	return errA == nil && errB == nil && os.SameFile(sa, sb)
}

// stopEnginesOnSignal stops every engine when the test is interrupted,
// then exits as an interrupted test would.
func stopEnginesOnSignal() {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	go func() {
		sig := <-ch
		fmt.Fprintf(os.Stderr, "deploytest: %v: stopping the Docker engines\n", sig)
		enginesMu.Lock()
		list := make([]*engine, 0, len(engines))
		for e := range engines {
			list = append(list, e)
		}
		enginesMu.Unlock()
		for _, e := range list {
			e.stop()
		}
		os.Exit(2)
	}()
}

// stop ends the engine (dockerd stops its containers), then removes its
// files and cgroups, and checks that nothing of it is left.
func (e *engine) stop() {
	e.stopOnce.Do(func() {
		if e.cmd.Process != nil {
			// The script (the namespace's init, unshare's child) stops the
			// daemons in order; unshare itself would only pass SIGKILL on.
			signalled := false
			if child, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", e.cmd.Process.Pid, e.cmd.Process.Pid)); err == nil {
				for _, f := range strings.Fields(string(child)) {
					var pid int
					if _, err := fmt.Sscan(f, &pid); err == nil && syscall.Kill(pid, syscall.SIGTERM) == nil {
						signalled = true
					}
				}
			}
			if !signalled {
				_ = e.cmd.Process.Signal(syscall.SIGTERM)
			}
			select {
			case <-e.exited:
			case <-time.After(40 * time.Second):
				_ = e.cmd.Process.Kill() // --kill-child: the namespace goes with it
				<-e.exited
			}
		}
		if e.netns != nil {
			e.netns.Close()
		}
		e.remove()
		enginesMu.Lock()
		delete(engines, e)
		enginesMu.Unlock()
		if _, err := os.Stat(e.data); err == nil {
			e.t.Errorf("the engine's data %s is left", e.data)
		}
		if left := cgroupsOf(e.cgroup); len(left) > 0 {
			e.t.Errorf("cgroups left: %v", left)
		}
	})
}

// remove deletes the engine's files and (empty) cgroups.
func (e *engine) remove() {
	_ = os.RemoveAll(e.data)
	_ = os.RemoveAll(e.run)
	for _, dir := range cgroupsOf(e.cgroup) {
		removeCgroup(dir)
	}
}

// sweep removes what engines of earlier runs left when their test process
// was killed (their processes died with it): data under build/docker/,
// run directories, cgroups, for every pid that no longer runs.
func sweep(t testing.TB, root string) {
	t.Helper()
	entries, _ := os.ReadDir(filepath.Join(root, "build", "docker"))
	for _, de := range entries {
		if pidGone(de.Name()) {
			_ = os.RemoveAll(filepath.Join(root, "build", "docker", de.Name()))
		}
	}
	runs, _ := filepath.Glob(filepath.Join(os.TempDir(), "etd-*"))
	for _, dir := range runs {
		if pidGone(strings.TrimPrefix(filepath.Base(dir), "etd-")) {
			_ = os.RemoveAll(dir)
		}
	}
	groups, _ := filepath.Glob("/sys/fs/cgroup/*/etd-*")
	for _, dir := range groups {
		if pidGone(strings.TrimPrefix(filepath.Base(dir), "etd-")) {
			removeCgroup(dir)
		}
	}
}

// pidGone reads NAME-PID and reports whether that process is gone.
func pidGone(id string) bool {
	i := strings.LastIndexByte(id, '-')
	if i < 0 {
		return false
	}
	var pid int
	if _, err := fmt.Sscan(id[i+1:], &pid); err != nil || pid <= 0 {
		return false
	}
	return syscall.Kill(pid, 0) == syscall.ESRCH
}

func cgroupsOf(parent string) []string {
	dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", parent))
	return dirs
}

// removeCgroup removes a cgroup directory and its children, deepest first.
func removeCgroup(dir string) {
	var dirs []string
	_ = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, path)
		}
		return nil
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		_ = syscall.Rmdir(dirs[i])
	}
}

// dump logs the engine's containers and their last lines, for a failed test.
func (e *engine) dump() {
	e.t.Helper()
	ps, _ := e.docker("ps", "-a", "--format", "{{.ID}} {{.Names}} {{.Status}}")
	e.t.Logf("containers:\n%s", ps)
	for _, line := range strings.Split(ps, "\n") {
		id, _, _ := strings.Cut(line, " ")
		if id == "" {
			continue
		}
		out, _ := e.docker("logs", "--tail", "15", id)
		e.t.Logf("--- %s\n%s", line, out)
	}
}

func (e *engine) logs() string {
	var b strings.Builder
	for _, f := range []string{"dockerd.log", "containerd.log"} {
		data, _ := os.ReadFile(filepath.Join(e.run, f))
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		if len(lines) > 30 {
			lines = lines[len(lines)-30:]
		}
		fmt.Fprintf(&b, "--- %s (last lines)\n%s\n", f, strings.Join(lines, "\n"))
	}
	return b.String()
}

// environ is the environment of docker and docker-compose commands: this
// engine only (a client configuration of its own, so no context of the
// user's applies), and the deployment's settings.
func (e *engine) environ(extra ...string) []string {
	env := []string{"DOCKER_HOST=" + e.host, "DOCKER_CONFIG=" + e.clientConfig(), "DOCKER_BUILDKIT=0", "COMPOSE_DOCKER_CLI_BUILD=0"}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "PATH", "HOME", "TMPDIR", "LANG", "LC_ALL":
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// clientConfig writes the Docker CLI's configuration for this engine: the
// user's CLI plugins, and build/cli-plugins (make compose-v2 puts the
// `docker compose` plugin there).
func (e *engine) clientConfig() string {
	dir := filepath.Join(e.run, "client")
	if _, err := os.Stat(filepath.Join(dir, "config.json")); err == nil {
		return dir
	}
	home, _ := os.UserHomeDir()
	user := filepath.Join(home, ".docker")
	if c := os.Getenv("DOCKER_CONFIG"); c != "" {
		user = c
	}
	cfg := map[string]any{"cliPluginsExtraDirs": []string{
		filepath.Join(repoRoot(e.t), "build", "cli-plugins"),
		filepath.Join(user, "cli-plugins"),
	}}
	data, _ := json.Marshal(cfg)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), data, 0o600); err != nil {
		e.t.Fatal(err)
	}
	return dir
}

// command runs a program against this engine, bounded in time, from the
// repository's top directory; it returns the combined output.
func (e *engine) command(timeout time.Duration, env []string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = repoRoot(e.t)
	cmd.Env = e.environ(env...)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		err = fmt.Errorf("%s %s: timed out after %s", name, strings.Join(args, " "), timeout)
	}
	return strings.TrimSpace(string(out)), err
}

func (e *engine) docker(args ...string) (string, error) {
	return e.command(2*time.Minute, nil, "docker", args...)
}

func (e *engine) mustDocker(args ...string) string {
	e.t.Helper()
	out, err := e.docker(args...)
	if err != nil {
		e.t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// dial connects inside the engine's network namespace (its published
// ports on 127.0.0.1, its bridges' containers): the socket is made on a
// thread switched into the namespace, then the thread switches back.
func (e *engine) dial(ctx context.Context, network, address string) (net.Conn, error) {
	type result struct {
		conn net.Conn
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		self, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", syscall.Gettid()))
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{nil, err}
			return
		}
		defer self.Close()
		if err := setns(e.netns); err != nil {
			runtime.UnlockOSThread()
			ch <- result{nil, fmt.Errorf("entering the engine's network namespace: %w", err)}
			return
		}
		d := net.Dialer{Timeout: 5 * time.Second, Control: smallReceiveBuffer}
		conn, err := d.DialContext(ctx, network, address)
		if setns(self) != nil {
			// The thread stays locked and ends with this goroutine.
			if conn != nil {
				conn.Close()
			}
			ch <- result{nil, fmt.Errorf("leaving the engine's network namespace")}
			return
		}
		runtime.UnlockOSThread()
		ch <- result{conn, err}
	}()
	r := <-ch
	return r.conn, r.err
}

func setns(f *os.File) error { return unix.Setns(int(f.Fd()), unix.CLONE_NEWNET) }

// smallReceiveBuffer keeps a slow viewer's stream in flight at the edge:
// with the kernel's default windows a 4 MiB file sits in socket buffers
// within a second, and an edge stopped later would have nothing to break.
func smallReceiveBuffer(network, address string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 16<<10)
	})
	if err != nil {
		return err
	}
	return serr
}

// secret is a random hex string.
func secret(t testing.TB) string {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// buildImages builds the deployment's images offline in the engine
// (deploy/offline/build.sh) from the Caddy under test.
func (e *engine) buildImages(caddy string) {
	e.t.Helper()
	start := time.Now()
	out, err := e.command(5*time.Minute, nil, "bash", "deploy/offline/build.sh", caddy)
	if err != nil {
		e.t.Fatalf("building the images offline: %v\n%s", err, out)
	}
	e.t.Logf("images built offline in %s", time.Since(start).Round(100*time.Millisecond))
}

// eventually polls cond every 250 ms until it holds or timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) time.Duration {
	t.Helper()
	start := time.Now()
	var last string
	for {
		ok, state := cond()
		if ok {
			return time.Since(start)
		}
		last = state
		if time.Since(start) > timeout {
			t.Fatalf("%s: not within %s (last: %s)", what, timeout, last)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
