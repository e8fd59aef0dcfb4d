package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/pyro-mcp/pyro/api"
	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/layers"
	"github.com/pyro-mcp/pyro/internal/state"
	"github.com/pyro-mcp/pyro/internal/vmm"
	"github.com/pyro-mcp/pyro/internal/vmm/qemu"
)

// recordSchema is the schema_version of the records this pyro writes.
// Records without one were written by 2.4: their workspaces keep layout 1.
const recordSchema = 2

// Serial numbers of a workspace's disks: the agent finds its disks by
// these, whatever order the guest enumerates them in.
const (
	serialRoot     = "pyro-root"
	serialData     = "pyro-ws"
	serialBaseline = "pyro-base"
)

// wsDisk is a workspace's disk layer in its record: the writable top of
// each drive, as pool layer names (layers.Pool). The layers under them are
// named by the tops' own qcow2 headers.
//
// Layout 2 (api.LayoutData): vda is the root, a qcow2 over the
// environment's root image; vdb is /workspace, a qcow2 over the seed
// layer (a raw ext4 of SizeGiB built on the host); vdc is the baseline
// snapshot's data layer, read-only. Layout 1 (api.LayoutRoot): a workspace
// made by 2.4, one disk; its disk.qcow2 joins the pool (a hard link) the
// first time a snapshot needs it.
type wsDisk struct {
	Layout  int    `json:"layout"`
	SizeGiB int    `json:"size_gib,omitempty"`
	Root    string `json:"root"`
	Data    string `json:"data,omitempty"`
	// Pending names layers an operation is creating (for this workspace
	// or for a fork of it): a sweep keeps them until the operation ends.
	Pending []string `json:"pending,omitempty"`
	// PendingForks are forks being made from it: a directory of theirs
	// without a record when the operation is dropped is removed.
	PendingForks []string `json:"pending_forks,omitempty"`
	// Intent is an operation in flight on the tops (see reconcile).
	Intent *diskIntent `json:"intent,omitempty"`
	// Chown is "UID:GID" until the first boot has given root the seed's
	// files (a seed image built by a host user other than root).
	Chown string `json:"chown,omitempty"`
}

// snapshotRec is one snapshot: the layers that were the tops when it was
// taken, sealed since. Root "" is the environment's root image itself (a
// baseline).
type snapshotRec struct {
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
	Sequence  int       `json:"sequence"`
	Root      string    `json:"root"`
	Data      string    `json:"data,omitempty"`
	SizeBytes int64     `json:"size_bytes"`
}

// diskIntent is written to the record before the tops change and cleared
// by the record write that completes the change, so that a kill -9 at any
// point leaves the old tops or the new ones (reconcile decides which).
type diskIntent struct {
	Op       string    `json:"op"` // "snapshot" or "reset"
	Snapshot string    `json:"snapshot"`
	Root     string    `json:"root"` // the new tops
	Data     string    `json:"data,omitempty"`
	At       time.Time `json:"at"`
	// Hidden marks the snapshot a fork takes of the moment: its layers
	// are the fork's, not in the source's list.
	Hidden bool `json:"hidden,omitempty"`
}

func (d *wsDisk) tops() []string {
	if d.Data == "" {
		return []string{d.Root}
	}
	return []string{d.Root, d.Data}
}

// layoutOf is rec's disk layout: 2 with a data disk, else 1.
func layoutOf(rec *vmRecord) int {
	if ws := rec.Workspace; ws != nil && ws.Disk != nil && ws.Disk.Layout == api.LayoutData {
		return api.LayoutData
	}
	return api.LayoutRoot
}

// baseline returns rec's baseline snapshot, or nil (layout 1).
func (ws *wsState) baseline() *snapshotRec {
	return ws.snapshot(api.BaselineSnapshot)
}

func (ws *wsState) snapshot(name string) *snapshotRec {
	for i := range ws.Snapshots {
		if ws.Snapshots[i].Name == name {
			return &ws.Snapshots[i]
		}
	}
	return nil
}

// diskSupport refuses disk-layer operations a workspace cannot have.
func diskSupport(rec *vmRecord, what string) error {
	switch {
	case rec.ExecutionMode == api.ModeHostCompat:
		return errdefs.New(errdefs.ErrFailedPrecondition, "use a workspace in a guest (not `allow_host_compat`)",
			"%s needs a workspace disk: workspace %s runs on the host (host_compat)", what, rec.ID)
	case vmm.Kind(rec.BackendKind) == vmm.KindFirecracker:
		return errdefs.New(errdefs.ErrFailedPrecondition, "create the workspace with the QEMU backend (--backend qemu)",
			"%s is not available yet for workspaces on the Firecracker backend", what)
	}
	return nil
}

// rootSize is the virtual size of the root drive: the environment's image.
func rootSize(rec *vmRecord) (int64, error) {
	fi, err := os.Stat(rec.Env.RootfsPath)
	if err != nil {
		return 0, errdefs.Wrap(errdefs.ErrFailedPrecondition, err, "reinstall it with 'pyro env pull "+rec.Environment+"'", "environment %s's root image", rec.Environment)
	}
	return fi.Size(), nil
}

// rootParent is what a root top is created over: a pool layer, or the
// environment's root image for "".
func rootParent(rec *vmRecord, layer string) string {
	if layer == "" {
		return rec.Env.RootfsPath
	}
	return layer
}

// newTops creates a workspace's writable tops over the layers of s
// (root, and data on layout 2). The caller has named them in a record.
func (e *Engine) newTops(ctx context.Context, rec *vmRecord, s snapshotRec, root, data string) error {
	size, err := rootSize(rec)
	if err != nil {
		return err
	}
	// Both at once: each is a qemu-img process, and a snapshot waits.
	dataErr := make(chan error, 1)
	if data != "" {
		go func() { dataErr <- e.layers.NewOverlay(ctx, data, s.Data, int64(rec.Workspace.Disk.SizeGiB)<<30) }()
	} else {
		dataErr <- nil
	}
	rootErr := e.layers.NewOverlay(ctx, root, rootParent(rec, s.Root), size)
	if err := errors.Join(rootErr, <-dataErr); err != nil {
		os.Remove(e.layers.Path(root))
		if data != "" {
			os.Remove(e.layers.Path(data))
		}
		return err
	}
	return nil
}

// workspaceDisks fills the drives and kernel arguments of a workspace
// that has a disk layer (Disk set). It reports false for records without
// one, which keep their single disk.qcow2.
func (e *Engine) workspaceDisks(rec *vmRecord, spec *vmm.MachineSpec) bool {
	if rec.Workspace == nil || rec.Workspace.Disk == nil || vmm.Kind(rec.BackendKind) == vmm.KindFirecracker {
		return false
	}
	d := rec.Workspace.Disk
	spec.Disks = []vmm.Disk{{Path: e.layers.Path(d.Root), Format: "qcow2", Serial: serialRoot}}
	spec.Cmdline = "pyro_channel=virtio-serial pyro_root=/dev/vda pyro_hostname=pyro-" + rec.ID[:8] + benchGuestArgs()
	if d.Layout != api.LayoutData {
		return true
	}
	spec.Disks = append(spec.Disks, vmm.Disk{Path: e.layers.Path(d.Data), Format: "qcow2", Serial: serialData})
	spec.Cmdline += " pyro_wsdisk=" + serialData
	if b := rec.Workspace.baseline(); b != nil && b.Data != "" {
		spec.Disks = append(spec.Disks, vmm.Disk{Path: e.layers.Path(b.Data), Format: layers.Format(b.Data), ReadOnly: true, Serial: serialBaseline})
		spec.Cmdline += " pyro_basedisk=" + serialBaseline
	}
	if d.Chown != "" {
		spec.Cmdline += " pyro_wschown=" + d.Chown
	}
	return true
}

// Drive indexes of a workspace's machine, in spec.Disks order.
const (
	driveRoot = 0
	driveData = 1
)

// prepareDisks readies a stopped workspace's disks for a boot: it settles
// an interrupted operation (reconcile) and flattens a chain grown past
// layers.MaxChainDepth. The caller holds the lock; rec is written by the
// boot that follows.
func (e *Engine) prepareDisks(ctx context.Context, rec *vmRecord) error {
	if rec.Workspace == nil {
		return nil
	}
	e.dropDiskCache(rec)
	if rec.Workspace.Disk == nil {
		return nil
	}
	if err := e.reconcile(ctx, rec); err != nil {
		return err
	}
	d := rec.Workspace.Disk
	for i, top := range d.tops() {
		depth, err := e.layers.Depth(top)
		if err != nil {
			return errdefs.Wrap(errdefs.ErrInternal, err, "", "workspace %s: reading its disk", rec.ID)
		}
		if depth <= layers.MaxChainDepth {
			continue
		}
		bottom := rec.Env.RootfsPath
		if i == driveData {
			chain, _, err := e.layers.Chain(top)
			if err != nil {
				return err
			}
			bottom = chain[len(chain)-1] // the seed layer
		}
		t := time.Now()
		if err := e.layers.Flatten(ctx, top, bottom); err != nil {
			// A deep chain is slower, not wrong: boot anyway.
			e.log.Warn("flattening a long disk chain", "workspace_id", rec.ID, "depth", depth, "err", err)
			continue
		}
		e.log.Info("flattened a long disk chain", "workspace_id", rec.ID, "depth", depth, "took", time.Since(t))
	}
	return nil
}

// adoptLocked brings a 2.4 workspace's disk.qcow2 into the pool (layout
// 1) so that snapshots, resets and forks can stack layers on it. A hard
// link: a running VM keeps using the old name, and deleting the
// workspace's directory later leaves the pool's name to whoever needs it.
func (e *Engine) adoptLocked(rec *vmRecord) error {
	ws := rec.Workspace
	if ws.Disk != nil {
		return nil
	}
	if rec.Disk == "" {
		return errdefs.New(errdefs.ErrFailedPrecondition, "", "workspace %s has no disk", rec.ID)
	}
	name := layers.NewName(layers.ExtQCOW2)
	// Link and record under the pool's shared lock: no sweep may see the
	// new name between the two (it would free it as nobody's).
	unlock, err := e.layers.Shared()
	if err != nil {
		return err
	}
	defer unlock()
	if err := os.Link(rec.Disk, e.layers.Path(name)); err != nil {
		return errdefs.Wrap(errdefs.ErrInternal, err, "", "adding workspace %s's disk to the layer pool", rec.ID)
	}
	os.Chmod(rec.Disk, 0o600)
	ws.Disk = &wsDisk{Layout: api.LayoutRoot, Root: name}
	rec.SchemaVersion = recordSchema
	if err := e.wss.Write(rec.ID, rec); err != nil {
		ws.Disk = nil
		os.Remove(e.layers.Path(name))
		return err
	}
	return nil
}

// layerRoots lists every pool layer that any workspace's record names.
func (e *Engine) layerRoots() ([]string, error) {
	ids, err := e.wss.IDs()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, id := range ids {
		var rec vmRecord
		if err := e.wss.Read(id, &rec); err != nil {
			if errors.Is(err, errdefs.ErrNotFound) {
				continue // a directory without a record yet, or gone
			}
			return nil, fmt.Errorf("reading workspace %s: %w", id, err)
		}
		out = append(out, recordLayers(&rec)...)
	}
	return out, nil
}

// recordLayers are the pool layers rec names.
func recordLayers(rec *vmRecord) []string {
	ws := rec.Workspace
	if ws == nil || ws.Disk == nil {
		return nil
	}
	d := ws.Disk
	out := append(d.tops(), d.Pending...)
	if d.Intent != nil {
		out = append(out, d.Intent.Root, d.Intent.Data)
	}
	for _, s := range ws.Snapshots {
		out = append(out, s.Root, s.Data)
	}
	return out
}

// sweep frees the pool layers nothing needs any more. Failing to sweep
// only leaves space to free later.
func (e *Engine) sweep() {
	res, err := e.layers.Sweep(e.layerRoots)
	if err != nil {
		e.log.Warn("sweeping the layer pool", "err", err)
		return
	}
	if len(res.Freed) > 0 {
		e.log.Info("freed disk layers", "count", len(res.Freed), "bytes", res.FreedBytes)
	}
}

// diskView reports rec's disks and their usage, or nil without a disk layer.
func (e *Engine) diskView(rec *vmRecord) *api.WorkspaceDisk {
	ws := rec.Workspace
	if ws == nil || rec.ExecutionMode != api.ModeGuest {
		return nil
	}
	if ws.Disk == nil {
		if rec.Disk == "" {
			return nil
		}
		return &api.WorkspaceDisk{Layout: api.LayoutRoot, UsedBytes: layers.Allocated(rec.Disk)}
	}
	d := ws.Disk
	v := &api.WorkspaceDisk{Layout: d.Layout, SizeGiB: d.SizeGiB}
	for _, t := range d.tops() {
		v.UsedBytes += layers.Allocated(e.layers.Path(t))
	}
	var under []string
	for _, t := range d.tops() {
		if chain, _, err := e.layers.Chain(t); err == nil && len(chain) > 1 {
			under = append(under, chain[1:]...)
		}
	}
	for _, s := range ws.Snapshots {
		under = append(under, s.Root, s.Data)
	}
	_, v.SnapshotBytes = e.layers.Usage(under)
	return v
}

// layerPath is a layer's file, for QEMU and qemu-img.
func (e *Engine) layerPath(name string) string { return filepath.Join(e.layers.Dir, name) }

// qmp connects to a running workspace's monitor.
func (e *Engine) qmp(ctx context.Context, rec *vmRecord) (*qemu.QMP, error) {
	return qemu.DialQMP(ctx, e.runDir(rec.ID))
}

// InspectEnvironment describes an environment (catalog.Inspect) and adds
// what the VMs and workspaces built on it occupy.
func (e *Engine) InspectEnvironment(ctx context.Context, name string) (*api.EnvironmentInfo, error) {
	info, err := e.catalog.Inspect(ctx, name)
	if err != nil {
		return nil, err
	}
	u := &api.EnvironmentUsage{}
	var under []string
	for _, st := range []*state.Store{e.vms, e.wss} {
		ids, err := st.IDs()
		if err != nil {
			return nil, err
		}
		for _, id := range ids {
			var rec vmRecord
			if st.Read(id, &rec) != nil || rec.Environment != info.Name {
				continue
			}
			if st == e.vms {
				u.VMs++
				u.DiskBytes += layers.Allocated(rec.Disk)
				continue
			}
			u.Workspaces++
			if rec.Workspace == nil || rec.Workspace.Disk == nil {
				u.DiskBytes += layers.Allocated(rec.Disk)
				continue
			}
			d := rec.Workspace.Disk
			for _, t := range d.tops() {
				u.DiskBytes += layers.Allocated(e.layers.Path(t))
				if chain, _, err := e.layers.Chain(t); err == nil && len(chain) > 1 {
					under = append(under, chain[1:]...)
				}
			}
			for _, s := range rec.Workspace.Snapshots {
				under = append(under, s.Root, s.Data)
			}
		}
	}
	u.Layers, u.SnapshotBytes = e.layers.Usage(under)
	info.Usage = u
	if info.Templates, err = e.Templates(ctx, info.Name); err != nil {
		return nil, err
	}
	return info, nil
}
