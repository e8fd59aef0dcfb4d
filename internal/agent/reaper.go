package agent

import (
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// Reaper reaps every child of PID 1. A PID 1 inherits all orphans and must
// wait for them or they stay zombies forever; but a wait4(-1) loop would
// steal the exit status of the commands exec is waiting for, so the reaper
// hands those to their waiters instead.
type Reaper struct {
	mu      sync.Mutex
	waiters map[int]chan syscall.WaitStatus
}

// NewReaper starts reaping on SIGCHLD.
func NewReaper() *Reaper {
	r := &Reaper{waiters: map[int]chan syscall.WaitStatus{}}
	sig := make(chan os.Signal, 16)
	signal.Notify(sig, syscall.SIGCHLD)
	go func() {
		for range sig {
			r.reapAll()
		}
	}()
	return r
}

func (r *Reaper) reapAll() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
		// Taking mu here waits for a start() in progress to register its pid.
		r.mu.Lock()
		ch := r.waiters[pid]
		delete(r.waiters, pid)
		r.mu.Unlock()
		if ch != nil {
			ch <- ws
		}
	}
}

// start runs fn (which starts a process and returns its pid) with the
// reaper held, so the exit cannot be reaped before the pid is registered.
func (r *Reaper) start(fn func() (int, error)) (<-chan syscall.WaitStatus, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	pid, err := fn()
	if err != nil {
		return nil, err
	}
	ch := make(chan syscall.WaitStatus, 1)
	r.waiters[pid] = ch
	return ch, nil
}
