package modbus

import (
	"container/heap"
	"hash/fnv"
	"slices"
	"sync"
	"time"
)

// Spreading the polls. Devices do not all poll at the same instant: each
// device's polls keep a phase of their own within its interval, a slot
// chosen from the device's name and counted from whole periods of the
// clock, so 1,000 devices at 1s poll in ten bursts of about 100 rather
// than one of 1,000, and every buffer behind the drivers (batches, the
// group commit, the send loop's batches) is sized by a slot's share of
// the samples. A slot's devices poll at the same instants however far
// apart they started, so its burst is short: the group commit waits at
// most buffer.commit_interval, and polls spread over the whole second by
// the drivers' start times made it commit all second long.
const (
	// slotWidth is the spacing of the phases: devices whose names fall in
	// the same slot poll together, one wake-up serving them all, and the
	// group commit takes a slot's samples in one or two commits. Measured
	// with 1,000 devices at 1s (make bench): 250ms slots (four bursts of
	// 250 polls) cost the least CPU but held samples longest behind their
	// burst (p99 read → broker 24ms); 50ms slots kept latency lowest and
	// took twice the commits and a third more CPU; 100ms lies between.
	slotWidth = 100 * time.Millisecond
	// spreadMax bounds the phases, so that a device with a long interval
	// still sends its first poll within a second of its start.
	spreadMax = time.Second
	// coalesce is how early a poll may be sent to join polls due a moment
	// earlier: devices started microseconds apart share their slot's
	// wake-up.
	coalesce = time.Millisecond
)

// phase returns the offset of the polls of device name polled every
// interval within each period of min(interval, spreadMax) of the clock:
// one of period/slotWidth slots, the same for a name whenever it starts.
func phase(name string, interval time.Duration) time.Duration {
	slots := min(interval, spreadMax) / slotWidth
	if slots <= 1 {
		return 0
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(name))
	return time.Duration(h.Sum32()%uint32(slots)) * slotWidth
}

// firstPoll returns when the device name, polled every interval and added
// to its pool at now, polls first: at its phase past the start of the
// clock's current period of min(interval, spreadMax), or the next such
// instant once that one has passed. Devices of one slot so poll at the
// very same instants however far apart they were started (a thousand
// drivers take a while to start), and their polls come in one burst that
// one wake-up and a few group commits serve. The result keeps now's
// monotonic reading: a later step of the wall clock moves no poll.
func firstPoll(name string, interval time.Duration, now time.Time) time.Time {
	period := min(interval, spreadMax)
	into := now.Sub(now.Truncate(period)) // how far into its period the wall clock is
	d := phase(name, interval) - into
	if d < 0 {
		d += period
	}
	return now.Add(d)
}

// schedule is the clock of the polls of every Driver running on a Pool:
// one timer, set for the earliest poll due, instead of a ticker and a
// goroutine waiting on it per device. The polls due run on workers: a
// worker idle takes the next poll due (the one idle last first, so that
// the others can end), and a new one starts when none is idle, so a slow
// or dead device never delays another. There are as many workers as polls
// ran at once recently; one idle for workerIdle ends.
type schedule struct {
	mu    sync.Mutex
	polls pollHeap
	timer *time.Timer
	// idle are the workers waiting for a poll, the one idle last at the
	// end.
	idle []*worker
}

// workerIdle is how long a worker waits for a poll before it ends.
const workerIdle = 10 * time.Second

// worker runs polls one after another; a nil poll ends it.
type worker struct {
	polls chan *poller
}

// add schedules p's first poll (firstPoll).
func (s *schedule) add(p *poller) {
	p.next = firstPoll(p.d.opts.Name, p.d.opts.Interval, time.Now())
	s.mu.Lock()
	defer s.mu.Unlock()
	heap.Push(&s.polls, p)
	s.armLocked()
}

// remove stops scheduling p and waits for its poll in flight, if any, to
// end; p's context being done cuts that poll short. After the last
// poller the idle workers end.
func (s *schedule) remove(p *poller) {
	s.mu.Lock()
	if p.index >= 0 {
		heap.Remove(&s.polls, p.index)
	}
	if len(s.polls) == 0 && s.timer != nil {
		s.timer.Stop()
	}
	s.mu.Unlock()
	p.inflight.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.polls) == 0 {
		for _, w := range s.idle {
			w.polls <- nil
		}
		clear(s.idle)
		s.idle = s.idle[:0]
	}
}

// armLocked sets the timer for the earliest poll. The caller holds s.mu.
func (s *schedule) armLocked() {
	if len(s.polls) == 0 {
		return
	}
	d := time.Until(s.polls[0].next)
	if s.timer == nil {
		s.timer = time.AfterFunc(d, s.fire)
		return
	}
	s.timer.Reset(d)
}

// fire starts every poll due (or due within coalesce) and sets the timer
// for the next. A device whose previous poll still runs skips this one:
// when a poll overruns the interval, the polls missed are dropped and the
// device keeps its phase.
func (s *schedule) fire() {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.polls) > 0 && !s.polls[0].next.After(now.Add(coalesce)) {
		p := s.polls[0]
		if !p.busy {
			p.busy = true
			p.inflight.Add(1)
			if n := len(s.idle); n > 0 {
				w := s.idle[n-1]
				s.idle[n-1] = nil
				s.idle = s.idle[:n-1]
				w.polls <- p
			} else {
				go s.work(p)
			}
		}
		iv := p.d.opts.Interval
		p.next = p.next.Add(iv)
		if !p.next.After(now) {
			p.next = p.next.Add((now.Sub(p.next)/iv + 1) * iv)
		}
		heap.Fix(&s.polls, 0)
	}
	s.armLocked()
}

// work runs p's poll, then the polls it is given, until it is stopped or
// idle for workerIdle.
func (s *schedule) work(p *poller) {
	w := &worker{polls: make(chan *poller, 1)}
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		p.pollOnce()
		s.mu.Lock()
		p.busy = false
		s.idle = append(s.idle, w)
		s.mu.Unlock()
		p.inflight.Done()
		idle.Reset(workerIdle)
		select {
		case p = <-w.polls:
		case <-idle.C:
			s.mu.Lock()
			i := slices.Index(s.idle, w)
			if i >= 0 {
				s.idle = slices.Delete(s.idle, i, i+1)
			}
			s.mu.Unlock()
			if i >= 0 {
				return
			}
			p = <-w.polls // taken meanwhile: its poll is on the way
		}
		if p == nil {
			return
		}
	}
}

// pollHeap orders pollers by their next poll.
type pollHeap []*poller

func (h pollHeap) Len() int           { return len(h) }
func (h pollHeap) Less(i, j int) bool { return h[i].next.Before(h[j].next) }
func (h pollHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}

func (h *pollHeap) Push(x any) {
	p := x.(*poller)
	p.index = len(*h)
	*h = append(*h, p)
}

func (h *pollHeap) Pop() any {
	old := *h
	p := old[len(old)-1]
	old[len(old)-1] = nil
	p.index = -1
	*h = old[:len(old)-1]
	return p
}
