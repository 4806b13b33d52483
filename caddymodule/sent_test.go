package caddymodule

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// TestTransportCountsSentBytes: every body byte the transport reads from
// an edge counts against that edge's link, resumable responses and others
// alike; a protocol switch keeps its body as Caddy needs it.
func TestTransportCountsSentBytes(t *testing.T) {
	body := strings.Repeat("x", 100000)
	var sent atomic.Uint64

	plain := &http.Response{StatusCode: http.StatusOK, Body: io.NopCloser(strings.NewReader(body))}
	plain.Body = countBody(plain, &sent)
	if n, err := io.Copy(io.Discard, plain.Body); err != nil || n != int64(len(body)) {
		t.Fatalf("read %d, %v", n, err)
	}
	if got := sent.Load(); got != uint64(len(body)) {
		t.Fatalf("counted %d bytes of a plain response, want %d", got, len(body))
	}

	rb := &resumingBody{body: io.NopCloser(strings.NewReader(body)), span: span{first: 0, last: int64(len(body)) - 1},
		req: httptest.NewRequest(http.MethodGet, "/", nil), sent: &sent}
	if n, err := io.Copy(io.Discard, rb); err != nil || n != int64(len(body)) {
		t.Fatalf("read %d, %v", n, err)
	}
	if got := sent.Load(); got != 2*uint64(len(body)) {
		t.Fatalf("counted %d bytes after a resumable response, want %d", got, 2*len(body))
	}

	switching := &http.Response{StatusCode: http.StatusSwitchingProtocols, Body: readWriteCloser{strings.NewReader("")}}
	if b := countBody(switching, &sent); b != switching.Body {
		t.Fatal("a protocol switch's body was wrapped: Caddy needs it as an io.ReadWriteCloser")
	}
	if b := countBody(plain, nil); b != plain.Body {
		t.Fatal("an untracked edge's body was wrapped")
	}
}

type readWriteCloser struct{ io.Reader }

func (readWriteCloser) Write(p []byte) (int, error) { return len(p), nil }
func (readWriteCloser) Close() error                { return nil }
