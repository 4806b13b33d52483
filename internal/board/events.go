package board

import (
	"fmt"
	"sync"
	"time"
)

// Event is something an operator wants to see happen: an upstream
// changing tier, going stale or down, draining, coming back.
type Event struct {
	Seq      uint64    `json:"seq"`
	Time     time.Time `json:"time"`
	Upstream string    `json:"upstream"`
	Kind     string    `json:"kind"` // tier, stale, down, up, state, slow, failure, resume, eject, return, ramp
	Message  string    `json:"message"`
}

// eventLog keeps the latest events of a board.
type eventLog struct {
	mu   sync.Mutex
	ring []Event
	next int
	seq  uint64
}

// eventLogSize bounds the memory of the events: a flapping edge must not
// grow it; the dashboard shows the latest framedEvents.
const eventLogSize = 200

// AddEvent records an event about upstream.
func (b *Board) AddEvent(upstream, kind, format string, args ...any) {
	l := &b.events
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seq++
	ev := Event{Seq: l.seq, Time: time.Now().UTC(), Upstream: upstream, Kind: kind, Message: fmt.Sprintf(format, args...)}
	if len(l.ring) < eventLogSize {
		l.ring = append(l.ring, ev)
		return
	}
	l.ring[l.next] = ev
	l.next = (l.next + 1) % eventLogSize
}

// Events returns the events after seq, oldest first.
func (b *Board) Events(seq uint64) []Event {
	l := &b.events
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Event
	for i := range l.ring {
		ev := l.ring[(l.next+i)%len(l.ring)]
		if ev.Seq > seq {
			out = append(out, ev)
		}
	}
	return out
}
