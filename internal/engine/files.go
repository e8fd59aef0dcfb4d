package engine

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"time"
	"unicode/utf8"

	"github.com/pyro-mcp/pyro/api"
	"github.com/pyro-mcp/pyro/internal/agent"
	"github.com/pyro-mcp/pyro/internal/agentproto"
	"github.com/pyro-mcp/pyro/internal/errdefs"
)

// The file operations of a running workspace. Each is one guest call
// (agentproto/files.go) run by the guest agent against /workspace, which
// confines every path there after resolving symlinks; the host checks the
// same lexical rule first (agent.CleanWorkspacePath) to fail early. A
// stopped workspace is booted first, as exec does. What changes /workspace
// or takes data out of it (file_write, patch, sync, export) is logged,
// without contents; reads, listings and diffs are views and are not.

// guestFn is one guest call of a file operation. ctx ends when the guest
// neither takes nor sends data for baseGuestIdle; touch says it did.
type guestFn func(ctx context.Context, c *agentproto.Client, rec *vmRecord, touch func()) error

// onGuest runs fn against workspace ref's guest: booting a stopped one
// (unless peek, which refuses it), and once more after booting it again
// when its supervisor turns out to be gone (the call never reached it).
func (e *Engine) onGuest(ctx context.Context, ref string, peek bool, fn guestFn) (*vmRecord, error) {
	rec, err := e.loadWorkspace(ref)
	if err != nil {
		return nil, err
	}
	if peek {
		if !e.alive(rec) {
			return nil, errdefs.New(errdefs.ErrFailedPrecondition, "run a command in it first (its next exec boots it again from its disk)",
				"workspace %s is not running", rec.ID)
		}
	} else if rec, _, err = e.ensureRunning(ctx, rec.ID); err != nil {
		return nil, err
	}
	run := func() error {
		c, err := e.dial(ctx, rec)
		if err != nil {
			return err
		}
		defer c.Close()
		wctx, touch, fired, stop := idleWatch(ctx, baseGuestIdle)
		defer stop()
		err = fn(wctx, c, rec, touch)
		if fired() {
			return errdefs.New(errdefs.ErrTimeout, "the guest stopped answering; check its status, or delete it",
				"workspace %s: the guest took or sent no data for %s", rec.ID, stretch(baseGuestIdle).Round(time.Second))
		}
		return e.noSpace(rec, err)
	}
	err = run()
	if supervisorGone(err) && !peek {
		if again, rerr := e.restartGone(ctx, rec.ID); rerr == nil {
			rec = again
			err = run()
		}
	}
	return rec, err
}

// ListWorkspaceFiles lists path (a directory, or one entry of anything
// else; "" is /workspace), everything below it with recursive.
func (e *Engine) ListWorkspaceFiles(ctx context.Context, ref, path string, recursive bool) (*api.FileList, error) {
	defer e.enter()()
	return e.listFiles(ctx, ref, agentproto.FileListRequest{Path: path, Recursive: recursive}, false)
}

// PeekWorkspaceFiles lists the regular files below dir of a running
// workspace, .git left out, at most max of them, without booting a stopped
// one: the MCP server's resources.
func (e *Engine) PeekWorkspaceFiles(ctx context.Context, ref, dir string, max int) (*api.FileList, error) {
	defer e.enter()()
	return e.listFiles(ctx, ref, agentproto.FileListRequest{Path: dir, Recursive: true, MaxEntries: max, Skip: []string{".git"}, FilesOnly: true}, true)
}

func (e *Engine) listFiles(ctx context.Context, ref string, req agentproto.FileListRequest, peek bool) (*api.FileList, error) {
	guest, err := agent.CleanWorkspacePath(req.Path)
	if err != nil {
		return nil, err
	}
	req.Path = guest
	out := &api.FileList{Path: guest, Recursive: req.Recursive, Entries: []api.FileEntry{}}
	rec, err := e.onGuest(ctx, ref, peek, func(ctx context.Context, c *agentproto.Client, _ *vmRecord, touch func()) error {
		out.Entries = out.Entries[:0]
		r, err := c.ListFiles(ctx, req, func(en api.FileEntry) error {
			touch()
			out.Entries = append(out.Entries, en)
			return nil
		})
		if err == nil {
			out.Truncated = r.Truncated
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	out.WorkspaceID, out.Count = rec.ID, len(out.Entries)
	return out, nil
}

// ReadWorkspaceFile reads at most maxBytes (0: DefaultFileReadBytes) of a
// regular file; content that is not UTF-8 comes back base64.
func (e *Engine) ReadWorkspaceFile(ctx context.Context, ref, path string, maxBytes int) (*api.FileRead, error) {
	defer e.enter()()
	return e.readFile(ctx, ref, path, maxBytes, false)
}

// PeekWorkspaceFile is ReadWorkspaceFile without booting a stopped
// workspace: the MCP server's resources.
func (e *Engine) PeekWorkspaceFile(ctx context.Context, ref, path string, maxBytes int) (*api.FileRead, error) {
	defer e.enter()()
	return e.readFile(ctx, ref, path, maxBytes, true)
}

func (e *Engine) readFile(ctx context.Context, ref, path string, maxBytes int, peek bool) (*api.FileRead, error) {
	if maxBytes == 0 {
		maxBytes = api.DefaultFileReadBytes
	}
	if maxBytes < 0 {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "give a positive `max_bytes`", "max_bytes %d is negative", maxBytes)
	}
	var buf bytes.Buffer
	r, err := e.streamFile(ctx, ref, path, &buf, int64(maxBytes), peek)
	if err != nil {
		return nil, err
	}
	data := buf.Bytes()
	if utf8.Valid(data) {
		r.Content, r.Encoding = string(data), api.EncodingUTF8
	} else {
		r.Content, r.Encoding = base64.StdEncoding.EncodeToString(data), api.EncodingBase64
	}
	return r, nil
}

// StreamWorkspaceFile copies at most maxBytes of a regular file to w as
// it arrives, a frame at a time; the result has no Content.
func (e *Engine) StreamWorkspaceFile(ctx context.Context, ref, path string, w io.Writer, maxBytes int64) (*api.FileRead, error) {
	defer e.enter()()
	if maxBytes < 0 {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "give a positive `max_bytes`", "max_bytes %d is negative", maxBytes)
	}
	return e.streamFile(ctx, ref, path, w, maxBytes, false)
}

func (e *Engine) streamFile(ctx context.Context, ref, path string, w io.Writer, maxBytes int64, peek bool) (*api.FileRead, error) {
	guest, err := agent.CleanWorkspacePath(path)
	if err != nil {
		return nil, err
	}
	var out *api.FileRead
	rec, err := e.onGuest(ctx, ref, peek, func(ctx context.Context, c *agentproto.Client, _ *vmRecord, touch func()) error {
		h := sha256.New()
		cw := &hashWriter{w: w, h: h, touch: touch}
		r, err := c.ReadFile(ctx, agentproto.FileReadRequest{Path: guest, MaxBytes: maxBytes}, cw)
		if err != nil {
			return err
		}
		if cw.err != nil {
			return cw.err
		}
		out = &api.FileRead{Path: guest, Size: r.Size, Truncated: cw.n < r.Size, SHA256: hex.EncodeToString(h.Sum(nil))}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out.WorkspaceID = rec.ID
	return out, nil
}

// hashWriter passes bytes to w, hashing and counting them; the first
// error of w sticks (the guest's frames keep coming and are dropped).
type hashWriter struct {
	w     io.Writer
	h     hash.Hash
	n     int64
	err   error
	touch func()
}

func (hw *hashWriter) Write(p []byte) (int, error) {
	hw.touch()
	if hw.err != nil {
		return len(p), nil
	}
	hw.h.Write(p)
	hw.n += int64(len(p))
	if _, err := hw.w.Write(p); err != nil {
		hw.err = err
	}
	return len(p), nil
}

// WriteWorkspaceFile replaces (or creates) a file with the content of r,
// atomically in the guest, creating its parent directories.
func (e *Engine) WriteWorkspaceFile(ctx context.Context, ref, path string, r io.Reader, o api.FileWriteOptions) (*api.FileWriteResult, error) {
	defer e.enter()()
	guest, err := agent.CleanWorkspacePath(path)
	if err != nil {
		return nil, err
	}
	if guest == api.WorkspaceRoot {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "name a file under /workspace", "%s is /workspace itself", path)
	}
	if o.Mode > 0o7777 {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "give permission bits such as 0644 or 0755", "mode %o is not a file mode", o.Mode)
	}
	op, err := e.beginFileOp(ref)
	if err != nil {
		return nil, err
	}
	defer op.end()
	var res *api.FileWriteResult
	h := sha256.New()
	counted := &countReader{r: io.TeeReader(r, h)}
	rec, err := e.onGuest(ctx, op.id, false, func(ctx context.Context, c *agentproto.Client, _ *vmRecord, touch func()) error {
		src := &abortReader{r: &touchReader{r: counted, touch: touch}}
		ctx, src.cancel = context.WithCancel(ctx)
		defer src.cancel()
		wr, err := c.WriteFile(ctx, agentproto.FileWriteRequest{Path: guest, Mode: o.Mode, MaxBytes: api.MaxFileWriteBytes}, src)
		if src.err != nil {
			return errdefs.Wrap(errdefs.ErrInvalidArgument, src.err, "nothing was written", "reading the content to write")
		}
		if err != nil {
			return err
		}
		if wr.Bytes != counted.n {
			return errdefs.New(errdefs.ErrUnavailable, "", "the guest wrote %d bytes of the %d sent", wr.Bytes, counted.n)
		}
		res = &api.FileWriteResult{Path: wr.Path, Bytes: wr.Bytes, SHA256: hex.EncodeToString(h.Sum(nil)),
			Mode: fmt.Sprintf("%04o", wr.Mode), Created: wr.Created}
		return nil
	})
	ev := &api.FileEvent{Path: guest}
	if res != nil {
		ev.Path, ev.Bytes, ev.SHA256 = res.Path, res.Bytes, res.SHA256
	}
	if err := op.log(api.LogFileWrite, ev, err); err != nil {
		return nil, err
	}
	res.WorkspaceID = rec.ID
	return res, nil
}

// abortReader cancels the call it feeds when its source fails, before the
// end of the data is sent: the guest then drops what it received instead
// of taking a short stream for the whole content.
type abortReader struct {
	r      io.Reader
	cancel context.CancelFunc
	err    error
}

func (a *abortReader) Read(p []byte) (int, error) {
	n, err := a.r.Read(p)
	if err != nil && err != io.EOF {
		a.err = err
		a.cancel()
	}
	return n, err
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// fileOp is a logged file operation in progress: it holds its sequence
// number (taken when it starts, as a command's is) and the workspace's
// ops lock shared, so that a snapshot never holds half of it.
type fileOp struct {
	e       *Engine
	id      string
	seq     int
	started time.Time
	unlock  func()
}

func (e *Engine) beginFileOp(ref string) (*fileOp, error) {
	rec, err := e.loadWorkspace(ref)
	if err != nil {
		return nil, err
	}
	unlock, err := e.opsLock(rec.ID, false)
	if err != nil {
		return nil, err
	}
	seq, err := e.nextSequence(rec.ID)
	if err != nil {
		unlock()
		return nil, err
	}
	return &fileOp{e: e, id: rec.ID, seq: seq, started: time.Now().UTC().Truncate(time.Millisecond), unlock: unlock}, nil
}

func (op *fileOp) end() { op.unlock() }

// log records the operation, failed or not, and returns opErr, or the
// logging's own error when the operation succeeded but could not be
// recorded (the history has no silent holes).
func (op *fileOp) log(kind string, ev *api.FileEvent, opErr error) error {
	entry := api.LogEntry{Kind: kind, Sequence: op.seq, StartedAt: op.started, DurationMs: time.Since(op.started).Milliseconds(), FileEvent: ev}
	if opErr != nil {
		entry.Error = opErr.Error()
	}
	logErr := op.e.appendFileEvent(op.id, entry)
	if opErr != nil {
		if logErr != nil {
			op.e.log.Warn("logging a workspace file operation", "workspace_id", op.id, "kind", kind, "err", logErr)
		}
		return opErr
	}
	if logErr != nil {
		return fmt.Errorf("%s %d was done but could not be logged: %w", kind, op.seq, logErr)
	}
	return nil
}
