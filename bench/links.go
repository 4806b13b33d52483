package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/edgetier/edgetier/internal/cluster"
)

// startLinked starts three more edges, each in a cgroup and a network
// namespace of its own: the edges of the link scenarios.
func (s *system) startLinked() error {
	for i := 1; i <= 3; i++ {
		e, err := s.linkedEdge(fmt.Sprintf("edge-%d", i), "linked", i, 1)
		if e != nil {
			s.linked = append(s.linked, e)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// linkedEdge starts an edge in a cgroup and in network namespace k of the
// bench's own test hosts, joined to this one by a veth pair (10.215.k.1
// here, 10.215.k.2 there) whose edge end tc can shape (setLinks): its
// viewers' bytes cross that link, as they would an edge's uplink. An
// edge it returns owns the namespace (stopLinked removes it).
func (s *system) linkedEdge(name, set string, k int, quota float64) (*edge, error) {
	id := fmt.Sprintf("b%d%d", os.Getpid()%100000, k)
	ns, err := cluster.NewNetns(id)
	if err != nil {
		return nil, err
	}
	if err := ns.LinkHost("et"+id+"h", "et"+id+"n", fmt.Sprintf("10.215.%d.1", k), fmt.Sprintf("10.215.%d.2", k)); err != nil {
		_ = ns.Remove()
		return nil, err
	}
	e, err := s.newEdge(name, set, ns, quota)
	if e == nil {
		_ = ns.Remove()
	}
	return e, err
}

// setLinks shapes each linked edge's link to rates[i] bytes per second (0:
// unshaped) and has its agent advertise advertised[i].
func (s *system) setLinks(rates, advertised []float64) error {
	for i, e := range s.linked {
		if err := s.setLink(e, rates[i], advertised[i]); err != nil {
			return err
		}
	}
	return nil
}

// setLink shapes an edge's link to rate bytes per second (0: unshaped)
// and has its agent advertise advertised.
func (s *system) setLink(e *edge, rate, advertised float64) error {
	if err := e.ns.Shape(8 * rate); err != nil {
		return err
	}
	e.link = advertised
	if err := e.caddy.Reload(s.edgeConfig(e, e.admin, time.Second)); err != nil {
		return fmt.Errorf("%s: %w", e.name, err)
	}
	return nil
}

func (s *system) stopLinked() {
	for _, e := range s.linked {
		e.stop()
	}
}

// sampleLink reads the edge's own report four times a second until the
// returned function is called, which gives the link utilisations it
// reported.
func (s *system) sampleLink(e *edge) func() []float64 {
	url := "http://" + net.JoinHostPort(e.host, strconv.Itoa(e.port)) + "/_edgetier/load"
	var got []float64
	stop := every(250*time.Millisecond, func() {
		resp, err := http.Get(url)
		if err != nil {
			return
		}
		defer resp.Body.Close()
		var r struct {
			LinkUtilisation float64 `json:"link_utilisation"`
		}
		if json.NewDecoder(resp.Body).Decode(&r) == nil {
			got = append(got, r.LinkUtilisation)
		}
	})
	return func() []float64 {
		stop()
		return got
	}
}
