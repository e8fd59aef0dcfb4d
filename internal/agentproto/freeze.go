package agentproto

import (
	"context"
	"io"
	"sync"

	"github.com/pyro-mcp/pyro/internal/errdefs"
)

// MethodFreeze flushes and freezes guest filesystems for a disk snapshot.
// Params FreezeRequest. The guest syncs, freezes each mount (FIFREEZE) and
// sends one TypeStdout frame, "frozen"; it thaws (FITHAW, in reverse order)
// when the host sends TypeEOF, cancels the stream, drops the connection, or
// when TimeoutMs passes, whichever comes first, and then answers with
// FreezeResult. Commands keep running meanwhile; their writes wait.
const MethodFreeze = "freeze"

// FreezeRequest names the mounts to freeze, in order.
type FreezeRequest struct {
	Mounts    []string `json:"mounts"`
	TimeoutMs int64    `json:"timeout_ms"` // the guest thaws on its own past it
}

// FreezeResult says how long the filesystems stayed frozen and what ended it.
type FreezeResult struct {
	FrozenMs int64  `json:"frozen_ms"`
	ThawedBy string `json:"thawed_by"` // "host", "deadline" or "cancel"
}

// Frozen is a guest whose filesystems are frozen until Thaw.
type Frozen struct {
	eof    *io.PipeWriter
	done   chan struct{}
	res    FreezeResult
	err    error
	cancel context.CancelFunc
}

// Freeze asks the guest to flush and freeze req.Mounts and returns once
// they are frozen. The caller must call Thaw; ctx bounds the whole freeze
// (ending it thaws the guest too).
func (c *Client) Freeze(ctx context.Context, req FreezeRequest) (*Frozen, error) {
	ctx, cancel := context.WithCancel(ctx)
	pr, pw := io.Pipe()
	f := &Frozen{eof: pw, done: make(chan struct{}), cancel: cancel}
	frozen := make(chan struct{})
	var once sync.Once
	out := writerFunc(func(p []byte) (int, error) {
		once.Do(func() { close(frozen) })
		return len(p), nil
	})
	go func() {
		defer close(f.done)
		// The guest's one stdout byte says "frozen"; nothing else comes.
		_, f.err = c.call(ctx, MethodFreeze, req, &f.res, pr, false, out, nil, 1<<10)
	}()
	select {
	case <-frozen:
		return f, nil
	case <-f.done:
		cancel()
		if f.err == nil {
			f.err = errdefs.New(errdefs.ErrInternal, "", "the guest answered the freeze without freezing")
		}
		return nil, f.err
	}
}

// Thaw tells the guest to thaw and waits for its answer.
func (f *Frozen) Thaw() (*FreezeResult, error) {
	f.eof.Close()
	<-f.done
	f.cancel()
	if f.err != nil {
		return nil, f.err
	}
	return &f.res, nil
}

type writerFunc func([]byte) (int, error)

func (w writerFunc) Write(p []byte) (int, error) { return w(p) }
