package agentproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
)

// oddReader returns at most n bytes per Read, as a virtio-serial port (4 KiB
// per read) or a socket might.
type oddReader struct {
	r io.Reader
	n int
}

func (o *oddReader) Read(p []byte) (int, error) { return o.r.Read(p[:min(len(p), o.n)]) }

func TestFrameReader(t *testing.T) {
	sizes := []int{0, 1, 100, pooledMin - 1, pooledMin, pooledMin + 1, ChunkSize, ChunkSize + 1, MaxPayload}
	var wire bytes.Buffer
	var want []Frame
	for i, n := range sizes {
		p := bytes.Repeat([]byte{byte('a' + i)}, n)
		f := Frame{Type: TypeStdout, Stream: uint32(i + 1), Payload: p}
		if n <= ChunkSize && n > 0 {
			// Half of them from a pooled buffer, written in place.
			c := newChunkFrame(TypeStdout, uint32(i+1))
			c.Payload = c.Payload[:copy(c.Payload, p)]
			if !c.inPlace() {
				t.Fatalf("size %d: pooled frame not written in place", n)
			}
			f = c
		}
		if err := WriteFrame(&wire, f); err != nil {
			t.Fatal(err)
		}
		want = append(want, Frame{Type: TypeStdout, Stream: uint32(i + 1), Payload: p})
	}
	for _, chunk := range []int{1, 9, 4096, 1 << 20} {
		fr := NewFrameReader(&oddReader{r: bytes.NewReader(wire.Bytes()), n: chunk})
		for i, w := range want {
			f, err := fr.Next()
			if err != nil {
				t.Fatalf("reads of %d: frame %d: %v", chunk, i, err)
			}
			if f.Type != w.Type || f.Stream != w.Stream || !bytes.Equal(f.Payload, w.Payload) {
				t.Fatalf("reads of %d: frame %d: type %d stream %d, %d bytes; want %d bytes", chunk, i, f.Type, f.Stream, len(f.Payload), len(w.Payload))
			}
			if (f.chunk != nil) != (len(f.Payload) >= pooledMin && len(f.Payload) <= ChunkSize) {
				t.Errorf("frame of %d bytes: pooled = %v", len(f.Payload), f.chunk != nil)
			}
			f.Release()
		}
		if _, err := fr.Next(); err != io.EOF {
			t.Errorf("reads of %d: after the last frame: %v, want io.EOF", chunk, err)
		}
	}
}

func TestFrameReaderErrors(t *testing.T) {
	var one bytes.Buffer
	WriteFrame(&one, Frame{Type: TypeStdout, Stream: 1, Payload: bytes.Repeat([]byte("x"), 40000)})
	huge := make([]byte, HeaderSize)
	binary.BigEndian.PutUint32(huge, MaxPayload+1)
	tests := []struct {
		name string
		wire []byte
		want error
	}{
		{"cut in the header", one.Bytes()[:5], io.ErrUnexpectedEOF},
		{"cut in the payload", one.Bytes()[:HeaderSize+100], io.ErrUnexpectedEOF},
		{"cut in a pooled payload", one.Bytes()[:HeaderSize+35000], io.ErrUnexpectedEOF},
		{"too large", huge, ErrFrameTooLarge},
		{"nothing", nil, io.EOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewFrameReader(bytes.NewReader(tt.wire)).Next()
			if !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
		})
	}
}
