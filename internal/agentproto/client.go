package agentproto

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/version"
)

// ChunkSize is the largest payload the client and server put in one data or
// output frame: small enough that one big transfer interleaves with the
// other streams' frames, large enough to keep per-frame overhead low.
const ChunkSize = 64 << 10

// Client is the host side of one agent connection. Its methods are safe for
// concurrent use; each call is one stream.
//
// Inbound frames are queued per stream without bound, so a slow stdout
// writer of one call never holds up the others; the guest caps each exec's
// output (MaxOutput), which bounds that queue.
type Client struct {
	rwc   io.ReadWriteCloser
	in    *bufio.Reader
	hello Hello

	wmu sync.Mutex // serialises frame writes

	mu      sync.Mutex
	streams map[uint32]*queue
	next    uint32
	err     error // why the connection broke

	done      chan struct{}
	closeOnce sync.Once
}

// NewClient performs the handshake on rwc (bounded by ctx) and starts
// reading. On failure rwc is closed.
func NewClient(ctx context.Context, rwc io.ReadWriteCloser) (*Client, error) {
	c := &Client{rwc: rwc, in: bufio.NewReaderSize(rwc, ReadBufferSize), streams: map[uint32]*queue{}, done: make(chan struct{})}
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
	f, err := ReadFrame(c.in)
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
		for id, q := range c.streams {
			q.close()
			delete(c.streams, id)
		}
		c.mu.Unlock()
		close(c.done)
	})
}

func (c *Client) readLoop() {
	for {
		f, err := ReadFrame(c.in)
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("agent closed the connection")
			}
			c.rwc.Close()
			c.fail(err)
			return
		}
		c.mu.Lock()
		q := c.streams[f.Stream]
		c.mu.Unlock()
		if q != nil {
			q.push(f) // unbounded: never blocks
		}
		// Frames for unknown streams belong to calls that gave up (cancelled): drop them.
	}
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
// TypeData frames followed by TypeEOF; TypeStdout/TypeStderr payloads go to
// stdout/stderr (nil discards).
func (c *Client) call(ctx context.Context, method string, params, result any, stdin io.Reader, stdout, stderr io.Writer) error {
	req := Request{Method: method}
	if params != nil {
		b, err := json.Marshal(params)
		if err != nil {
			return errdefs.Wrap(errdefs.ErrInvalidArgument, err, "", "encoding %s params", method)
		}
		req.Params = b
	}
	payload, _ := json.Marshal(req)

	q := newQueue(0)
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return c.connErr(method)
	}
	c.next++
	if c.next == 0 {
		c.next = 1
	}
	id := c.next
	c.streams[id] = q
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.streams, id)
		c.mu.Unlock()
	}()

	if err := c.write(Frame{Type: TypeRequest, Stream: id, Payload: payload}); err != nil {
		return c.connErr(method)
	}

	sendCtx, stopSend := context.WithCancel(ctx)
	defer stopSend()
	if stdin != nil {
		go c.sendData(sendCtx, id, stdin)
	}

	for {
		f, ok := q.pop(ctx)
		if !ok {
			if ctx.Err() != nil {
				// Tell the guest to stop; the response that follows is dropped.
				_ = c.write(Frame{Type: TypeCancel, Stream: id})
				return ctxErr(ctx, "agent "+method)
			}
			return c.connErr(method)
		}
		switch f.Type {
		case TypeStdout:
			if stdout != nil {
				stdout.Write(f.Payload)
			}
		case TypeStderr:
			if stderr != nil {
				stderr.Write(f.Payload)
			}
		case TypeResponse:
			var resp Response
			if err := json.Unmarshal(f.Payload, &resp); err != nil {
				return errdefs.Wrap(errdefs.ErrInternal, err, "", "agent %s: decoding response", method)
			}
			if resp.Error != nil {
				return fromWire(method, resp.Error)
			}
			if result != nil && len(resp.Result) > 0 {
				if err := json.Unmarshal(resp.Result, result); err != nil {
					return errdefs.Wrap(errdefs.ErrInternal, err, "", "agent %s: decoding result", method)
				}
			}
			return nil
		}
	}
}

// sendData streams r as TypeData frames then TypeEOF. It stops early when
// ctx ends (the call returned). A read error ends the input with TypeEOF
// too: the guest sees a short stdin rather than a hang.
func (c *Client) sendData(ctx context.Context, id uint32, r io.Reader) {
	buf := make([]byte, ChunkSize)
	for {
		n, err := r.Read(buf)
		if ctx.Err() != nil {
			return
		}
		if n > 0 {
			if c.write(Frame{Type: TypeData, Stream: id, Payload: append([]byte(nil), buf[:n]...)}) != nil {
				return
			}
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
	if err := c.call(ctx, MethodPing, nil, &r, nil, nil, nil); err != nil {
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
	var r ExecResult
	if err := c.call(ctx, MethodExec, req, &r, stdin, stdout, stderr); err != nil {
		return nil, err
	}
	return &r, nil
}

// PutArchive extracts the tar stream (optionally gzip-compressed) under
// req.Dest in the guest. Nothing is written when the archive is rejected.
func (c *Client) PutArchive(ctx context.Context, req PutArchiveRequest, tar io.Reader) (*PutArchiveResult, error) {
	if tar == nil {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "", "put_archive needs an archive")
	}
	var r PutArchiveResult
	if err := c.call(ctx, MethodPutArchive, req, &r, tar, nil, nil); err != nil {
		return nil, err
	}
	return &r, nil
}

// Shutdown asks the guest to sync and power off. It returns once the guest
// acknowledged; the VMM exits shortly after.
func (c *Client) Shutdown(ctx context.Context) error {
	return c.call(ctx, MethodShutdown, nil, nil, nil, nil, nil)
}
