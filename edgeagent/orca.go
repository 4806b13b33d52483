package edgeagent

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// LoadHeader is the response header in which an edge stamps its load on
// every response: ORCA's endpoint-load-metrics, in its TEXT form, e.g.
//
//	TEXT cpu_utilization=0.3, mem_utilization=0.2, rps_fractional=41, named_metrics.seq=7, named_metrics.streams=17
const LoadHeader = "Endpoint-Load-Metrics"

// MaxLoadHeaderBytes caps the header a reader parses: ours is under 300
// bytes, and a response header is read once per proxied response.
const MaxLoadHeaderBytes = 1 << 10

// ReasonUnsupported labels a load header in an ORCA form other than TEXT
// (BIN, JSON).
const ReasonUnsupported = "unsupported"

// Load is what an edge's response says of its load: the figures of the
// agent's latest report (Seq) with the streams in flight as the response
// started. Has says which fields the header carried.
type Load struct {
	Seq                  uint64
	CPU                  float64 // utilisation, 0–1
	Memory               float64 // utilisation, 0–1
	RequestsPerSecond    float64
	Streams              float64
	ResponseTimeSeconds  float64
	EgressBytesPerSecond float64
	SentBytesPerSecond   float64
	LinkUtilisation      float64 // 0–1
	StreamBytesPerSecond float64
	Has                  LoadFields
}

// LoadFields is a set of Load's fields.
type LoadFields uint16

// The fields of a Load besides Seq, which a header must carry.
const (
	HasCPU LoadFields = 1 << iota
	HasMemory
	HasRequests
	HasStreams
	HasResponseTime
	HasEgress
	HasSent
	HasLink
	HasStreamBytes
)

// The ORCA keys of Load's fields. ORCA's own keys are used where it has
// them; the rest are named metrics.
const (
	keyCPU          = "cpu_utilization"
	keyMemory       = "mem_utilization"
	keyRequests     = "rps_fractional"
	keySeq          = "named_metrics.seq"
	keyStreams      = "named_metrics.streams"
	keyResponseTime = "named_metrics.response_time_seconds"
	keyEgress       = "named_metrics.egress_bytes_per_second"
	keySent         = "named_metrics.sent_bytes_per_second"
	keyLink         = "named_metrics.link_utilisation"
	keyStreamBytes  = "named_metrics.stream_bytes_per_second"
)

// AppendLoadPrefix appends the TEXT form of rep's sampled figures to dst,
// ending with the key of the streams count: the agent formats it once per
// sample and appends each response's live count (AppendStreams).
func AppendLoadPrefix(dst []byte, rep *Report) []byte {
	dst = append(dst, "TEXT "+keyCPU+"="...)
	dst = strconv.AppendFloat(dst, rep.CPUPercent/100, 'g', 4, 64)
	dst = append(dst, ", "+keyMemory+"="...)
	dst = strconv.AppendFloat(dst, rep.MemoryPercent/100, 'g', 4, 64)
	dst = append(dst, ", "+keyRequests+"="...)
	dst = strconv.AppendFloat(dst, rep.RequestsPerSecond, 'g', 6, 64)
	dst = append(dst, ", "+keySeq+"="...)
	dst = strconv.AppendUint(dst, rep.Seq, 10)
	dst = append(dst, ", "+keyResponseTime+"="...)
	dst = strconv.AppendFloat(dst, rep.ResponseTimeSeconds, 'g', 4, 64)
	dst = append(dst, ", "+keyEgress+"="...)
	dst = strconv.AppendFloat(dst, rep.EgressBytesPerSecond, 'g', 6, 64)
	dst = append(dst, ", "+keySent+"="...)
	dst = strconv.AppendFloat(dst, rep.SentBytesPerSecond, 'g', 6, 64)
	dst = append(dst, ", "+keyLink+"="...)
	dst = strconv.AppendFloat(dst, rep.LinkUtilisation, 'g', 4, 64)
	dst = append(dst, ", "+keyStreamBytes+"="...)
	dst = strconv.AppendFloat(dst, rep.StreamBytesPerSecond, 'g', 6, 64)
	return append(dst, ", "+keyStreams+"="...)
}

// AppendStreams finishes a header begun by AppendLoadPrefix.
func AppendStreams(prefix []byte, streams int64) []byte {
	return strconv.AppendInt(prefix, max(streams, 0), 10)
}

// ParseLoadHeader parses an endpoint-load-metrics header in ORCA's TEXT
// form strictly: at most MaxLoadHeaderBytes, comma-separated key=value
// pairs of plain decimal numbers, each known figure at most once, finite
// and within the limits a report has, and named_metrics.seq present (it
// ties the figures to a report). Unknown keys are ignored. Errors are
// *DecodeError; it does not allocate unless it fails.
func ParseLoadHeader(v string) (Load, error) {
	var l Load
	if len(v) > MaxLoadHeaderBytes {
		return l, &DecodeError{ReasonTooLarge, fmt.Errorf("load header larger than %d bytes", MaxLoadHeaderBytes)}
	}
	form, rest, _ := strings.Cut(trimSpace(v), " ")
	switch {
	case strings.EqualFold(form, "TEXT"):
	case strings.EqualFold(form, "BIN"), strings.EqualFold(form, "JSON"):
		return l, &DecodeError{ReasonUnsupported, fmt.Errorf("load header: the %s form is not supported (use TEXT)", form)}
	default:
		return l, malformedLoad("it does not start with TEXT")
	}
	haveSeq := false
	for more := true; more; {
		var pair string
		pair, rest, more = strings.Cut(rest, ",")
		key, val, ok := strings.Cut(trimSpace(pair), "=")
		key, val = trimSpace(key), trimSpace(val)
		if !ok || key == "" || val == "" {
			return l, malformedLoad("a pair is not key=value")
		}
		if !validKey(key) || !plainNumber(val) {
			return l, malformedLoad("a key or value has characters it may not have")
		}
		if key == keySeq {
			if haveSeq {
				return l, malformedLoad(keySeq + " appears twice")
			}
			seq, err := strconv.ParseUint(val, 10, 64)
			if err != nil {
				return l, invalidLoad(keySeq + " is not a whole number")
			}
			l.Seq, haveSeq = seq, true
			continue
		}
		field, dst, limit := l.field(key)
		if field == 0 {
			continue // another party's metric
		}
		if l.Has&field != 0 {
			return l, malformedLoad(key + " appears twice")
		}
		f, err := strconv.ParseFloat(val, 64)
		if err != nil {
			return l, invalidLoad(key + " is not a number in range")
		}
		if err := checkRange(key, f, limit); err != nil {
			return l, &DecodeError{ReasonInvalid, fmt.Errorf("load header: %w", err)}
		}
		*dst = f
		l.Has |= field
	}
	if !haveSeq {
		return l, invalidLoad(keySeq + " is missing")
	}
	return l, nil
}

// field is the field of l that key fills, with its upper limit; 0 for a
// key that is not ours.
func (l *Load) field(key string) (LoadFields, *float64, float64) {
	switch key {
	case keyCPU:
		return HasCPU, &l.CPU, 1
	case keyMemory:
		return HasMemory, &l.Memory, 1
	case keyRequests:
		return HasRequests, &l.RequestsPerSecond, maxRate
	case keyStreams:
		return HasStreams, &l.Streams, maxRate
	case keyResponseTime:
		return HasResponseTime, &l.ResponseTimeSeconds, maxSeconds
	case keyEgress:
		return HasEgress, &l.EgressBytesPerSecond, maxBytesPerSec
	case keySent:
		return HasSent, &l.SentBytesPerSecond, maxBytesPerSec
	case keyLink:
		return HasLink, &l.LinkUtilisation, 1
	case keyStreamBytes:
		return HasStreamBytes, &l.StreamBytesPerSecond, maxBytesPerSec
	}
	return 0, nil, 0
}

func malformedLoad(why string) error {
	return &DecodeError{ReasonMalformed, errors.New("malformed load header: " + why)}
}

func invalidLoad(why string) error {
	return &DecodeError{ReasonInvalid, errors.New("invalid load header: " + why)}
}

// trimSpace trims the optional whitespace of HTTP (spaces and tabs).
func trimSpace(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// Character classes of the TEXT form, by byte.
const (
	keyByte    = 1 << iota // ORCA's keys: letters, digits, '_', '-', and the '.' of named_metrics.name
	numberByte             // plain decimal numbers: digits, point, exponent, signs
)

var textBytes = func() (t [256]uint8) {
	for c := range 256 {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', c == '_':
			t[c] = keyByte
		case c == '-', c == '.':
			t[c] = keyByte | numberByte
		case '0' <= c && c <= '9':
			t[c] = keyByte | numberByte
		case c == '+':
			t[c] = numberByte
		}
	}
	t['e'] |= numberByte
	t['E'] |= numberByte
	return t
}()

func allOf(s string, class uint8) bool {
	for i := 0; i < len(s); i++ {
		if textBytes[s[i]]&class == 0 {
			return false
		}
	}
	return true
}

// validKey: ORCA's keys are letters, digits, '_', '-' and the '.' of
// named_metrics.name.
func validKey(s string) bool { return allOf(s, keyByte) }

// plainNumber: decimal digits, a point, an exponent, signs. It keeps out
// what strconv.ParseFloat would take besides: NaN, Inf, hex, underscores.
func plainNumber(s string) bool { return allOf(s, numberByte) }

// Apply is rep with the figures of l it carries (utilisations as percent).
func (l *Load) Apply(rep Report) Report {
	if l.Has&HasCPU != 0 {
		rep.CPUPercent = 100 * l.CPU
	}
	if l.Has&HasMemory != 0 {
		rep.MemoryPercent = 100 * l.Memory
	}
	if l.Has&HasRequests != 0 {
		rep.RequestsPerSecond = l.RequestsPerSecond
	}
	if l.Has&HasStreams != 0 {
		rep.Streams = l.Streams
	}
	if l.Has&HasResponseTime != 0 {
		rep.ResponseTimeSeconds = l.ResponseTimeSeconds
	}
	if l.Has&HasEgress != 0 {
		rep.EgressBytesPerSecond = l.EgressBytesPerSecond
	}
	if l.Has&HasSent != 0 {
		rep.SentBytesPerSecond = l.SentBytesPerSecond
	}
	if l.Has&HasLink != 0 {
		rep.LinkUtilisation = l.LinkUtilisation
	}
	if l.Has&HasStreamBytes != 0 {
		rep.StreamBytesPerSecond = l.StreamBytesPerSecond
	}
	return rep
}
