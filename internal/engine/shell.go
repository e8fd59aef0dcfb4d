package engine

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/pyro-mcp/pyro/api"
	"github.com/pyro-mcp/pyro/internal/agentproto"
	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/termtext"
)

// Shells live in the guest agent (internal/agent/shell.go): the engine
// checks requests, boots the workspace to open one, renders reads, and
// logs opens and closes.

func shellView(id string, s *agentproto.ShellInfo) *api.Shell {
	return &api.Shell{WorkspaceID: id, ShellID: s.ID, State: s.State, Pid: s.Pid, Cwd: s.Cwd, Cols: s.Cols, Rows: s.Rows,
		StartedAt: s.StartedAt, EndedAt: s.EndedAt, ExitCode: s.ExitCode, Cursor: s.End}
}

func checkTermSize(cols, rows int) error {
	if cols < 0 || cols > 1000 || rows < 0 || rows > 1000 {
		return errdefs.New(errdefs.ErrInvalidArgument, "use `cols` and `rows` from 1 to 1000", "terminal size %dx%d is out of range", cols, rows)
	}
	return nil
}

// OpenShell starts an interactive shell in the workspace (booting it if
// needed). The shell lives in the guest until it is closed, its process
// exits, or the workspace stops or is deleted.
func (e *Engine) OpenShell(ctx context.Context, ref string, o api.ShellOpenOptions) (*api.Shell, error) {
	defer e.enter()()
	ctx, op := e.start(ctx, "shell open", phaseBoot)
	if err := checkTermSize(o.Cols, o.Rows); err != nil {
		return nil, err
	}
	rec, err := e.loadWorkspace(ref)
	if err != nil {
		return nil, err
	}
	env, err := e.secretEnv(rec, o.SecretEnv)
	if err != nil {
		return nil, err
	}
	rec, _, err = e.ensureRunning(ctx, rec.ID)
	if err != nil {
		return nil, err
	}
	c, err := e.dial(ctx, rec)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	info, err := c.ShellOpen(ctx, agentproto.ShellOpenRequest{Cwd: o.Cwd, Cols: o.Cols, Rows: o.Rows, Env: env})
	if err != nil {
		return nil, e.scrub(rec.ID, err)
	}
	e.appendEvent(rec.ID, api.LogEntry{Kind: api.LogShellOpen, ShellID: info.ID, Cwd: info.Cwd, StartedAt: info.StartedAt.Truncate(time.Millisecond)})
	op.Done()
	return shellView(rec.ID, info), nil
}

// shellCall dials a running workspace for one call on its shells.
func (e *Engine) shellCall(ctx context.Context, ref string, f func(*vmRecord, *agentproto.Client) error) error {
	rec, err := e.liveWorkspace(ref)
	if err != nil {
		return err
	}
	c, err := e.dial(ctx, rec)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := f(rec, c); err != nil {
		return e.scrub(rec.ID, err)
	}
	e.touch(rec.ID)
	return nil
}

// ReadShell returns a shell's output from a cursor. A read never ends in
// the middle of an escape sequence or a UTF-8 character while the shell
// runs: those bytes come whole with the next read.
func (e *Engine) ReadShell(ctx context.Context, ref, shellID string, o api.ShellReadOptions) (*api.ShellReadResult, error) {
	defer e.enter()()
	if o.MaxChars == 0 {
		o.MaxChars = api.DefaultShellMaxChars
	}
	switch {
	case o.Cursor < 0:
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "pass 0 or the `next_cursor` of your last read as `cursor`", "cursor %d is negative", o.Cursor)
	case o.MaxChars < 1 || o.MaxChars > api.MaxShellMaxChars:
		return nil, errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("use a `max_chars` from 1 to %d", api.MaxShellMaxChars), "max_chars %d is out of range", o.MaxChars)
	case o.WaitForIdleMs < 0 || o.WaitForIdleMs > api.MaxShellWaitForIdleMs:
		return nil, errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("use a `wait_for_idle_ms` from 0 to %d", api.MaxShellWaitForIdleMs),
			"wait_for_idle_ms %d is out of range", o.WaitForIdleMs)
	}
	var out *api.ShellReadResult
	err := e.shellCall(ctx, ref, func(rec *vmRecord, c *agentproto.Client) error {
		r, data, err := c.ShellRead(ctx, agentproto.ShellReadRequest{ID: shellID, Cursor: o.Cursor, MaxBytes: o.MaxChars,
			WaitIdleMs: int64(o.WaitForIdleMs), MaxWaitMs: api.MaxShellReadWaitMs})
		if err != nil {
			return err
		}
		next := r.Start + int64(len(data))
		more := next < r.Shell.End
		if r.Shell.State == agentproto.ShellRunning || more {
			held := termtext.Incomplete(data)
			data, next = data[:len(data)-held], next-int64(held)
		}
		text := string(data)
		if o.Plain {
			text = termtext.Plain(data)
		}
		out = &api.ShellReadResult{WorkspaceID: rec.ID, ShellID: r.Shell.ID, Cursor: r.Start, NextCursor: next,
			Output: e.redactor(rec.ID).String(text), Dropped: r.Dropped, More: more, Plain: o.Plain, State: r.Shell.State, ExitCode: r.Shell.ExitCode}
		return nil
	})
	return out, err
}

// WriteShell types input into a shell, with a newline unless NoNewline.
func (e *Engine) WriteShell(ctx context.Context, ref, shellID string, o api.ShellWriteOptions) (*api.ShellWriteResult, error) {
	defer e.enter()()
	input := o.Input
	if !o.NoNewline {
		input += "\n"
	}
	switch {
	case input == "":
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "give the `input` to type", "nothing to write")
	case len(input) > agentproto.MaxShellInput:
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "send input in smaller pieces", "input of %d bytes is over %d", len(input), agentproto.MaxShellInput)
	}
	var out *api.ShellWriteResult
	err := e.shellCall(ctx, ref, func(rec *vmRecord, c *agentproto.Client) error {
		r, err := c.ShellWrite(ctx, agentproto.ShellWriteRequest{ID: shellID, Data: []byte(input)})
		if err != nil {
			return err
		}
		out = &api.ShellWriteResult{WorkspaceID: rec.ID, ShellID: shellID, Written: r.Written}
		return nil
	})
	return out, err
}

// SignalShell sends INT, TERM, KILL, HUP or QUIT to what runs in the
// shell's foreground.
func (e *Engine) SignalShell(ctx context.Context, ref, shellID, signal string) (*api.Shell, error) {
	defer e.enter()()
	if signal == "" {
		signal = "INT"
	}
	sig, err := agentproto.CheckSignal(signal)
	if err != nil {
		return nil, err
	}
	var out *api.Shell
	err = e.shellCall(ctx, ref, func(rec *vmRecord, c *agentproto.Client) error {
		info, err := c.ShellSignal(ctx, agentproto.ShellSignalRequest{ID: shellID, Signal: sig})
		if err != nil {
			return err
		}
		out = shellView(rec.ID, info)
		return nil
	})
	return out, err
}

// CloseShell hangs a shell up (what still runs after a moment is killed)
// and forgets it; the result has its exit code when it had one.
func (e *Engine) CloseShell(ctx context.Context, ref, shellID string) (*api.Shell, error) {
	defer e.enter()()
	var out *api.Shell
	err := e.shellCall(ctx, ref, func(rec *vmRecord, c *agentproto.Client) error {
		info, err := c.ShellClose(ctx, shellID)
		if err != nil {
			return err
		}
		out = shellView(rec.ID, info)
		entry := api.LogEntry{Kind: api.LogShellClose, ShellID: info.ID, Cwd: info.Cwd, StartedAt: time.Now().UTC().Truncate(time.Millisecond)}
		if info.ExitCode != nil {
			entry.ExitCode = *info.ExitCode
		}
		e.appendEvent(rec.ID, entry)
		return nil
	})
	return out, err
}

// ListShells lists a workspace's shells, running and exited (none when it
// is not running).
func (e *Engine) ListShells(ctx context.Context, ref string) (*api.ShellList, error) {
	defer e.enter()()
	rec, err := e.loadWorkspace(ref)
	if err != nil {
		return nil, err
	}
	out := &api.ShellList{WorkspaceID: rec.ID, Shells: []api.Shell{}}
	if !e.alive(rec) {
		return out, nil
	}
	err = e.shellCall(ctx, rec.ID, func(rec *vmRecord, c *agentproto.Client) error {
		l, err := c.ShellList(ctx)
		if err != nil {
			return err
		}
		for i := range l.Shells {
			out.Shells = append(out.Shells, *shellView(rec.ID, &l.Shells[i]))
		}
		return nil
	})
	out.Count = len(out.Shells)
	return out, err
}

// AttachShell connects a terminal to a shell until the shell ends (its
// final state is returned) or ctx is cancelled (a detach: ctx's error;
// the shell keeps running).
func (e *Engine) AttachShell(ctx context.Context, ref, shellID string, o api.ShellAttachOptions) (*api.Shell, error) {
	defer e.enter()()
	if o.Stdout == nil || o.Stdin == nil {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "", "attach needs Stdin and Stdout")
	}
	rec, err := e.liveWorkspace(ref)
	if err != nil {
		return nil, err
	}
	c, err := e.dial(ctx, rec)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	cursor := int64(-1)
	if o.Replay > 0 {
		// Show the end of what is there, from a line's start.
		l, _, err := c.ShellRead(ctx, agentproto.ShellReadRequest{ID: shellID, Cursor: 0, MaxBytes: 1})
		if err != nil {
			return nil, e.scrub(rec.ID, err)
		}
		from := max(0, l.Shell.End-int64(o.Replay))
		r, data, err := c.ShellRead(ctx, agentproto.ShellReadRequest{ID: shellID, Cursor: from, MaxBytes: o.Replay})
		if err != nil {
			return nil, e.scrub(rec.ID, err)
		}
		cursor = r.Start
		if i := bytes.IndexByte(data, '\n'); r.Start > 0 && i >= 0 && i+1 < len(data) {
			cursor += int64(i + 1)
		}
	}
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	if o.Resize != nil {
		go func() {
			for {
				select {
				case <-actx.Done():
					return
				case sz, ok := <-o.Resize:
					if !ok {
						return
					}
					c.ShellResize(actx, agentproto.ShellResizeRequest{ID: shellID, Cols: sz.Cols, Rows: sz.Rows})
				}
			}
		}()
	}
	info, err := c.ShellAttach(actx, agentproto.ShellAttachRequest{ID: shellID, Cursor: cursor}, o.Stdin, o.Stdout)
	if err != nil {
		return nil, e.scrub(rec.ID, err)
	}
	e.touch(rec.ID)
	return shellView(rec.ID, info), nil
}
