package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pyro-mcp/pyro/internal/agentproto"
	"github.com/pyro-mcp/pyro/internal/errdefs"
)

// outputGrace is how long exec keeps reading output after the command
// exited: a background child that inherited stdout ("server &") must not
// hold the request open forever, but output already in the pipe is kept.
const outputGrace = 200 * time.Millisecond

func (h *Handler) exec(ctx context.Context, s *agentproto.Stream, req agentproto.ExecRequest) (*agentproto.ExecResult, error) {
	var argv []string
	switch {
	case len(req.Argv) > 0 && req.Shell != "":
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "pass either an argv or a shell string", "exec: both argv and shell given")
	case len(req.Argv) > 0:
		argv = req.Argv
	case req.Shell != "":
		argv = []string{"/bin/sh", "-c", req.Shell}
	default:
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "pass a command to run", "exec: empty command")
	}
	maxOut := req.MaxOutput
	if maxOut <= 0 {
		maxOut = agentproto.DefaultMaxOutput
	}

	cwd := req.Cwd
	if cwd == "" {
		cwd = "/"
		if fi, err := os.Stat(h.hostPath("/workspace")); err == nil && fi.IsDir() {
			cwd = "/workspace"
		}
	}
	dir := h.hostPath(cwd)
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return nil, errdefs.New(errdefs.ErrNotFound, "create the directory first or pick another cwd", "exec: working directory %s does not exist", cwd)
	}
	env := mergeEnv(h.cfg.BaseEnv, req.Env)

	start := time.Now()
	res := &agentproto.ExecResult{}
	prog, ok := lookPath(argv[0], envGet(env, "PATH"))
	if !ok {
		msg := fmt.Sprintf("command not found: %s", argv[0])
		fmt.Fprintf(s.Stderr(), "pyro: %s\n", msg)
		res.ExitCode, res.Message = 127, msg
		return res, nil
	}

	outR, outW, err := newPipe(true, false)
	if err != nil {
		return nil, errdefs.Wrap(errdefs.ErrInternal, err, "", "exec: pipe")
	}
	errR, errW, err := newPipe(true, false)
	if err != nil {
		outR.Close()
		outW.Close()
		return nil, errdefs.Wrap(errdefs.ErrInternal, err, "", "exec: pipe")
	}
	cmd := &exec.Cmd{
		Path:        prog,
		Args:        argv,
		Env:         env,
		Dir:         dir,
		Stdout:      outW,
		Stderr:      errW,
		SysProcAttr: &syscall.SysProcAttr{Setsid: true}, // its own group: a timeout kills all of it
	}
	var inW *os.File
	if req.Stdin {
		var inR *os.File
		if inR, inW, err = newPipe(false, true); err != nil {
			outR.Close()
			outW.Close()
			errR.Close()
			errW.Close()
			return nil, errdefs.Wrap(errdefs.ErrInternal, err, "", "exec: pipe")
		}
		cmd.Stdin = inR
		defer inR.Close()
	}

	pid, exited, err := h.startCmd(cmd)
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		if inW != nil {
			inW.Close()
		}
		msg := fmt.Sprintf("cannot run %s: %v", argv[0], err)
		fmt.Fprintf(s.Stderr(), "pyro: %s\n", msg)
		res.ExitCode, res.Message = 126, msg
		return res, nil
	}
	h.log.Debug("exec started", "pid", pid, "argv", argv)
	if inW != nil {
		go func() {
			// The stream reader ends with the stream; the copy ends with it
			// (through the stream's WriteTo: whole frames into the pipe).
			io.Copy(inW, s)
			inW.Close()
		}()
	}

	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); res.StdoutTruncated = pump(outR, s.Stdout(), maxOut) }()
	go func() { defer wg.Done(); res.StderrTruncated = pump(errR, s.Stderr(), maxOut) }()

	var timeout <-chan time.Time
	if req.TimeoutMs > 0 {
		t := time.NewTimer(time.Duration(req.TimeoutMs) * time.Millisecond)
		defer t.Stop()
		timeout = t.C
	}
	var ws syscall.WaitStatus
	var cancelled bool
	select {
	case ws = <-exited:
	case <-timeout:
		killGroup(pid)
		ws = <-exited
		res.TimedOut = true
	case <-ctx.Done():
		killGroup(pid)
		ws = <-exited
		cancelled = true
	}
	// Keep reading what is already in the pipes, but not for ever.
	pumpsDone := make(chan struct{})
	go func() { wg.Wait(); close(pumpsDone) }()
	select {
	case <-pumpsDone:
	case <-time.After(outputGrace):
		outR.Close()
		errR.Close()
		<-pumpsDone
	}
	outR.Close()
	errR.Close()
	res.DurationMs = time.Since(start).Milliseconds()
	switch {
	case res.TimedOut:
		res.ExitCode = 124
		res.Message = fmt.Sprintf("command timed out after %s; process group killed", time.Duration(req.TimeoutMs)*time.Millisecond)
	case ws.Signaled():
		res.ExitCode = 128 + int(ws.Signal())
		res.Message = fmt.Sprintf("killed by signal %s", ws.Signal())
	default:
		res.ExitCode = ws.ExitStatus()
	}
	if cancelled {
		return nil, fmt.Errorf("exec cancelled; process group killed: %w", context.Canceled)
	}
	return res, nil
}

// startCmd starts cmd and returns a channel delivering its wait status.
// Under a Reaper (PID 1) the reaper collects the status; otherwise a
// goroutine waits for this one pid.
func (h *Handler) startCmd(cmd *exec.Cmd) (int, <-chan syscall.WaitStatus, error) {
	startFn := func() (int, error) {
		if err := cmd.Start(); err != nil {
			return 0, err
		}
		return cmd.Process.Pid, nil
	}
	if h.cfg.Reap != nil {
		ch, err := h.cfg.Reap.start(startFn)
		if err != nil {
			return 0, nil, err
		}
		pid := cmd.Process.Pid
		cmd.Process.Release() // sets Pid to -1: never use cmd.Process after this
		return pid, ch, nil
	}
	pid, err := startFn()
	if err != nil {
		return 0, nil, err
	}
	cmd.Process.Release() // we wait by pid ourselves; sets Pid to -1
	ch := make(chan syscall.WaitStatus, 1)
	go func() {
		var ws syscall.WaitStatus
		for {
			_, err := syscall.Wait4(pid, &ws, 0, nil)
			if !errors.Is(err, syscall.EINTR) {
				break
			}
		}
		ch <- ws
	}()
	return pid, ch, nil
}

// pump copies r to w, live, until r ends; past max bytes it keeps draining
// (so the command never blocks on a full pipe) but forwards nothing and
// reports truncation. io.Copy hands r to the stream's ReadFrom, which reads
// the pipe straight into frame buffers.
func pump(r *os.File, w io.Writer, max int) (truncated bool) {
	g := &growingPipe{f: r}
	io.Copy(w, io.LimitReader(g, int64(max)))
	n, _ := io.Copy(io.Discard, g)
	return n > 0
}

// pipeSize is the capacity a command's stdin pipe gets at once, and its
// stdout and stderr pipes as soon as they fill (the kernel's default is
// 64 KiB): a command streaming output, or a host streaming input, then
// switches with the agent far less often (expensive in an emulated guest).
// The kernel allocates pipe pages only as they fill.
const pipeSize = 1 << 20

// defaultPipeSize is the kernel's default pipe capacity.
const defaultPipeSize = 64 << 10

// growingPipe reads a pipe and gives it pipeSize capacity the first time a
// read finds it full: a command printing a line pays nothing for it.
type growingPipe struct {
	f     *os.File
	grown bool
}

func (g *growingPipe) Read(p []byte) (int, error) {
	n, err := g.f.Read(p)
	if n >= defaultPipeSize && !g.grown {
		g.grown = true
		if rc, err := g.f.SyscallConn(); err == nil {
			rc.Control(func(fd uintptr) { unix.FcntlInt(fd, unix.F_SETPIPE_SZ, pipeSize) })
		}
	}
	return n, err
}

// newPipe returns a pipe whose agent end (the read end when agentReads,
// else the write end) is non-blocking, in Go's poller, and whose command
// end is a plain blocking descriptor, never registered with the poller:
// two system calls fewer per end, per exec. grow gives it pipeSize
// capacity at once.
func newPipe(agentReads, grow bool) (r, w *os.File, err error) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		return nil, nil, err
	}
	agentEnd := p[1]
	if agentReads {
		agentEnd = p[0]
	}
	if err := unix.SetNonblock(agentEnd, true); err != nil {
		unix.Close(p[0])
		unix.Close(p[1])
		return nil, nil, err
	}
	if grow {
		unix.FcntlInt(uintptr(p[0]), unix.F_SETPIPE_SZ, pipeSize)
	}
	return os.NewFile(uintptr(p[0]), "|0"), os.NewFile(uintptr(p[1]), "|1"), nil
}

// killGroup kills the process group led by pid (exec's commands are session
// leaders). It refuses pids that cannot be a group we made.
func killGroup(pid int) {
	if pid > 1 {
		syscall.Kill(-pid, syscall.SIGKILL)
	}
}
