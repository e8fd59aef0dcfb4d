package agentproto

import (
	"context"
	"sync"
)

// queue holds the inbound frames of one stream so that the connection's
// single reader never waits for a slow consumer of another stream. With a
// limit, push waits while more than limit payload bytes are queued: that is
// the one place where a stream can hold up the connection (see Serve).
type queue struct {
	mu     sync.Mutex
	frames []Frame
	bytes  int
	limit  int // 0: unbounded
	closed bool
	ready  chan struct{} // signalled when a frame is pushed or the queue closes
	space  chan struct{} // signalled when a frame is popped
	done   chan struct{} // closed by close
}

func newQueue(limit int) *queue {
	return &queue{limit: limit, ready: make(chan struct{}, 1), space: make(chan struct{}, 1), done: make(chan struct{})}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// push appends f, waiting for room when the queue is bounded. It reports
// false when the queue was closed (the stream ended): the frame is dropped.
func (q *queue) push(f Frame) bool {
	for {
		q.mu.Lock()
		if q.closed {
			q.mu.Unlock()
			return false
		}
		if q.limit == 0 || q.bytes == 0 || q.bytes+len(f.Payload) <= q.limit {
			q.frames = append(q.frames, f)
			q.bytes += len(f.Payload)
			q.mu.Unlock()
			signal(q.ready)
			return true
		}
		q.mu.Unlock()
		select {
		case <-q.space:
		case <-q.done:
		}
	}
}

// pop returns the next frame, waiting for one. ok is false when the queue is
// closed and empty or ctx is done.
func (q *queue) pop(ctx context.Context) (f Frame, ok bool) {
	for {
		q.mu.Lock()
		if len(q.frames) > 0 {
			f = q.frames[0]
			q.frames[0] = Frame{}
			q.frames = q.frames[1:]
			q.bytes -= len(f.Payload)
			q.mu.Unlock()
			signal(q.space)
			return f, true
		}
		closed := q.closed
		q.mu.Unlock()
		if closed {
			return Frame{}, false
		}
		select {
		case <-q.ready:
		case <-q.done:
		case <-ctx.Done():
			return Frame{}, false
		}
	}
}

// close wakes every waiter; queued frames can still be popped.
func (q *queue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.closed {
		q.closed = true
		close(q.done)
	}
}
