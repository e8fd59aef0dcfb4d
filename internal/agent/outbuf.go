package agent

import (
	"bytes"
	"sync"
	"time"
)

// outBuf is an append-only output stream of which the last limit bytes
// are kept, addressed by absolute byte offsets from the stream's start: a
// shell's terminal output, a service's log. Readers hold their own
// offsets (cursors), so any number of them read without taking output
// from each other.
type outBuf struct {
	mu    sync.Mutex
	limit int
	data  []byte // data[0] is at offset base; up to 2*limit before a trim
	base  int64
	last  time.Time     // when the last byte arrived
	wake  chan struct{} // closed (and replaced) at every write
}

func newOutBuf(limit int) *outBuf {
	return &outBuf{limit: limit, wake: make(chan struct{})}
}

// Write appends p.
func (b *outBuf) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	b.mu.Lock()
	b.data = append(b.data, p...)
	if len(b.data) > 2*b.limit {
		drop := len(b.data) - b.limit
		b.data = append(b.data[:0:0], b.data[drop:]...)
		b.base += int64(drop)
	}
	b.last = time.Now()
	close(b.wake)
	b.wake = make(chan struct{})
	b.mu.Unlock()
	return len(p), nil
}

// changed is closed at the next write.
func (b *outBuf) changed() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.wake
}

// end is the offset just past the last byte.
func (b *outBuf) end() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.base + int64(len(b.data))
}

// lastWrite is when the last byte arrived (zero before any).
func (b *outBuf) lastWrite() time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.last
}

// keptLocked is the offset of the first byte still kept.
func (b *outBuf) keptLocked() int64 {
	end := b.base + int64(len(b.data))
	return max(b.base, end-int64(b.limit))
}

// read returns up to max bytes from offset from: start is where they
// begin (later than from when bytes before the kept tail were asked for:
// dropped says how many), next is just past them.
func (b *outBuf) read(from int64, max int) (data []byte, start, next, dropped int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	kept := b.keptLocked()
	end := b.base + int64(len(b.data))
	start = from
	if start < kept {
		dropped = kept - start
		start = kept
	}
	if start > end {
		start = end
	}
	n := min(end-start, int64(max))
	i := start - b.base
	data = append([]byte(nil), b.data[i:i+n]...)
	return data, start, start + n, dropped
}

// tail returns the last lines lines of what is kept (all of it when lines
// <= 0), and whether older output was left out.
func (b *outBuf) tail(lines int) ([]byte, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	kept := b.data[b.keptLocked()-b.base:]
	truncated := b.keptLocked() > 0
	if lines > 0 {
		body := bytes.TrimSuffix(kept, []byte("\n"))
		i := len(body)
		for n := 0; n < lines && i > 0; n++ {
			i = bytes.LastIndexByte(body[:i], '\n')
			if i < 0 {
				i = 0
				break
			}
		}
		if i > 0 {
			kept = kept[i+1:]
			truncated = true
		}
	}
	return append([]byte(nil), kept...), truncated
}
