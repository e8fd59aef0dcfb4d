package engine

import (
	"context"
	"os"
	"sync"
	"time"

	"github.com/pyro-mcp/pyro/api"
	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/failpoint"
	"github.com/pyro-mcp/pyro/internal/layers"
	"github.com/pyro-mcp/pyro/internal/state"
)

// ResetWorkspace brings the whole workspace (root and /workspace) back to
// a snapshot, "" or "baseline" for the one taken at create: the VM is
// powered off at once (what ran in it is discarded anyway), new tops are
// laid over the snapshot's layers and the workspace boots again with the
// same id, name and shape. Later snapshots remain; the log records it.
func (e *Engine) ResetWorkspace(ctx context.Context, ref, snapshot string) (*api.Workspace, error) {
	defer e.enter()()
	ctx, op := e.start(ctx, "workspace reset", phaseDisk, phaseBoot)
	if snapshot == "" {
		snapshot = api.BaselineSnapshot
	}
	if err := checkSnapshotName(snapshot, false); err != nil {
		return nil, err
	}
	rec, unlock, err := e.lockedForDisk(ctx, ref, "reset")
	if err != nil {
		return nil, err
	}
	defer unlock()
	op.Describe(rec.Environment, rec.ID)
	op.Phase(phaseDisk)
	start := time.Now()
	ws := rec.Workspace
	target := ws.snapshot(snapshot)
	if target == nil {
		if snapshot == api.BaselineSnapshot {
			return nil, errdefs.New(errdefs.ErrFailedPrecondition, "reset it to a snapshot of its own (pyro workspace snapshot create), or create a new workspace",
				"workspace %s was made by pyro 2.4 and has no baseline snapshot", rec.ID)
		}
		return nil, unknownSnapshot(rec, snapshot)
	}
	t := *target
	in := &diskIntent{Op: "reset", Snapshot: snapshot, Root: layers.NewName(layers.ExtQCOW2), At: time.Now().UTC().Truncate(time.Millisecond)}
	if ws.Disk.Layout == api.LayoutData {
		in.Data = layers.NewName(layers.ExtQCOW2)
	}
	if err := e.stageTops(ctx, rec, in, t); err != nil {
		return nil, err
	}
	failpoint.Hit("reset-staged")
	// Shells and services end with the guest they ran in (issue 14): the
	// same hook as a cold stop, before the power is cut.
	if err := e.stopShellsAndServices(ctx, rec); err != nil {
		e.log.Warn("stopping shells and services", "workspace_id", rec.ID, "err", err)
	}
	e.killProcesses(rec)
	os.RemoveAll(e.runDir(rec.ID))
	failpoint.Hit("reset-stopped")
	d := ws.Disk
	d.Root, d.Data, d.Intent = in.Root, in.Data, nil
	seq := ws.NextSequence
	ws.NextSequence++
	ws.LastReset = &api.ResetSummary{Snapshot: snapshot, Sequence: seq, At: in.At}
	ws.Ports = nil // released with the supervisor
	rec.State = api.StateStopped
	rec.SupervisorPID, rec.VMMPid = 0, 0
	if err := e.wss.Write(rec.ID, rec); err != nil {
		return nil, err
	}
	e.logEvent(rec.ID, api.LogEntry{Kind: api.LogReset, Sequence: seq, Snapshot: snapshot, SnapshotSequence: t.Sequence,
		StartedAt: in.At, DurationMs: time.Since(start).Milliseconds()})
	e.sweep()
	failpoint.Hit("reset-committed")
	if err := e.startLocked(ctx, rec); err != nil {
		return nil, err
	}
	op.Done()
	return e.workspaceView(rec, true, ""), nil
}

// ForkWorkspace makes a new workspace whose disks start as a snapshot of
// ref (o.Snapshot, or one taken now), sharing its blocks copy-on-write,
// and boots it. Each then changes on its own; deleting either never
// touches what the other reads.
func (e *Engine) ForkWorkspace(ctx context.Context, ref string, o api.ForkOptions) (*api.Workspace, error) {
	defer e.enter()()
	ctx, op := e.start(ctx, "workspace fork", phaseDisk, phaseBoot)
	if o.Snapshot != "" {
		if err := checkSnapshotName(o.Snapshot, false); err != nil {
			return nil, err
		}
	}
	releaseNames := func() {}
	if o.Name != "" {
		// The name is claimed under lockNames, taken before the source's
		// record lock (the order update takes them in) and held until the
		// fork's record has it, so that no create or update takes it
		// meanwhile.
		names, err := e.lockNames()
		if err != nil {
			return nil, err
		}
		releaseNames = sync.OnceFunc(func() { names.Unlock() })
		defer releaseNames()
		if err := e.checkNewName(o.Name, ""); err != nil {
			return nil, err
		}
	}
	src, unlock, err := e.lockedForDisk(ctx, ref, "fork")
	if err != nil {
		return nil, err
	}
	locked := true
	defer func() {
		if locked {
			unlock()
		}
	}()
	op.Describe(src.Environment, src.ID)
	op.Phase(phaseDisk)
	start := time.Now()
	if err := e.adoptLocked(src); err != nil {
		return nil, err
	}
	ws := src.Workspace
	var base snapshotRec
	if o.Snapshot != "" {
		s := ws.snapshot(o.Snapshot)
		if s == nil {
			return nil, unknownSnapshot(src, o.Snapshot)
		}
		base = *s
	} else if base, err = e.snapshotLocked(ctx, src, "", true); err != nil {
		return nil, err
	}
	failpoint.Hit("fork-snapshotted")
	now := time.Now().UTC().Truncate(time.Millisecond)
	fork := &vmRecord{SchemaVersion: recordSchema, ID: state.NewID(), Kind: kindWorkspace, Env: src.Env, BackendKind: src.BackendKind,
		Machine: src.Machine}
	fork.State, fork.StartedAt, fork.BootMs, fork.VMMPid = api.StateCreated, nil, 0, 0
	fork.CreatedAt, fork.ExpiresAt = now, now.Add(time.Duration(src.TTLSeconds)*time.Second)
	origin := &api.ForkOrigin{WorkspaceID: src.ID, Snapshot: o.Snapshot, CreatedAt: now}
	fork.Workspace = &wsState{Seed: ws.Seed, NextSequence: 2, Name: o.Name, ForkOf: origin,
		Disk:      &wsDisk{Layout: ws.Disk.Layout, SizeGiB: ws.Disk.SizeGiB, Root: layers.NewName(layers.ExtQCOW2)},
		Snapshots: []snapshotRec{{Name: api.BaselineSnapshot, CreatedAt: now, Root: base.Root, Data: base.Data, SizeBytes: base.SizeBytes}}}
	fd := fork.Workspace.Disk
	if fd.Layout == api.LayoutData {
		fd.Data = layers.NewName(layers.ExtQCOW2)
	}
	// The fork's directory is named in the source's record first, so that
	// a kill -9 before the fork's record leaves nothing behind for long.
	ws.Disk.PendingForks = append(ws.Disk.PendingForks, fork.ID)
	if err := e.wss.Write(src.ID, src); err != nil {
		return nil, err
	}
	if _, err := e.wss.Create(fork.ID); err != nil {
		return nil, err
	}
	made := false
	defer func() {
		if !made {
			e.catalog.Release(fork.ID)
			e.wss.Remove(fork.ID)
			if len(ws.Disk.Pending) > 0 || len(ws.Disk.PendingForks) > 0 {
				e.discard(src)
			}
		}
	}()
	if err := e.catalog.Acquire(fork.ID, fork.Env); err != nil {
		return nil, err
	}
	// The fork's tops are pending in the source's record until the fork's
	// own record names them: a kill -9 in between leaves no fork, and the
	// next sweep frees them.
	if err := e.stageForkTops(ctx, src, fork, base); err != nil {
		return nil, err
	}
	failpoint.Hit("fork-staged")
	if err := e.copySecrets(src.ID, fork); err != nil {
		return nil, err
	}
	if err := e.writeRefs(fork); err != nil {
		return nil, err
	}
	made = true
	releaseNames()
	failpoint.Hit("fork-recorded")
	ws.Disk.Pending, ws.Disk.PendingForks = nil, nil
	seq := ws.NextSequence
	ws.NextSequence++
	if err := e.wss.Write(src.ID, src); err != nil {
		e.log.Warn("recording the fork in its source", "workspace_id", src.ID, "err", err)
	}
	e.logEvent(src.ID, api.LogEntry{Kind: api.LogFork, Sequence: seq, Snapshot: o.Snapshot, ForkWorkspaceID: fork.ID,
		StartedAt: now, DurationMs: time.Since(start).Milliseconds()})
	unlock()
	locked = false

	lock, err := e.wss.Lock(fork.ID)
	if err != nil {
		return nil, err
	}
	defer lock.Unlock()
	if err := e.wss.Read(fork.ID, fork); err != nil {
		return nil, err
	}
	e.logEvent(fork.ID, api.LogEntry{Kind: api.LogFork, Sequence: 1, Snapshot: o.Snapshot, ForkOf: origin, StartedAt: now})
	op.Describe("", fork.ID)
	if err := e.startLocked(ctx, fork); err != nil {
		return nil, err
	}
	op.Done()
	return e.workspaceView(fork, true, ""), nil
}

// stageForkTops names the fork's new tops as pending in the source's
// record, then creates them over base.
func (e *Engine) stageForkTops(ctx context.Context, src, fork *vmRecord, base snapshotRec) error {
	fd := fork.Workspace.Disk
	sd := src.Workspace.Disk
	sd.Pending = append(sd.Pending, fd.tops()...)
	if err := e.writeRefs(src); err != nil {
		return err
	}
	return e.newTops(ctx, fork, base, fd.Root, fd.Data)
}
