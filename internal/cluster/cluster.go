// Package cluster starts real Caddy processes (load balancers and edges)
// on loopback for integration tests and benchmarks.
package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// handedOut holds every port FreePort has returned in this process.
var handedOut struct {
	sync.Mutex
	ports map[int]bool
}

// FreePort returns a loopback TCP port that was free a moment ago and that
// it has not returned before. The kernel may give a just-closed port out
// again, and Caddy listens with SO_REUSEPORT: an admin endpoint and a site
// handed the same port would both start, sharing its connections.
func FreePort() (int, error) {
	handedOut.Lock()
	defer handedOut.Unlock()
	if handedOut.ports == nil {
		handedOut.ports = map[int]bool{}
	}
	for range 1000 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !handedOut.ports[port] {
			handedOut.ports[port] = true
			return port, nil
		}
	}
	return 0, errors.New("no loopback port that was not handed out before")
}

// Caddy is one running Caddy process.
type Caddy struct {
	Bin   string
	Dir   string // holds the Caddyfile and the log
	Admin string // admin address, host:port
	cmd   *exec.Cmd
	log   *Output
	done  chan struct{}
	err   error
}

// Output collects what a process prints, for showing when a test fails.
// It is safe for concurrent writes and stays bounded in long runs: past
// 8 MiB it starts over.
type Output struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (s *Output) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b.Len() > 8<<20 {
		s.b.Reset() // keep memory bounded in long runs
	}
	return s.b.Write(p)
}

// String returns what was written so far (since the last start-over).
func (s *Output) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Options of a Caddy process.
type Options struct {
	// Wrap runs Caddy under a shell script that may prepare the process
	// (e.g. join a cgroup) before exec'ing "$@".
	Wrap string
	Env  []string
}

// StartCaddy writes caddyfile (which must set `admin` to admin) into dir
// and runs Caddy on it, waiting until the admin endpoint answers.
func StartCaddy(bin, dir, admin, caddyfile string, opts Options) (*Caddy, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(path, []byte(caddyfile), 0o644); err != nil {
		return nil, err
	}
	args := []string{bin, "run", "--config", path, "--adapter", "caddyfile"}
	if opts.Wrap != "" {
		args = append([]string{"sh", "-c", opts.Wrap + "\nexec \"$@\"", "caddy-wrap"}, args...)
	}
	c := &Caddy{Bin: bin, Dir: dir, Admin: admin, log: &Output{}, done: make(chan struct{})}
	c.cmd = exec.Command(args[0], args[1:]...)
	c.cmd.Dir = dir
	c.cmd.Stdout, c.cmd.Stderr = c.log, c.log
	c.cmd.Env = append(append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir), opts.Env...)
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := c.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { c.err = c.cmd.Wait(); close(c.done) }()
	if err := c.waitReady(30 * time.Second); err != nil {
		c.Kill()
		return nil, fmt.Errorf("caddy did not start: %w\n%s", err, c.Log())
	}
	return c, nil
}

func (c *Caddy) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-c.done:
			return fmt.Errorf("exited: %v", c.err)
		default:
		}
		resp, err := http.Get("http://" + c.Admin + "/config/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return errors.New("admin endpoint not answering")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Pid is the Caddy process's id (the wrapper exec's into Caddy).
func (c *Caddy) Pid() int { return c.cmd.Process.Pid }

// Log returns what Caddy printed so far.
func (c *Caddy) Log() string { return c.log.String() }

// Reload loads caddyfile through `caddy reload`.
func (c *Caddy) Reload(caddyfile string) error {
	path := filepath.Join(c.Dir, "Caddyfile")
	if err := os.WriteFile(path, []byte(caddyfile), 0o644); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, c.Bin, "reload", "--config", path, "--adapter", "caddyfile", "--address", c.Admin).CombinedOutput()
	if err != nil {
		return fmt.Errorf("caddy reload: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Kill ends the process at once (SIGKILL), as a crash would.
func (c *Caddy) Kill() {
	_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
	<-c.done
}

// Stop asks Caddy to stop and waits (killing it after a grace period).
func (c *Caddy) Stop() {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		c.Kill()
	}
}

// Exited reports whether the process has ended.
func (c *Caddy) Exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}
