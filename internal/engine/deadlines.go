package engine

import (
	"context"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pyro-mcp/pyro/internal/proctree"
)

// Host deadlines on guest calls. The guest is not trusted to answer: a
// call that waits for it has a deadline of the host's own, so that a
// guest that stops answering cannot hold a record lock (and every delete
// and create behind it) for ever. Deadlines stretch with the host's load,
// since a TCG guest on a busy host is slow, not stuck.
const (
	// baseGuestCall bounds a short guest call (ping, shutdown, the
	// handshake) on an idle host.
	baseGuestCall = 30 * time.Second
	// readyMargin is what the host adds to the supervisor's own boot
	// timeout before it stops waiting for the supervisor's answer.
	readyMargin = 30 * time.Second
	// removalWait is how long a delete waits for the record lock before
	// it kills the VM whose holder is stuck on it.
	removalWait = 5 * time.Second
)

// baseGuestIdle bounds how long a streaming call (put_archive) may go
// without the guest taking any data or, at the end, answering (a variable
// for tests).
var baseGuestIdle = 2 * time.Minute

// loadStretch is the 1-minute load average per CPU when above 1, else 1.
func loadStretch() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 1
	}
	f, _, _ := strings.Cut(string(b), " ")
	v, _ := strconv.ParseFloat(f, 64)
	return max(1, v/float64(runtime.NumCPU()))
}

func stretch(d time.Duration) time.Duration { return time.Duration(float64(d) * loadStretch()) }

// guestCallTimeout is the host deadline of a short guest call.
func guestCallTimeout() time.Duration { return stretch(baseGuestCall) }

// idleWatch returns a context that is cancelled when touch has not been
// called for idle (stretched with the load), and fired, which says whether
// that is what ended it.
func idleWatch(ctx context.Context, idle time.Duration) (wctx context.Context, touch func(), fired func() bool, stop func()) {
	idle = stretch(idle)
	wctx, cancel := context.WithCancel(ctx)
	var last atomic.Int64
	var hit atomic.Bool
	last.Store(time.Now().UnixNano())
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(min(idle/4, time.Second))
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-wctx.Done():
				return
			case now := <-t.C:
				if now.Sub(time.Unix(0, last.Load())) > idle {
					hit.Store(true)
					cancel()
					return
				}
			}
		}
	}()
	return wctx, func() { last.Store(time.Now().UnixNano()) }, hit.Load, func() { close(done); cancel() }
}

// touchReader calls touch on every read that moved data.
type touchReader struct {
	r     interface{ Read([]byte) (int, error) }
	touch func()
}

func (t *touchReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if n > 0 {
		t.touch()
	}
	return n, err
}

// killSupervisorsOf kills every supervisor process of id found in /proc,
// with everything under it: for a VM whose record does not name its
// supervisor yet (a boot in progress) or no longer does.
func killSupervisorsOf(id string) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	for _, ent := range ents {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil || pid == os.Getpid() || !isSupervisor(pid, id) {
			continue
		}
		proctree.KillDescendants(pid)
		syscall.Kill(-pid, syscall.SIGKILL)
		syscall.Kill(pid, syscall.SIGKILL)
	}
}
