package engine

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/pyro-mcp/pyro/api"
	"github.com/pyro-mcp/pyro/internal/archive"
	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/layers"
	"github.com/pyro-mcp/pyro/internal/progress"
	"github.com/pyro-mcp/pyro/internal/template"
	"github.com/pyro-mcp/pyro/internal/vmm"
)

// phaseSeed fills /workspace from the seed of a new workspace.
const phaseSeed = "seed"

// CreateWorkspace creates and starts a workspace, seeding /workspace from
// SeedPath (a directory or a .tar/.tar.gz/.tgz) before it returns. Under
// QEMU the seed is checked and unpacked on the host, then built into the
// workspace's data disk (layout 2) before the first boot, and that disk as
// it is then becomes the baseline snapshot; elsewhere it is pushed into
// the booted guest.
func (e *Engine) CreateWorkspace(ctx context.Context, o api.CreateWorkspaceOptions) (*api.Workspace, error) {
	defer e.enter()()
	// Which path the seed takes is known for sure only once the
	// environment is pulled, so guess it now; a wrong guess costs a second
	// read of the seed and reorders the progress phases.
	layeredGuess := e.layeredLikely()
	phases := []string{phaseEnvironment, phaseDisk, phaseBoot}
	switch {
	case o.SeedPath != "" && layeredGuess:
		phases = []string{phaseSeed, phaseEnvironment, phaseDisk, phaseBoot}
	case o.SeedPath != "":
		phases = append(phases, phaseSeed)
	}
	ctx, op := e.start(ctx, "workspace create", phases...)
	op.Describe(o.Environment, "")
	if o.DiskGiB == 0 {
		o.DiskGiB = api.DefaultDiskGiB
	}
	if o.DiskGiB < 1 || o.DiskGiB > api.MaxDiskGiB {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("use a `disk_gib` from 1 to %d", api.MaxDiskGiB),
			"disk_gib %d is out of range", o.DiskGiB)
	}
	vo := api.CreateVMOptions{Environment: o.Environment, Shape: o.Shape}
	if err := validateCreate(&vo, api.DefaultWorkspaceTTLSeconds); err != nil {
		return nil, err
	}
	// Names, labels and secrets are checked (and secret files read)
	// before anything is created.
	secrets, secretMetas, err := readSecretSpecs(o.Secrets)
	if err != nil {
		return nil, err
	}
	if err := checkLabels(o.Labels); err != nil {
		return nil, err
	}
	if o.Name != "" {
		if err := e.checkNewName(o.Name, ""); err != nil {
			return nil, err
		}
	}
	// Check the whole seed before anything is created: staging it does
	// (into a private directory), else a dry run of the push.
	seed := api.WorkspaceSeed{Mode: api.SeedEmpty}
	var staged *stagedSeed
	defer func() { staged.remove() }()
	if o.SeedPath != "" {
		abs, err := filepath.Abs(o.SeedPath)
		if err != nil {
			return nil, err
		}
		o.SeedPath = abs
		var st archive.Stats
		if layeredGuess {
			if staged, err = e.stageSeed(ctx, abs); err != nil {
				return nil, err
			}
			st = staged.stats
		} else if st, err = archive.Check(ctx, abs, archive.DefaultLimits); err != nil {
			return nil, err
		}
		seed = withOrigin(api.WorkspaceSeed{Mode: st.Mode, SourcePath: abs, Entries: st.Entries, Bytes: st.Bytes, Digest: st.Digest}, o.SeedOrigin)
	}
	rec, err := e.createRecord(ctx, kindWorkspace, vo, false)
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
	rec.Workspace = &wsState{Seed: seed, NextSequence: 1, Labels: o.Labels}
	if err := e.setupLiving(rec, o.Name, secrets, secretMetas); err != nil {
		return nil, err
	}
	layered := rec.ExecutionMode == api.ModeGuest && rec.Disk == ""
	if layered {
		if o.SeedPath != "" && staged == nil {
			op.Phase(phaseSeed)
			if staged, err = e.stageSeed(ctx, o.SeedPath); err != nil {
				return nil, err
			}
		}
		if err := e.createDisks(ctx, rec, o, staged); err != nil {
			return nil, err
		}
	}
	if err := e.startLocked(ctx, rec); err != nil {
		return nil, err
	}
	if o.SeedPath != "" && !layered {
		op.Phase(phaseSeed)
		got, err := e.push(ctx, rec, o.SeedPath, api.WorkspaceRoot, seed.Entries)
		if err != nil {
			return nil, fmt.Errorf("seeding /workspace: %w", err)
		}
		rec.Workspace.Seed.Digest = got.Digest
	}
	if err := e.wss.Write(rec.ID, rec); err != nil {
		return nil, err
	}
	ok = true
	op.Done()
	return e.workspaceView(rec, true, ""), nil
}

// layeredLikely says whether a new workspace will likely boot under QEMU
// with its own disk layers.
func (e *Engine) layeredLikely() bool {
	return e.opts.Backend != BackendHostCompat && e.opts.Backend != BackendFirecracker && e.guestTools() == nil
}

// createDisks builds a new workspace's layout-2 disks: the seed layer
// (sealed at once: it is the baseline's data layer) from the staged seed
// (nil: an empty /workspace) and a writable top over it and over the
// environment's root image, or over a template's root layer when the
// workspace starts from one (warmdisk.go).
func (e *Engine) createDisks(ctx context.Context, rec *vmRecord, o api.CreateWorkspaceOptions, staged *stagedSeed) error {
	sizeGiB := o.DiskGiB
	seedLayer := layers.NewName(layers.ExtRaw)
	root, data := layers.NewName(layers.ExtQCOW2), layers.NewName(layers.ExtQCOW2)
	ws := rec.Workspace
	ws.Disk = &wsDisk{Layout: api.LayoutData, SizeGiB: sizeGiB, Pending: []string{seedLayer, root, data}}
	t := e.templateFor(ctx, template.KindWorkspace, rec, vmm.Kind(rec.BackendKind), o.Shape, sizeGiB, o.Cold, true)
	tmplRoot := ""
	if t != nil {
		tmplRoot = layers.NewName(layers.ExtQCOW2)
		ws.Disk.Pending = append(ws.Disk.Pending, tmplRoot)
	}
	if err := e.writeRefs(rec); err != nil {
		return err
	}
	if t != nil {
		if err := e.warmRootLayer(t, tmplRoot); err != nil {
			return err
		}
	}
	if err := e.buildSeedLayer(ctx, seedLayer, sizeGiB, staged); err != nil {
		if staged != nil {
			err = fmt.Errorf("seeding /workspace: %w", err)
		}
		return err
	}
	if staged != nil && os.Geteuid() != 0 {
		ws.Disk.Chown = fmt.Sprintf("%d:%d", os.Geteuid(), os.Getegid())
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	base := snapshotRec{Name: api.BaselineSnapshot, CreatedAt: now, Root: "", Data: seedLayer,
		SizeBytes: layers.Allocated(e.layers.Path(seedLayer))}
	under := base
	if t != nil {
		under.Root = tmplRoot
		rec.Warm = &warmRef{Template: t.ID, Build: t.Build, Kind: template.KindWorkspace}
	}
	if err := e.newTops(ctx, rec, under, root, data); err != nil {
		return err
	}
	ws.Disk.Root, ws.Disk.Data, ws.Disk.Pending = root, data, nil
	ws.Snapshots = []snapshotRec{base}
	return e.wss.Write(rec.ID, rec)
}

// loadWorkspace resolves ref to a workspace that is not being deleted.
func (e *Engine) loadWorkspace(ref string) (*vmRecord, error) {
	rec, err := e.read(e.wss, ref)
	if err != nil {
		return nil, err
	}
	if err := notDeleting(rec); err != nil {
		return nil, err
	}
	return rec, nil
}

// ensureRunning boots the workspace's VM again from its disk if it is not
// running, and says whether it had to.
func (e *Engine) ensureRunning(ctx context.Context, id string) (*vmRecord, bool, error) {
	var rec vmRecord
	if err := e.wss.Read(id, &rec); err != nil {
		return nil, false, err
	}
	progress.From(ctx).Describe(rec.Environment, rec.ID)
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
	if err := notDeleting(&rec); err != nil {
		return nil, false, err
	}
	if e.alive(&rec) {
		return &rec, false, nil
	}
	if err := e.restartLocked(ctx, &rec); err != nil {
		return nil, false, err
	}
	if err := e.wss.Write(id, &rec); err != nil {
		return nil, false, err
	}
	return &rec, true, nil
}

// restartLocked boots a workspace whose VM is not running from its disk
// (or resumes it) and counts the restart; the caller holds the lock and
// writes the record.
func (e *Engine) restartLocked(ctx context.Context, rec *vmRecord) error {
	e.killProcesses(rec)
	if err := e.startLocked(ctx, rec); err != nil {
		return err
	}
	if rec.Start != startResume {
		rec.Workspace.Restarts++
	}
	e.log.Info("workspace restarted from its disk", "workspace_id", rec.ID)
	return nil
}

// StatusWorkspace reports a workspace, checking whether its VM is alive.
func (e *Engine) StatusWorkspace(ctx context.Context, ref string) (*api.Workspace, error) {
	rec, err := e.read(e.wss, ref)
	if err != nil {
		return nil, err
	}
	running, note := e.liveness(rec)
	return e.livingView(ctx, rec, running, note), nil
}

// ListWorkspaces lists every workspace, the most recently active first.
func (e *Engine) ListWorkspaces(ctx context.Context) ([]*api.Workspace, error) {
	return e.ListWorkspacesWith(ctx, nil)
}

// workspaceView is rec's public view with its disk usage.
func (e *Engine) workspaceView(rec *vmRecord, running bool, note string) *api.Workspace {
	w := rec.workspaceView(running, note)
	w.Disk = e.diskView(rec)
	return w
}

// StartWorkspace boots a stopped workspace from its disk.
func (e *Engine) StartWorkspace(ctx context.Context, ref string) (*api.Workspace, error) {
	defer e.enter()()
	ctx, op := e.start(ctx, "workspace start", phaseBoot)
	rec, err := e.loadWorkspace(ref)
	if err != nil {
		return nil, err
	}
	rec, _, err = e.ensureRunning(ctx, rec.ID)
	if err != nil {
		return nil, err
	}
	op.Done()
	return e.workspaceView(rec, true, ""), nil
}

// DeleteWorkspace stops the VM and removes its disk, logs and state.
func (e *Engine) DeleteWorkspace(ctx context.Context, ref string) (*api.WorkspaceDeleteResult, error) {
	defer e.enter()()
	id, err := e.resolve(e.wss, ref)
	if err != nil {
		return nil, err
	}
	if err := e.remove(ctx, e.wss, id); err != nil {
		return nil, err
	}
	return &api.WorkspaceDeleteResult{WorkspaceID: id, Deleted: true}, nil
}
