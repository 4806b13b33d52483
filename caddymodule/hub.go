package caddymodule

import (
	"bufio"
	"context"
	"crypto/rand"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/zap"
)

// hub pushes one frame per interval to every WebSocket client. The frame
// is encoded once for all (a PreparedMessage). A client whose queue is
// full, whose write times out or who stops answering pings (echoing their
// random payload) is dropped, never waited for.
type hub struct {
	interval   time.Duration
	writeWait  time.Duration
	pongWait   time.Duration
	maxClients int
	queue      int
	build      func() []byte
	logger     *zap.Logger

	mu      sync.Mutex
	clients map[*wsClient]struct{}
	count   atomic.Int64
	joined  atomic.Int64 // clients ever joined, to deal out slots
	dropped atomic.Uint64
	latest  atomic.Pointer[[]byte]
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

type wsClient struct {
	conn *websocket.Conn
	send chan *websocket.PreparedMessage
	done chan struct{}
	once sync.Once
	slot int // when in a broadcast it gets its frame (see broadcastSlots)

	pingMu sync.Mutex
	pings  [2]string // payloads of the last two pings sent, latest first
}

// newPing makes the payload of the next ping: random, so that only a
// client that read the ping can echo it.
func (c *wsClient) newPing() []byte {
	var b [8]byte
	_, _ = rand.Read(b[:])
	c.pingMu.Lock()
	c.pings[1], c.pings[0] = c.pings[0], string(b[:])
	c.pingMu.Unlock()
	return b[:]
}

// answers reports whether a pong's payload echoes one of the last two
// pings (the previous one's pong may arrive after the next ping left).
func (c *wsClient) answers(payload string) bool {
	c.pingMu.Lock()
	defer c.pingMu.Unlock()
	return payload != "" && (payload == c.pings[0] || payload == c.pings[1])
}

func newHub(interval, writeWait, pongWait time.Duration, maxClients, queue int, build func() []byte, logger *zap.Logger) *hub {
	ctx, cancel := context.WithCancel(context.Background())
	h := &hub{interval: interval, writeWait: writeWait, pongWait: pongWait, maxClients: maxClients, queue: queue,
		build: build, logger: logger, clients: map[*wsClient]struct{}{}, ctx: ctx, cancel: cancel}
	// A first frame now, so joining clients never trigger an extra build
	// (which would skip a sequence number for the others).
	first := build()
	h.latest.Store(&first)
	h.wg.Add(1)
	go h.run()
	return h
}

// run builds and broadcasts a frame every interval until the hub stops.
func (h *hub) run() {
	defer h.wg.Done()
	defer recoverAndLog(h.logger, "dashboard hub")
	ticker := time.NewTicker(h.interval)
	defer ticker.Stop()
	for {
		select {
		case <-h.ctx.Done():
			return
		case <-ticker.C:
			h.broadcast(h.build())
		}
	}
}

// broadcastSlots and broadcastSpread pace a broadcast: a thousand
// clients written to at once are a burst of work that proxied requests
// queue behind (their p99 grew by a quarter on two cores); in slots over
// half a second it is a thin background. Each client keeps its slot, so
// its frames still come exactly one interval apart.
const (
	broadcastSlots  = 25
	broadcastSpread = 500 * time.Millisecond
)

func (h *hub) broadcast(frame []byte) {
	pm, err := websocket.NewPreparedMessage(websocket.TextMessage, frame)
	if err != nil {
		h.logger.Error("preparing dashboard frame", zap.Error(err))
		return
	}
	h.mu.Lock()
	// Stored under the lock with the snapshot of clients: a client joining
	// later takes this frame as its first, a client in the snapshot gets
	// it below; none misses it or gets it twice.
	h.latest.Store(&frame)
	var slots [broadcastSlots][]*wsClient
	for c := range h.clients {
		slots[c.slot] = append(slots[c.slot], c)
	}
	h.mu.Unlock()
	pause := min(h.interval/2, broadcastSpread) / broadcastSlots
	for i, slot := range slots {
		if i > 0 {
			select {
			case <-h.ctx.Done():
				return
			case <-time.After(pause):
			}
		}
		if len(slot) == 0 {
			continue
		}
		h.mu.Lock()
		for _, c := range slot {
			select {
			case c.send <- pm:
			default:
				h.dropLocked(c, "queue full")
			}
		}
		h.mu.Unlock()
	}
}

// latestFrame returns the last frame built (newHub builds the first).
func (h *hub) latestFrame() []byte { return *h.latest.Load() }

// full reports whether the hub has its maximum number of clients.
func (h *hub) full() bool { return h.count.Load() >= int64(h.maxClients) }

// join serves an upgraded connection until it ends or is dropped.
func (h *hub) join(conn *websocket.Conn) {
	c := &wsClient{conn: conn, send: make(chan *websocket.PreparedMessage, h.queue), done: make(chan struct{}),
		slot: int(h.joined.Add(1) % broadcastSlots)}
	h.mu.Lock()
	if h.ctx.Err() != nil {
		h.mu.Unlock()
		conn.Close()
		return
	}
	first := h.latestFrame()
	// The latest frame first, so the page fills without waiting a tick;
	// queued under the lock, so no broadcast can overtake it.
	if pm, err := websocket.NewPreparedMessage(websocket.TextMessage, first); err == nil {
		c.send <- pm
	}
	h.clients[c] = struct{}{}
	h.count.Add(1)
	h.mu.Unlock()
	h.wg.Add(2)
	go h.writer(c)
	go h.reader(c)
}

func (h *hub) drop(c *wsClient, why string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.dropLocked(c, why)
}

func (h *hub) dropLocked(c *wsClient, why string) {
	c.once.Do(func() {
		delete(h.clients, c)
		h.count.Add(-1)
		if why != "" {
			h.dropped.Add(1)
			h.logger.Debug("dropped dashboard client", zap.String("reason", why), zap.String("remote", c.conn.RemoteAddr().String()))
		}
		close(c.done)
		c.conn.Close()
	})
}

func (h *hub) writer(c *wsClient) {
	defer h.wg.Done()
	ping := time.NewTicker(h.pongWait * 9 / 10)
	defer ping.Stop()
	for {
		select {
		case <-c.done:
			return
		case pm := <-c.send:
			_ = c.conn.SetWriteDeadline(time.Now().Add(h.writeWait))
			if err := c.conn.WritePreparedMessage(pm); err != nil {
				h.drop(c, "write failed")
				return
			}
		case <-ping.C:
			if err := c.conn.WriteControl(websocket.PingMessage, c.newPing(), time.Now().Add(h.writeWait)); err != nil {
				h.drop(c, "ping failed")
				return
			}
		}
	}
}

// reader handles pongs and close frames; a client that answers no ping
// for pongWait is dropped. Clients have nothing else to say.
//
// Only a pong echoing one of our pings counts: a client reads a ping after
// every frame sent before it, so its answer proves it has read them. A
// client that never reads, but sends pongs of its own (unsolicited pongs
// are allowed), would otherwise be kept while its frames pile up unread in
// socket buffers, for as long as they last. With this, what a client may
// leave unread is bounded by the frames of one pong wait, and one that
// stops reading is dropped within the pong wait.
func (h *hub) reader(c *wsClient) {
	defer h.wg.Done()
	c.conn.SetReadLimit(512)
	_ = c.conn.SetReadDeadline(time.Now().Add(h.pongWait))
	c.conn.SetPongHandler(func(payload string) error {
		if !c.answers(payload) {
			return nil
		}
		return c.conn.SetReadDeadline(time.Now().Add(h.pongWait))
	})
	for {
		if _, _, err := c.conn.ReadMessage(); err != nil {
			why := "silent"
			if websocket.IsCloseError(err, websocket.CloseNormalClosure, websocket.CloseGoingAway, websocket.CloseNoStatusReceived) {
				why = "" // left on its own
			}
			h.drop(c, why)
			return
		}
	}
}

// stop closes every connection and waits for the hub's goroutines.
func (h *hub) stop() {
	h.cancel()
	h.mu.Lock()
	for c := range h.clients {
		_ = c.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseGoingAway, "server reloading"), time.Now().Add(time.Second))
		h.dropLocked(c, "")
	}
	h.mu.Unlock()
	h.wg.Wait()
}

// hijackWriter lets gorilla/websocket hijack through Caddy's writer
// wrappers: gorilla asserts http.Hijacker, which Caddy's IdleTimeoutWriter
// only offers through Unwrap.
type hijackWriter struct{ http.ResponseWriter }

func (w hijackWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return http.NewResponseController(w.ResponseWriter).Hijack()
}
