package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
)

// Errors and retries. The edgetier transport tells the board how each try
// went: a success (status below 500) counts toward the edge's latency, an
// error (500 and above, or a transport error before the first byte) toward
// its ejection, never as a fast answer.
//
// Caddy's reverse_proxy retries a try that failed with a transport error
// (tryAgain): a dial error always, another error when the request is a
// GET (or matches lb_retry_match), while lb_retries and lb_try_duration
// allow. It does not retry an answer by its status unless lb_retry_match
// has an expression over {rp.status_code}. So the transport turns an
// edge's 5xx answer to a GET or HEAD that Caddy would retry into such an
// error, closing the body, unless this try is the last one permitted: the
// request goes to another edge, and only the last try's answer, whatever
// it is, reaches the viewer. And a retry does not go back to an edge that
// already failed the request (Envoy's previous_hosts retry predicate):
// the policy's Select leaves those out while another can serve.

// errRetryStatus is the error a retried 5xx answer becomes.
var errRetryStatus = errors.New("edge answered with a server error")

// triesVar is the request variable that holds its failed tries across
// Caddy's retries.
const triesVar = "edgetier.tries"

// tries is what the transport knows of one request's failed tries.
type tries struct {
	first  time.Time // the first try started
	failed []string  // the edges that failed it, by dial address
}

// failing counts the requests that failed a try, from the first until the
// request's context is done (it was served, or its client went away: a try
// after that fails at once, wherever it goes). While there is none, no
// request has tries to look up: the lookup, through the request's context
// and its variables, costs more than the rest of a choice (Select).
var failing atomic.Int64

// requestTries is r's failed tries so far, nil for none.
func requestTries(r *http.Request) *tries {
	if r == nil {
		return nil
	}
	t, _ := caddyhttp.GetVar(r.Context(), triesVar).(*tries)
	return t
}

// failedBy reports whether the edge at dial failed one of the request's tries.
func (t *tries) failedBy(dial string) bool {
	return t != nil && slices.Contains(t.failed, dial)
}

// noteFailure records that the edge at dial failed the try of req that
// started at start, and returns the request's tries.
func noteFailure(req *http.Request, dial string, start time.Time) *tries {
	t := requestTries(req)
	if t == nil {
		t = &tries{first: start}
		failing.Add(1)
		context.AfterFunc(req.Context(), func() { failing.Add(-1) })
		caddyhttp.SetVar(req.Context(), triesVar, t)
	}
	t.failed = append(t.failed, dial)
	return t
}

// answered records how the try of req to the edge at dial went (resp, or
// err before the first byte; sent at start with inflight of ours in flight
// to the edge) and returns what Caddy is to see: a 5xx answer that Caddy
// would retry, on a try that is not the last, becomes an error.
func (t *ResumeTransport) answered(req *http.Request, dial string, resp *http.Response, err error, start time.Time, inflight int) (*http.Response, error) {
	if err != nil && (errors.Is(err, context.Canceled) || req.Context().Err() != nil) {
		return resp, err // the viewer went away: not the edge's error
	}
	status := 0
	if err == nil {
		status = resp.StatusCode
	}
	t.board.ObserveAnswer(dial, status, time.Since(start), inflight)
	if err == nil && status < 500 {
		return resp, nil
	}
	tr := noteFailure(req, dial, start)
	if err != nil || !t.retried(req, tr) {
		return resp, err
	}
	_ = resp.Body.Close()
	return nil, fmt.Errorf("%w: %s answered %s; trying another", errRetryStatus, dial, resp.Status)
}

// retried reports whether Caddy would try req again after a failure that
// is not a dial error, this try being its len(tr.failed)th: the check of
// reverseproxy's tryAgain, for GET and HEAD only (safe to send again).
func (t *ResumeTransport) retried(req *http.Request, tr *tries) bool {
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		return false
	}
	var lb *reverseproxy.LoadBalancing
	if t.handler != nil {
		lb = t.handler.LoadBalancing
	}
	switch {
	case lb == nil || (lb.Retries == 0 && lb.TryDuration == 0):
		return false
	case lb.Retries > 0 && len(tr.failed) > lb.Retries:
		return false // the last try permitted
	case lb.TryDuration > 0 && time.Since(tr.first)+tryMargin >= time.Duration(lb.TryDuration):
		return false // no time left for another
	case lb.RetryMatch == nil:
		return req.Method == http.MethodGet
	}
	match, err := lb.RetryMatch.AnyMatchWithError(req)
	return err == nil && match
}

// tryMargin is how much before lb_try_duration ends a try counts as the
// last: Caddy's clock started a little before the first try.
const tryMargin = 50 * time.Millisecond

// handlerOf is the reverse_proxy handler among the modules being
// provisioned (the transport's parent), nil for none.
func handlerOf(mods []caddy.Module) *reverseproxy.Handler {
	for i := len(mods) - 1; i >= 0; i-- {
		if h, ok := mods[i].(*reverseproxy.Handler); ok {
			return h
		}
	}
	return nil
}
