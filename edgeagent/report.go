package edgeagent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// SchemaVersion is the version of the report format this package writes.
// A reader accepts every report whose major version equals SchemaMajor and
// ignores fields it does not know, so minor versions may add fields freely;
// removing or changing the meaning of a field needs a new major version.
const (
	SchemaVersion = "1.2"
	SchemaMajor   = 1
)

// MaxReportBytes caps how much of a report body a reader consumes.
const MaxReportBytes = 64 << 10

// State is an edge's operating state, set by its operator.
type State string

// The states an edge can be in.
const (
	StateReady State = "ready" // takes new viewers
	StateDrain State = "drain" // finishes its streams; new ones go elsewhere while another edge can serve
	StateMaint State = "maint" // takes nothing new
)

// ParseState returns the state named s, or an error naming the valid ones.
func ParseState(s string) (State, error) {
	switch st := State(strings.ToLower(strings.TrimSpace(s))); st {
	case StateReady, StateDrain, StateMaint:
		return st, nil
	}
	return "", fmt.Errorf("unknown state %q (want ready, drain or maint)", s)
}

// Report is what an agent tells the load balancer about its edge.
type Report struct {
	// Schema is "major.minor"; see SchemaVersion.
	Schema string `json:"schema"`
	// Edge names the edge. It is only ever displayed, never used as an address.
	Edge string `json:"edge"`
	// Timestamp is when the figures were sampled, by the agent's clock.
	Timestamp time.Time `json:"timestamp"`
	// Seq increases by one per sample; it restarts at 1 when the agent restarts.
	Seq uint64 `json:"seq"`
	// IntervalSeconds is the agent's sampling interval.
	IntervalSeconds float64 `json:"interval_seconds"`
	// Scope says whose resources CPU and memory describe: host, cgroup or process.
	Scope string `json:"scope,omitempty"`
	State State  `json:"state"`

	// CPUPercent is CPU use, 0–100, relative to the CPUs the scope may use.
	CPUPercent float64 `json:"cpu_percent"`
	// MemoryPercent is memory use without reclaimable page cache, 0–100.
	MemoryPercent float64 `json:"memory_percent"`
	// RequestsPerSecond is the request rate over the last interval.
	RequestsPerSecond float64 `json:"requests_per_second"`
	// Streams is the number of requests in flight when the report was made.
	Streams float64 `json:"streams"`
	// ResponseTimeSeconds is the mean time to first byte over the last
	// interval (the previous value when no request started in it).
	ResponseTimeSeconds float64 `json:"response_time_seconds"`
	// EgressBytesPerSecond is what the edge's network interfaces (not
	// loopback) sent per second over the last interval.
	EgressBytesPerSecond float64 `json:"egress_bytes_per_second"`
	// SentBytesPerSecond is the response body bytes the edge served per
	// second over the last interval (since schema 1.1).
	SentBytesPerSecond float64 `json:"sent_bytes_per_second,omitempty"`
	// LinkUtilisation is the egress over the last interval against the
	// link's capacity (Capacity.LinkBytesPerSecond), 0–1; absent when the
	// capacity is unknown. Without an identified link (loopback only) the
	// bytes served stand in for egress (since schema 1.2).
	LinkUtilisation float64 `json:"link_utilisation,omitempty"`
	// StreamBytesPerSecond is the bytes per second served per stream over
	// the last interval (since schema 1.2).
	StreamBytesPerSecond float64 `json:"stream_bytes_per_second,omitempty"`

	// Capacity, when present, is what the balancer normalises against.
	Capacity *Capacity `json:"capacity,omitempty"`
}

// Capacity is what an edge can take; zero fields are unknown.
type Capacity struct {
	MaxStreams             float64 `json:"max_streams,omitempty"`
	MaxRequestsPerSecond   float64 `json:"max_requests_per_second,omitempty"`
	MaxResponseTimeSeconds float64 `json:"max_response_time_seconds,omitempty"`
	LinkBytesPerSecond     float64 `json:"link_bytes_per_second,omitempty"`
}

// Limits of the values a report may carry. They are generous bounds that
// catch garbage (a unit mix-up, an overflow), not capacity planning.
const (
	maxEdgeName     = 253
	maxRate         = 1e9  // requests per second or streams
	maxSeconds      = 3600 // response time
	maxBytesPerSec  = 1e13 // 80 Tbit/s
	maxIntervalSecs = 3600
)

// ErrSchema is wrapped by Decode for a report of another major version.
var ErrSchema = errors.New("unsupported schema version")

// Validate checks that every figure is finite and in range and says which
// field is wrong.
func (r *Report) Validate() error {
	major, err := schemaMajor(r.Schema)
	if err != nil {
		return err
	}
	if major != SchemaMajor {
		return fmt.Errorf("%w %q (this reader takes %d.x)", ErrSchema, r.Schema, SchemaMajor)
	}
	if len(r.Edge) > maxEdgeName || !utf8.ValidString(r.Edge) {
		return fmt.Errorf("edge: name must be valid UTF-8 of at most %d bytes", maxEdgeName)
	}
	if r.Timestamp.IsZero() {
		return errors.New("timestamp: missing")
	}
	if _, err := ParseState(string(r.State)); err != nil {
		return fmt.Errorf("state: %w", err)
	}
	checks := []struct {
		name     string
		v, limit float64
	}{
		{"interval_seconds", r.IntervalSeconds, maxIntervalSecs},
		{"cpu_percent", r.CPUPercent, 100},
		{"memory_percent", r.MemoryPercent, 100},
		{"requests_per_second", r.RequestsPerSecond, maxRate},
		{"streams", r.Streams, maxRate},
		{"response_time_seconds", r.ResponseTimeSeconds, maxSeconds},
		{"egress_bytes_per_second", r.EgressBytesPerSecond, maxBytesPerSec},
		{"sent_bytes_per_second", r.SentBytesPerSecond, maxBytesPerSec},
		{"link_utilisation", r.LinkUtilisation, 1},
		{"stream_bytes_per_second", r.StreamBytesPerSecond, maxBytesPerSec},
	}
	if c := r.Capacity; c != nil {
		checks = append(checks, []struct {
			name     string
			v, limit float64
		}{
			{"capacity.max_streams", c.MaxStreams, maxRate},
			{"capacity.max_requests_per_second", c.MaxRequestsPerSecond, maxRate},
			{"capacity.max_response_time_seconds", c.MaxResponseTimeSeconds, maxSeconds},
			{"capacity.link_bytes_per_second", c.LinkBytesPerSecond, maxBytesPerSec},
		}...)
	}
	for _, c := range checks {
		if err := checkRange(c.name, c.v, c.limit); err != nil {
			return err
		}
	}
	return nil
}

func checkRange(name string, v, limit float64) error {
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return fmt.Errorf("%s: not a finite number", name)
	case v < 0:
		return fmt.Errorf("%s: negative (%g)", name, v)
	case v > limit:
		return fmt.Errorf("%s: %g is above the limit %g", name, v, limit)
	}
	return nil
}

func schemaMajor(s string) (int, error) {
	majorText, _, _ := strings.Cut(s, ".")
	major, err := strconv.Atoi(majorText)
	if err != nil || major < 0 {
		return 0, fmt.Errorf("schema: %q is not a version like %q", s, SchemaVersion)
	}
	return major, nil
}

// Reasons a report is rejected; they label the balancer's error counters.
const (
	ReasonTooLarge  = "too_large"
	ReasonMalformed = "malformed"
	ReasonSchema    = "schema"
	ReasonInvalid   = "invalid"
)

// DecodeError says why a report was rejected.
type DecodeError struct {
	Reason string // one of the Reason constants
	Err    error
}

func (e *DecodeError) Error() string { return e.Err.Error() }
func (e *DecodeError) Unwrap() error { return e.Err }

// Decode reads one report of at most MaxReportBytes from r and validates it.
// Unknown fields are ignored (see SchemaVersion). Errors are *DecodeError.
func Decode(r io.Reader) (Report, error) {
	body, err := io.ReadAll(io.LimitReader(r, MaxReportBytes+1))
	if err != nil {
		return Report{}, &DecodeError{ReasonMalformed, fmt.Errorf("reading report: %w", err)}
	}
	if len(body) > MaxReportBytes {
		return Report{}, &DecodeError{ReasonTooLarge, fmt.Errorf("report larger than %d bytes", MaxReportBytes)}
	}
	var rep Report
	if err := json.Unmarshal(body, &rep); err != nil {
		return Report{}, &DecodeError{ReasonMalformed, fmt.Errorf("decoding report: %w", err)}
	}
	if err := rep.Validate(); err != nil {
		reason := ReasonInvalid
		if errors.Is(err, ErrSchema) {
			reason = ReasonSchema
		}
		return Report{}, &DecodeError{reason, fmt.Errorf("invalid report: %w", err)}
	}
	return rep, nil
}
