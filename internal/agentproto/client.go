package agentproto

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/version"
)

// Host-side bounds on what a guest can make the host hold. The guest is
// not trusted to respect its own caps (its commands run as root there).
const (
	// StreamQueueLimit bounds the frames queued for one call, payloads
	// plus a per-frame overhead: past it the connection's reader waits for
	// that call's consumer (back-pressure on the guest, never growth).
	StreamQueueLimit = 4 << 20
	// ConnQueueLimit bounds the frames queued for all calls of one
	// connection together.
	ConnQueueLimit = 16 << 20
)

// Client is the host side of one agent connection. Its methods are safe for
// concurrent use; each call is one stream.
//
// Inbound frames are queued per stream, so a slow stdout writer of one call
// does not hold up the others until its queue is full. Memory stays bounded
// whatever the guest sends: output past a call's cap (ExecRequest.MaxOutput)
// is dropped on arrival and reported as truncated; each call's queue holds at
// most StreamQueueLimit and the connection ConnQueueLimit, beyond which the
// reader waits; frames for unknown streams or of unknown types are dropped;
// a frame type the guest must never send fails the call; an oversized
// header fails the connection.
type Client struct {
	rwc   io.ReadWriteCloser
	in    *FrameReader
	hello Hello

	wmu sync.Mutex // serialises frame writes

	mu      sync.Mutex
	streams map[uint32]*clientStream
	next    uint32
	err     error // why the connection broke
	budget  *budget

	done      chan struct{}
	closeOnce sync.Once
}

// NewClient performs the handshake on rwc (bounded by ctx) and starts
// reading. On failure rwc is closed.
func NewClient(ctx context.Context, rwc io.ReadWriteCloser) (*Client, error) {
	c := &Client{rwc: rwc, in: NewFrameReader(rwc), streams: map[uint32]*clientStream{},
		budget: newBudget(ConnQueueLimit), done: make(chan struct{})}
	type res struct {
		h   Hello
		err error
	}
	ch := make(chan res, 1)
	go func() {
		h, err := c.handshake()
		ch <- res{h, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			rwc.Close()
			return nil, r.err
		}
		c.hello = r.h
	case <-ctx.Done():
		rwc.Close()
		<-ch
		return nil, ctxErr(ctx, "agent handshake")
	}
	go c.readLoop()
	return c, nil
}

func (c *Client) handshake() (Hello, error) {
	mine, _ := json.Marshal(Hello{Proto: Version, Software: "pyro " + version.Version})
	if err := WriteFrame(c.rwc, Frame{Type: TypeHello, Payload: mine}); err != nil {
		return Hello{}, errdefs.Wrap(errdefs.ErrUnavailable, err, "check that the guest booted (see its console log)", "sending agent hello")
	}
	f, err := c.in.Next()
	if err != nil {
		return Hello{}, errdefs.Wrap(errdefs.ErrUnavailable, err, "check that the guest booted (see its console log)", "reading agent hello")
	}
	if f.Type != TypeHello || f.Stream != 0 {
		return Hello{}, errdefs.New(errdefs.ErrUnavailable, "the other end is not a pyro agent", "agent sent frame type %d on stream %d before its hello", f.Type, f.Stream)
	}
	var h Hello
	if err := json.Unmarshal(f.Payload, &h); err != nil {
		return Hello{}, errdefs.Wrap(errdefs.ErrUnavailable, err, "the other end is not a pyro agent", "decoding agent hello")
	}
	if h.Proto != Version {
		return h, versionMismatch(Version, h.Proto, h.Software)
	}
	return h, nil
}

func versionMismatch(host, guest int, guestSoftware string) error {
	return errdefs.New(errdefs.ErrFailedPrecondition,
		"rebuild the environment's initramfs with this pyro (host and agent must come from the same release)",
		"agent protocol version mismatch: host speaks %d, guest agent (%s) speaks %d", host, guestSoftware, guest)
}

// Hello returns the guest's handshake.
func (c *Client) Hello() Hello { return c.hello }

// Done is closed when the connection breaks or is closed.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err returns why the connection ended, or nil while it is alive.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close closes the connection; calls in flight fail.
func (c *Client) Close() error {
	err := c.rwc.Close()
	c.fail(errors.New("client closed"))
	return err
}

func (c *Client) fail(err error) {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.err = err
		for id, st := range c.streams {
			st.q.close()
			delete(c.streams, id)
		}
		c.mu.Unlock()
		close(c.done)
	})
}

// clientStream is one call as the reader sees it.
type clientStream struct {
	q *queue
	// maxOut caps each of stdout and stderr; the reader drops what is past
	// it and records that it did.
	maxOut    [2]int64
	seen      [2]int64 // guarded by the reader (single goroutine)
	truncated [2]atomic.Bool
	abuse     atomic.Pointer[string] // a protocol violation that fails the call
}

func (c *Client) readLoop() {
	for {
		f, err := c.in.Next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("agent closed the connection")
			}
			c.rwc.Close()
			c.fail(err)
			return
		}
		c.mu.Lock()
		st := c.streams[f.Stream]
		c.mu.Unlock()
		if st == nil {
			// Frames for unknown streams belong to calls that gave up
			// (cancelled), or to nobody: drop them.
			f.Release()
			continue
		}
		switch f.Type {
		case TypeStdout, TypeStderr:
			if !st.admitOutput(&f) {
				f.Release()
				continue
			}
		case TypeResponse:
		case TypeHello, TypeRequest, TypeData, TypeEOF, TypeCancel:
			msg := fmt.Sprintf("agent sent frame type %d on stream %d, which only the host may send", f.Type, f.Stream)
			st.abuse.CompareAndSwap(nil, &msg)
			st.q.close()
			f.Release()
			continue
		default:
			f.Release()
			continue // a newer guest's frame type: not ours to queue
		}
		if !st.q.push(f) {
			f.Release()
		}
	}
}

// admitOutput trims an output frame to the call's cap and reports whether
// anything is left to queue.
func (st *clientStream) admitOutput(f *Frame) bool {
	i := 0
	if f.Type == TypeStderr {
		i = 1
	}
	if len(f.Payload) == 0 {
		return false
	}
	room := st.maxOut[i] - st.seen[i]
	st.seen[i] += int64(len(f.Payload))
	if int64(len(f.Payload)) > room {
		st.truncated[i].Store(true)
		if room <= 0 {
			return false
		}
		f.Payload = f.Payload[:room]
	}
	return true
}

func (c *Client) write(f Frame) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return WriteFrame(c.rwc, f)
}

func (c *Client) connErr(method string) error {
	return errdefs.Wrap(errdefs.ErrUnavailable, c.Err(), "the guest may have crashed or powered off; check the VM's console log",
		"agent %s: connection lost", method)
}

func ctxErr(ctx context.Context, what string) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return errdefs.Wrap(errdefs.ErrTimeout, ctx.Err(), "", "%s", what)
	}
	return fmt.Errorf("%s: %w", what, ctx.Err())
}

// call runs one request on a new stream. stdin, when non-nil, is sent as
// TypeData frames followed by TypeEOF (bulk: each frame filled to
// ChunkSize unless stdin ends, else as stdin's reads return);
// TypeStdout/TypeStderr payloads go to stdout/stderr (nil discards), at
// most maxOut bytes of each (0: none). It returns which of stdout and
// stderr the host truncated.
func (c *Client) call(ctx context.Context, method string, params, result any, stdin io.Reader, bulk bool, stdout, stderr io.Writer, maxOut int64) (truncated [2]bool, err error) {
	req := Request{Method: method}
	if params != nil {
		b, err := json.Marshal(params)
		if err != nil {
			return truncated, errdefs.Wrap(errdefs.ErrInvalidArgument, err, "", "encoding %s params", method)
		}
		req.Params = b
	}
	payload, _ := json.Marshal(req)

	st := &clientStream{q: newQueue(StreamQueueLimit, c.budget), maxOut: [2]int64{maxOut, maxOut}}
	q := st.q
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return truncated, c.connErr(method)
	}
	c.next++
	if c.next == 0 {
		c.next = 1
	}
	id := c.next
	c.streams[id] = st
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.streams, id)
		c.mu.Unlock()
		// Unblocks a reader waiting for room in this queue and gives its
		// bytes back to the connection.
		q.drain()
	}()

	if err := c.write(Frame{Type: TypeRequest, Stream: id, Payload: payload}); err != nil {
		return truncated, c.connErr(method)
	}

	sendCtx, stopSend := context.WithCancel(ctx)
	defer stopSend()
	if stdin != nil {
		go c.sendData(sendCtx, id, stdin, bulk)
	}

	for {
		f, ok := q.pop(ctx)
		if !ok {
			if msg := st.abuse.Load(); msg != nil {
				_ = c.write(Frame{Type: TypeCancel, Stream: id})
				return truncated, errdefs.New(errdefs.ErrUnavailable,
					"the guest agent broke the protocol; if the guest runs untrusted code, treat it as hostile and delete it",
					"agent %s: %s", method, *msg)
			}
			if ctx.Err() != nil {
				// Tell the guest to stop; the response that follows is dropped.
				_ = c.write(Frame{Type: TypeCancel, Stream: id})
				return truncated, ctxErr(ctx, "agent "+method)
			}
			return truncated, c.connErr(method)
		}
		switch f.Type {
		case TypeStdout:
			if stdout != nil {
				stdout.Write(f.Payload)
			}
			f.Release()
		case TypeStderr:
			if stderr != nil {
				stderr.Write(f.Payload)
			}
			f.Release()
		case TypeResponse:
			truncated = [2]bool{st.truncated[0].Load(), st.truncated[1].Load()}
			var resp Response
			err := json.Unmarshal(f.Payload, &resp) // copies what it keeps
			f.Release()
			if err != nil {
				return truncated, errdefs.Wrap(errdefs.ErrUnavailable, err, "", "agent %s: decoding response", method)
			}
			if resp.Error != nil {
				return truncated, fromWire(method, resp.Error)
			}
			if result != nil && len(resp.Result) > 0 {
				if err := json.Unmarshal(resp.Result, result); err != nil {
					return truncated, errdefs.Wrap(errdefs.ErrUnavailable, err, "", "agent %s: decoding result", method)
				}
			}
			return truncated, nil
		}
	}
}

// sendData streams r as TypeData frames then TypeEOF, each read straight
// into a pooled frame buffer and written from it; bulk fills each frame
// (ChunkSize) before sending it. It stops early when ctx ends (the call
// returned). A read error ends the input with TypeEOF too: the guest sees
// a short stdin rather than a hang.
func (c *Client) sendData(ctx context.Context, id uint32, r io.Reader, bulk bool) {
	for {
		f := newChunkFrame(TypeData, id)
		var n int
		var err error
		if bulk {
			n, err = io.ReadFull(r, f.Payload)
			if err == io.ErrUnexpectedEOF {
				err = io.EOF
			}
		} else {
			n, err = r.Read(f.Payload)
		}
		if ctx.Err() != nil {
			f.Release()
			return
		}
		if n > 0 {
			f.Payload = f.Payload[:n]
			werr := c.write(f)
			f.Release()
			if werr != nil {
				return
			}
		} else {
			f.Release()
		}
		if err != nil {
			_ = c.write(Frame{Type: TypeEOF, Stream: id})
			return
		}
	}
}

// Ping asks the guest to describe itself.
func (c *Client) Ping(ctx context.Context) (*PingResult, error) {
	var r PingResult
	if _, err := c.call(ctx, MethodPing, nil, &r, nil, false, nil, nil, 0); err != nil {
		return nil, err
	}
	return &r, nil
}

// Exec runs one command. Output is written to stdout and stderr as the guest
// produces it. When ctx ends the guest kills the command's process group and
// Exec returns ctx's error; a guest-side timeout (req.TimeoutMs) is not an
// error: the result says TimedOut.
func (c *Client) Exec(ctx context.Context, req ExecRequest, stdin io.Reader, stdout, stderr io.Writer) (*ExecResult, error) {
	req.Stdin = stdin != nil
	maxOut := int64(req.MaxOutput)
	if maxOut <= 0 {
		maxOut = DefaultMaxOutput
	}
	var r ExecResult
	truncated, err := c.call(ctx, MethodExec, req, &r, stdin, false, stdout, stderr, maxOut)
	if err != nil {
		return nil, err
	}
	// The guest reports its own truncation; the host's counts too, since a
	// guest that ignores its cap is cut here.
	r.StdoutTruncated = r.StdoutTruncated || truncated[0]
	r.StderrTruncated = r.StderrTruncated || truncated[1]
	return &r, nil
}

// PutArchive extracts the tar stream (optionally gzip-compressed) under
// req.Dest in the guest. Nothing is written when the archive is rejected.
func (c *Client) PutArchive(ctx context.Context, req PutArchiveRequest, tar io.Reader) (*PutArchiveResult, error) {
	if tar == nil {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "", "put_archive needs an archive")
	}
	var r PutArchiveResult
	if _, err := c.call(ctx, MethodPutArchive, req, &r, tar, true, nil, nil, 0); err != nil {
		return nil, err
	}
	return &r, nil
}

// Shutdown asks the guest to sync and power off. It returns once the guest
// acknowledged; the VMM exits shortly after.
func (c *Client) Shutdown(ctx context.Context) error {
	_, err := c.call(ctx, MethodShutdown, nil, nil, nil, false, nil, nil, 0)
	return err
}
