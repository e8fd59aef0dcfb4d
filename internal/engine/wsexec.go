package engine

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/pyro-mcp/pyro/api"
)

// MaxLoggedOutput caps stdout and stderr kept per command in workspace logs.
const MaxLoggedOutput = 64 << 10

// ExecWorkspace runs one command in /workspace and leaves the workspace
// alive. Every command is logged, in the order they started.
func (e *Engine) ExecWorkspace(ctx context.Context, ref string, o api.ExecOptions) (*api.WorkspaceExecResult, error) {
	defer e.enter()()
	ctx, op := e.start(ctx, "workspace exec", phaseBoot, phaseExec)
	if err := validateExec(&o); err != nil {
		return nil, err
	}
	if o.Cwd == "" {
		o.Cwd = api.WorkspaceRoot
	}
	rec, err := e.loadWorkspace(ref)
	if err != nil {
		return nil, err
	}
	id := rec.ID
	rec, restarted, err := e.ensureRunning(ctx, id)
	if err != nil {
		return nil, err
	}
	seq, err := e.nextSequence(id)
	if err != nil {
		return nil, err
	}
	op.Phase(phaseExec)
	cmd := argv(o)
	started := time.Now().UTC().Truncate(time.Millisecond)
	res, execErr := e.exec(ctx, rec, o)
	entry := api.LogEntry{Sequence: seq, Command: cmd, Cwd: o.Cwd, StartedAt: started}
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
	op.Done()
	return &api.WorkspaceExecResult{WorkspaceID: id, Sequence: seq, ExecutionMode: rec.ExecutionMode, Backend: rec.Backend,
		Command: cmd, Cwd: o.Cwd, ExecResult: *res, Restarted: restarted}, nil
}

func capLog(s string, truncated bool) (string, bool) {
	if len(s) > MaxLoggedOutput {
		return s[:MaxLoggedOutput], true
	}
	return s, truncated
}

// update applies f to the workspace record id under its lock and writes
// it back, durably unless unsynced.
func (e *Engine) update(id string, unsynced bool, f func(*vmRecord) error) error {
	lock, err := e.wss.Lock(id)
	if err != nil {
		return err
	}
	defer lock.Unlock()
	var rec vmRecord
	if err := e.wss.Read(id, &rec); err != nil {
		return err
	}
	if err := f(&rec); err != nil {
		return err
	}
	if unsynced {
		return e.wss.WriteUnsynced(id, &rec)
	}
	return e.wss.Write(id, &rec)
}

// nextSequence numbers a command as it starts. The counter is written
// without an fsync: appendLog's durable write of the same record, when the
// command ends, carries it; a host crash before that loses only the number
// of a command whose result was lost with it. One fsync per exec, not two.
func (e *Engine) nextSequence(id string) (int, error) {
	var seq int
	err := e.update(id, true, func(rec *vmRecord) error {
		seq = rec.Workspace.NextSequence
		rec.Workspace.NextSequence++
		return nil
	})
	return seq, err
}

func (e *Engine) appendLog(id string, entry api.LogEntry) error {
	return e.update(id, false, func(rec *vmRecord) error {
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
			rec.Workspace.LastCommand = &api.CommandSummary{Sequence: entry.Sequence, Command: entry.Command, ExitCode: entry.ExitCode,
				TimedOut: entry.TimedOut, StartedAt: entry.StartedAt, DurationMs: entry.DurationMs}
		}
		return nil
	})
}

// LogsWorkspace returns the persisted command history, in sequence order.
func (e *Engine) LogsWorkspace(ctx context.Context, ref string) (*api.WorkspaceLogs, error) {
	id, err := e.wss.Resolve(ref)
	if err != nil {
		return nil, err
	}
	out := &api.WorkspaceLogs{WorkspaceID: id, Entries: []api.LogEntry{}}
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
		var le api.LogEntry
		if json.Unmarshal(sc.Bytes(), &le) == nil {
			out.Entries = append(out.Entries, le)
		}
	}
	sort.SliceStable(out.Entries, func(i, j int) bool { return out.Entries[i].Sequence < out.Entries[j].Sequence })
	out.Count = len(out.Entries)
	return out, nil
}
