package netstack

import (
	"sync"
	"sync/atomic"
	"time"
)

// Record is one entry of the connection log: a connection the guest
// opened or tried to open, a name it resolved, or a connection to one of
// its published ports.
type Record struct {
	Time time.Time `json:"time"`
	// Proto is "tcp", "udp" or "dns".
	Proto string `json:"proto"`
	// Direction is "out" (the guest initiated it) or "in" (a published
	// port: the host connected to the guest).
	Direction string `json:"direction"`
	// Addr and Port are the destination (out) or the guest port and the
	// host peer's address (in). A DNS record has the first answer, if any.
	Addr string `json:"addr,omitempty"`
	Port uint16 `json:"port,omitempty"`
	// Name is the DNS name asked (dns) or the name the guest resolved Addr
	// from through the stack (tcp, udp), when known.
	Name    string `json:"name,omitempty"`
	Allowed bool   `json:"allowed"`
	// Reason says what allowed or refused it (the policy's words).
	Reason string `json:"reason"`
	// Error is set when an allowed connection could not be completed (the
	// destination refused it, a timeout) or was cut (a policy change).
	Error    string `json:"error,omitempty"`
	BytesOut int64  `json:"bytes_out"` // sent by the guest
	BytesIn  int64  `json:"bytes_in"`  // received by the guest
	// Open is true while the connection is established.
	Open  bool      `json:"open"`
	Ended time.Time `json:"ended,omitzero"`
}

// entry is a live Record: byte counters move while the connection is open.
type entry struct {
	mu      sync.Mutex
	rec     Record
	out, in atomic.Int64
}

func (e *entry) snapshot() Record {
	e.mu.Lock()
	r := e.rec
	e.mu.Unlock()
	r.BytesOut, r.BytesIn = e.out.Load(), e.in.Load()
	return r
}

func (e *entry) setOpen() {
	e.mu.Lock()
	e.rec.Open = true
	e.mu.Unlock()
}

// end closes the record; err (may be "") explains an abnormal end. Only
// the first call counts.
func (e *entry) end(err string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.rec.Ended.IsZero() {
		return
	}
	e.rec.Open = false
	e.rec.Ended = time.Now()
	if err != "" && e.rec.Error == "" {
		e.rec.Error = err
	}
}

// connLog is a bounded ring of the most recent entries.
type connLog struct {
	mu    sync.Mutex
	ring  []*entry
	next  int
	full  bool
	total uint64
}

func newConnLog(size int) *connLog { return &connLog{ring: make([]*entry, size)} }

func (l *connLog) add(r Record) *entry {
	e := &entry{rec: r}
	l.mu.Lock()
	l.ring[l.next] = e
	l.next = (l.next + 1) % len(l.ring)
	if l.next == 0 {
		l.full = true
	}
	l.total++
	l.mu.Unlock()
	return e
}

// records returns the ring, oldest first, and how many records were ever
// added (so a reader can tell how many it missed).
func (l *connLog) records() ([]Record, uint64) {
	l.mu.Lock()
	var es []*entry
	if l.full {
		es = append(es, l.ring[l.next:]...)
	}
	es = append(es, l.ring[:l.next]...)
	total := l.total
	l.mu.Unlock()
	out := make([]Record, len(es))
	for i, e := range es {
		out[i] = e.snapshot()
	}
	return out, total
}
