package agentproto_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/internal/agentproto"
)

func frameBytes(typ uint8, stream uint32, payload string) []byte {
	var buf bytes.Buffer
	agentproto.WriteFrame(&buf, agentproto.Frame{Type: typ, Stream: stream, Payload: []byte(payload)})
	return buf.Bytes()
}

// FuzzReadFrame reads frames from arbitrary bytes: it never panics, never
// returns more than MaxPayload, and every frame it returns writes back to
// exactly the bytes it consumed.
func FuzzReadFrame(f *testing.F) {
	f.Add(frameBytes(agentproto.TypeHello, 0, `{"proto":1}`))
	f.Add(append(frameBytes(agentproto.TypeStdout, 7, "out"), frameBytes(agentproto.TypeResponse, 7, `{}`)...))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 3, 0, 0, 0, 1})
	f.Add([]byte{0, 0, 0, 5, 4, 0, 0, 0, 1, 'a'})
	f.Add([]byte{0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		for {
			before := r.Len()
			fr, err := agentproto.ReadFrame(r)
			if err != nil {
				if errors.Is(err, agentproto.ErrFrameTooLarge) {
					if n := binary.BigEndian.Uint32(data[len(data)-before:]); n <= agentproto.MaxPayload {
						t.Fatalf("refused a %d-byte frame as too large", n)
					}
				}
				return
			}
			if len(fr.Payload) > agentproto.MaxPayload {
				t.Fatalf("payload of %d bytes", len(fr.Payload))
			}
			var out bytes.Buffer
			if err := agentproto.WriteFrame(&out, fr); err != nil {
				t.Fatal(err)
			}
			consumed := data[len(data)-before : len(data)-r.Len()]
			if !bytes.Equal(out.Bytes(), consumed) {
				t.Fatalf("frame %+v re-encodes to %x, read from %x", fr, out.Bytes(), consumed)
			}
		}
	})
}

// FuzzClientInbound feeds arbitrary bytes from the guest to a client with a
// call in flight: the call always returns (an answer, or an error) and the
// client never panics.
func FuzzClientInbound(f *testing.F) {
	resp, _ := json.Marshal(agentproto.Response{Result: json.RawMessage(`{"exit_code":3}`)})
	f.Add(append(frameBytes(agentproto.TypeStdout, 1, "hi"), frameBytes(agentproto.TypeResponse, 1, string(resp))...))
	f.Add(frameBytes(agentproto.TypeResponse, 1, "not json"))
	f.Add(frameBytes(agentproto.TypeData, 1, "x"))
	f.Add(frameBytes(99, 1, "x"))
	f.Add(frameBytes(agentproto.TypeStdout, 2, "other stream"))
	f.Add([]byte{0x7f, 0xff, 0xff, 0xff, 4, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		host, guest := net.Pipe()
		defer guest.Close()
		go func() {
			in := bufio.NewReader(guest)
			if _, err := agentproto.ReadFrame(in); err != nil {
				return
			}
			h, _ := json.Marshal(agentproto.Hello{Proto: agentproto.Version})
			agentproto.WriteFrame(guest, agentproto.Frame{Type: agentproto.TypeHello, Payload: h})
			if _, err := agentproto.ReadFrame(in); err != nil { // the request, stream 1
				return
			}
			go io.Copy(io.Discard, in)
			guest.Write(data)
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		c, err := agentproto.NewClient(ctx, host)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		done := make(chan struct{})
		go func() {
			defer close(done)
			c.Exec(ctx, agentproto.ExecRequest{Shell: "x", MaxOutput: 16}, nil, io.Discard, io.Discard)
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("call did not return")
		}
	})
}
