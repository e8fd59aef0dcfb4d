package redact

import (
	"io"
	"sync"
)

// Stream is an io.Writer that redacts what passes through it to W. The end
// of a write that may be the start of a secret (the carry-over, shorter
// than the longest form) is held until the next write completes or rules
// it out; Flush writes it as it is, but remembers it: if the next write
// completes the secret after all, what was not yet written becomes
// [REDACTED], so a flush after a quiet moment leaks at most the start of a
// value, never the rest. Writes are serialised; Stream is safe for
// concurrent use. A Stream over an empty Redactor passes bytes through.
type Stream struct {
	mu    sync.Mutex
	r     *Redactor
	w     io.Writer
	carry []byte
	done  int // bytes of carry already written out by Flush
	buf   []byte
}

// NewStream returns a Stream redacting r's values on their way to w.
func NewStream(r *Redactor, w io.Writer) *Stream { return &Stream{r: r, w: w} }

// Write redacts p and writes what is certain to W; it reports len(p).
func (s *Stream) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.r.Empty() {
		_, err := s.w.Write(p)
		return len(p), err
	}
	in := p
	if len(s.carry) > 0 {
		in = append(s.carry, p...)
	}
	var n int
	s.buf, n, s.done = s.r.rewrite(s.buf[:0], in, s.done, true)
	s.carry = append(s.carry[:0:0], in[n:]...)
	if len(s.buf) > 0 {
		if _, err := s.w.Write(s.buf); err != nil {
			return len(p), err
		}
	}
	return len(p), nil
}

// Pending reports whether bytes are held back.
func (s *Stream) Pending() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.carry) > s.done
}

// Flush writes the held-back bytes: the stream ended, or went quiet long
// enough that they are no secret's start after all.
func (s *Stream) Flush() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.carry) <= s.done {
		return nil
	}
	c := s.carry[s.done:]
	s.done = len(s.carry)
	_, err := s.w.Write(c)
	return err
}
