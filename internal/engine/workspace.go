package engine

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/pyro-mcp/pyro/internal/agentproto"
	"github.com/pyro-mcp/pyro/internal/archive"
	"github.com/pyro-mcp/pyro/internal/errdefs"
)

// WorkspaceRoot is where a workspace's files live in the guest.
const WorkspaceRoot = "/workspace"

// DefaultWorkspaceTTLSeconds is how long a workspace lives unless told
// otherwise: long enough for an agent's session, short enough that a
// forgotten one does not hold memory for days.
const DefaultWorkspaceTTLSeconds = 3600

// MaxLoggedOutput caps stdout and stderr kept per command in workspace logs.
const MaxLoggedOutput = 64 << 10

// Seed modes.
const (
	SeedEmpty = "empty"
)

// WorkspaceSeed describes how /workspace was initialised.
type WorkspaceSeed struct {
	Mode       string `json:"mode"` // "empty", "directory" or "tar_archive"
	SourcePath string `json:"source_path,omitempty"`
	Entries    int    `json:"entries"`
	Bytes      int64  `json:"bytes"`
	Digest     string `json:"digest,omitempty"` // sha256 of the tar stream sent to the guest
}

// CommandSummary is the last command run in a workspace.
type CommandSummary struct {
	Sequence   int       `json:"sequence"`
	Command    []string  `json:"command"`
	ExitCode   int       `json:"exit_code"`
	TimedOut   bool      `json:"timed_out"`
	StartedAt  time.Time `json:"started_at"`
	DurationMs int64     `json:"duration_ms"`
}

// wsState is the workspace part of a record.
type wsState struct {
	Seed         WorkspaceSeed   `json:"seed"`
	NextSequence int             `json:"next_sequence"`
	CommandCount int             `json:"command_count"`
	LastCommand  *CommandSummary `json:"last_command,omitempty"`
	Restarts     int             `json:"restarts"`
}

// Workspace is the JSON of `pyro workspace status --json` and create.
type Workspace struct {
	WorkspaceID     string          `json:"workspace_id"`
	Environment     string          `json:"environment"`
	State           string          `json:"state"`
	Running         bool            `json:"running"`
	VCPUCount       int             `json:"vcpu_count"`
	MemMiB          int             `json:"mem_mib"`
	TTLSeconds      int             `json:"ttl_seconds"`
	Network         bool            `json:"network"`
	AllowHostCompat bool            `json:"allow_host_compat"`
	ExecutionMode   string          `json:"execution_mode"`
	Backend         string          `json:"backend"`
	CreatedAt       time.Time       `json:"created_at"`
	ExpiresAt       time.Time       `json:"expires_at"`
	StartedAt       *time.Time      `json:"started_at,omitempty"`
	BootMs          int64           `json:"boot_ms,omitempty"`
	VMMPid          int             `json:"vmm_pid,omitempty"`
	CommandCount    int             `json:"command_count"`
	LastCommand     *CommandSummary `json:"last_command,omitempty"`
	WorkspaceSeed   WorkspaceSeed   `json:"workspace_seed"`
	Restarts        int             `json:"restarts"`
	Note            string          `json:"note,omitempty"`
}

// CreateWorkspaceOptions are CreateOptions plus an optional seed.
type CreateWorkspaceOptions struct {
	CreateOptions
	SeedPath string `json:"seed_path,omitempty"`
}

// SyncResult is the JSON of `pyro workspace sync push --json`.
type SyncResult struct {
	WorkspaceID string `json:"workspace_id"`
	SourcePath  string `json:"source_path"`
	Dest        string `json:"dest"`
	Mode        string `json:"mode"`
	Entries     int    `json:"entries"`
	Bytes       int64  `json:"bytes"`
	Digest      string `json:"digest"`
	DurationMs  int64  `json:"duration_ms"`
}

// WorkspaceExecResult is the JSON of `pyro workspace exec --json`.
type WorkspaceExecResult struct {
	WorkspaceID   string   `json:"workspace_id"`
	Sequence      int      `json:"sequence"`
	ExecutionMode string   `json:"execution_mode"`
	Backend       string   `json:"backend"`
	Command       []string `json:"command"`
	Cwd           string   `json:"cwd"`
	ExecResult
	// Restarted says the workspace's VM was not running and was booted again
	// from its disk before the command ran.
	Restarted bool `json:"restarted"`
}

// LogEntry is one command in a workspace's persisted history.
type LogEntry struct {
	Sequence        int       `json:"sequence"`
	Command         []string  `json:"command"`
	Cwd             string    `json:"cwd"`
	ExitCode        int       `json:"exit_code"`
	Stdout          string    `json:"stdout"`
	Stderr          string    `json:"stderr"`
	StdoutTruncated bool      `json:"stdout_truncated"`
	StderrTruncated bool      `json:"stderr_truncated"`
	TimedOut        bool      `json:"timed_out"`
	StartedAt       time.Time `json:"started_at"`
	DurationMs      int64     `json:"duration_ms"`
	Error           string    `json:"error,omitempty"` // when pyro could not run it at all
}

// WorkspaceLogs is the JSON of `pyro workspace logs --json`.
type WorkspaceLogs struct {
	WorkspaceID string     `json:"workspace_id"`
	Entries     []LogEntry `json:"entries"`
	Count       int        `json:"count"`
}

// WorkspaceDeleteResult is the JSON of `pyro workspace delete --json`.
type WorkspaceDeleteResult struct {
	WorkspaceID string `json:"workspace_id"`
	Deleted     bool   `json:"deleted"`
}

func (r *vmRecord) workspaceView(running bool, note string) *Workspace {
	ws := r.Workspace
	if ws == nil {
		ws = &wsState{}
	}
	w := &Workspace{
		WorkspaceID: r.ID, Environment: r.Environment, State: r.State, Running: running,
		VCPUCount: r.VCPUCount, MemMiB: r.MemMiB, TTLSeconds: r.TTLSeconds, Network: r.Network,
		AllowHostCompat: r.AllowHostCompat, ExecutionMode: r.Mode, Backend: r.Backend,
		CreatedAt: r.CreatedAt, ExpiresAt: r.ExpiresAt, StartedAt: r.StartedAt, BootMs: r.BootMs,
		CommandCount: ws.CommandCount, LastCommand: ws.LastCommand, WorkspaceSeed: ws.Seed,
		Restarts: ws.Restarts, Note: note,
	}
	if running {
		w.VMMPid = r.VMMPid
	}
	return w
}

// CreateWorkspace creates and starts a workspace, seeding /workspace from
// SeedPath (a directory or a .tar/.tar.gz/.tgz) before it returns.
func (e *Engine) CreateWorkspace(ctx context.Context, o CreateWorkspaceOptions) (*Workspace, error) {
	if o.TTLSeconds == 0 {
		o.TTLSeconds = DefaultWorkspaceTTLSeconds
	}
	seed := WorkspaceSeed{Mode: SeedEmpty}
	if o.SeedPath != "" {
		abs, err := filepath.Abs(o.SeedPath)
		if err != nil {
			return nil, err
		}
		// Check the whole seed before anything is created.
		st, err := archive.Check(ctx, abs, archive.DefaultLimits)
		if err != nil {
			return nil, err
		}
		o.SeedPath = abs
		seed = WorkspaceSeed{Mode: st.Mode, SourcePath: abs, Entries: st.Entries, Bytes: st.Bytes, Digest: st.Digest}
	}
	if err := e.validateCreate(&o.CreateOptions); err != nil {
		return nil, err
	}
	rec, err := e.createRecord(ctx, kindWorkspace, o.CreateOptions)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			e.remove(context.WithoutCancel(ctx), e.wss, rec.ID)
		}
	}()
	lock, err := e.wss.Lock(rec.ID)
	if err != nil {
		return nil, err
	}
	defer lock.Unlock()
	rec.Workspace = &wsState{Seed: seed, NextSequence: 1}
	if err := e.startLocked(ctx, rec); err != nil {
		return nil, err
	}
	if o.SeedPath != "" {
		got, err := e.push(ctx, rec, o.SeedPath, WorkspaceRoot)
		if err != nil {
			return nil, fmt.Errorf("seeding /workspace: %w", err)
		}
		rec.Workspace.Seed.Digest = got.Digest
	}
	if err := e.wss.Write(rec.ID, rec); err != nil {
		return nil, err
	}
	ok = true
	return rec.workspaceView(true, ""), nil
}

// push streams src into the guest under dest.
func (e *Engine) push(ctx context.Context, rec *vmRecord, src, dest string) (*archive.Stats, error) {
	c, err := e.dial(ctx, rec)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	pr, pw := io.Pipe()
	var st archive.Stats
	done := make(chan error, 1)
	go func() {
		var err error
		st, err = archive.Write(ctx, src, pw, archive.DefaultLimits)
		pw.CloseWithError(err)
		done <- err
	}()
	_, perr := c.PutArchive(ctx, agentproto.PutArchiveRequest{Dest: dest, Root: WorkspaceRoot, MaxBytes: archive.DefaultLimits.MaxBytes + 64<<20}, pr)
	pr.CloseWithError(io.ErrClosedPipe)
	werr := <-done
	if werr != nil {
		return nil, werr
	}
	if perr != nil {
		return nil, perr
	}
	return &st, nil
}

// cleanDest validates a --dest and returns it absolute under /workspace.
func cleanDest(dest string) (string, error) {
	if dest == "" {
		return WorkspaceRoot, nil
	}
	p := dest
	if !path.IsAbs(p) {
		p = path.Join(WorkspaceRoot, p)
	}
	p = path.Clean(p)
	if p != WorkspaceRoot && !strings.HasPrefix(p, WorkspaceRoot+"/") {
		return "", errdefs.New(errdefs.ErrInvalidArgument, "give a path under /workspace, e.g. --dest /workspace/src",
			"destination %q is outside /workspace", dest)
	}
	return p, nil
}

func (e *Engine) loadWorkspace(ref string) (string, *vmRecord, error) {
	id, err := e.wss.Resolve(ref)
	if err != nil {
		return "", nil, err
	}
	var rec vmRecord
	if err := e.wss.Read(id, &rec); err != nil {
		return "", nil, err
	}
	if rec.State == StateDeleting {
		return "", nil, errdefs.New(errdefs.ErrFailedPrecondition, "", "workspace %s is being deleted", id)
	}
	return id, &rec, nil
}

// ensureRunning boots the workspace's VM again from its disk if it is not
// running, and says whether it had to.
func (e *Engine) ensureRunning(ctx context.Context, id string) (*vmRecord, bool, error) {
	var rec vmRecord
	if err := e.wss.Read(id, &rec); err != nil {
		return nil, false, err
	}
	if e.alive(&rec) {
		return &rec, false, nil
	}
	lock, err := e.wss.Lock(id)
	if err != nil {
		return nil, false, err
	}
	defer lock.Unlock()
	if err := e.wss.Read(id, &rec); err != nil {
		return nil, false, err
	}
	if rec.State == StateDeleting {
		return nil, false, errdefs.New(errdefs.ErrFailedPrecondition, "", "workspace %s is being deleted", id)
	}
	if e.alive(&rec) {
		return &rec, false, nil
	}
	e.killProcesses(&rec)
	if err := e.startLocked(ctx, &rec); err != nil {
		return nil, false, err
	}
	rec.Workspace.Restarts++
	if err := e.wss.Write(id, &rec); err != nil {
		return nil, false, err
	}
	e.log.Info("workspace restarted from its disk", "workspace_id", id)
	return &rec, true, nil
}

// PushWorkspaceSync imports a host directory or archive into a started
// workspace, at /workspace or dest under it.
func (e *Engine) PushWorkspaceSync(ctx context.Context, ref, sourcePath, dest string) (*SyncResult, error) {
	start := time.Now()
	d, err := cleanDest(dest)
	if err != nil {
		return nil, err
	}
	id, _, err := e.loadWorkspace(ref)
	if err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(sourcePath)
	if err != nil {
		return nil, err
	}
	if _, err := archive.Kind(abs); err != nil {
		return nil, err
	}
	rec, _, err := e.ensureRunning(ctx, id)
	if err != nil {
		return nil, err
	}
	st, err := e.push(ctx, rec, abs, d)
	if err != nil {
		return nil, err
	}
	return &SyncResult{WorkspaceID: id, SourcePath: abs, Dest: d, Mode: st.Mode, Entries: st.Entries, Bytes: st.Bytes,
		Digest: st.Digest, DurationMs: time.Since(start).Milliseconds()}, nil
}

// ExecWorkspace runs one command in /workspace and leaves the workspace
// alive. Every command is logged, in the order they started.
func (e *Engine) ExecWorkspace(ctx context.Context, ref string, o ExecOptions, stdout, stderr io.Writer) (*WorkspaceExecResult, error) {
	if err := validateExec(&o); err != nil {
		return nil, err
	}
	if o.Cwd == "" {
		o.Cwd = WorkspaceRoot
	}
	id, _, err := e.loadWorkspace(ref)
	if err != nil {
		return nil, err
	}
	rec, restarted, err := e.ensureRunning(ctx, id)
	if err != nil {
		return nil, err
	}
	seq, err := e.nextSequence(id)
	if err != nil {
		return nil, err
	}
	cmd := o.Command
	if o.Shell != "" {
		cmd = []string{"/bin/sh", "-c", o.Shell}
	}
	started := time.Now().UTC().Truncate(time.Millisecond)
	res, execErr := e.exec(ctx, rec, o, stdout, stderr)
	entry := LogEntry{Sequence: seq, Command: cmd, Cwd: o.Cwd, StartedAt: started}
	if execErr != nil {
		entry.Error = execErr.Error()
		entry.ExitCode = -1
		entry.DurationMs = time.Since(started).Milliseconds()
	} else {
		entry.ExitCode, entry.TimedOut, entry.DurationMs = res.ExitCode, res.TimedOut, res.DurationMs
		entry.Stdout, entry.StdoutTruncated = capLog(res.Stdout, res.StdoutTruncated)
		entry.Stderr, entry.StderrTruncated = capLog(res.Stderr, res.StderrTruncated)
	}
	if err := e.appendLog(id, entry); err != nil {
		e.log.Warn("logging workspace command", "workspace_id", id, "err", err)
	}
	if execErr != nil {
		return nil, execErr
	}
	return &WorkspaceExecResult{WorkspaceID: id, Sequence: seq, ExecutionMode: rec.Mode, Backend: rec.Backend,
		Command: cmd, Cwd: o.Cwd, ExecResult: *res, Restarted: restarted}, nil
}

func capLog(s string, truncated bool) (string, bool) {
	if len(s) > MaxLoggedOutput {
		return s[:MaxLoggedOutput], true
	}
	return s, truncated
}

func (e *Engine) nextSequence(id string) (int, error) {
	lock, err := e.wss.Lock(id)
	if err != nil {
		return 0, err
	}
	defer lock.Unlock()
	var rec vmRecord
	if err := e.wss.Read(id, &rec); err != nil {
		return 0, err
	}
	seq := rec.Workspace.NextSequence
	rec.Workspace.NextSequence++
	return seq, e.wss.Write(id, &rec)
}

func (e *Engine) appendLog(id string, entry LogEntry) error {
	lock, err := e.wss.Lock(id)
	if err != nil {
		return err
	}
	defer lock.Unlock()
	var rec vmRecord
	if err := e.wss.Read(id, &rec); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(e.wss.Path(id), "logs.jsonl"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	data, _ := json.Marshal(entry)
	_, err = f.Write(append(data, '\n'))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	rec.Workspace.CommandCount++
	if last := rec.Workspace.LastCommand; last == nil || entry.Sequence > last.Sequence {
		rec.Workspace.LastCommand = &CommandSummary{Sequence: entry.Sequence, Command: entry.Command, ExitCode: entry.ExitCode,
			TimedOut: entry.TimedOut, StartedAt: entry.StartedAt, DurationMs: entry.DurationMs}
	}
	return e.wss.Write(id, &rec)
}

// LogsWorkspace returns the persisted command history, in sequence order.
func (e *Engine) LogsWorkspace(ctx context.Context, ref string) (*WorkspaceLogs, error) {
	id, err := e.wss.Resolve(ref)
	if err != nil {
		return nil, err
	}
	out := &WorkspaceLogs{WorkspaceID: id, Entries: []LogEntry{}}
	f, err := os.Open(filepath.Join(e.wss.Path(id), "logs.jsonl"))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return out, nil
		}
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 4*MaxLoggedOutput+(1<<20))
	for sc.Scan() {
		var le LogEntry
		if json.Unmarshal(sc.Bytes(), &le) == nil {
			out.Entries = append(out.Entries, le)
		}
	}
	sort.SliceStable(out.Entries, func(i, j int) bool { return out.Entries[i].Sequence < out.Entries[j].Sequence })
	out.Count = len(out.Entries)
	return out, nil
}

// StatusWorkspace reports a workspace, checking whether its VM is alive.
func (e *Engine) StatusWorkspace(ctx context.Context, ref string) (*Workspace, error) {
	id, err := e.wss.Resolve(ref)
	if err != nil {
		return nil, err
	}
	var rec vmRecord
	if err := e.wss.Read(id, &rec); err != nil {
		return nil, err
	}
	running, note := e.liveness(&rec)
	if note != "" {
		note = "the VM process is gone (killed or the host rebooted); /workspace is safe on its disk and the next exec boots it again"
	}
	return rec.workspaceView(running, note), nil
}

// ListWorkspaces lists every workspace.
func (e *Engine) ListWorkspaces(ctx context.Context) ([]*Workspace, error) {
	ids, err := e.wss.IDs()
	if err != nil {
		return nil, err
	}
	out := []*Workspace{}
	for _, id := range ids {
		var rec vmRecord
		if err := e.wss.Read(id, &rec); err != nil {
			continue
		}
		running, note := e.liveness(&rec)
		out = append(out, rec.workspaceView(running, note))
	}
	return out, nil
}

// StartWorkspace boots a stopped workspace from its disk.
func (e *Engine) StartWorkspace(ctx context.Context, ref string) (*Workspace, error) {
	id, _, err := e.loadWorkspace(ref)
	if err != nil {
		return nil, err
	}
	rec, _, err := e.ensureRunning(ctx, id)
	if err != nil {
		return nil, err
	}
	return rec.workspaceView(true, ""), nil
}

// StopWorkspace powers the workspace's VM off; /workspace stays on its disk.
func (e *Engine) StopWorkspace(ctx context.Context, ref string) (*Workspace, error) {
	rec, unlock, err := e.locked(e.wss, ref)
	if err != nil {
		return nil, err
	}
	defer unlock()
	e.stopLocked(ctx, rec)
	rec.State = StateStopped
	if err := e.wss.Write(rec.ID, rec); err != nil {
		return nil, err
	}
	return rec.workspaceView(false, ""), nil
}

// DeleteWorkspace stops the VM and removes its disk, logs and state.
func (e *Engine) DeleteWorkspace(ctx context.Context, ref string) (*WorkspaceDeleteResult, error) {
	id, err := e.wss.Resolve(ref)
	if err != nil {
		return nil, err
	}
	if err := e.remove(ctx, e.wss, id); err != nil {
		return nil, err
	}
	return &WorkspaceDeleteResult{WorkspaceID: id, Deleted: true}, nil
}
