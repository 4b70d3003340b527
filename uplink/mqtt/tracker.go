package mqtt

import (
	"context"
	"sync"
	"time"
)

// tracker collects the outcome of one batch's messages: each one is
// acknowledged (its PUBACK, seen as paho deleting it from the store, or
// for QoS 0 its write) or fails. When every message is settled, or the
// batch times out, done runs once with the errors.
type tracker struct {
	mu        sync.Mutex
	done      func([]error)
	errs      []error
	settled   []bool
	remaining int
	finished  bool
	fin       chan struct{} // closed once done has run
	stops     []func() bool
	// failed, when set, is called (under mu) with each message's error as
	// it fails: the sink closes the lane's fence with it.
	failed func(error)
}

func newTracker(n int, done func([]error)) *tracker {
	return &tracker{done: done, settled: make([]bool, n), remaining: n, fin: make(chan struct{})}
}

// arm fails what is still open when ctx is done or after timeout.
func (t *tracker) arm(ctx context.Context, timeout time.Duration, explain func(error) error) {
	stopCtx := context.AfterFunc(ctx, func() { t.failRest(context.Cause(ctx)) })
	timer := time.AfterFunc(timeout, func() { t.failRest(explain(errNotAcked{timeout})) })
	t.mu.Lock()
	if !t.finished {
		t.stops = append(t.stops, stopCtx, timer.Stop)
		t.mu.Unlock()
		return
	}
	t.mu.Unlock()
	stopCtx()
	timer.Stop()
}

// ack settles message i as delivered.
func (t *tracker) ack(i int) { t.settle(i, nil) }

// failOne settles message i as failed.
func (t *tracker) failOne(i int, err error) { t.settle(i, err) }

func (t *tracker) settle(i int, err error) {
	t.mu.Lock()
	if t.finished || t.settled[i] {
		t.mu.Unlock()
		return
	}
	t.settled[i] = true
	if err != nil {
		t.setErrLocked(i, err)
	}
	t.remaining--
	if t.remaining > 0 {
		t.mu.Unlock()
		return
	}
	t.finishLocked()
}

// failRest fails every message not yet settled. A message that fails
// this way may still be in the client's store and reach the broker later:
// delivery is at least once.
func (t *tracker) failRest(err error) {
	t.mu.Lock()
	if t.finished {
		t.mu.Unlock()
		return
	}
	for i, ok := range t.settled {
		if !ok {
			t.settled[i] = true
			t.setErrLocked(i, err)
		}
	}
	t.remaining = 0
	t.finishLocked()
}

func (t *tracker) setErrLocked(i int, err error) {
	if t.failed != nil {
		t.failed(err)
	}
	if t.errs == nil {
		t.errs = make([]error, len(t.settled))
	}
	t.errs[i] = err
}

// finishLocked reports the outcome; it unlocks t.
func (t *tracker) finishLocked() {
	t.finished = true
	done, errs, stops := t.done, t.errs, t.stops
	t.done, t.stops = nil, nil
	t.mu.Unlock()
	for _, stop := range stops {
		stop()
	}
	done(errs)
	close(t.fin)
}
