package agentproto

import (
	"context"
	"sync"
)

// frameOverhead is what a queued frame costs besides its payload (the
// Frame value, the slice slot, the allocation's header), so that a flood of
// empty frames is paid for like a flood of bytes.
const frameOverhead = 64

func cost(f Frame) int { return f.bufSize() + frameOverhead }

// budget is the memory one connection may hold in queued inbound frames,
// shared by its streams' queues.
type budget struct {
	mu    sync.Mutex
	used  int
	limit int
	freed chan struct{} // closed (and replaced) whenever used drops
}

func newBudget(limit int) *budget { return &budget{limit: limit, freed: make(chan struct{})} }

// take reserves n when it fits (or nothing else is reserved, so that one
// frame always gets through); otherwise it returns a channel closed at the
// next release.
func (b *budget) take(n int) (ok bool, wait <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used == 0 || b.used+n <= b.limit {
		b.used += n
		return true, nil
	}
	return false, b.freed
}

func (b *budget) release(n int) {
	b.mu.Lock()
	b.used -= n
	close(b.freed)
	b.freed = make(chan struct{})
	b.mu.Unlock()
}

// queue holds the inbound frames of one stream so that the connection's
// single reader never waits for a slow consumer of another stream. push
// waits while the stream holds more than limit bytes (payloads plus
// frameOverhead each), or while the connection's budget is spent: that is
// the one place where a stream can hold up the connection (see Serve and
// Client). A queue always admits a frame when it is empty, so every
// stream progresses.
type queue struct {
	mu     sync.Mutex
	frames []Frame
	bytes  int // queued cost
	limit  int // 0: unbounded
	conn   *budget
	closed bool
	ready  chan struct{} // signalled when a frame is pushed or the queue closes
	space  chan struct{} // signalled when a frame is popped
	done   chan struct{} // closed by close
}

// newQueue returns a queue holding at most limit bytes (0: unbounded),
// charged to conn when it is not nil.
func newQueue(limit int, conn *budget) *queue {
	return &queue{limit: limit, conn: conn, ready: make(chan struct{}, 1), space: make(chan struct{}, 1), done: make(chan struct{})}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// push appends f, waiting for room. It reports false when the queue was
// closed (the stream ended): the frame is dropped.
func (q *queue) push(f Frame) bool {
	n := cost(f)
	for {
		q.mu.Lock()
		if q.closed {
			q.mu.Unlock()
			return false
		}
		if q.limit > 0 && q.bytes > 0 && q.bytes+n > q.limit {
			q.mu.Unlock()
			select {
			case <-q.space:
			case <-q.done:
			}
			continue
		}
		var connWait <-chan struct{}
		if q.conn != nil {
			var ok bool
			if ok, connWait = q.conn.take(n); !ok && q.bytes == 0 {
				// This stream holds nothing: let it progress even when
				// others hold the budget, or a consumer waiting for its
				// own frame could wait forever.
				q.conn.mu.Lock()
				q.conn.used += n
				q.conn.mu.Unlock()
				connWait = nil
			}
		}
		if connWait != nil {
			q.mu.Unlock()
			select {
			case <-connWait:
			case <-q.done:
			}
			continue
		}
		q.frames = append(q.frames, f)
		q.bytes += n
		q.mu.Unlock()
		signal(q.ready)
		return true
	}
}

// pop returns the next frame, waiting for one. ok is false when the queue is
// closed and empty or ctx is done (checked first, so that a stream that
// never runs dry still ends with its caller's deadline).
func (q *queue) pop(ctx context.Context) (f Frame, ok bool) {
	for {
		if ctx.Err() != nil {
			return Frame{}, false
		}
		q.mu.Lock()
		if len(q.frames) > 0 {
			f = q.frames[0]
			q.frames[0] = Frame{}
			q.frames = q.frames[1:]
			n := cost(f)
			q.bytes -= n
			q.mu.Unlock()
			if q.conn != nil {
				q.conn.release(n)
			}
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

// drain closes the queue and gives back what it still holds to the
// connection's budget (the stream's consumer is gone).
func (q *queue) drain() {
	q.mu.Lock()
	if !q.closed {
		q.closed = true
		close(q.done)
	}
	n := q.bytes
	for i := range q.frames {
		q.frames[i].Release()
	}
	q.frames, q.bytes = nil, 0
	q.mu.Unlock()
	if q.conn != nil && n > 0 {
		q.conn.release(n)
	}
}
