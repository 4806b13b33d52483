package edgeagent

import (
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
)

// Default paths of the in-Caddy agent's endpoints.
const (
	DefaultReportPath = "/_edgetier/load"
	DefaultStatePath  = "/_edgetier/state"
)

// Guard checks bearer tokens and counts the requests it refuses and the
// reports it serves.
type Guard struct {
	token        string
	Unauthorized atomic.Uint64
	Reports      atomic.Uint64
}

// NewGuard returns a guard for token; an empty token lets every request in.
func NewGuard(token string) *Guard { return &Guard{token: token} }

// Enabled reports whether a token is required.
func (g *Guard) Enabled() bool { return g.token != "" }

// Allow reports whether r carries the token, answering 401 when it does not.
func (g *Guard) Allow(w http.ResponseWriter, r *http.Request) bool {
	if g.token == "" {
		return true
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if ok && subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), []byte(g.token)) == 1 {
		return true
	}
	g.Unauthorized.Add(1)
	w.Header().Set("WWW-Authenticate", `Bearer realm="edgetier"`)
	http.Error(w, "missing or wrong bearer token", http.StatusUnauthorized)
	return false
}

// ServeReport answers a report request: GET or HEAD, JSON, never cached.
// When the agent cannot vouch for a current report (Agent.Current: no
// sample yet, sampling failing, the sampler stuck) it answers 503 with
// Retry-After one interval, never its last report again.
func ServeReport(a *Agent, g *Guard, w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "report: use GET", http.StatusMethodNotAllowed)
		return
	}
	if !g.Allow(w, r) {
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	rep, err := a.Current()
	if err != nil {
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(a.Interval().Seconds()))))
		http.Error(w, "report: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	body, err := json.Marshal(rep)
	if err != nil {
		http.Error(w, "encoding report: "+err.Error(), http.StatusInternalServerError)
		return
	}
	g.Reports.Add(1)
	w.Header().Set("Content-Type", "application/json")
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(append(body, '\n'))
}

// ServeState shows (GET) or changes (PUT or POST, body "drain" or
// {"state":"drain"}) the edge's state. Changes need the token: with none
// configured, the state can only be read.
func ServeState(a *Agent, g *Guard, w http.ResponseWriter, r *http.Request) {
	if !g.Allow(w, r) {
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
	case http.MethodPut, http.MethodPost:
		if !g.Enabled() {
			http.Error(w, "state changes are disabled: configure a token", http.StatusForbidden)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, 1024))
		if err != nil {
			http.Error(w, "reading body: "+err.Error(), http.StatusBadRequest)
			return
		}
		text := strings.TrimSpace(string(body))
		if strings.HasPrefix(text, "{") {
			var v struct {
				State string `json:"state"`
			}
			if err := json.Unmarshal(body, &v); err != nil {
				http.Error(w, "decoding body: "+err.Error(), http.StatusBadRequest)
				return
			}
			text = v.State
		}
		st, err := ParseState(text)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		a.SetState(st)
	default:
		w.Header().Set("Allow", "GET, HEAD, PUT, POST")
		http.Error(w, "state: use GET, PUT or POST", http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	fmt.Fprintf(w, "{\"edge\":%q,\"state\":%q}\n", a.Name(), a.State())
}
