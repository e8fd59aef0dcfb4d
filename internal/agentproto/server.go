package agentproto

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"sync"

	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/version"
)

// Handler serves requests on the guest side. Handle is called on its own
// goroutine for each stream; ctx ends when the host sends TypeCancel or the
// connection breaks. The returned result is sent as the stream's Response;
// an error is sent as a WireError carrying its errdefs class and hint.
type Handler interface {
	Handle(ctx context.Context, s *Stream) (result any, err error)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, s *Stream) (any, error)

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, s *Stream) (any, error) { return f(ctx, s) }

// Helloer is implemented by handlers that describe themselves in the
// handshake; Proto is always set to Version by Serve.
type Helloer interface {
	Hello() Hello
}

// InboundLimit bounds the TypeData bytes queued for one stream on the guest.
// When a handler does not consume its input (a command that never reads its
// stdin), the connection's reader waits for room: this is the one
// head-of-line blocking the protocol accepts, since buffering without bound
// would let the host exhaust guest memory. It ends when the stream ends
// (exit, timeout or cancel of that command).
const InboundLimit = 8 << 20

// Stream is one request as seen by a Handler.
type Stream struct {
	ID     uint32
	Method string
	Params json.RawMessage

	srv   *server
	in    *queue
	cur   Frame  // the TypeData frame being read
	buf   []byte // what is left of cur's payload
	eof   bool
	after []func()
}

// next makes the next TypeData payload current; false with the error to
// return at the end of the input.
func (s *Stream) next() (bool, error) {
	s.cur.Release()
	for len(s.buf) == 0 {
		if s.eof {
			return false, io.EOF
		}
		f, ok := s.in.pop(context.Background())
		if !ok {
			return false, io.ErrUnexpectedEOF
		}
		switch f.Type {
		case TypeData:
			s.cur, s.buf = f, f.Payload
		case TypeEOF:
			s.eof = true
		}
	}
	return true, nil
}

// Read reads the host's TypeData payloads until TypeEOF (io.EOF).
func (s *Stream) Read(p []byte) (int, error) {
	if len(s.buf) == 0 {
		if ok, err := s.next(); !ok {
			return 0, err
		}
	}
	n := copy(p, s.buf)
	s.buf = s.buf[n:]
	return n, nil
}

// WriteTo writes the rest of the input to w, each payload in one Write
// straight from its frame (io.Copy uses it: a command's stdin gets whole
// frames, not small copies).
func (s *Stream) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for {
		if len(s.buf) == 0 {
			if ok, err := s.next(); !ok {
				if err == io.EOF {
					err = nil
				}
				return total, err
			}
		}
		n, err := w.Write(s.buf)
		total += int64(n)
		s.buf = s.buf[n:]
		if err != nil {
			return total, err
		}
	}
}

// Stdout returns a writer sending TypeStdout frames on this stream.
func (s *Stream) Stdout() io.Writer { return &streamWriter{s: s, typ: TypeStdout} }

// Stderr returns a writer sending TypeStderr frames on this stream.
func (s *Stream) Stderr() io.Writer { return &streamWriter{s: s, typ: TypeStderr} }

// AfterResponse registers fn to run once the stream's response has been
// written (shutdown uses it to power off only after answering).
func (s *Stream) AfterResponse(fn func()) { s.after = append(s.after, fn) }

type streamWriter struct {
	s   *Stream
	typ uint8
}

func (w *streamWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		c := min(len(p), ChunkSize)
		if err := w.s.srv.write(Frame{Type: w.typ, Stream: w.s.ID, Payload: p[:c]}); err != nil {
			return n, err
		}
		n += c
		p = p[c:]
	}
	return n, nil
}

// ReadFrom sends r's bytes until it ends, each read straight into a pooled
// frame buffer and written from it (io.Copy uses it: a command's output
// costs one read and one write per frame, no copy).
func (w *streamWriter) ReadFrom(r io.Reader) (int64, error) {
	var total int64
	for {
		f := newChunkFrame(w.typ, w.s.ID)
		n, err := r.Read(f.Payload)
		if n > 0 {
			f.Payload = f.Payload[:n]
			if werr := w.s.srv.write(f); werr != nil {
				f.Release()
				return total, werr
			}
			total += int64(n)
		}
		f.Release()
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

type server struct {
	rwc io.ReadWriteCloser
	in  *FrameReader
	h   Handler
	log *slog.Logger
	wmu sync.Mutex
}

func (s *server) write(f Frame) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return WriteFrame(s.rwc, f)
}

type serverStream struct {
	q      *queue
	cancel context.CancelFunc
}

// Serve answers the host's handshake and then serves requests on rwc until
// the connection breaks or ctx ends. It closes rwc and waits for the
// handlers it started (whose contexts are cancelled) before returning. A
// closed connection is a normal end: Serve returns nil.
func Serve(ctx context.Context, rwc io.ReadWriteCloser, h Handler) error {
	s := &server{rwc: rwc, in: NewFrameReader(rwc), h: h, log: slog.Default()}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { rwc.Close() })
	defer stop()
	defer rwc.Close()

	if err := s.handshake(); err != nil {
		return err
	}

	var wg sync.WaitGroup
	defer wg.Wait()
	var mu sync.Mutex
	streams := map[uint32]*serverStream{}
	for {
		f, err := s.in.Next()
		if err != nil {
			mu.Lock()
			for _, st := range streams {
				st.cancel()
				st.q.close()
			}
			mu.Unlock()
			if ctx.Err() != nil || errors.Is(err, io.EOF) || errors.Is(err, io.ErrClosedPipe) || errors.Is(err, io.ErrUnexpectedEOF) {
				return nil
			}
			return err
		}
		mu.Lock()
		st := streams[f.Stream]
		mu.Unlock()
		switch f.Type {
		case TypeRequest:
			if st != nil || f.Stream == 0 {
				s.log.Warn("agent: duplicate or invalid stream id", "stream", f.Stream)
				continue
			}
			var req Request
			err := json.Unmarshal(f.Payload, &req) // copies what it keeps
			f.Release()
			if err != nil {
				s.respond(f.Stream, nil, errdefs.Wrap(errdefs.ErrInvalidArgument, err, "", "decoding request"))
				continue
			}
			sctx, scancel := context.WithCancel(ctx)
			st = &serverStream{q: newQueue(InboundLimit, nil), cancel: scancel}
			mu.Lock()
			streams[f.Stream] = st
			mu.Unlock()
			stream := &Stream{ID: f.Stream, Method: req.Method, Params: req.Params, srv: s, in: st.q}
			wg.Add(1)
			go func() {
				defer wg.Done()
				res, herr := s.h.Handle(sctx, stream)
				scancel()
				mu.Lock()
				delete(streams, stream.ID)
				mu.Unlock()
				st.q.close()
				s.respond(stream.ID, res, herr)
				for _, fn := range stream.after {
					fn()
				}
			}()
		case TypeData, TypeEOF:
			if st == nil || !st.q.push(f) {
				f.Release()
			}
		case TypeCancel:
			if st != nil {
				st.cancel()
				st.q.close() // wakes a handler blocked reading input
			}
		case TypeHello:
			// A hello in the middle of a connection is a new host on the
			// same guest stream: a guest restored from saved memory keeps
			// the port it had open, while the host that knew its streams
			// is gone. Its work is cancelled and the newcomer answered.
			if f.Stream != 0 {
				continue
			}
			mu.Lock()
			for id, st := range streams {
				st.cancel()
				st.q.close()
				delete(streams, id)
			}
			mu.Unlock()
			if err := s.answerHello(f); err != nil {
				return err
			}
		default:
			// Unknown or misdirected frames: ignore, so that a newer host can
			// add frame types without breaking an older guest's streams.
		}
	}
}

func (s *server) respond(id uint32, res any, herr error) {
	var resp Response
	if herr != nil {
		resp.Error = toWire(herr)
	} else if res != nil {
		b, err := json.Marshal(res)
		if err != nil {
			resp.Error = toWire(errdefs.Wrap(errdefs.ErrInternal, err, "", "encoding result"))
		} else {
			resp.Result = b
		}
	}
	payload, _ := json.Marshal(resp)
	if err := s.write(Frame{Type: TypeResponse, Stream: id, Payload: payload}); err != nil {
		s.log.Debug("agent: writing response", "stream", id, "err", err)
	}
}

func (s *server) handshake() error {
	f, err := s.in.Next()
	if err != nil {
		return err
	}
	if f.Type != TypeHello || f.Stream != 0 {
		return errdefs.New(errdefs.ErrFailedPrecondition, "", "host sent frame type %d before its hello", f.Type)
	}
	return s.answerHello(f)
}

// answerHello answers the host's hello with ours, and fails on a
// protocol version mismatch.
func (s *server) answerHello(f Frame) error {
	var host Hello
	if err := json.Unmarshal(f.Payload, &host); err != nil {
		return errdefs.Wrap(errdefs.ErrFailedPrecondition, err, "", "decoding host hello")
	}
	mine := Hello{Software: "pyro-agent " + version.Version}
	if hh, ok := s.h.(Helloer); ok {
		mine = hh.Hello()
	}
	mine.Proto = Version
	b, _ := json.Marshal(mine)
	// Answer even on a mismatch so the host can name both versions.
	if err := s.write(Frame{Type: TypeHello, Payload: b}); err != nil {
		return err
	}
	if host.Proto != Version {
		return errdefs.New(errdefs.ErrFailedPrecondition,
			"use a pyro host and agent from the same release",
			"agent protocol version mismatch: host (%s) speaks %d, guest agent speaks %d", host.Software, host.Proto, Version)
	}
	return nil
}
