package engine

// Workspaces that sleep: `workspace stop` suspends a running workspace
// (its memory and device state saved next to its disk, guest filesystems
// frozen first so that the disk is complete for offline tools and
// snapshots), and the next start resumes it with its shells, services and
// processes, the clock and the kernel's randomness refreshed. A saved
// state is used only over the very disk it was saved with: its tops are
// recorded (name, size, modification time), and a top that changed since,
// or a chain that no longer holds it under empty layers only, means a
// cold boot instead.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/pyro-mcp/pyro/api"
	"github.com/pyro-mcp/pyro/internal/agentproto"
	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/layers"
	"github.com/pyro-mcp/pyro/internal/vmm"
)

// suspendFile is a suspended workspace's saved state, in its directory;
// suspendMemFile its RAM, under a backend that saves RAM apart
// (Firecracker).
const (
	suspendFile    = "suspend.state"
	suspendMemFile = "suspend.mem"
)

// suspendRec is a suspended workspace's saved state in its record.
type suspendRec struct {
	At    time.Time   `json:"at"`
	Bytes int64       `json:"bytes"`
	Tops  []layerMark `json:"tops"`
	// The machine that was saved: the same VMM binary and initramfs must
	// resume it (its agent is the one in the saved memory).
	VMM    string `json:"vmm"`
	Initrd string `json:"initrd"`
}

// layerMark identifies a disk file's content by its metadata: QEMU
// changes the size or the modification time of a layer it writes to.
type layerMark struct {
	Path    string `json:"path"`
	Size    int64  `json:"size"`
	MtimeNs int64  `json:"mtime_ns"`
}

func markOf(path string) (layerMark, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return layerMark{}, err
	}
	return layerMark{Path: path, Size: st.Size, MtimeNs: st.Mtim.Nano()}, nil
}

// diskTops are the writable files of rec's drives.
func (e *Engine) diskTops(rec *vmRecord) []string {
	ws := rec.Workspace
	if ws == nil || ws.Disk == nil {
		return []string{rec.Disk}
	}
	var out []string
	for _, t := range ws.Disk.tops() {
		out = append(out, e.layers.Path(t))
	}
	return out
}

// canSuspend says whether rec's machine can be suspended here.
func canSuspend(rec *vmRecord) bool {
	// Firecracker does not save a machine with a network (its guest
	// address belongs to the run): such a workspace powers off.
	fcNet := vmm.Kind(rec.BackendKind) == vmm.KindFirecracker && rec.Network
	return rec.Kind == kindWorkspace && rec.ExecutionMode == api.ModeGuest && !fcNet
}

// StopWorkspace suspends the workspace's VM, or powers it off (o.Cold,
// or when it cannot be suspended); /workspace stays on its disk either
// way.
func (e *Engine) StopWorkspace(ctx context.Context, ref string, o *api.StopOptions) (*api.Workspace, error) {
	defer e.enter()()
	rec, unlock, err := e.locked(e.wss, ref)
	if err != nil {
		return nil, err
	}
	defer unlock()
	// A policy change that adds or removes the network device needs a
	// new machine: this stop powers off.
	cold := (o != nil && o.Cold) || e.templatesMode() == TemplatesOff || rec.nicChanged()
	if !cold && rec.Workspace != nil && rec.Workspace.Suspended != nil && !e.alive(rec) {
		return e.workspaceView(rec, false, ""), nil // suspended already
	}
	if !cold && e.alive(rec) && canSuspend(rec) {
		if err := e.suspendLocked(ctx, rec); err == nil {
			return e.workspaceView(rec, false, ""), nil
		} else {
			e.log.Warn("suspending failed: powering the workspace off instead (its processes end; its files are safe)", "workspace_id", rec.ID, "err", err)
		}
	}
	// Powering off ends shells and services here, services with their
	// TERM (their last states kept for `service list`), and forgets a
	// saved state: a cold stop of a suspended workspace boots it next.
	if err := e.stopShellsAndServices(ctx, rec); err != nil {
		e.log.Warn("stopping shells and services", "workspace_id", rec.ID, "err", err)
	}
	e.stopLocked(ctx, rec)
	if rec.Workspace != nil {
		if rec.Workspace.Suspended != nil {
			e.dropSuspended(rec)
		}
		rec.Workspace.Ports = nil // released with the supervisor
	}
	rec.State = api.StateStopped
	if err := e.wss.Write(rec.ID, rec); err != nil {
		return nil, err
	}
	return e.workspaceView(rec, false, ""), nil
}

// loadLiving resolves ref to a workspace for a call on its shells or
// services, resuming it first when it is suspended: they live in its
// saved memory and run on once it is resumed.
func (e *Engine) loadLiving(ctx context.Context, ref string) (*vmRecord, error) {
	rec, err := e.loadWorkspace(ref)
	if err != nil {
		return nil, err
	}
	if rec.Workspace == nil || rec.Workspace.Suspended == nil || e.alive(rec) {
		return rec, nil
	}
	rec, _, err = e.ensureRunning(ctx, rec.ID)
	return rec, err
}

// suspendLocked saves rec's running machine and ends it. On failure the
// machine runs on, thawed. The caller holds the lock.
func (e *Engine) suspendLocked(ctx context.Context, rec *vmRecord) error {
	ctx, cancel := context.WithTimeout(ctx, stretch(2*time.Minute))
	defer cancel()
	c, err := e.dial(ctx, rec)
	if err != nil {
		return err
	}
	defer c.Close()
	mounts := []string{"/"}
	if layoutOf(rec) == api.LayoutData {
		mounts = []string{api.WorkspaceRoot, "/"}
	}
	kind := vmm.Kind(rec.BackendKind)
	if _, err := c.Quiesce(ctx, agentproto.QuiesceRequest{Mounts: quiesceMounts(kind, mounts), TimeoutMs: 60_000}); err != nil {
		return fmt.Errorf("quiescing the guest: %w", err)
	}
	dir := e.wss.Path(rec.ID)
	tmp, tmpMem := filepath.Join(dir, suspendFile+".tmp"), filepath.Join(dir, suspendMemFile+".tmp")
	run := e.runDir(rec.ID)
	start := time.Now()
	if err := saveMachine(ctx, kind, run, vmm.SaveOptions{State: tmp, Memory: tmpMem}); err != nil {
		os.Remove(tmp)
		os.Remove(tmpMem)
		e.wake(ctx, rec, c)
		return fmt.Errorf("saving the guest: %w", err)
	}
	saveMs := time.Since(start)
	vmmID, initrd := e.machineIdentity(ctx, rec)
	e.killProcesses(rec)
	waitGone(rec)
	os.RemoveAll(run)
	s := &suspendRec{At: time.Now().UTC().Truncate(time.Millisecond), VMM: vmmID, Initrd: initrd}
	for _, top := range e.diskTops(rec) {
		m, err := markOf(top)
		if err != nil {
			os.Remove(tmp)
			return errdefs.Wrap(errdefs.ErrInternal, err, "", "reading the workspace's disk")
		}
		s.Tops = append(s.Tops, m)
	}
	if err := os.Rename(tmp, filepath.Join(dir, suspendFile)); err != nil {
		return errdefs.Wrap(errdefs.ErrInternal, err, "", "keeping the saved state")
	}
	s.Bytes, _ = fileSize(filepath.Join(dir, suspendFile))
	if err := os.Rename(tmpMem, filepath.Join(dir, suspendMemFile)); err == nil {
		n, _ := fileSize(filepath.Join(dir, suspendMemFile))
		s.Bytes += n
	}
	rec.Workspace.Suspended = s
	rec.State = api.StateSuspended
	if err := e.wss.Write(rec.ID, rec); err != nil {
		return err
	}
	e.log.Info("workspace suspended", "workspace_id", rec.ID, "save_ms", saveMs.Milliseconds(), "bytes", s.Bytes)
	return nil
}

// wake undoes a quiesce and a pause after a failed save: the machine
// continues and the agent thaws its filesystems.
func (e *Engine) wake(ctx context.Context, rec *vmRecord, c *agentproto.Client) {
	ctx = context.WithoutCancel(ctx)
	continueMachine(ctx, vmm.Kind(rec.BackendKind), e.runDir(rec.ID))
	entropy := make([]byte, 32)
	if _, err := c.Identity(ctx, agentproto.IdentityRequest{Entropy: entropy, UnixNano: time.Now().UnixNano()}); err != nil {
		e.log.Warn("thawing the guest after a failed suspend", "workspace_id", rec.ID, "err", err)
	}
}

// machineIdentity names what a saved machine must be resumed by: the
// VMM binary and the initramfs (whose agent runs in the saved memory).
func (e *Engine) machineIdentity(ctx context.Context, rec *vmRecord) (vmmID, initrd string) {
	if vmm.Kind(rec.BackendKind) == vmm.KindFirecracker {
		vmmID = firecrackerIdentity()
	} else if b, err := e.qemuBackend(ctx, rec.Env.KernelPath); err == nil {
		vmmID = fileIdentity(b.Binary())
	}
	if img, err := e.initramfs(ctx, rec.Env); err == nil {
		initrd = img.Digest
	}
	return vmmID, initrd
}

// waitGone waits (briefly) for a killed VMM and supervisor to be gone,
// so that the VMM's disk files are closed before they are measured and
// the supervisor's published ports are free when the stop returns.
func waitGone(rec *vmRecord) {
	for i := 0; i < 300; i++ {
		vmm := rec.VMMPid > 0 && isVMM(rec.VMMPid, rec.ID)
		sup := rec.SupervisorPID > 0 && isSupervisor(rec.SupervisorPID, rec.ID)
		if !vmm && !sup {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// resumeSpec turns cfg into a resume when rec is suspended and its saved
// state still fits its disk and machine; otherwise the state is dropped
// and rec boots cold. It reports whether rec was suspended.
func (e *Engine) resumeSpec(ctx context.Context, rec *vmRecord, cfg *superviseConfig) bool {
	ws := rec.Workspace
	if ws == nil || ws.Suspended == nil {
		return false
	}
	s := ws.Suspended
	why := e.resumable(ctx, rec, s)
	if why != "" {
		e.log.Warn("the saved state cannot be resumed: booting the workspace from its disk (its processes are gone; its files are safe)", "workspace_id", rec.ID, "reason", why)
		e.dropSuspended(rec)
		return true
	}
	cfg.Spec.Restore = &vmm.Restore{State: filepath.Join(e.wss.Path(rec.ID), suspendFile), Memory: filepath.Join(e.wss.Path(rec.ID), suspendMemFile)}
	cfg.Identity = &agentproto.IdentityRequest{}
	// Reading a whole RAM image takes longer than a template's device state.
	cfg.BootTimeout = min(cfg.BootTimeout, stretch(2*restoreTimeout))
	return true
}

// resumable says why s cannot be resumed over rec's disk now ("" when it can).
func (e *Engine) resumable(ctx context.Context, rec *vmRecord, s *suspendRec) string {
	if e.templatesMode() == TemplatesOff {
		return "PYRO_TEMPLATES=off"
	}
	if _, err := os.Stat(filepath.Join(e.wss.Path(rec.ID), suspendFile)); err != nil {
		return "the saved state is missing"
	}
	if rec.nicChanged() {
		return "its network policy now adds or removes the network device"
	}
	vmmID, initrd := e.machineIdentity(ctx, rec)
	if vmmID != s.VMM || initrd != s.Initrd {
		return "pyro or its VMM changed since it was saved"
	}
	tops := e.diskTops(rec)
	if len(tops) != len(s.Tops) {
		return "its disks changed"
	}
	for i, top := range tops {
		if !e.onlyEmptyAbove(top, s.Tops[i]) {
			return "its disk changed since it was saved"
		}
	}
	return ""
}

// onlyEmptyAbove says whether the disk whose top is top reads exactly
// what the recorded layer held: top is that layer, unchanged, or a chain
// of never-written layers over it (a snapshot taken while suspended).
func (e *Engine) onlyEmptyAbove(top string, m layerMark) bool {
	for depth := 0; depth < 64; depth++ {
		if top == m.Path {
			now, err := markOf(top)
			return err == nil && now == m
		}
		if !pristine(top) {
			return false
		}
		parent, err := layers.Backing(top)
		if err != nil || parent == "" {
			return false
		}
		if !filepath.IsAbs(parent) {
			parent = filepath.Join(filepath.Dir(top), parent)
		}
		top = parent
	}
	return false
}

// resumed finishes a boot: a resumed workspace's saved state is spent
// (its disk moves on from now), and a cold boot of a suspended one drops
// it too.
func (e *Engine) resumed(rec *vmRecord) {
	if rec.Workspace != nil && rec.Workspace.Suspended != nil {
		e.dropSuspended(rec)
	}
}

// dropSuspended forgets rec's saved state; the caller writes rec.
func (e *Engine) dropSuspended(rec *vmRecord) {
	os.Remove(filepath.Join(e.wss.Path(rec.ID), suspendFile))
	os.Remove(filepath.Join(e.wss.Path(rec.ID), suspendMemFile))
	rec.Workspace.Suspended = nil
}
