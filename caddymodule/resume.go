package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/headers"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"go.uber.org/zap"

	"github.com/edgetier/edgetier/edgeagent"
	"github.com/edgetier/edgetier/internal/board"
)

func init() {
	caddy.RegisterModule(ResumeTransport{})
}

// ResumeTransport is a reverse_proxy transport that finishes a response
// from another edge when the serving edge fails in the middle of the body.
//
// It wraps Caddy's HTTP transport rather than the handler: once the body
// has started, Caddy's proxy neither retries nor counts the failure, and
// aborts the client. Here the failure surfaces as a read error of the
// upstream body, before Caddy sees it: the transport asks another edge
// (chosen by the pool's tiered board, excluding the failed ones) for the
// rest, "Range: bytes=<next>-<last>" with If-Range set to the validator,
// checks that the answer is a 206 for exactly that range of the same
// representation, and keeps feeding Caddy's copy loop. Caddy and the
// client see one complete body. If no edge can continue with the same
// representation within the budget, the read error goes through and Caddy
// aborts the client connection as it would have: never a clean short body,
// never bytes of two versions.
//
// Every mid-body failure is remembered against the edge in the board.
type ResumeTransport struct {
	// Pool names the tiered board to choose edges from (default "default").
	Pool string `json:"pool,omitempty"`
	// MaxResumes per response (default 2); 0 turns resuming off (failures
	// are still remembered).
	MaxResumes *int `json:"max_resumes,omitempty"`
	// Budget is the time all resumes of one response may take (default 10s).
	Budget caddy.Duration `json:"budget,omitempty"`
	// StripLoadHeader removes the edges' load header (Endpoint-Load-Metrics,
	// which the transport reads into the board) from the responses before
	// the viewer sees them. Default true; false keeps it, for debugging.
	StripLoadHeader *bool `json:"strip_load_header,omitempty"`
	// HTTP is Caddy's HTTP transport that does the requests.
	HTTP *reverseproxy.HTTPTransport `json:"http,omitempty"`

	board  *board.Board
	logger *zap.Logger

	handler *reverseproxy.Handler // the parent, for its retries (retry.go)
}

// CaddyModule returns the Caddy module information.
func (ResumeTransport) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.reverse_proxy.transport.edgetier",
		New: func() caddy.Module { return new(ResumeTransport) },
	}
}

// Provision sets defaults, provisions the HTTP transport and acquires the board.
func (t *ResumeTransport) Provision(ctx caddy.Context) error {
	if t.Pool == "" {
		t.Pool = "default"
	}
	if t.MaxResumes == nil {
		n := 2
		t.MaxResumes = &n
	}
	if t.Budget == 0 {
		t.Budget = caddy.Duration(10 * time.Second)
	}
	if t.StripLoadHeader == nil {
		on := true
		t.StripLoadHeader = &on
	}
	if *t.MaxResumes < 0 || *t.MaxResumes > 10 {
		return fmt.Errorf("edgetier transport: max_resumes: %d is not between 0 and 10", *t.MaxResumes)
	}
	if t.HTTP == nil {
		t.HTTP = new(reverseproxy.HTTPTransport)
	}
	if err := t.HTTP.Provision(ctx); err != nil {
		return fmt.Errorf("edgetier transport: %w", err)
	}
	t.logger = ctx.Logger()
	b, err := acquireBoard(t.Pool, t.logger)
	if err != nil {
		return fmt.Errorf("edgetier transport: %w", err)
	}
	t.board = b
	t.handler = handlerOf(ctx.Modules())
	inspectWhenRunning(ctx, t)
	return nil
}

// Cleanup releases the board and the HTTP transport.
func (t *ResumeTransport) Cleanup() error {
	var err error
	if t.HTTP != nil {
		err = t.HTTP.Cleanup()
	}
	if t.board != nil {
		derr := releaseBoard(t.Pool)
		err = errors.Join(err, derr)
	}
	return err
}

// RoundTrip does the request, takes the edge's load from the response
// and, for a response that can be resumed, watches its body.
func (t *ResumeTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	start := time.Now()
	inflight := 1
	di, hasDial := reverseproxy.GetDialInfo(req.Context())
	counted := hasDial && di.Upstream != nil && di.Upstream.Host != nil
	if counted {
		inflight = di.Upstream.NumRequests() // this one included
	}
	resp, err := t.HTTP.RoundTrip(req)
	dial := req.URL.Host
	if hasDial {
		dial = di.Address
	}
	resp, err = t.answered(req, dial, resp, err, start, inflight)
	if err != nil {
		return resp, err
	}
	if counted {
		inflight = di.Upstream.NumRequests() // as the response arrived
	}
	t.takeLoad(dial, resp, inflight)
	sent := t.board.SentCounter(dial)
	span, ok := resumableSpan(resp)
	if req.Method != http.MethodGet || !ok {
		resp.Body = countBody(resp, sent)
		return resp, nil
	}
	resp.Body = &resumingBody{t: t, req: req, body: resp.Body, dial: dial, span: span, tried: []string{dial}, sent: sent}
	return resp, nil
}

// takeLoad hands the load an edge stamped on resp to the board and, unless
// configured otherwise, removes it: viewers have no use for the edges'
// load, and it is not theirs to see.
func (t *ResumeTransport) takeLoad(dial string, resp *http.Response, inflight int) {
	values, ok := resp.Header[edgeagent.LoadHeader]
	if !ok {
		return
	}
	t.board.InBand(dial, values, inflight)
	if *t.StripLoadHeader {
		delete(resp.Header, edgeagent.LoadHeader)
	}
}

// span is the byte range a response carries and how to ask for more of
// the same representation.
type span struct {
	first, last int64  // inclusive
	validator   string // strong ETag, else Last-Modified
	etag        string
}

// resumableSpan says whether resp is a static file's body that another
// edge can continue: a single range of known length, a validator, bytes
// ranges accepted.
func resumableSpan(resp *http.Response) (span, bool) {
	var s span
	etag := resp.Header.Get("ETag")
	switch {
	case etag != "" && !strings.HasPrefix(etag, "W/"):
		s.validator, s.etag = etag, etag
	case resp.Header.Get("Last-Modified") != "":
		s.validator = resp.Header.Get("Last-Modified")
	default:
		return s, false
	}
	switch resp.StatusCode {
	case http.StatusOK:
		if resp.ContentLength <= 0 || resp.Header.Get("Accept-Ranges") != "bytes" || resp.Header.Get("Content-Encoding") != "" {
			return s, false
		}
		s.first, s.last = 0, resp.ContentLength-1
		return s, true
	case http.StatusPartialContent:
		first, last, _, ok := parseContentRange(resp.Header.Get("Content-Range"))
		if !ok || resp.Header.Get("Content-Encoding") != "" {
			return s, false // multipart/byteranges or garbage
		}
		s.first, s.last = first, last
		return s, true
	}
	return s, false
}

// parseContentRange parses "bytes first-last/total" (total may be *).
func parseContentRange(v string) (first, last, total int64, ok bool) {
	rest, found := strings.CutPrefix(v, "bytes ")
	if !found {
		return 0, 0, 0, false
	}
	rng, tot, found := strings.Cut(rest, "/")
	if !found {
		return 0, 0, 0, false
	}
	a, b, found := strings.Cut(rng, "-")
	if !found {
		return 0, 0, 0, false
	}
	first, err1 := strconv.ParseInt(a, 10, 64)
	last, err2 := strconv.ParseInt(b, 10, 64)
	total = -1
	if tot != "*" {
		var err error
		if total, err = strconv.ParseInt(tot, 10, 64); err != nil {
			return 0, 0, 0, false
		}
	}
	if err1 != nil || err2 != nil || first < 0 || last < first || (total >= 0 && last >= total) {
		return 0, 0, 0, false
	}
	return first, last, total, true
}

// resumingBody feeds Caddy the upstream body, swapping in another edge's
// continuation when a read fails.
type resumingBody struct {
	t       *ResumeTransport
	req     *http.Request
	body    io.ReadCloser
	dial    string
	span    span
	read    int64 // bytes delivered so far
	resumes int
	started time.Time
	tried   []string
	closed  atomic.Bool
	sent    *atomic.Uint64 // the serving edge's (board.SentCounter); nil: untracked
}

func (b *resumingBody) Read(p []byte) (int, error) {
	for {
		n, err := b.body.Read(p)
		b.read += int64(n)
		countSent(b.sent, n)
		if err == nil || errors.Is(err, io.EOF) {
			if errors.Is(err, io.EOF) && b.span.first+b.read <= b.span.last {
				// A clean end before the promised length is a failure too.
				err = io.ErrUnexpectedEOF
			} else {
				return n, err
			}
		}
		if b.closed.Load() || b.req.Context().Err() != nil {
			return n, err // the client went away: nothing to resume for
		}
		b.t.board.MarkFailed(b.dial, err)
		next, ok := b.resume(err)
		if !ok {
			return n, err
		}
		_ = b.body.Close()
		b.body = next
		if n > 0 {
			return n, nil
		}
	}
}

// resume finds another edge that continues the same representation.
func (b *resumingBody) resume(cause error) (io.ReadCloser, bool) {
	t := b.t
	if *t.MaxResumes == 0 {
		t.board.CountResume(board.ResumeOff)
		return nil, false
	}
	if b.started.IsZero() {
		b.started = time.Now()
	}
	budget := time.Duration(t.Budget) - time.Since(b.started)
	if b.resumes >= *t.MaxResumes || budget <= 0 {
		t.board.CountResume(board.ResumeLimit)
		t.board.AddEvent(b.dial, "failure", "failed after %d bytes; no resume left for this response", b.read)
		return nil, false
	}
	deadline := time.Now().Add(budget)
	outcome := board.ResumeNoEdge
	for time.Now().Before(deadline) && b.req.Context().Err() == nil {
		u, _ := t.board.Pick(b.tried).(*reverseproxy.Upstream)
		if u == nil || u.Host == nil {
			break
		}
		b.tried = append(b.tried, u.Dial)
		body, result := b.fetchRest(u, time.Until(deadline))
		if result == board.ResumeOK {
			b.resumes++
			t.board.CountResume(board.ResumeOK)
			t.board.AddEvent(b.dial, "resume", "failed after %d bytes (%v); %s continues the response", b.read, cause, u.Dial)
			t.logger.Info("resumed a response on another edge", zap.String("failed", b.dial), zap.String("upstream", u.Dial),
				zap.Int64("offset", b.span.first+b.read), zap.Error(cause))
			b.dial, b.sent = u.Dial, t.board.SentCounter(u.Dial)
			return body, true
		}
		outcome = result
	}
	t.board.CountResume(outcome)
	t.board.AddEvent(b.dial, "failure", "failed after %d bytes (%v); no edge could continue (%s)", b.read, cause, outcome)
	return nil, false
}

// fetchRest asks upstream u for the rest of the span and checks the answer.
// The budget bounds the wait for the answer's header; the body then
// streams for as long as the client reads.
func (b *resumingBody) fetchRest(u *reverseproxy.Upstream, budget time.Duration) (io.ReadCloser, board.Outcome) {
	from := b.span.first + b.read
	ctx, cancel := context.WithCancel(b.req.Context())
	timer := time.AfterFunc(budget, cancel)
	req := b.req.Clone(ctx)
	req.Body, req.ContentLength, req.GetBody = http.NoBody, 0, nil
	req.URL = cloneURL(b.req.URL)
	req.URL.Host = u.Dial
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", from, b.span.last))
	req.Header.Set("If-Range", b.span.validator)
	req.Header.Del("If-None-Match")
	req.Header.Del("If-Modified-Since")
	addr, err := caddy.ParseNetworkAddress(u.Dial)
	if err != nil {
		return nil, board.ResumeFailed
	}
	// Caddy's HTTP transport dials the address in the request's dial info.
	di := reverseproxy.DialInfo{Upstream: u, Network: addr.Network, Address: addr.JoinHostPort(0), Host: addr.Host, Port: strconv.Itoa(int(addr.StartPort))}
	req = req.WithContext(context.WithValue(req.Context(), caddy.CtxKey("reverse_proxy.dial_info"), di))
	resp, err := b.t.HTTP.RoundTrip(req)
	if err == nil {
		// Caddy does not count this request in flight on u: add it.
		b.t.takeLoad(u.Dial, resp, u.NumRequests()+1)
	}
	if err != nil || !timer.Stop() {
		cancel()
		if err == nil {
			_ = resp.Body.Close()
			return nil, board.ResumeFailed
		}
		b.t.board.MarkFailed(u.Dial, err)
		return nil, board.ResumeFailed
	}
	first, last, _, ok := parseContentRange(resp.Header.Get("Content-Range"))
	same := resp.StatusCode == http.StatusPartialContent && ok && first == from && last == b.span.last &&
		(b.span.etag == "" || resp.Header.Get("ETag") == b.span.etag)
	if !same {
		// A 200 means If-Range failed: another representation.
		_ = resp.Body.Close()
		cancel()
		return nil, board.ResumeMismatch
	}
	return &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}, board.ResumeOK
}

// cancelOnClose ends a resumed request's context with its body.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}

func cloneURL(u *url.URL) *url.URL {
	c := *u
	return &c
}

func (b *resumingBody) Close() error {
	b.closed.Store(true)
	return b.body.Close()
}

// TLSEnabled, EnableTLS, EnableH2C, OverrideHealthCheckScheme,
// ProxyProtocolEnabled and RequestHeaderOps delegate to the HTTP
// transport, so upstream schemes, health checks, the PROXY protocol and
// the Host header sent to HTTPS upstreams work as with it.

// RequestHeaderOps implements reverseproxy.RequestHeaderOpsTransport: with
// TLS to the upstreams, Caddy's HTTP transport sends the upstream's
// host:port as Host, not the client's.
func (t *ResumeTransport) RequestHeaderOps() *headers.HeaderOps {
	if t.HTTP == nil {
		return nil
	}
	return t.HTTP.RequestHeaderOps()
}

// TLSEnabled implements reverseproxy.TLSTransport.
func (t *ResumeTransport) TLSEnabled() bool { return t.HTTP != nil && t.HTTP.TLSEnabled() }

// EnableTLS implements reverseproxy.TLSTransport.
func (t *ResumeTransport) EnableTLS(base *reverseproxy.TLSConfig) error {
	if t.HTTP == nil {
		t.HTTP = new(reverseproxy.HTTPTransport)
	}
	return t.HTTP.EnableTLS(base)
}

// EnableH2C implements reverseproxy.H2CTransport.
func (t *ResumeTransport) EnableH2C() error {
	if t.HTTP == nil {
		t.HTTP = new(reverseproxy.HTTPTransport)
	}
	return t.HTTP.EnableH2C()
}

// OverrideHealthCheckScheme implements reverseproxy.HealthCheckSchemeOverriderTransport.
func (t *ResumeTransport) OverrideHealthCheckScheme(base *url.URL, port string) {
	if t.HTTP != nil {
		t.HTTP.OverrideHealthCheckScheme(base, port)
	}
}

// ProxyProtocolEnabled implements reverseproxy.ProxyProtocolTransport.
func (t *ResumeTransport) ProxyProtocolEnabled() bool {
	return t.HTTP != nil && t.HTTP.ProxyProtocolEnabled()
}

// UnmarshalCaddyfile sets up the transport from Caddyfile tokens. Syntax:
//
//	transport edgetier {
//	    pool        <name>
//	    resume      <max per response>|off
//	    resume_budget <duration>
//	    strip_load_header on|off
//	    http {
//	        <Caddy's http transport options>
//	    }
//	}
func (t *ResumeTransport) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	const dir = "transport edgetier"
	d.Next() // transport name
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := map[string]bool{}
	for d.NextBlock(0) {
		opt := d.Val()
		if seen[opt] {
			return d.Errf("%s: option '%s' given twice", dir, opt)
		}
		seen[opt] = true
		switch opt {
		case "pool":
			val, err := singleArg(d, dir)
			if err != nil {
				return err
			}
			t.Pool = val
		case "resume":
			val, err := singleArg(d, dir)
			if err != nil {
				return err
			}
			n := 0
			if val != "off" {
				if n, err = strconv.Atoi(val); err != nil || n < 1 || n > 10 {
					return d.Errf("%s: resume: %q is not off or a number of resumes between 1 and 10", dir, val)
				}
			}
			t.MaxResumes = &n
		case "resume_budget":
			val, err := singleArg(d, dir)
			if err != nil {
				return err
			}
			dur, err := caddy.ParseDuration(val)
			if err != nil || dur <= 0 {
				return d.Errf("%s: resume_budget: %q is not a positive duration", dir, val)
			}
			t.Budget = caddy.Duration(dur)
		case "strip_load_header":
			on, err := onOff(d, dir)
			if err != nil {
				return err
			}
			t.StripLoadHeader = &on
		case "http":
			t.HTTP = new(reverseproxy.HTTPTransport)
			if err := t.HTTP.UnmarshalCaddyfile(d.NewFromNextSegment()); err != nil {
				return err
			}
		default:
			return d.Errf("%s: unrecognized option '%s'", dir, opt)
		}
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner                                = (*ResumeTransport)(nil)
	_ caddy.CleanerUpper                               = (*ResumeTransport)(nil)
	_ http.RoundTripper                                = (*ResumeTransport)(nil)
	_ reverseproxy.TLSTransport                        = (*ResumeTransport)(nil)
	_ reverseproxy.H2CTransport                        = (*ResumeTransport)(nil)
	_ reverseproxy.HealthCheckSchemeOverriderTransport = (*ResumeTransport)(nil)
	_ reverseproxy.ProxyProtocolTransport              = (*ResumeTransport)(nil)
	_ reverseproxy.RequestHeaderOpsTransport           = (*ResumeTransport)(nil)
	_ caddyfile.Unmarshaler                            = (*ResumeTransport)(nil)
)
