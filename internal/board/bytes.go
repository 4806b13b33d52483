package board

import (
	"sync/atomic"
	"time"

	"github.com/edgetier/edgetier/internal/rank"
)

// sentBytes counts what the proxy sent viewers from an upstream (response
// body bytes read through the edgetier transport) and where the count
// stood at the upstream's latest report, so that the report's link
// utilisation is corrected by what was sent since (rank.LinkAt).
type sentBytes struct {
	total atomic.Uint64
	mark  atomic.Pointer[sentMark]
	full  atomic.Bool // without headroom at the last judgement
	// overSince is since when its utilisation has been over the limit
	// (unix nanoseconds; 0: not over), for fullConfirm.
	overSince atomic.Int64
}

// fullConfirm is how long a link must stay over the limit before it is
// full: viewers' chunks fill a link for a moment now and then, and moving
// its new viewers at each such moment herds them onto the next link,
// which fills, and back when this one drains.
const fullConfirm = time.Second

// judgeFull reports whether the link is full at now, given whether its
// utilisation is over the limit: over for fullConfirm, or full and not
// yet back under the limit less its band.
func (s *sentBytes) judgeFull(over bool, now int64) bool {
	if !over {
		s.overSince.Store(0)
		s.full.Store(false)
		return false
	}
	since := s.overSince.Load()
	if since == 0 {
		s.overSince.Store(now)
		since = now
	}
	full := s.full.Load() || now-since >= int64(fullConfirm)
	s.full.Store(full)
	return full
}

// sentMark is the count at a report.
type sentMark struct {
	seq      uint64
	bytes    uint64
	at       int64   // unix nanoseconds: the view's ReceivedAt
	rateThen float64 // bytes per second between the previous mark and this one
}

// Link is an upstream's link as the board sees it.
type Link struct {
	// Capacity is the link's, bytes per second, as its agent reports it;
	// 0 for unknown (and then there is no utilisation).
	Capacity float64
	// Utilisation is the reported one corrected by what the proxy sent
	// since the report, 0–1.
	Utilisation float64
	// Headroom: the utilisation is not above the pool's link_headroom, or
	// not for long enough to be full (fullConfirm).
	Headroom bool
	over     bool // the utilisation is above the limit (rank.Headroom)
}

// SentCounter is the counter of response body bytes the proxy reads from
// upstream dial; nil for an upstream the board does not track. Adding to
// it is all a response's reads cost.
func (b *Board) SentCounter(dial string) *atomic.Uint64 {
	if e := b.edge(dial); e != nil {
		return &e.sent.total
	}
	return nil
}

// markSent notes the sent count at v's report, once per sample.
func (e *Edge) markSent(v *rank.View) {
	if v == nil || v.ReceivedAt == 0 {
		return
	}
	prev := e.sent.mark.Load()
	if prev != nil && prev.seq == v.Report.Seq && v.Report.Seq != 0 {
		return
	}
	m := &sentMark{seq: v.Report.Seq, bytes: e.sent.total.Load(), at: v.ReceivedAt}
	if prev != nil && m.at > prev.at && m.bytes >= prev.bytes {
		// Over an agent's interval at least, as rank.LinkAt takes the rate since.
		window := max(time.Duration(m.at-prev.at), time.Duration(v.Report.IntervalSeconds*float64(time.Second)), time.Second)
		m.rateThen = float64(m.bytes-prev.bytes) / window.Seconds()
	}
	e.sent.mark.Store(m)
}

// link is the upstream's link at now (unix nanoseconds) with view v, for
// a pool whose link_headroom is limit. Without a link capacity it has
// headroom.
func (e *Edge) link(v *rank.View, now int64, limit float64) Link {
	if v == nil || v.ReceivedAt == 0 {
		return Link{Headroom: true}
	}
	l := Link{Capacity: rank.LinkCapacity(&v.Report)}
	var sent rank.Sent
	if m := e.sent.mark.Load(); m != nil {
		// now may be the board's clock, a tick behind the report's receipt.
		sent = rank.Sent{Bytes: e.sent.total.Load() - m.bytes, RateThen: m.rateThen, Elapsed: time.Duration(max(now-m.at, 0))}
	}
	l.Utilisation = rank.LinkAt(v, sent)
	l.over = !rank.Headroom(l.Utilisation, limit, e.sent.full.Load())
	// Full as the plans last judged it (full), and over still.
	l.Headroom = !l.over || !e.sent.full.Load()
	return l
}

// full reports whether the upstream, trusted and fresh at now with view v,
// has no link headroom (the plan leaves it out while another has room),
// and its corrected link utilisation (0 when unknown or not fresh).
func (e *Edge) full(v *rank.View, now int64, cfg *Config) (bool, float64) {
	if v.Code(now, int64(cfg.Scoring.StaleAfter)) != rank.CodeTrusted {
		// A full link stays full until a fresh report says otherwise: an
		// agent whose polls time out behind it must not turn it into an
		// upstream of average load with nothing in flight.
		return e.sent.full.Load(), 0
	}
	l := e.link(v, now, cfg.Headroom)
	return e.sent.judgeFull(l.over, now), l.Utilisation
}
