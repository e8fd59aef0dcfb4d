package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pyro-mcp/pyro/internal/agentproto"
	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/redact"
)

// Shells: interactive programs on pseudo-terminals that live in the agent
// between requests. Their output goes through the secrets' redactor into
// a bounded buffer read by cursor.
const (
	shellBufferBytes = 1 << 20
	maxShells        = 32
	// redactQuiet is how long output that may be the start of a secret
	// waits for the rest before it is released as it is.
	redactQuiet = 40 * time.Millisecond
	// exitDrain is how long a shell whose process ended keeps reading
	// what the terminal still holds (a background child may keep it open).
	exitDrain   = 300 * time.Millisecond
	defaultCols = 120
	defaultRows = 30
)

type shell struct {
	id      string
	cwd     string
	started time.Time
	pid     int
	ptm     *os.File
	out     *outBuf
	red     *redact.Stream
	done    chan struct{} // closed once the process ended and its output is in
	wmu     sync.Mutex    // serialises input

	mu        sync.Mutex
	cols      int
	rows      int
	state     string
	ended     *time.Time
	exitCode  *int
	lastInput time.Time
	flush     *time.Timer
}

func newID() string {
	var b [4]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (sh *shell) info() *agentproto.ShellInfo {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return &agentproto.ShellInfo{ID: sh.id, State: sh.state, Pid: sh.pid, Cwd: sh.cwd, Cols: sh.cols, Rows: sh.rows,
		StartedAt: sh.started, EndedAt: sh.ended, ExitCode: sh.exitCode, End: sh.out.end()}
}

func checkSize(cols, rows int) (int, int, error) {
	if cols == 0 {
		cols = defaultCols
	}
	if rows == 0 {
		rows = defaultRows
	}
	if cols < 1 || cols > 1000 || rows < 1 || rows > 1000 {
		return 0, 0, errdefs.New(errdefs.ErrInvalidArgument, "use `cols` and `rows` from 1 to 1000", "terminal size %dx%d is out of range", cols, rows)
	}
	return cols, rows, nil
}

// workDir resolves a request's cwd (default /workspace when it exists).
func (h *Handler) workDir(cwd string) (string, string, error) {
	if cwd == "" {
		cwd = "/"
		if fi, err := os.Stat(h.hostPath("/workspace")); err == nil && fi.IsDir() {
			cwd = "/workspace"
		}
	}
	if !path.IsAbs(cwd) {
		cwd = path.Join("/workspace", cwd)
	}
	dir := h.hostPath(cwd)
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return "", "", errdefs.New(errdefs.ErrNotFound, "create the directory first or pick another `cwd`", "working directory %s does not exist", cwd)
	}
	return path.Clean(cwd), dir, nil
}

func (h *Handler) shellOpen(req agentproto.ShellOpenRequest) (*agentproto.ShellInfo, error) {
	cols, rows, err := checkSize(req.Cols, req.Rows)
	if err != nil {
		return nil, err
	}
	cwd, dir, err := h.workDir(req.Cwd)
	if err != nil {
		return nil, err
	}
	h.live.mu.Lock()
	n := len(h.live.shells)
	h.live.mu.Unlock()
	if n >= maxShells {
		return nil, errdefs.New(errdefs.ErrFailedPrecondition, "close shells you no longer need", "this workspace already has %d shells", n)
	}
	env := mergeEnv(mergeEnv(h.cfg.BaseEnv, map[string]string{"TERM": "xterm-256color"}), req.Env)
	argv := []string{"/bin/sh", "-i"}
	if p, ok := lookPath("bash", envGet(env, "PATH")); ok {
		argv = []string{p, "-i"}
	}
	ptm, pts, err := openPTY()
	if err != nil {
		return nil, errdefs.Wrap(errdefs.ErrInternal, err, "", "opening a terminal")
	}
	setSize(ptm, cols, rows)
	cmd := &exec.Cmd{Path: argv[0], Args: argv, Env: env, Dir: dir, Stdin: pts, Stdout: pts, Stderr: pts,
		// Its own session with the terminal as controlling tty: job
		// control works, and a hang-up reaches everything it started.
		SysProcAttr: &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}}
	pid, exited, err := h.startCmd(cmd)
	pts.Close()
	if err != nil {
		ptm.Close()
		return nil, errdefs.Wrap(errdefs.ErrInternal, err, "", "starting a shell")
	}
	out := newOutBuf(shellBufferBytes)
	sh := &shell{id: newID(), cwd: cwd, started: time.Now().UTC(), pid: pid, ptm: ptm, out: out,
		red: redact.NewStream(h.live.redactor(), out), done: make(chan struct{}),
		cols: cols, rows: rows, state: agentproto.ShellRunning}
	pumped := make(chan struct{})
	go sh.pump(pumped)
	go sh.wait(exited, pumped)
	h.live.mu.Lock()
	h.live.shells[sh.id] = sh
	h.live.mu.Unlock()
	h.log.Debug("shell opened", "shell_id", sh.id, "pid", pid)
	return sh.info(), nil
}

// pump copies the terminal's output through the redactor into the buffer.
func (sh *shell) pump(pumped chan<- struct{}) {
	defer close(pumped)
	buf := make([]byte, 32<<10)
	for {
		n, err := sh.ptm.Read(buf)
		if n > 0 {
			sh.red.Write(buf[:n])
			if sh.red.Pending() {
				sh.mu.Lock()
				if sh.flush == nil {
					sh.flush = time.AfterFunc(redactQuiet, func() { sh.red.Flush() })
				} else {
					sh.flush.Reset(redactQuiet)
				}
				sh.mu.Unlock()
			}
		}
		if err != nil {
			return
		}
	}
}

// wait records the process's end once its output is in.
func (sh *shell) wait(exited <-chan syscall.WaitStatus, pumped <-chan struct{}) {
	ws := <-exited
	select {
	case <-pumped:
	case <-time.After(exitDrain):
	}
	sh.ptm.Close()
	<-pumped
	sh.red.Flush()
	code := exitStatus(ws)
	now := time.Now().UTC()
	sh.mu.Lock()
	if sh.state == agentproto.ShellRunning {
		sh.state = agentproto.ShellExited
	}
	sh.ended, sh.exitCode = &now, &code
	sh.mu.Unlock()
	close(sh.done)
}

func exitStatus(ws syscall.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

// lookupShell finds a shell by id or unique id prefix.
func (h *Handler) lookupShell(ref string) (*shell, error) {
	h.live.mu.Lock()
	defer h.live.mu.Unlock()
	if sh, ok := h.live.shells[ref]; ok {
		return sh, nil
	}
	var found *shell
	if ref != "" {
		for id, sh := range h.live.shells {
			if strings.HasPrefix(id, ref) {
				if found != nil {
					return nil, errdefs.New(errdefs.ErrConflict, "give more characters of the shell id", "shell id prefix %q is ambiguous", ref)
				}
				found = sh
			}
		}
	}
	if found == nil {
		return nil, errdefs.New(errdefs.ErrNotFound, "list the open shells with `shell_list`", "no shell %q in this workspace", ref)
	}
	return found, nil
}

func (h *Handler) shellsSnapshot() []*shell {
	h.live.mu.Lock()
	defer h.live.mu.Unlock()
	out := make([]*shell, 0, len(h.live.shells))
	for _, sh := range h.live.shells {
		out = append(out, sh)
	}
	return out
}

func (h *Handler) shellList() *agentproto.ShellList {
	l := &agentproto.ShellList{Shells: []agentproto.ShellInfo{}}
	for _, sh := range h.shellsSnapshot() {
		l.Shells = append(l.Shells, *sh.info())
	}
	sort.Slice(l.Shells, func(i, j int) bool { return l.Shells[i].StartedAt.Before(l.Shells[j].StartedAt) })
	return l
}

// idleWait waits until the shell has had no output and no input for idle,
// its process ended, or maxWait passed.
func (sh *shell) idleWait(ctx context.Context, idle, maxWait time.Duration) error {
	deadline := time.Now().Add(maxWait)
	for {
		changed := sh.out.changed()
		sh.mu.Lock()
		last := sh.lastInput
		sh.mu.Unlock()
		if w := sh.out.lastWrite(); w.After(last) {
			last = w
		}
		quiet := time.Since(last)
		left := time.Until(deadline)
		if quiet >= idle || left <= 0 {
			return nil
		}
		select {
		case <-sh.done:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		case <-time.After(min(idle-quiet, left)):
		}
	}
}

func (h *Handler) shellRead(ctx context.Context, s *agentproto.Stream, req agentproto.ShellReadRequest) (*agentproto.ShellReadResult, error) {
	sh, err := h.lookupShell(req.ID)
	if err != nil {
		return nil, err
	}
	if req.Cursor < 0 || req.Cursor > sh.out.end() {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "pass a `cursor` from 0 to the next_cursor of your last read",
			"cursor %d is outside the shell's output (0 to %d)", req.Cursor, sh.out.end())
	}
	if req.MaxBytes <= 0 || req.MaxBytes > agentproto.DefaultMaxOutput {
		req.MaxBytes = agentproto.DefaultMaxOutput
	}
	if req.WaitIdleMs > 0 {
		maxWait := time.Duration(req.MaxWaitMs) * time.Millisecond
		if maxWait <= 0 {
			maxWait = 30 * time.Second
		}
		if err := sh.idleWait(ctx, time.Duration(req.WaitIdleMs)*time.Millisecond, maxWait); err != nil {
			return nil, err
		}
	}
	data, start, next, dropped := sh.out.read(req.Cursor, req.MaxBytes)
	if _, err := s.Stdout().Write(data); err != nil {
		return nil, err
	}
	return &agentproto.ShellReadResult{Start: start, Next: next, Dropped: dropped, Shell: *sh.info()}, nil
}

// input writes to the terminal, bounded in time: a program that never
// reads its input must not hold the request for ever.
func (sh *shell) input(ctx context.Context, p []byte) (int, error) {
	sh.wmu.Lock()
	defer sh.wmu.Unlock()
	sh.mu.Lock()
	sh.lastInput = time.Now()
	running := sh.state == agentproto.ShellRunning
	sh.mu.Unlock()
	if !running {
		return 0, errdefs.New(errdefs.ErrFailedPrecondition, "open another shell", "shell %s has ended", sh.id)
	}
	deadline := time.Now().Add(10 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	sh.ptm.SetWriteDeadline(deadline)
	n, err := sh.ptm.Write(p)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return n, errdefs.New(errdefs.ErrTimeout, "the program in the shell is not reading its input; signal it (INT) or close the shell",
			"shell %s took only %d of %d bytes of input", sh.id, n, len(p))
	}
	return n, err
}

func (h *Handler) shellWrite(ctx context.Context, req agentproto.ShellWriteRequest) (*agentproto.ShellWriteResult, error) {
	if len(req.Data) > agentproto.MaxShellInput {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "send input in smaller pieces", "input of %d bytes is over %d", len(req.Data), agentproto.MaxShellInput)
	}
	sh, err := h.lookupShell(req.ID)
	if err != nil {
		return nil, err
	}
	n, err := sh.input(ctx, req.Data)
	if err != nil {
		return nil, err
	}
	return &agentproto.ShellWriteResult{Written: n}, nil
}

var signals = map[string]syscall.Signal{"INT": syscall.SIGINT, "TERM": syscall.SIGTERM, "KILL": syscall.SIGKILL,
	"HUP": syscall.SIGHUP, "QUIT": syscall.SIGQUIT}

func (h *Handler) shellSignal(req agentproto.ShellSignalRequest) (*agentproto.ShellInfo, error) {
	name, err := agentproto.CheckSignal(req.Signal)
	if err != nil {
		return nil, err
	}
	sig := signals[name]
	sh, err := h.lookupShell(req.ID)
	if err != nil {
		return nil, err
	}
	if info := sh.info(); info.State != agentproto.ShellRunning {
		return nil, errdefs.New(errdefs.ErrFailedPrecondition, "", "shell %s has ended", sh.id)
	}
	// What runs in the foreground (a REPL, a build) gets it, as from ^C.
	if pg := foreground(sh.ptm); pg > 1 {
		syscall.Kill(-pg, sig)
	} else {
		syscall.Kill(-sh.pid, sig)
	}
	return sh.info(), nil
}

func (h *Handler) shellResize(req agentproto.ShellResizeRequest) (*agentproto.ShellInfo, error) {
	cols, rows, err := checkSize(req.Cols, req.Rows)
	if err != nil {
		return nil, err
	}
	sh, err := h.lookupShell(req.ID)
	if err != nil {
		return nil, err
	}
	setSize(sh.ptm, cols, rows)
	sh.mu.Lock()
	sh.cols, sh.rows = cols, rows
	sh.mu.Unlock()
	return sh.info(), nil
}

// shellClose hangs the shell up (SIGHUP to its session), kills what is
// left after a moment, and forgets it.
func (h *Handler) shellClose(ref string) (*agentproto.ShellInfo, error) {
	sh, err := h.lookupShell(ref)
	if err != nil {
		return nil, err
	}
	sh.mu.Lock()
	if sh.state == agentproto.ShellRunning {
		sh.state = agentproto.ShellClosed
	}
	sh.mu.Unlock()
	select {
	case <-sh.done:
	default:
		syscall.Kill(-sh.pid, syscall.SIGHUP)
		syscall.Kill(-sh.pid, syscall.SIGCONT)
		select {
		case <-sh.done:
		case <-time.After(time.Second):
			syscall.Kill(-sh.pid, syscall.SIGKILL)
			select {
			case <-sh.done:
			case <-time.After(2 * time.Second):
			}
		}
	}
	h.live.mu.Lock()
	delete(h.live.shells, sh.id)
	h.live.mu.Unlock()
	info := sh.info()
	info.State = agentproto.ShellClosed
	return info, nil
}

// shellAttach relays the terminal both ways until the shell ends or the
// host cancels (detaches).
func (h *Handler) shellAttach(ctx context.Context, s *agentproto.Stream, req agentproto.ShellAttachRequest) (*agentproto.ShellInfo, error) {
	sh, err := h.lookupShell(req.ID)
	if err != nil {
		return nil, err
	}
	cursor := req.Cursor
	if cursor < 0 || cursor > sh.out.end() {
		cursor = sh.out.end()
	}
	go func() {
		buf := make([]byte, 32<<10)
		for {
			n, err := s.Read(buf)
			if n > 0 {
				if _, werr := sh.input(ctx, buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	out := s.Stdout()
	for {
		changed := sh.out.changed()
		data, _, next, _ := sh.out.read(cursor, 64<<10)
		if len(data) > 0 {
			if _, err := out.Write(data); err != nil {
				return nil, err
			}
			cursor = next
			continue
		}
		select {
		case <-changed:
		case <-sh.done:
			if cursor < sh.out.end() {
				continue
			}
			return sh.info(), nil
		case <-ctx.Done():
			return sh.info(), nil
		}
	}
}

// String is for logs.
func (sh *shell) String() string { return fmt.Sprintf("shell %s (pid %d)", sh.id, sh.pid) }
