package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/pyro-mcp/pyro/api"
	"github.com/pyro-mcp/pyro/internal/progress"
	"github.com/pyro-mcp/pyro/internal/redact"
)

// ExecTimings is the message of the debug log line each workspace exec
// ends with: its steps' durations, "prepare" (finding the workspace,
// booting it if it must, numbering the command), "run" (the command over
// the supervisor's connection, the guest's flush included) and "log" (its
// durable history entry). bench reads it.
const ExecTimings = "workspace exec timings"

// ExecWorkspace runs one command in /workspace and leaves the workspace
// alive. Every command is logged, in the order they started. Its
// bookkeeping is one read of the record under its lock, one write of it
// without an fsync (the sequence number) and one durable append to the
// history (the result), which the record's counts take in when it is next
// read.
func (e *Engine) ExecWorkspace(ctx context.Context, ref string, o api.ExecOptions) (*api.WorkspaceExecResult, error) {
	defer e.enter()()
	begun := time.Now()
	ctx, op := e.start(ctx, "workspace exec", phaseBoot, phaseExec)
	if err := validateExec(&o); err != nil {
		return nil, err
	}
	if o.Cwd == "" {
		o.Cwd = api.WorkspaceRoot
	}
	id, err := e.resolve(e.wss, ref)
	if err != nil {
		return nil, err
	}
	var env map[string]string
	rec, seq, restarted, err := e.beginCommand(ctx, id, func(rec *vmRecord) (err error) {
		env, err = e.secretEnv(rec, o.SecretEnv)
		return err
	})
	if err != nil {
		return nil, err
	}
	o.Env = withEnv(o.Env, env)
	op.Phase(phaseExec)
	var red *redact.Redactor
	if len(rec.Workspace.Secrets) > 0 {
		red = e.redactor(id)
	}
	cmd := red.Strings(append([]string(nil), argv(o)...))
	started := time.Now().UTC().Truncate(time.Millisecond)
	ran := time.Now()
	res, execErr := e.execRedacted(ctx, rec, o, red)
	if supervisorGone(execErr) {
		// Its VMM died just now: the command never ran; boot and run it once more.
		if again, err := e.restartGone(ctx, id); err == nil {
			rec, restarted = again, true
			res, execErr = e.execRedacted(ctx, rec, o, red)
		}
	}
	execErr = e.scrub(id, execErr)
	logged := time.Now()
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
	e.log.Debug(ExecTimings, "workspace_id", id, "sequence", seq,
		"prepare", ran.Sub(begun), "run", logged.Sub(ran), "log", time.Since(logged))
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

// beginCommand readies workspace id for a command under its lock, with
// one read of its record: check (the request against the record) must
// pass, the VM is booted again from its disk if it is not running, and
// the command takes the next sequence number. The record is written once:
// durably after a boot, else without an fsync, as nextSequence does.
func (e *Engine) beginCommand(ctx context.Context, id string, check func(*vmRecord) error) (rec *vmRecord, seq int, restarted bool, err error) {
	lock, err := e.wss.Lock(id)
	if err != nil {
		return nil, 0, false, err
	}
	defer lock.Unlock()
	rec = &vmRecord{}
	if err := e.wss.Read(id, rec); err != nil {
		return nil, 0, false, err
	}
	if err := notDeleting(rec); err != nil {
		return nil, 0, false, err
	}
	if err := check(rec); err != nil {
		return nil, 0, false, err
	}
	progress.From(ctx).Describe(rec.Environment, rec.ID)
	if !e.alive(rec) {
		if err := e.restartLocked(ctx, rec); err != nil {
			return nil, 0, false, err
		}
		restarted = true
	}
	seq = rec.Workspace.NextSequence
	rec.Workspace.NextSequence++
	if restarted {
		err = e.wss.Write(id, rec)
	} else {
		err = e.wss.WriteUnsynced(id, rec)
	}
	if err != nil {
		return nil, 0, false, err
	}
	return rec, seq, restarted, nil
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

// nextSequence numbers an operation as it starts. The counter is written
// without an fsync: the operation's durable history entry, when it ends,
// carries its number, and a record read after a crash of the host takes
// it in (foldHistory); a crash before that loses only the number of an
// operation whose result was lost with it.
func (e *Engine) nextSequence(id string) (int, error) {
	var seq int
	err := e.updateRecord(id, true, func(rec *vmRecord) error {
		seq = rec.Workspace.NextSequence
		rec.Workspace.NextSequence++
		return nil
	})
	return seq, err
}
