// Package fakeguest is a hostile guest agent for tests: it answers the
// handshake like a real agent, then treats every request with a scripted
// Behavior that breaks the protocol on purpose (floods, silence, frames of
// unknown or host-only types, oversized headers). It exists to prove that
// the host side (agentproto.Client, the supervisor's relay) stays within its
// memory bounds, returns errors and cleans up whatever a guest does.
package fakeguest

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"sync"

	"github.com/pyro-mcp/pyro/internal/agentproto"
)

// Conn is the guest's side of one connection, as a Behavior sees it.
type Conn struct {
	rwc io.ReadWriteCloser
	wmu sync.Mutex
	// Sent counts payload bytes written to the host.
	mu   sync.Mutex
	sent int64
}

// Write sends one frame.
func (c *Conn) Write(f agentproto.Frame) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := agentproto.WriteFrame(c.rwc, f); err != nil {
		return err
	}
	c.mu.Lock()
	c.sent += int64(len(f.Payload))
	c.mu.Unlock()
	return nil
}

// Raw writes bytes as they are (a broken header, say).
func (c *Conn) Raw(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.rwc.Write(b)
	return err
}

// Sent is the payload bytes sent so far.
func (c *Conn) Sent() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sent
}

// Respond closes stream id with result.
func (c *Conn) Respond(id uint32, result any) error {
	b, _ := json.Marshal(result)
	resp, _ := json.Marshal(agentproto.Response{Result: b})
	return c.Write(agentproto.Frame{Type: agentproto.TypeResponse, Stream: id, Payload: resp})
}

// Behavior handles one request (its TypeRequest frame) on its own
// goroutine; ctx ends when the connection does.
type Behavior func(ctx context.Context, c *Conn, req agentproto.Frame)

// Serve answers the handshake on rwc, then runs b for every request until
// the connection breaks or ctx ends. It returns the Conn at once (so a test
// can watch Sent) and closes rwc when done.
func Serve(ctx context.Context, rwc io.ReadWriteCloser, b Behavior) *Conn {
	c := &Conn{rwc: rwc}
	go func() {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		stop := context.AfterFunc(ctx, func() { rwc.Close() })
		defer stop()
		defer rwc.Close()
		in := bufio.NewReader(rwc)
		if _, err := agentproto.ReadFrame(in); err != nil {
			return
		}
		h, _ := json.Marshal(agentproto.Hello{Proto: agentproto.Version, Software: "pyro-agent hostile"})
		if c.Write(agentproto.Frame{Type: agentproto.TypeHello, Payload: h}) != nil {
			return
		}
		var wg sync.WaitGroup
		defer wg.Wait()
		defer cancel()
		for {
			f, err := agentproto.ReadFrame(in)
			if err != nil {
				return
			}
			if f.Type == agentproto.TypeRequest {
				wg.Add(1)
				go func() { defer wg.Done(); b(ctx, c, f) }()
			}
		}
	}()
	return c
}

// Flood sends output frames of chunk bytes on the request's stream until
// the connection breaks, never answering.
func Flood(chunk int, typ uint8) Behavior {
	return func(ctx context.Context, c *Conn, req agentproto.Frame) {
		buf := make([]byte, chunk)
		for i := range buf {
			buf[i] = 'x'
		}
		for ctx.Err() == nil {
			if c.Write(agentproto.Frame{Type: typ, Stream: req.Stream, Payload: buf}) != nil {
				return
			}
		}
	}
}

// Silent never answers.
func Silent(ctx context.Context, c *Conn, req agentproto.Frame) { <-ctx.Done() }

// Garbage sends frames of unknown types, on unknown streams and on stream
// 0, then a valid answer: the call must succeed as if none were sent.
func Garbage(result any) Behavior {
	return func(ctx context.Context, c *Conn, req agentproto.Frame) {
		for i := 0; i < 1000; i++ {
			c.Write(agentproto.Frame{Type: 99, Stream: req.Stream, Payload: []byte("?")})
			c.Write(agentproto.Frame{Type: agentproto.TypeStdout, Stream: req.Stream + 1000 + uint32(i), Payload: []byte("stray")})
			c.Write(agentproto.Frame{Type: agentproto.TypeStdout, Stream: 0, Payload: []byte("zero")})
			c.Write(agentproto.Frame{Type: agentproto.TypeStdout, Stream: req.Stream})
		}
		c.Write(agentproto.Frame{Type: agentproto.TypeStdout, Stream: req.Stream, Payload: []byte("ok\n")})
		c.Respond(req.Stream, agentproto.ExecResult{})
	}
}

// HostOnly sends a frame type only the host may send on the request's
// stream, then would answer normally.
func HostOnly(typ uint8) Behavior {
	return func(ctx context.Context, c *Conn, req agentproto.Frame) {
		c.Write(agentproto.Frame{Type: typ, Stream: req.Stream, Payload: []byte("x")})
		c.Respond(req.Stream, agentproto.ExecResult{})
	}
}

// Oversized writes a frame header announcing n payload bytes, then a few
// bytes, and stays silent.
func Oversized(n uint32) Behavior {
	return func(ctx context.Context, c *Conn, req agentproto.Frame) {
		var hdr [agentproto.HeaderSize]byte
		binary.BigEndian.PutUint32(hdr[0:4], n)
		hdr[4] = agentproto.TypeStdout
		binary.BigEndian.PutUint32(hdr[5:9], req.Stream)
		c.Raw(append(hdr[:], "short"...))
		<-ctx.Done()
	}
}

// Tiny floods one-byte output frames (the per-frame overhead is what
// costs) until the connection breaks.
func Tiny(ctx context.Context, c *Conn, req agentproto.Frame) {
	for ctx.Err() == nil {
		if c.Write(agentproto.Frame{Type: agentproto.TypeStdout, Stream: req.Stream, Payload: []byte("y")}) != nil {
			return
		}
	}
}
