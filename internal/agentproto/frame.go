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

// ReadBufferSize is the read buffer each end puts in front of a connection,
// so that a frame's header and payload usually arrive in one read syscall
// (syscalls are expensive in an emulated guest).
const ReadBufferSize = 256 << 10

// HeaderSize is the size of a frame header in bytes.
const HeaderSize = 9

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
}

// ErrFrameTooLarge is returned for a header announcing more than MaxPayload.
var ErrFrameTooLarge = errors.New("agentproto: frame too large")

// writeBufs recycles WriteFrame's buffers: a relay moving a guest's output
// at hundreds of MB/s would otherwise leave that much garbage behind.
var writeBufs = sync.Pool{New: func() any { return new([]byte) }}

// WriteFrame writes f to w in one Write call (callers serialise writers).
func WriteFrame(w io.Writer, f Frame) error {
	if len(f.Payload) > MaxPayload {
		return ErrFrameTooLarge
	}
	bp := writeBufs.Get().(*[]byte)
	defer writeBufs.Put(bp)
	n := HeaderSize + len(f.Payload)
	if cap(*bp) < n {
		*bp = make([]byte, n, max(n, 64<<10+HeaderSize))
	}
	buf := (*bp)[:n]
	binary.BigEndian.PutUint32(buf[0:4], uint32(len(f.Payload)))
	buf[4] = f.Type
	binary.BigEndian.PutUint32(buf[5:9], f.Stream)
	copy(buf[HeaderSize:], f.Payload)
	_, err := w.Write(buf)
	return err
}

// ReadFrame reads one frame from r.
func ReadFrame(r io.Reader) (Frame, error) {
	var hdr [HeaderSize]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return Frame{}, err
	}
	n := binary.BigEndian.Uint32(hdr[0:4])
	if n > MaxPayload {
		return Frame{}, fmt.Errorf("%w: %d bytes announced (is the peer speaking pyro's protocol?)", ErrFrameTooLarge, n)
	}
	f := Frame{Type: hdr[4], Stream: binary.BigEndian.Uint32(hdr[5:9])}
	if n > 0 {
		f.Payload = make([]byte, n)
		if _, err := io.ReadFull(r, f.Payload); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return Frame{}, err
		}
	}
	return f, nil
}
