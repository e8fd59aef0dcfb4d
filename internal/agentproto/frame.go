// Package agentproto owns the host-guest wire protocol: framing, message
// types, the version handshake and the multiplexing of concurrent requests
// over the single byte stream the host keeps open to a guest (virtio-serial
// under QEMU, vsock under Firecracker).
//
// A frame is a 9-byte header followed by a payload:
//
//	uint32 big-endian payload length (at most MaxPayload)
//	uint8  frame type (Type*)
//	uint32 big-endian stream id
//
// Stream 0 carries the handshake. Every other stream is one request: the host
// opens it with TypeRequest, may send TypeData/TypeEOF/TypeCancel on it, the
// guest may send TypeStdout/TypeStderr on it and closes it with exactly one
// TypeResponse. Stream ids are chosen by the side that sends TypeRequest.
package agentproto

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
)

// Version is the protocol version. Host and guest must speak the same one.
const Version = 1

// MaxPayload bounds one frame's payload so a corrupt header cannot make a
// reader allocate gigabytes.
const MaxPayload = 1 << 20

// HeaderSize is the size of a frame header in bytes.
const HeaderSize = 9

// ChunkSize is the largest payload the client and server put in one data or
// output frame, so that such a frame is 256 KiB on the wire, header
// included. Big frames keep the per-frame costs (a header to parse, a
// queue hand-off between goroutines, a write) small next to the bytes
// moved, which matters most in an emulated guest where every system call
// and context switch is expensive; yet a frame is small enough that one big
// transfer interleaves with other streams' frames within milliseconds.
const ChunkSize = 256<<10 - HeaderSize

// readBufferSize is the buffer a FrameReader keeps in front of its
// connection for headers and small frames; a large payload is read past it,
// straight into its own buffer.
const readBufferSize = 16 << 10

// pooledMin is the smallest payload a FrameReader reads into a pooled
// chunk buffer (smaller ones get a buffer of their own size): a chunk
// buffer pins ChunkSize bytes whatever it carries, and queues account for
// that (cost), so pooling small payloads would shrink what they can hold.
const pooledMin = 32 << 10

// Frame types.
const (
	TypeHello    uint8 = 1 // stream 0, JSON Hello, sent by host first, answered by guest
	TypeRequest  uint8 = 2 // JSON Request; opens a stream
	TypeResponse uint8 = 3 // JSON Response; closes a stream
	TypeStdout   uint8 = 4 // raw bytes, guest -> host
	TypeStderr   uint8 = 5 // raw bytes, guest -> host
	TypeData     uint8 = 6 // raw bytes, host -> guest (stdin, archives)
	TypeEOF      uint8 = 7 // host -> guest: no more TypeData on this stream
	TypeCancel   uint8 = 8 // host -> guest: abort the work on this stream
)

// Frame is one unit on the wire.
type Frame struct {
	Type    uint8
	Stream  uint32
	Payload []byte
	// chunk, when set, is the pooled buffer Payload lives in, at
	// chunk[HeaderSize:]: WriteFrame puts the header in front of it and
	// writes both without a copy, and Release gives it back.
	chunk *[]byte
}

// Release gives a frame's pooled buffer back for reuse. Only the frame's
// last user may call it, after which neither it nor any copy of the frame
// may touch Payload. Frames without a pooled buffer ignore it; a frame
// that is never released is simply collected.
func (f *Frame) Release() {
	if f.chunk != nil {
		chunks.Put(f.chunk)
		f.chunk, f.Payload = nil, nil
	}
}

// bufSize is what the frame holds in memory: its whole pooled buffer, or
// its payload.
func (f *Frame) bufSize() int {
	if f.chunk != nil {
		return cap(*f.chunk)
	}
	return len(f.Payload)
}

// chunks recycles the buffers of data and output frames (header room
// included): moving hundreds of MB would otherwise leave that much garbage
// for the collector, which is slow in an emulated guest.
var chunks = sync.Pool{New: func() any {
	b := make([]byte, HeaderSize+ChunkSize)
	return &b
}}

// newChunkFrame returns a frame of type typ on stream whose Payload is a
// pooled buffer of ChunkSize bytes, to be filled and cut to length.
func newChunkFrame(typ uint8, stream uint32) Frame {
	b := chunks.Get().(*[]byte)
	return Frame{Type: typ, Stream: stream, Payload: (*b)[HeaderSize:], chunk: b}
}

// inPlace reports whether f's header can be written in front of its
// payload, in its pooled buffer.
func (f *Frame) inPlace() bool {
	if f.chunk == nil || cap(*f.chunk) < HeaderSize+len(f.Payload) {
		return false
	}
	return len(f.Payload) == 0 || &f.Payload[0] == &(*f.chunk)[HeaderSize]
}

// ErrFrameTooLarge is returned for a header announcing more than MaxPayload.
var ErrFrameTooLarge = errors.New("agentproto: frame too large")

// writeBufs recycles WriteFrame's buffers for frames without a pooled
// buffer of their own.
var writeBufs = sync.Pool{New: func() any { return new([]byte) }}

func putHeader(b []byte, f *Frame) {
	binary.BigEndian.PutUint32(b[0:4], uint32(len(f.Payload)))
	b[4] = f.Type
	binary.BigEndian.PutUint32(b[5:9], f.Stream)
}

// WriteFrame writes f to w in one Write call (callers serialise writers):
// in place when f's payload is in a pooled buffer, else through a copy.
// The frame stays the caller's (to Release).
func WriteFrame(w io.Writer, f Frame) error {
	if len(f.Payload) > MaxPayload {
		return ErrFrameTooLarge
	}
	n := HeaderSize + len(f.Payload)
	if f.inPlace() {
		buf := (*f.chunk)[:n]
		putHeader(buf, &f)
		_, err := w.Write(buf)
		return err
	}
	bp := writeBufs.Get().(*[]byte)
	defer writeBufs.Put(bp)
	if cap(*bp) < n {
		*bp = make([]byte, n, max(n, 64<<10+HeaderSize))
	}
	buf := (*bp)[:n]
	putHeader(buf, &f)
	copy(buf[HeaderSize:], f.Payload)
	_, err := w.Write(buf)
	return err
}

// ReadFrame reads one frame from r, unbuffered: for handshakes and tests.
// A connection's reader uses a FrameReader.
func ReadFrame(r io.Reader) (Frame, error) {
	var hdr [HeaderSize]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return Frame{}, err
	}
	f, n, err := parseHeader(hdr[:])
	if err != nil || n == 0 {
		return f, err
	}
	f.Payload = make([]byte, n)
	if _, err := io.ReadFull(r, f.Payload); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return Frame{}, err
	}
	return f, nil
}

func parseHeader(hdr []byte) (Frame, int, error) {
	n := binary.BigEndian.Uint32(hdr[0:4])
	if n > MaxPayload {
		return Frame{}, 0, fmt.Errorf("%w: %d bytes announced (is the peer speaking pyro's protocol?)", ErrFrameTooLarge, n)
	}
	return Frame{Type: hdr[4], Stream: binary.BigEndian.Uint32(hdr[5:9])}, int(n), nil
}

// FrameReader reads the frames of one connection. Headers and small frames
// come through a small buffer, so that several arrive in one read system
// call; a large payload is read straight into a pooled chunk buffer (no
// copy through the read buffer; Release gives it back).
type FrameReader struct {
	r    io.Reader
	buf  []byte
	i, n int // buffered bytes: buf[i:n]
}

// NewFrameReader returns a FrameReader reading r.
func NewFrameReader(r io.Reader) *FrameReader {
	return &FrameReader{r: r, buf: make([]byte, readBufferSize)}
}

// fill reads until at least k bytes are buffered; io.EOF only when nothing
// at all is buffered.
func (fr *FrameReader) fill(k int) error {
	if fr.n-fr.i >= k {
		return nil
	}
	if fr.i > 0 {
		fr.n = copy(fr.buf, fr.buf[fr.i:fr.n])
		fr.i = 0
	}
	for fr.n < k {
		m, err := fr.r.Read(fr.buf[fr.n:])
		fr.n += m
		if err != nil {
			if fr.n >= k {
				return nil
			}
			if err == io.EOF && fr.n > 0 {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// Next reads the next frame.
func (fr *FrameReader) Next() (Frame, error) {
	if err := fr.fill(HeaderSize); err != nil {
		return Frame{}, err
	}
	f, n, err := parseHeader(fr.buf[fr.i : fr.i+HeaderSize])
	if err != nil {
		return Frame{}, err
	}
	fr.i += HeaderSize
	if n == 0 {
		return f, nil
	}
	if n <= fr.n-fr.i && n < pooledMin {
		// Small and here already: one allocation of its own size.
		f.Payload = append([]byte(nil), fr.buf[fr.i:fr.i+n]...)
		fr.i += n
		return f, nil
	}
	if n >= pooledMin && n <= ChunkSize {
		b := chunks.Get().(*[]byte)
		f.Payload, f.chunk = (*b)[HeaderSize:HeaderSize+n], b
	} else {
		f.Payload = make([]byte, n)
	}
	k := copy(f.Payload, fr.buf[fr.i:fr.n])
	fr.i += k
	if k < n {
		if _, err := io.ReadFull(fr.r, f.Payload[k:]); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			f.Release()
			return Frame{}, err
		}
	}
	return f, nil
}
