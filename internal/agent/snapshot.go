package agent

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pyro-mcp/pyro/internal/agentproto"
	"github.com/pyro-mcp/pyro/internal/errdefs"
)

// The Linux filesystem freeze ioctls, _IOWR('X', 119|120, int).
const (
	ioctlFIFREEZE = 0xC0045877
	ioctlFITHAW   = 0xC0045878
)

// Bounds of a freeze: the guest thaws on its own past the deadline, so a
// host that dies mid-snapshot never leaves the guest frozen.
const (
	defaultFreezeTimeout = 10 * time.Second
	maxFreezeTimeout     = 60 * time.Second
)

// freeze serves agentproto.MethodFreeze: sync, FIFREEZE every mount in
// order, say "frozen", wait for the host's EOF (or a cancel, or the
// deadline), thaw in reverse order. The agent itself runs from memory and
// writes nothing to disk meanwhile; commands keep running and their writes
// wait for the thaw.
func (h *Handler) freeze(ctx context.Context, s *agentproto.Stream) (any, error) {
	var req agentproto.FreezeRequest
	if err := decode(s.Params, &req); err != nil {
		return nil, err
	}
	if h.cfg.Reap == nil {
		return nil, errdefs.New(errdefs.ErrFailedPrecondition, "", "freeze: only a guest freezes its filesystems")
	}
	if len(req.Mounts) == 0 {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "", "freeze: no mounts given")
	}
	timeout := time.Duration(req.TimeoutMs) * time.Millisecond
	if timeout <= 0 {
		timeout = defaultFreezeTimeout
	}
	timeout = min(timeout, maxFreezeTimeout)
	// Open everything before freezing anything: opening a directory on a
	// frozen filesystem is fine, but better not to find out.
	fds := make([]int, 0, len(req.Mounts))
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	for _, m := range req.Mounts {
		fd, err := unix.Open(h.hostPath(m), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, errdefs.Wrap(errdefs.ErrFailedPrecondition, err, "", "freeze: opening %s", m)
		}
		fds = append(fds, fd)
	}
	// No sync(2) first: FIFREEZE syncs the filesystem it freezes, and an
	// extra round of flushes is what a snapshot would wait for.
	var frozen []int
	thaw := func() {
		for i := len(frozen) - 1; i >= 0; i-- {
			if err := unix.IoctlSetInt(frozen[i], ioctlFITHAW, 0); err != nil {
				h.log.Error("thawing a filesystem", "err", err)
			}
		}
		frozen = nil
	}
	// All at once: each freeze waits for its filesystem's flush to reach
	// the host's disk, and they are independent.
	errs := make([]error, len(fds))
	var wg sync.WaitGroup
	for i, fd := range fds {
		wg.Go(func() { errs[i] = unix.IoctlSetInt(fd, ioctlFIFREEZE, 0) })
	}
	wg.Wait()
	var failed error
	for i, fd := range fds {
		if errs[i] == nil {
			frozen = append(frozen, fd)
		} else if failed == nil {
			failed = errdefs.Wrap(errdefs.ErrFailedPrecondition, errs[i], "try again (another snapshot may be in progress)", "freeze: %s", req.Mounts[i])
		}
	}
	if failed != nil {
		thaw()
		return nil, failed
	}
	start := time.Now()
	defer thaw()
	if _, err := fmt.Fprint(s.Stdout(), "frozen"); err != nil {
		return nil, err
	}
	eof := make(chan struct{})
	go func() {
		io.Copy(io.Discard, s)
		close(eof)
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	res := &agentproto.FreezeResult{ThawedBy: "host"}
	select {
	case <-eof:
		if ctx.Err() != nil {
			res.ThawedBy = "cancel"
		}
	case <-ctx.Done():
		res.ThawedBy = "cancel"
	case <-t.C:
		res.ThawedBy = "deadline"
		h.log.Warn("thawing at the deadline: the host never ended the freeze", "timeout", timeout)
	}
	thaw()
	res.FrozenMs = time.Since(start).Milliseconds()
	return res, nil
}
