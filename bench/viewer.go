package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The buffer a paced viewer keeps, in media time, as a browser player
// does (hls.js and dash.js fetch to a goal and idle above it). The marks
// are small so that a run reaches its steady state within seconds.
const (
	startAt   = 2 * time.Second // playing starts, and resumes after a stall, with this much buffered
	lowMark   = 4 * time.Second // under it the viewer fetches
	highMark  = 6 * time.Second // and fetches up to it
	chunkPlay = time.Second     // each request asks for this much media
	// chunkGrace is how long after the window a chunk may still finish;
	// past it the chunk is cut off (watch).
	chunkGrace = 10 * time.Second
)

// viewing is what paced viewers felt in one run of one arm, counted over
// the measured window only.
type viewing struct {
	viewers  int
	startups []time.Duration // per title started in the window; one unstarted by its end counts what it waited
	seeks    []time.Duration // wait from a seek to playing again
	stalled  time.Duration   // time with an empty buffer, after playing started
	watched  time.Duration   // time playing or stalled
	stalls   int
	stallers int // viewers with any stall in the window
	chunks   []time.Duration
	ttfb     []time.Duration
	bytes    int64
	elapsed  time.Duration
	errors   int
	perEdge  map[string]int64 // bytes by edge
}

// rebufferRatio is stall time over watch time.
func (v *viewing) rebufferRatio() float64 {
	if v.watched <= 0 {
		return 0
	}
	return float64(v.stalled) / float64(v.watched)
}

// playedPerSecond is the media the viewers played per second of the
// window, in seconds: what was delivered to be watched, without what a
// viewer buffered and left behind when it zapped or seeked.
func (v *viewing) playedPerSecond() float64 {
	return (v.watched - v.stalled).Seconds() / v.elapsed.Seconds()
}

func (v *viewing) stalledShare() float64 { return float64(v.stallers) / float64(max(v.viewers, 1)) }

func (v *viewing) throughputMBps() float64 { return float64(v.bytes) / 1e6 / v.elapsed.Seconds() }

// watch runs paced viewers against bases (spread over them; none: each
// request to the next edge, round robin) for warm and
// then d. Each viewer plays a title at its bitrate (from its moov), from
// the start, for 6–14 s of wall time, then zaps to another; it fetches a
// second of media at a time to keep its buffer between the marks, and
// seeks about once in 20 s of play; a chunk that fails is tried again, up
// to three times. Each viewer is taken up mid-title, as one already
// watching when the run began (takeUp), so the window sees players in
// every phase of a steady state. Viewers
// of the same seed behave alike (the same titles, stays and seeks), so
// arms of a round are compared on the same demand.
//
// With traceSlower above 0, each startup in the window slower than it is
// logged with its chunks' edges and times (-trace, for development).
func watch(sys *system, bases []string, viewers int, warm, d time.Duration, seed uint64, traceSlower time.Duration) *viewing {
	v := &viewing{viewers: viewers, perEdge: map[string]int64{}}
	var mu sync.Mutex
	transport := &http.Transport{MaxIdleConnsPerHost: viewers, DisableCompression: true}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport, Timeout: 30 * time.Second}
	begin := time.Now()
	start := begin.Add(warm)
	deadline := start.Add(d)
	// A chunk still downloading chunkGrace after the window is cut off
	// there, and counts with the time it took so far: only chunks slower
	// than that grace (a stalling arm's) are shortened, and the arm does
	// not hold the run for the client's timeout.
	cut, cancel := context.WithDeadline(context.Background(), deadline.Add(chunkGrace))
	defer cancel()
	// in is how much of [a, b) lies in the measured window.
	in := func(a, b time.Time) time.Duration {
		if a.Before(start) {
			a = start
		}
		if b.After(deadline) {
			b = deadline
		}
		return max(0, b.Sub(a))
	}
	var direct atomic.Int64
	var wg sync.WaitGroup
	for p := range viewers {
		wg.Add(1)
		go func(p int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(p), seed))
			var pl viewer
			var startChunks []string // of the title not yet started, for the trace
			for first := true; time.Now().Before(deadline); first = false {
				startChunks = startChunks[:0]
				f := sys.files[rng.IntN(len(sys.files))]
				if stay := time.Duration(6e9 + rng.Int64N(8e9)); first {
					pl.takeUp(f, time.Now(), stay, rng)
				} else {
					pl.zap(f, time.Now(), stay)
				}
				failed := 0
				for !pl.done(time.Now()) && time.Now().Before(deadline) {
					if wait := pl.idle(); wait > 0 {
						time.Sleep(min(wait, time.Until(deadline)))
						pl.advance(time.Now(), in)
						continue
					}
					off, end := pl.next()
					base := ""
					if len(bases) > 0 {
						base = bases[p%len(bases)]
					} else { // direct: each request to the next edge
						base = "http://" + sys.edges[int(direct.Add(1))%len(sys.edges)].public
					}
					req, _ := http.NewRequestWithContext(cut, http.MethodGet, base+f.path, nil)
					req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off, end))
					t0 := time.Now()
					resp, err := client.Do(req)
					var n int64
					var ttfb time.Duration
					ok := false
					if err == nil {
						ttfb = time.Since(t0)
						n, err = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						ok = err == nil && resp.StatusCode == http.StatusPartialContent && n == end-off+1
					}
					now := time.Now()
					if cut.Err() != nil && !ok {
						// Cut off after the window: the chunk took this long
						// at least; its viewer's window is over.
						if !t0.Before(start) {
							mu.Lock()
							v.chunks = append(v.chunks, now.Sub(t0))
							mu.Unlock()
						}
						break
					}
					if !t0.Before(start) && t0.Before(deadline) {
						mu.Lock()
						if ok {
							v.ttfb = append(v.ttfb, ttfb)
							v.chunks = append(v.chunks, now.Sub(t0))
							v.bytes += n
							v.perEdge[resp.Header.Get("X-Edge")] += n
						} else {
							v.errors++
						}
						mu.Unlock()
					}
					if !ok {
						// A player tries a chunk again (hls.js: three
						// times), then gives up on the title and zaps.
						if failed++; failed == 3 {
							break
						}
						pl.advance(now, in)
						continue
					}
					failed = 0
					pl.advance(now, in)
					starting := !pl.started
					if starting && traceSlower > 0 {
						startChunks = append(startChunks, fmt.Sprintf("%s at %.3fs: first byte %.0f ms, whole %.0f ms",
							resp.Header.Get("X-Edge"), t0.Sub(begin).Seconds(), ttfb.Seconds()*1e3, now.Sub(t0).Seconds()*1e3))
					}
					pl.got(now, in)
					if starting && pl.started && traceSlower > 0 && !pl.joined.Before(start) && now.Sub(pl.joined) > traceSlower {
						log.Printf("    slow startup: %.0f ms from %.3fs through %s: %s", now.Sub(pl.joined).Seconds()*1e3,
							pl.joined.Sub(begin).Seconds(), base, strings.Join(startChunks, "; "))
					}
					if pl.playing && rng.Float64() < float64(chunkPlay)/float64(20*time.Second) {
						pl.seek(now, time.Duration(rng.Int64N(int64(f.duration))))
					}
				}
				pl.advance(time.Now(), in)
				pl.leave(in, start, deadline)
			}
			mu.Lock()
			v.startups = append(v.startups, pl.startups...)
			v.seeks = append(v.seeks, pl.seeks...)
			v.stalled += pl.stalled
			v.watched += pl.watched
			v.stalls += pl.stalls
			if pl.stalls > 0 {
				v.stallers++
			}
			mu.Unlock()
		}(p)
	}
	wg.Wait()
	v.elapsed = deadline.Sub(start)
	return v
}

// viewer is one paced player's state on the media timeline of the title
// it watches.
type viewer struct {
	f                video
	joined, leaveAt  time.Time
	started, playing bool
	seeking          bool
	since            time.Time     // the wall time pos was taken at; or when the stall or the seek began
	pos, buffered    time.Duration // playhead; end of the buffered media (from pos on)
	filling          bool
	// over the measured window
	startups, seeks []time.Duration
	stalled         time.Duration
	watched         time.Duration
	stalls          int
}

func (p *viewer) zap(f video, now time.Time, stay time.Duration) {
	p.f, p.joined, p.leaveAt = f, now, now.Add(stay)
	p.started, p.playing, p.seeking, p.filling = false, false, false, true
	p.pos, p.buffered, p.since = 0, 0, now
}

// takeUp starts the viewer mid-title, as one already watching when the
// run began: at a random point of f, playing, its buffer between the
// marks, with a random part of stay left. A population that joined all at
// once would fill its buffers together: at 70 % of capacity the spare
// 30 % drains those first fills for about ten seconds, and the window
// would measure that rush rather than the steady state of zaps, seeks and
// refills.
func (p *viewer) takeUp(f video, now time.Time, stay time.Duration, rng *rand.Rand) {
	p.zap(f, now, time.Duration(rng.Int64N(int64(stay))))
	p.pos = time.Duration(rng.Int64N(int64(f.duration)))
	p.buffered = min(p.pos+lowMark+time.Duration(rng.Int64N(int64(highMark-lowMark))), f.duration)
	p.started, p.playing, p.filling = true, true, false
}

// done: the viewer leaves the title when its stay is over or the title
// has played to its end.
func (p *viewer) done(now time.Time) bool {
	return !now.Before(p.leaveAt) || (p.started && p.pos >= p.f.duration)
}

// advance plays from since to now, stalling where the buffer runs out.
func (p *viewer) advance(now time.Time, in func(a, b time.Time) time.Duration) {
	if !p.playing {
		return
	}
	played := now.Sub(p.since)
	if p.pos+played >= p.buffered && p.buffered < p.f.duration {
		empty := p.since.Add(p.buffered - p.pos)
		p.watched += in(p.since, empty)
		if in(empty, empty.Add(1)) > 0 {
			p.stalls++
		}
		p.pos, p.playing, p.since = p.buffered, false, empty
		return
	}
	p.watched += in(p.since, now)
	p.pos, p.since = min(p.pos+played, p.f.duration), now
}

// idle is how long the viewer can wait before it must fetch again.
func (p *viewer) idle() time.Duration {
	ahead := p.buffered - p.pos - p.playedSince()
	if p.buffered >= p.f.duration { // all fetched: it watches to the end, or leaves
		return min(time.Until(p.leaveAt), ahead) + time.Millisecond
	}
	if ahead < lowMark || !p.playing {
		p.filling = true
	}
	if ahead >= highMark {
		p.filling = false
	}
	if p.filling {
		return 0
	}
	return ahead - lowMark + time.Millisecond
}

func (p *viewer) playedSince() time.Duration {
	if !p.playing {
		return 0
	}
	return time.Since(p.since)
}

// next is the byte range of the next chunk: media time maps to bytes at
// the title's mean bitrate.
func (p *viewer) next() (off, end int64) {
	at := func(t time.Duration) int64 { return int64(float64(p.f.size) * float64(t) / float64(p.f.duration)) }
	off = at(p.buffered)
	end = min(at(p.buffered+chunkPlay), p.f.size) - 1
	return off, end
}

// got takes in a chunk that arrived at now.
func (p *viewer) got(now time.Time, in func(a, b time.Time) time.Duration) {
	p.buffered = min(p.buffered+chunkPlay, p.f.duration)
	if p.playing || (p.buffered-p.pos < startAt && p.buffered < p.f.duration) {
		return
	}
	switch {
	case !p.started:
		p.started = true
		if in(p.joined, p.joined.Add(1)) > 0 {
			p.startups = append(p.startups, now.Sub(p.joined))
		}
	case p.seeking:
		p.seeking = false
		if in(p.since, p.since.Add(1)) > 0 {
			p.seeks = append(p.seeks, now.Sub(p.since))
		}
	default: // a stall ends
		p.stalled += in(p.since, now)
		p.watched += in(p.since, now)
	}
	p.playing, p.since = true, now
}

// seek jumps to media time to: what was buffered is dropped.
func (p *viewer) seek(now time.Time, to time.Duration) {
	p.pos, p.buffered, p.playing, p.seeking, p.since = to, to, false, true, now
}

// leave ends the title: a start or a stall still waiting counts what it
// has waited within the window.
func (p *viewer) leave(in func(a, b time.Time) time.Duration, start, deadline time.Time) {
	now := time.Now()
	switch {
	case !p.started:
		if !p.joined.Before(start) && p.joined.Before(deadline) {
			end := now
			if end.After(deadline) {
				end = deadline
			}
			p.startups = append(p.startups, end.Sub(p.joined))
		}
	case !p.playing && !p.seeking:
		p.stalled += in(p.since, now)
		p.watched += in(p.since, now)
	}
	p.playing = false
}
