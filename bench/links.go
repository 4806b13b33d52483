package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/edgetier/edgetier/internal/cluster"
)

// startLinked starts three more edges, each in a cgroup and a network
// namespace of its own (the bench's own test hosts), joined to this one by
// a veth pair whose edge end tc shapes: the edges of the link scenarios.
// Their viewers' bytes cross that link, as they would an edge's uplink.
func (s *system) startLinked() error {
	for i := 1; i <= 3; i++ {
		id := fmt.Sprintf("b%d%d", os.Getpid()%100000, i)
		ns, err := cluster.NewNetns(id)
		if err != nil {
			return err
		}
		e := &edge{name: fmt.Sprintf("edge-%d", i), port: 8080, ns: ns}
		s.linked = append(s.linked, e)
		host, inside := fmt.Sprintf("10.215.%d.1", i), fmt.Sprintf("10.215.%d.2", i)
		if err := ns.LinkHost("et"+id+"h", "et"+id+"n", host, inside); err != nil {
			return err
		}
		e.host = inside
		e.public = net.JoinHostPort(inside, strconv.Itoa(e.port))
		if e.group, err = cluster.NewCgroupV1(fmt.Sprintf("edgetier-bench-%d-linked-%s", os.Getpid(), e.name)); err != nil {
			return err
		}
		if err := e.group.SetQuota(1); err != nil {
			return err
		}
		admin := net.JoinHostPort(inside, "2019")
		e.caddy, err = cluster.StartCaddy(s.o.caddy, filepath.Join(s.dir, "linked-"+e.name), admin, s.edgeConfig(e, admin, time.Second),
			cluster.Options{Wrap: e.group.Wrap() + ns.Wrap()})
		if err != nil {
			return fmt.Errorf("%s in %s: %w", e.name, ns.Name, err)
		}
	}
	return nil
}

// setLinks shapes each linked edge's link to rates[i] bytes per second (0:
// unshaped) and has its agent advertise advertised[i].
func (s *system) setLinks(rates, advertised []float64) error {
	for i, e := range s.linked {
		if err := e.ns.Shape(8 * rates[i]); err != nil {
			return err
		}
		e.link = advertised[i]
		if err := e.caddy.Reload(s.edgeConfig(e, e.caddy.Admin, time.Second)); err != nil {
			return fmt.Errorf("%s: %w", e.name, err)
		}
	}
	return nil
}

func (s *system) stopLinked() {
	for _, e := range s.linked {
		if e.caddy != nil {
			e.caddy.Stop()
		}
		if e.group != nil {
			_ = e.group.Remove()
		}
		if e.ns != nil {
			_ = e.ns.Remove()
		}
	}
}

// sampleLink reads the edge's own report four times a second until the
// returned function is called, which gives the link utilisations it
// reported.
func (s *system) sampleLink(e *edge) func() []float64 {
	stop, done := make(chan struct{}), make(chan []float64)
	url := "http://" + net.JoinHostPort(e.host, strconv.Itoa(e.port)) + "/_edgetier/load"
	go func() {
		var got []float64
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				done <- got
				return
			case <-tick.C:
			}
			resp, err := http.Get(url)
			if err != nil {
				continue
			}
			var r struct {
				LinkUtilisation float64 `json:"link_utilisation"`
			}
			if json.NewDecoder(resp.Body).Decode(&r) == nil {
				got = append(got, r.LinkUtilisation)
			}
			resp.Body.Close()
		}
	}()
	return func() []float64 {
		close(stop)
		return <-done
	}
}
