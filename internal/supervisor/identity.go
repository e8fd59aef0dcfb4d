package supervisor

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/pyro-mcp/pyro/internal/agentproto"
	"github.com/pyro-mcp/pyro/internal/errdefs"
)

// identityStream is the stream id of the identity request, sent on the
// guest connection before the router starts (which numbers from 1 after
// it).
const identityStream = 1

// EntropyBytes is how much host randomness a restored guest is given.
const EntropyBytes = 64

// giveIdentity sends a restored guest its identity (fresh entropy, the
// host's clock, and what req names) and waits for the answer: nothing
// else has been sent since the handshake, so the next response is ours.
func giveIdentity(ctx context.Context, conn io.ReadWriter, req agentproto.IdentityRequest) (*agentproto.IdentityResult, error) {
	req.Entropy = make([]byte, EntropyBytes)
	if _, err := rand.Read(req.Entropy); err != nil {
		return nil, err
	}
	req.UnixNano = time.Now().UnixNano()
	params, _ := json.Marshal(req)
	payload, _ := json.Marshal(agentproto.Request{Method: agentproto.MethodIdentity, Params: params})
	type result struct {
		res *agentproto.IdentityResult
		err error
	}
	done := make(chan result, 1)
	go func() {
		if err := agentproto.WriteFrame(conn, agentproto.Frame{Type: agentproto.TypeRequest, Stream: identityStream, Payload: payload}); err != nil {
			done <- result{err: fmt.Errorf("sending identity: %w", err)}
			return
		}
		for {
			f, err := agentproto.ReadFrame(conn)
			if err != nil {
				done <- result{err: fmt.Errorf("reading identity's answer: %w", err)}
				return
			}
			if f.Type != agentproto.TypeResponse || f.Stream != identityStream {
				continue
			}
			var resp agentproto.Response
			if err := json.Unmarshal(f.Payload, &resp); err != nil {
				done <- result{err: fmt.Errorf("decoding identity's answer: %w", err)}
				return
			}
			if resp.Error != nil {
				done <- result{err: errdefs.New(errdefs.FromCode(resp.Error.Code), resp.Error.Hint, "%s", resp.Error.Message)}
				return
			}
			var res agentproto.IdentityResult
			json.Unmarshal(resp.Result, &res)
			done <- result{res: &res}
			return
		}
	}()
	select {
	case r := <-done:
		return r.res, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
