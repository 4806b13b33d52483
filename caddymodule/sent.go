package caddymodule

import (
	"io"
	"net/http"
	"sync/atomic"
)

// countBody is resp's body counting the bytes read from it into sent (the
// edge's board.SentCounter), so the board corrects the edge's reported
// link utilisation by what this balancer sent since. A body that is not
// read through (a protocol switch, which Caddy needs as it is), or an
// untracked edge's, is left as it is.
func countBody(resp *http.Response, sent *atomic.Uint64) io.ReadCloser {
	if sent == nil || resp.StatusCode == http.StatusSwitchingProtocols || resp.Body == nil || resp.Body == http.NoBody {
		return resp.Body
	}
	return &countingBody{ReadCloser: resp.Body, sent: sent}
}

// countingBody counts what is read from a response body.
type countingBody struct {
	io.ReadCloser
	sent *atomic.Uint64
}

func (c *countingBody) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	countSent(c.sent, n)
	return n, err
}

// countSent adds n bytes read to sent, if it is tracked.
func countSent(sent *atomic.Uint64, n int) {
	if sent != nil && n > 0 {
		sent.Add(uint64(n))
	}
}
