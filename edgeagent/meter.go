package edgeagent

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// Counters are the cumulative request figures of an edge. Rates are the
// differences between two snapshots divided by the time between them.
type Counters struct {
	Requests   uint64  // requests started
	InFlight   int64   // requests not yet finished
	TTFBSum    float64 // seconds to first byte, summed over TTFBCount requests
	TTFBCount  uint64
	BytesSent  uint64 // response body bytes written
	ObservedAt time.Time
}

// CounterSource yields cumulative request counters: a Meter for the edge
// it sits in, or the edge's Prometheus endpoint for the standalone agent.
type CounterSource interface {
	Counters() (Counters, error)
}

// Meter counts the requests passing through it exactly. It is safe for
// concurrent use and allocation-free apart from the writer wrapper.
type Meter struct {
	requests  atomic.Uint64
	inFlight  atomic.Int64
	ttfbNanos atomic.Uint64
	ttfbCount atomic.Uint64
	bytesSent atomic.Uint64
}

// Counters returns a snapshot of the meter.
func (m *Meter) Counters() (Counters, error) {
	return Counters{
		Requests:   m.requests.Load(),
		InFlight:   m.inFlight.Load(),
		TTFBSum:    float64(m.ttfbNanos.Load()) / 1e9,
		TTFBCount:  m.ttfbCount.Load(),
		BytesSent:  m.bytesSent.Load(),
		ObservedAt: time.Now(),
	}, nil
}

// InFlight returns the number of requests in flight now.
func (m *Meter) InFlight() int64 { return m.inFlight.Load() }

// Serve runs next with w wrapped so the meter sees the first byte and every
// body byte. The request counts as in flight until next returns, which for
// a file server is when the body is fully sent or the client went away.
func (m *Meter) Serve(w http.ResponseWriter, r *http.Request, next func(http.ResponseWriter, *http.Request) error) error {
	m.requests.Add(1)
	m.inFlight.Add(1)
	defer m.inFlight.Add(-1)
	mw := &meteredWriter{ResponseWriter: w, meter: m, start: time.Now()}
	err := next(mw, r)
	m.bytesSent.Add(mw.bytes)
	return err
}

// meteredWriter records the time to first byte (when the header is written)
// and counts body bytes. It unwraps for http.ResponseController and keeps
// the sendfile path through ReadFrom.
type meteredWriter struct {
	http.ResponseWriter
	meter       *Meter
	start       time.Time
	wroteHeader bool
	bytes       uint64
}

func (w *meteredWriter) markFirstByte() {
	if w.wroteHeader {
		return
	}
	w.wroteHeader = true
	w.meter.ttfbNanos.Add(uint64(time.Since(w.start)))
	w.meter.ttfbCount.Add(1)
}

func (w *meteredWriter) WriteHeader(status int) {
	// 1xx responses are interim; the final header is still to come.
	if status >= 200 {
		w.markFirstByte()
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *meteredWriter) Write(p []byte) (int, error) {
	w.markFirstByte()
	n, err := w.ResponseWriter.Write(p)
	w.bytes += uint64(n)
	return n, err
}

func (w *meteredWriter) ReadFrom(r io.Reader) (int64, error) {
	w.markFirstByte()
	var n int64
	var err error
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(r)
	} else {
		n, err = io.Copy(w.ResponseWriter, r)
	}
	w.bytes += uint64(n)
	return n, err
}

func (w *meteredWriter) Flush() {
	w.markFirstByte()
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *meteredWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

func (w *meteredWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
