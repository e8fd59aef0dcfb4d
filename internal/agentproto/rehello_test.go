package agentproto_test

import (
	"context"
	"encoding/json"
	"net"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/internal/agentproto"
)

// A guest restored from saved memory keeps its open port while its host
// is new: a second hello on the same connection is answered, and the
// streams of the host that went away are cancelled.
func TestHelloAgainRestartsTheSession(t *testing.T) {
	host, guest := net.Pipe()
	defer host.Close()
	cancelled := make(chan struct{})
	h := agentproto.HandlerFunc(func(ctx context.Context, s *agentproto.Stream) (any, error) {
		if s.Method == "block" {
			<-ctx.Done()
			close(cancelled)
			return nil, ctx.Err()
		}
		return agentproto.PingResult{Hostname: "g"}, nil
	})
	go agentproto.Serve(context.Background(), guest, h)

	hello := func() agentproto.Hello {
		b, _ := json.Marshal(agentproto.Hello{Proto: agentproto.Version, Software: "host"})
		if err := agentproto.WriteFrame(host, agentproto.Frame{Type: agentproto.TypeHello, Payload: b}); err != nil {
			t.Fatal(err)
		}
		for {
			f, err := agentproto.ReadFrame(host)
			if err != nil {
				t.Fatal(err)
			}
			if f.Type == agentproto.TypeHello {
				var g agentproto.Hello
				json.Unmarshal(f.Payload, &g)
				return g
			}
		}
	}
	if g := hello(); g.Proto != agentproto.Version {
		t.Fatalf("first hello: %+v", g)
	}
	req, _ := json.Marshal(agentproto.Request{Method: "block"})
	agentproto.WriteFrame(host, agentproto.Frame{Type: agentproto.TypeRequest, Stream: 1, Payload: req})
	if g := hello(); g.Proto != agentproto.Version {
		t.Fatalf("second hello: %+v", g)
	}
	select {
	case <-cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("the old host's stream was not cancelled")
	}
	// The new host may use stream 1 again.
	ping, _ := json.Marshal(agentproto.Request{Method: agentproto.MethodPing})
	agentproto.WriteFrame(host, agentproto.Frame{Type: agentproto.TypeRequest, Stream: 1, Payload: ping})
	for {
		f, err := agentproto.ReadFrame(host)
		if err != nil {
			t.Fatal(err)
		}
		if f.Type == agentproto.TypeResponse && f.Stream == 1 {
			var r agentproto.Response
			json.Unmarshal(f.Payload, &r)
			if r.Error == nil && len(r.Result) > 0 && string(r.Result) != "null" {
				var p agentproto.PingResult
				json.Unmarshal(r.Result, &p)
				if p.Hostname == "g" {
					return
				}
			}
		}
	}
}
