package vmm

import (
	"errors"
	"fmt"
	"os/exec"
	"runtime"
	"sync"
	"syscall"
)

// Process is a helper process a backend started (the VMM, passt): its own
// process group, killed with the caller (Pdeathsig), waited for once.
// QEMU and Firecracker share it, so that starting, waiting and killing a
// VMM is written once.
type Process struct {
	cmd        *exec.Cmd
	name       string // for messages: "qemu", "firecracker"
	stderrPath string // its stderr file, whose last line explains an exit
	done       chan struct{}
	err        error // valid once done is closed
}

// StartProcess starts cmd in a new process group with Pdeathsig SIGKILL,
// so that it dies with this process. onExit, when set, runs after the
// process exited and before Done is closed (to remove what it used).
//
// Pdeathsig is tied to the thread that forked, not to the process: Linux
// signals the child when that thread exits. Go ends a thread when a
// goroutine exits while locked to it, so a fork from an arbitrary
// goroutine could lose its VMM whenever some unrelated locked goroutine
// finishes on that thread. Every fork therefore happens on one spawner
// thread that is locked for the life of the process and never exits.
func StartProcess(cmd *exec.Cmd, name, stderrPath string, onExit func()) (*Process, error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if err := spawn(cmd); err != nil {
		return nil, err
	}
	p := &Process{cmd: cmd, name: name, stderrPath: stderrPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		if onExit != nil {
			onExit()
		}
		close(p.done)
	}()
	return p, nil
}

var (
	spawnOnce sync.Once
	spawnReq  chan spawnJob
)

type spawnJob struct {
	cmd *exec.Cmd
	res chan error
}

// spawn runs cmd.Start on the spawner thread.
func spawn(cmd *exec.Cmd) error {
	spawnOnce.Do(func() {
		spawnReq = make(chan spawnJob)
		go func() {
			// Locked and never unlocked: this goroutine, and so its thread,
			// lives as long as the process.
			runtime.LockOSThread()
			for j := range spawnReq {
				j.res <- j.cmd.Start()
			}
		}()
	})
	res := make(chan error, 1)
	spawnReq <- spawnJob{cmd: cmd, res: res}
	return <-res
}

// Pid is the process id (also its process group id).
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed once the process exited and onExit ran.
func (p *Process) Done() <-chan struct{} { return p.done }

// ExitErr is cmd.Wait's error; valid once Done is closed.
func (p *Process) ExitErr() error { return p.err }

// Wait blocks until the process exits. A clean exit (a guest powering off)
// is nil; a failure carries the last line of the process's stderr.
func (p *Process) Wait() error {
	<-p.done
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		if t := LastLine(p.stderrPath); t != "" {
			return fmt.Errorf("%s: %w: %s", p.name, p.err, t)
		}
		return fmt.Errorf("%s: %w", p.name, p.err)
	}
	return p.err
}

// Kill ends the process group at once and waits until it is reaped.
func (p *Process) Kill() error {
	select {
	case <-p.done:
		return nil
	default:
	}
	if err := syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("killing %s: %w", p.name, err)
	}
	<-p.done
	return nil
}
