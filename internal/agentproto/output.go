package agentproto

// OutputBuffer collects a command's output up to Max bytes (0 means
// DefaultMaxOutput) and drops the rest, remembering that it did. Writes
// never fail, so a writer chained after it (io.MultiWriter) sees
// everything.
type OutputBuffer struct {
	Max       int
	buf       []byte
	truncated bool
}

// Write keeps what fits.
func (b *OutputBuffer) Write(p []byte) (int, error) {
	limit := b.Max
	if limit <= 0 {
		limit = DefaultMaxOutput
	}
	room := limit - len(b.buf)
	if len(p) > room {
		b.truncated = true
		b.buf = append(b.buf, p[:max(room, 0)]...)
		return len(p), nil
	}
	b.buf = append(b.buf, p...)
	return len(p), nil
}

// String returns what was kept.
func (b *OutputBuffer) String() string { return string(b.buf) }

// Truncated reports whether anything was dropped.
func (b *OutputBuffer) Truncated() bool { return b.truncated }
