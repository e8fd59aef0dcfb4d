package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/pyro-mcp/pyro/api"
)

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
	env, err := e.secretEnv(rec, o.SecretEnv)
	if err != nil {
		return nil, err
	}
	o.Env = withEnv(o.Env, env)
	rec, restarted, err := e.ensureRunning(ctx, id)
	if err != nil {
		return nil, err
	}
	seq, err := e.nextSequence(id)
	if err != nil {
		return nil, err
	}
	op.Phase(phaseExec)
	red := e.redactor(id)
	cmd := red.Strings(append([]string(nil), argv(o)...))
	started := time.Now().UTC().Truncate(time.Millisecond)
	res, execErr := e.execRedacted(ctx, rec, o, red)
	if supervisorGone(execErr) {
		// Its VMM died just now: the command never ran; boot and run it once more.
		if again, err := e.restartGone(ctx, id); err == nil {
			rec, restarted = again, true
			res, execErr = e.execRedacted(ctx, rec, o, red)
		}
	}
	execErr = e.scrub(id, execErr)
	entry := api.LogEntry{Kind: api.LogExec, Sequence: seq, Command: cmd, Cwd: o.Cwd, StartedAt: started}
	if execErr != nil {
		entry.Error = execErr.Error()
		entry.ExitCode = -1
		entry.DurationMs = time.Since(started).Milliseconds()
	} else {
		entry.ExitCode, entry.TimedOut, entry.DurationMs = res.ExitCode, res.TimedOut, res.DurationMs
		entry.Stdout, entry.Stderr = res.Stdout, res.Stderr
		entry.StdoutTruncated, entry.StderrTruncated = res.StdoutTruncated, res.StderrTruncated
	}
	logErr := e.appendLog(id, entry)
	if execErr != nil {
		if logErr != nil {
			e.log.Warn("logging workspace command", "workspace_id", id, "err", logErr)
		}
		return nil, execErr
	}
	if logErr != nil {
		// The history promises every command: one it could not keep is
		// an error, not a silent hole.
		return nil, fmt.Errorf("command %d ran (exit code %d) but could not be logged: %w", seq, res.ExitCode, logErr)
	}
	op.Done()
	return &api.WorkspaceExecResult{WorkspaceID: id, Sequence: seq, ExecutionMode: rec.ExecutionMode, Backend: rec.Backend,
		Command: cmd, Cwd: o.Cwd, ExecResult: *res, Restarted: restarted && rec.Start != startResume,
		Resumed: restarted && rec.Start == startResume}, nil
}

// update applies f to the workspace record id under its lock and writes
// it back durably.
func (e *Engine) update(id string, f func(*vmRecord) error) error {
	return e.updateRecord(id, false, f)
}

// updateRecord is update, durably unless unsynced.
func (e *Engine) updateRecord(id string, unsynced bool, f func(*vmRecord) error) error {
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
	err := e.updateRecord(id, true, func(rec *vmRecord) error {
		seq = rec.Workspace.NextSequence
		rec.Workspace.NextSequence++
		return nil
	})
	return seq, err
}
