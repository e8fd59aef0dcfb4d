package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pyro-mcp/pyro/api"
	"github.com/pyro-mcp/pyro/internal/agentproto"
	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/failpoint"
	"github.com/pyro-mcp/pyro/internal/layers"
	"github.com/pyro-mcp/pyro/internal/lazyregexp"
	"github.com/pyro-mcp/pyro/internal/vmm/qemu"
)

// snapshotName is what a snapshot may be called.
var snapshotName = lazyregexp.New(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// freezeTimeout is how long the guest stays frozen at most if pyro never
// comes back to thaw it.
const freezeTimeout = 10 * time.Second

func checkSnapshotName(name string, creating bool) error {
	if !snapshotName.MatchString(name) {
		return errdefs.New(errdefs.ErrInvalidArgument, "name it with 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit, e.g. before-upgrade",
			"invalid snapshot name %q", name)
	}
	if creating && name == api.BaselineSnapshot {
		return errdefs.New(errdefs.ErrInvalidArgument, "pick another name: the baseline is taken when the workspace is created",
			"snapshot name %q is reserved", name)
	}
	return nil
}

// opsLock serialises what changes a workspace's disks as a whole
// (snapshot, reset, fork: exclusive) with sync pushes (shared), so that a
// snapshot never holds half a push. Execs do not take it: a snapshot of a
// running command is what FIFREEZE makes consistent. Take it before the
// record's lock.
func (e *Engine) opsLock(id string, exclusive bool) (func(), error) {
	f, err := os.OpenFile(filepath.Join(e.wss.Path(id), "ops.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, errdefs.New(errdefs.ErrNotFound, "", "no workspace with id %q", id)
		}
		return nil, err
	}
	how := unix.LOCK_SH
	if exclusive {
		how = unix.LOCK_EX
	}
	for {
		err = unix.Flock(int(f.Fd()), how)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return func() { unix.Flock(int(f.Fd()), unix.LOCK_UN); f.Close() }, nil
}

// lockedForDisk resolves ref to a workspace whose disks may change, and
// holds its ops lock and record lock; the record is reconciled.
func (e *Engine) lockedForDisk(ctx context.Context, ref, what string) (*vmRecord, func(), error) {
	rec, err := e.loadWorkspace(ref)
	if err != nil {
		return nil, nil, err
	}
	if err := diskSupport(rec, what); err != nil {
		return nil, nil, err
	}
	unlockOps, err := e.opsLock(rec.ID, true)
	if err != nil {
		return nil, nil, err
	}
	rec, unlock, err := e.locked(e.wss, rec.ID)
	if err != nil {
		unlockOps()
		return nil, nil, err
	}
	done := func() { unlock(); unlockOps() }
	if err := notDeleting(rec); err != nil {
		done()
		return nil, nil, err
	}
	if err := e.reconcile(ctx, rec); err != nil {
		done()
		return nil, nil, err
	}
	return rec, done, nil
}

// CreateSnapshot takes a snapshot named name of the whole workspace (its
// root and /workspace), running or stopped.
func (e *Engine) CreateSnapshot(ctx context.Context, ref, name string) (*api.Snapshot, error) {
	defer e.enter()()
	if err := checkSnapshotName(name, true); err != nil {
		return nil, err
	}
	rec, unlock, err := e.lockedForDisk(ctx, ref, "a snapshot")
	if err != nil {
		return nil, err
	}
	defer unlock()
	ws := rec.Workspace
	if ws.snapshot(name) != nil {
		return nil, errdefs.New(errdefs.ErrAlreadyExists, "pick another name, or delete the old one first (pyro workspace snapshot delete)",
			"workspace %s already has a snapshot named %q", rec.ID, name)
	}
	if err := e.adoptLocked(rec); err != nil {
		return nil, err
	}
	start := time.Now()
	s, err := e.snapshotLocked(ctx, rec, name, false)
	if err != nil {
		return nil, err
	}
	e.logEvent(rec.ID, api.LogEntry{Kind: api.LogSnapshot, Sequence: s.Sequence, Snapshot: name, StartedAt: s.CreatedAt,
		DurationMs: time.Since(start).Milliseconds()})
	return snapshotView(rec.ID, s, nil), nil
}

// snapshotLocked seals the workspace's tops as snapshot name and puts new
// empty tops over them: live (freeze, one QMP transaction, thaw) when the
// VM runs, on the files alone when it does not. hidden keeps it out of
// the workspace's list (a fork's snapshot of the moment). The caller holds
// the locks.
func (e *Engine) snapshotLocked(ctx context.Context, rec *vmRecord, name string, hidden bool) (snapshotRec, error) {
	d := rec.Workspace.Disk
	in := &diskIntent{Op: "snapshot", Snapshot: name, Root: layers.NewName(layers.ExtQCOW2),
		At: time.Now().UTC().Truncate(time.Millisecond), Hidden: hidden}
	if d.Layout == api.LayoutData {
		in.Data = layers.NewName(layers.ExtQCOW2)
	}
	t0 := time.Now()
	if err := e.stageTops(ctx, rec, in, snapshotRec{Root: d.Root, Data: d.Data}); err != nil {
		return snapshotRec{}, err
	}
	staged := time.Since(t0)
	failpoint.Hit("snapshot-staged")
	if e.alive(rec) {
		if err := e.liveSnapshot(ctx, rec, in); err != nil {
			// Whether the transaction applied decides, not the error.
			if !e.switched(ctx, rec, in) {
				e.discard(rec)
				return snapshotRec{}, err
			}
		}
	}
	failpoint.Hit("snapshot-switched")
	switched := time.Since(t0)
	s, err := e.commitSnapshot(rec)
	e.log.Debug("snapshot", "workspace_id", rec.ID, "stage", staged, "switch", switched-staged, "commit", time.Since(t0)-switched)
	return s, err
}

// stageTops writes intent in to the record, then creates its new tops
// over the layers of s.
func (e *Engine) stageTops(ctx context.Context, rec *vmRecord, in *diskIntent, s snapshotRec) error {
	d := rec.Workspace.Disk
	d.Intent = in
	if err := e.writeRefs(rec); err != nil {
		d.Intent = nil
		return err
	}
	if err := e.newTops(ctx, rec, s, in.Root, in.Data); err != nil {
		e.discard(rec)
		return err
	}
	return nil
}

// writeRefs writes a record that names layers it did not name before,
// under the pool's shared lock, so that no sweep runs between reading
// some records and others. A layer's name goes into a record before its
// file is created: a sweep lists the files before it reads the records,
// so it never sees a new file without the record that names it.
func (e *Engine) writeRefs(rec *vmRecord) error {
	unlock, err := e.layers.Shared()
	if err != nil {
		return err
	}
	defer unlock()
	return e.wss.Write(rec.ID, rec)
}

// liveSnapshot moves a running workspace's drives onto the new tops with
// its filesystems frozen.
func (e *Engine) liveSnapshot(ctx context.Context, rec *vmRecord, in *diskIntent) error {
	ctx, cancel := context.WithTimeout(ctx, 2*freezeTimeout)
	defer cancel()
	// The agent's connection and the monitor's, at once.
	type dialed struct {
		c   *agentproto.Client
		err error
	}
	agent := make(chan dialed, 1)
	go func() {
		c, err := e.dial(ctx, rec)
		agent <- dialed{c, err}
	}()
	q, err := e.qmp(ctx, rec)
	a := <-agent
	if a.c != nil {
		defer a.c.Close()
	}
	if q != nil {
		defer q.Close()
	}
	if err = errors.Join(a.err, err); err != nil {
		return err
	}
	c := a.c
	mounts := []string{"/"}
	snaps := []qemu.ExternalSnapshot{{Device: qemu.DriveID(driveRoot), File: e.layerPath(in.Root), Format: "qcow2"}}
	if in.Data != "" {
		mounts = []string{api.WorkspaceRoot, "/"}
		snaps = append(snaps, qemu.ExternalSnapshot{Device: qemu.DriveID(driveData), File: e.layerPath(in.Data), Format: "qcow2"})
	}
	t0 := time.Now()
	fr, err := c.Freeze(ctx, agentproto.FreezeRequest{Mounts: mounts, TimeoutMs: freezeTimeout.Milliseconds()})
	if err != nil {
		return fmt.Errorf("freezing the guest's filesystems: %w", err)
	}
	failpoint.Hit("snapshot-frozen")
	failpoint.KillPID("snapshot-frozen-kill-vmm", rec.VMMPid)
	froze := time.Since(t0)
	terr := q.SnapshotDrives(ctx, snaps)
	switched := time.Since(t0)
	if res, err := fr.Thaw(); err != nil {
		e.log.Warn("thawing the guest (it thaws by itself within its deadline)", "workspace_id", rec.ID, "err", err)
	} else {
		e.log.Debug("snapshot freeze", "workspace_id", rec.ID, "freeze", froze, "transaction", switched-froze,
			"thaw", time.Since(t0)-switched, "frozen_ms", res.FrozenMs, "thawed_by", res.ThawedBy)
	}
	if terr != nil {
		return fmt.Errorf("switching the disks to new layers: %w", terr)
	}
	return nil
}

// switched reports whether a running VM's root drive is on intent in's
// new top: the truth about a snapshot transaction whose answer was lost.
func (e *Engine) switched(ctx context.Context, rec *vmRecord, in *diskIntent) bool {
	if !e.alive(rec) {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	q, err := e.qmp(ctx, rec)
	if err != nil {
		return false
	}
	defer q.Close()
	files, err := q.ActiveFiles(ctx)
	return err == nil && files[qemu.DriveID(driveRoot)] == e.layerPath(in.Root)
}

// commitSnapshot completes the record's snapshot intent: the old tops
// become the snapshot, the new ones the tops.
func (e *Engine) commitSnapshot(rec *vmRecord) (snapshotRec, error) {
	ws := rec.Workspace
	d := ws.Disk
	in := d.Intent
	s := snapshotRec{Name: in.Snapshot, CreatedAt: in.At, Root: d.Root, Data: d.Data}
	s.SizeBytes = layers.Allocated(e.layerPath(d.Root))
	if d.Data != "" {
		s.SizeBytes += layers.Allocated(e.layerPath(d.Data))
	}
	if !in.Hidden {
		s.Sequence = ws.NextSequence
		ws.NextSequence++
		ws.Snapshots = append(ws.Snapshots, s)
	}
	d.Root, d.Data, d.Intent = in.Root, in.Data, nil
	if err := e.wss.Write(rec.ID, rec); err != nil {
		return snapshotRec{}, err
	}
	return s, nil
}

// discard drops the record's intent and pending layers; the files go at
// the next sweep.
func (e *Engine) discard(rec *vmRecord) {
	d := rec.Workspace.Disk
	for _, id := range d.PendingForks {
		var fork vmRecord
		if err := e.wss.Read(id, &fork); errors.Is(err, errdefs.ErrNotFound) {
			e.catalog.Release(id)
			e.wss.Remove(id)
		}
	}
	d.Intent, d.Pending, d.PendingForks = nil, nil, nil
	if err := e.wss.Write(rec.ID, rec); err != nil {
		e.log.Warn("discarding an interrupted disk operation", "workspace_id", rec.ID, "err", err)
	}
	e.sweep()
}

// reconcile settles what a kill -9 interrupted, under the record's lock:
// a snapshot whose transaction the running VM shows applied is completed;
// anything else (a snapshot that never switched, a reset that never
// committed, layers created for a fork that never got its record) is
// dropped, and the old tops, untouched, stay.
func (e *Engine) reconcile(ctx context.Context, rec *vmRecord) error {
	ws := rec.Workspace
	if ws == nil || ws.Disk == nil || (ws.Disk.Intent == nil && len(ws.Disk.Pending) == 0 && len(ws.Disk.PendingForks) == 0) {
		return nil
	}
	d := ws.Disk
	if in := d.Intent; in != nil && in.Op == "snapshot" && e.switched(ctx, rec, in) {
		if d.Intent.Hidden {
			// A fork's snapshot of the moment whose fork never got made:
			// keep the new tops, the old ones join the chain unnamed.
			d.Root, d.Data, d.Intent, d.Pending = in.Root, in.Data, nil, nil
			return e.wss.Write(rec.ID, rec)
		}
		d.Pending = nil
		s, err := e.commitSnapshot(rec)
		if err == nil {
			e.logEvent(rec.ID, api.LogEntry{Kind: api.LogSnapshot, Sequence: s.Sequence, Snapshot: s.Name, StartedAt: s.CreatedAt})
		}
		return err
	}
	e.log.Info("dropping an interrupted disk operation", "workspace_id", rec.ID)
	e.discard(rec)
	return nil
}

// ListSnapshots lists a workspace's snapshots, oldest first, with the forks
// made from each.
func (e *Engine) ListSnapshots(ctx context.Context, ref string) (*api.SnapshotList, error) {
	rec, err := e.loadWorkspace(ref)
	if err != nil {
		return nil, err
	}
	forks, err := e.forksOf(rec.ID)
	if err != nil {
		return nil, err
	}
	out := &api.SnapshotList{WorkspaceID: rec.ID, Snapshots: []*api.Snapshot{}}
	for _, s := range rec.Workspace.Snapshots {
		out.Snapshots = append(out.Snapshots, snapshotView(rec.ID, s, forks[s.Name]))
	}
	out.Count = len(out.Snapshots)
	return out, nil
}

// DeleteSnapshot deletes a snapshot. The baseline, and a snapshot a fork
// was made from, cannot be deleted. Its layers are freed once no chain
// reads them (a snapshot under the current disk stays until a reset).
func (e *Engine) DeleteSnapshot(ctx context.Context, ref, name string) (*api.SnapshotDeleteResult, error) {
	defer e.enter()()
	if err := checkSnapshotName(name, false); err != nil {
		return nil, err
	}
	if name == api.BaselineSnapshot {
		return nil, errdefs.New(errdefs.ErrFailedPrecondition, "the baseline is what reset and diff go back to; delete the workspace to free it",
			"the baseline snapshot cannot be deleted")
	}
	rec, unlock, err := e.lockedForDisk(ctx, ref, "deleting a snapshot")
	if err != nil {
		return nil, err
	}
	defer unlock()
	ws := rec.Workspace
	if ws.snapshot(name) == nil {
		return nil, unknownSnapshot(rec, name)
	}
	forks, err := e.forksOf(rec.ID)
	if err != nil {
		return nil, err
	}
	if f := forks[name]; len(f) > 0 {
		return nil, errdefs.New(errdefs.ErrConflict, "delete those workspaces first, or keep the snapshot",
			"snapshot %q of workspace %s is the base of fork(s) %s", name, rec.ID, strings.Join(f, ", "))
	}
	kept := ws.Snapshots[:0]
	for _, s := range ws.Snapshots {
		if s.Name != name {
			kept = append(kept, s)
		}
	}
	ws.Snapshots = kept
	if err := e.wss.Write(rec.ID, rec); err != nil {
		return nil, err
	}
	e.sweep()
	return &api.SnapshotDeleteResult{WorkspaceID: rec.ID, Name: name, Deleted: true}, nil
}

func unknownSnapshot(rec *vmRecord, name string) error {
	var names []string
	for _, s := range rec.Workspace.Snapshots {
		names = append(names, s.Name)
	}
	have := "it has none"
	if len(names) > 0 {
		have = "it has: " + strings.Join(names, ", ")
	}
	return errdefs.New(errdefs.ErrNotFound, "list them with 'pyro workspace snapshot list "+rec.ID+"'",
		"workspace %s has no snapshot named %q (%s)", rec.ID, name, have)
}

// forksOf maps each snapshot of workspace id to the workspaces forked
// from it ("" for forks of a moment).
func (e *Engine) forksOf(id string) (map[string][]string, error) {
	ids, err := e.wss.IDs()
	if err != nil {
		return nil, err
	}
	out := map[string][]string{}
	for _, other := range ids {
		var rec vmRecord
		if e.wss.Read(other, &rec) != nil || rec.Workspace == nil || rec.Workspace.ForkOf == nil || rec.State == api.StateDeleting {
			continue
		}
		if f := rec.Workspace.ForkOf; f.WorkspaceID == id {
			out[f.Snapshot] = append(out[f.Snapshot], other)
		}
	}
	for _, l := range out {
		sort.Strings(l)
	}
	return out, nil
}

func snapshotView(id string, s snapshotRec, forks []string) *api.Snapshot {
	return &api.Snapshot{WorkspaceID: id, Name: s.Name, CreatedAt: s.CreatedAt, Sequence: s.Sequence, SizeBytes: s.SizeBytes, Forks: forks}
}
