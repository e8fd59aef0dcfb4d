package engine

// Warm start (issue 18): a new VM or workspace is restored from a template
// (internal/template) instead of booted, when one was saved for its exact
// machine. This file decides when, makes the clone's disk and machine, and
// falls back to a cold boot when the template is missing, stale or
// corrupt, or the restore fails. prepare.go builds templates; suspend.go
// suspends and resumes workspaces with the same machinery.

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pyro-mcp/pyro/api"
	"github.com/pyro-mcp/pyro/internal/agentproto"
	"github.com/pyro-mcp/pyro/internal/backendsel"
	"github.com/pyro-mcp/pyro/internal/catalog"
	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/supervisor"
	"github.com/pyro-mcp/pyro/internal/template"
	"github.com/pyro-mcp/pyro/internal/vmm"
	"github.com/pyro-mcp/pyro/internal/vmm/qemu"
)

// Template policies (Options.Templates, $PYRO_TEMPLATES).
const (
	// TemplatesAuto: use a template when one fits, and save one on the
	// way when a run or a workspace create finds none (the default).
	TemplatesAuto = "auto"
	// TemplatesOn: use templates, build them only in Prepare.
	TemplatesOn = "on"
	// TemplatesOff: always boot cold.
	TemplatesOff = "off"
)

// How a machine came up (api.Machine.Start, RunResult.Start).
const (
	startCold   = "cold"
	startWarm   = "warm"
	startResume = "resume"
)

// templateHostname is the hostname a template's guest boots with; every
// clone is given its own in the identity step.
const templateHostname = "pyro"

// warmRef is the template build a VM's or workspace's disks were made
// from, in its record until its first boot: that boot restores from the
// build (whose root layer its root disk is over), or boots cold.
type warmRef struct {
	Template string `json:"template"`
	Build    string `json:"build"`
	Kind     string `json:"kind"`
}

// restoreError is a boot from saved state that failed: the caller may
// boot cold instead.
type restoreError struct{ err error }

func (r *restoreError) Error() string { return r.err.Error() }
func (r *restoreError) Unwrap() error { return r.err }

// templatesMode is the policy in force: "auto", "on" or "off".
func (e *Engine) templatesMode() string {
	m := e.opts.Templates
	if m == "" {
		m = os.Getenv("PYRO_TEMPLATES")
	}
	switch m {
	case TemplatesOff, TemplatesOn:
		return m
	}
	return TemplatesAuto
}

// warmMachine is the machine of a template: its key, and its spec with
// placeholder files (the build and every clone put their own in).
type warmMachine struct {
	Kind    string
	Key     template.Key
	Spec    vmm.MachineSpec
	Inst    *catalog.Installed
	SizeGiB int
}

// Placeholder paths of a template's machine: the machine's digest must not
// depend on where a build or a clone keeps its files.
const (
	phDir    = "/pyro-template/run"
	phMemory = "/pyro-template/memory"
	phDisk   = "/pyro-template/disk"
)

// warmMachine describes the template a new machine of this kind, shape and
// environment would be cloned from. Only QEMU machines have templates
// here; see firecracker.md for that backend.
func (e *Engine) warmMachine(ctx context.Context, kind string, inst *catalog.Installed, vkind vmm.Kind, sh api.Shape, sizeGiB int) (*warmMachine, error) {
	if vkind == vmm.KindFirecracker {
		return nil, errdefs.New(errdefs.ErrFailedPrecondition, "", "templates are built for the QEMU backend only")
	}
	img, err := e.initramfs(ctx, inst)
	if err != nil {
		return nil, err
	}
	b, err := e.qemuBackend(ctx, inst.KernelPath)
	if err != nil {
		return nil, err
	}
	rootSize, err := fileSize(inst.RootfsPath)
	if err != nil {
		return nil, errdefs.Wrap(errdefs.ErrFailedPrecondition, err, "reinstall it with 'pyro env pull "+inst.Name+"'", "environment %s's root image", inst.Name)
	}
	vcpus, mem := sh.VCPUCount, sh.MemMiB
	if vcpus == 0 {
		vcpus = api.DefaultVCPUCount
	}
	if mem == 0 {
		mem = api.DefaultMemMiB
	}
	spec := vmm.MachineSpec{
		ID: "template", Dir: phDir, Kernel: inst.KernelPath, Initrd: img.Path, VCPUs: vcpus, MemMiB: mem,
		Network: sh.Network, Console: phDir + "/console",
		Cmdline: "pyro_channel=virtio-serial pyro_root=/dev/vda pyro_hostname=" + templateHostname,
		Memory:  &vmm.MemoryFile{Path: phMemory},
	}
	drives := []template.Drive{{Role: "root", SizeBytes: rootSize}}
	spec.Disks = []vmm.Disk{{Path: phDisk + "0", Format: "qcow2"}}
	if kind == template.KindWorkspace {
		size := int64(sizeGiB) << 30
		drives = []template.Drive{
			{Role: "root", Serial: serialRoot, SizeBytes: rootSize},
			{Role: "data", Serial: serialData, SizeBytes: size},
			{Role: "baseline", Serial: serialBaseline, SizeBytes: size, ReadOnly: true},
		}
		spec.Disks = []vmm.Disk{
			{Path: phDisk + "0", Format: "qcow2", Serial: serialRoot},
			{Path: phDisk + "1", Format: "qcow2", Serial: serialData},
			{Path: phDisk + "2", Format: "raw", ReadOnly: true, Serial: serialBaseline},
		}
	}
	args, err := b.Args(spec)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256([]byte(strings.Join(args, "\x00")))
	key := template.Key{
		Format: template.FormatVersion, Kind: kind, Backend: string(vmm.KindQEMU), Accel: b.Accel(),
		Environment: inst.Name, Kernel: inst.KernelDigest, Modules: inst.ModulesDigest, Rootfs: inst.RootfsDigest,
		Agent: img.Agent, Initramfs: img.Digest, VMM: fileIdentity(b.Binary()),
		VCPUs: vcpus, MemMiB: mem, Network: spec.NetworkPolicy().NIC(), Drives: drives,
		Machine: hex.EncodeToString(sum[:]),
	}
	if key.Network {
		key.NetMode = b.NetMode()
	}
	return &warmMachine{Kind: kind, Key: key, Spec: spec, Inst: inst, SizeGiB: sizeGiB}, nil
}

// qemuBackend is the QEMU backend this engine's supervisors will use,
// built once per engine (its probes are cached per host anyway).
func (e *Engine) qemuBackend(ctx context.Context, kernel string) (*qemu.Backend, error) {
	e.qemuOnce.Lock()
	defer e.qemuOnce.Unlock()
	if e.qemu != nil {
		return e.qemu, nil
	}
	f := backendsel.Gather(ctx, kernel)
	b, err := qemu.New(qemu.Options{Bin: f.QEMU, KVM: &f.KVM, ProbeKernel: kernel, Logger: e.log})
	if err != nil {
		return nil, err
	}
	e.qemu = b
	return b, nil
}

// warmOnce is the per-engine state of warm starts.
type warmOnce struct {
	qemuOnce sync.Mutex
	qemu     *qemu.Backend
}

// fileIdentity names a binary by path, size and modification time: an
// upgrade of QEMU changes it.
func fileIdentity(p string) string {
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		return p
	}
	return fmt.Sprintf("%s:%d:%d", p, st.Size, st.Mtim.Nano())
}

func fileSize(p string) (int64, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// warmChoice is what a new machine starts from.
type warmChoice struct {
	T  *template.Template // nil: cold
	WM *warmMachine       // the template it would use (nil: none can exist)
	// Why says why the start is cold ("" when warm, or when cold was
	// asked for).
	Why string
	// Build is set when the caller may build the missing template;
	// Rebuild when one existed but cannot be used.
	Build, Rebuild bool
}

// chooseTemplate finds the template a new machine starts from. cold is
// the caller's --cold; mayBuild says whether this operation would save a
// template on its way when none fits (a run, a workspace create).
func (e *Engine) chooseTemplate(ctx context.Context, kind string, inst *catalog.Installed, vkind vmm.Kind, sh api.Shape, sizeGiB int, cold, mayBuild bool) warmChoice {
	mode := e.templatesMode()
	if cold || mode == TemplatesOff || inst == nil {
		return warmChoice{}
	}
	if vkind == vmm.KindFirecracker {
		return warmChoice{}
	}
	wm, err := e.warmMachine(ctx, kind, inst, vkind, sh, sizeGiB)
	if err != nil {
		return warmChoice{Why: "no template can be made: " + err.Error()}
	}
	id := wm.Key.ID()
	t, err := e.templates.Current(id)
	switch {
	case errors.Is(err, template.ErrMissing):
		return warmChoice{WM: wm, Why: "no template for this machine yet", Build: mayBuild && mode == TemplatesAuto}
	case err != nil:
		e.templates.MarkRebuild(id, err.Error())
		return warmChoice{WM: wm, Why: err.Error() + "; it will be rebuilt", Build: mayBuild && mode == TemplatesAuto, Rebuild: true}
	case t.Rebuild != "":
		return warmChoice{WM: wm, Why: "the template is marked for rebuild (" + t.Rebuild + ")", Build: mayBuild && mode == TemplatesAuto, Rebuild: true}
	}
	return warmChoice{T: t, WM: wm}
}

// sayCold tells the user, once per operation, why a machine starts cold.
func (e *Engine) sayCold(env, why string) {
	if why == "" {
		return
	}
	e.log.Warn("cold start: "+why, "environment", env, "hint", "pyro prepare "+env+" saves one; PYRO_TEMPLATES=off silences this")
}

// linkTemplateRoot puts the template's root layer at dst: a hard link
// (the layer is immutable), or a copy across filesystems. A clone's disk
// then never depends on the template staying in the cache.
func linkTemplateRoot(t *template.Template, dst string) error {
	if err := os.Link(t.RootPath(), dst); err == nil {
		return nil
	}
	src, err := os.Open(t.RootPath())
	if err != nil {
		return err
	}
	defer src.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, src); err != nil {
		out.Close()
		os.Remove(dst)
		return err
	}
	return out.Close()
}

// restoreSpec turns cfg into a restore when rec has saved state to start
// from: its first boot after a clone (rec.Warm), or a suspended workspace
// (suspend.go). It checks that the saved machine is this machine.
func (e *Engine) restoreSpec(ctx context.Context, rec *vmRecord, cfg *superviseConfig) error {
	if rec.ExecutionMode != api.ModeGuest {
		return nil
	}
	if e.resumeSpec(ctx, rec, cfg) {
		return nil
	}
	w := rec.Warm
	if w == nil {
		return nil
	}
	if e.templatesMode() == TemplatesOff {
		rec.Warm = nil
		return nil
	}
	root := rec.Disk
	if rec.Workspace != nil && rec.Workspace.Disk != nil {
		root = e.layers.Path(rec.Workspace.Disk.Root)
	}
	if !pristine(root) {
		rec.Warm = nil // booted before: its root is its own now
		return nil
	}
	t, err := e.templates.Current(w.Template)
	if err != nil || t.Build != w.Build {
		// The build the disk was made from is gone: its root layer is
		// still the disk's (a hard link), so a cold boot is fine.
		e.sayCold(rec.Environment, "the template this "+rec.Kind+" was made from changed since")
		rec.Warm = nil
		return nil
	}
	sizeGiB := 0
	if rec.Workspace != nil && rec.Workspace.Disk != nil {
		sizeGiB = rec.Workspace.Disk.SizeGiB
	}
	wm, err := e.warmMachine(ctx, w.Kind, rec.Env, vmm.Kind(rec.BackendKind), rec.Shape(), sizeGiB)
	if err != nil || wm.Key.ID() != w.Template {
		e.sayCold(rec.Environment, "the machine no longer matches its template")
		rec.Warm = nil
		return nil
	}
	cold := cfg.Spec
	spec := cold
	spec.Cmdline = wm.Spec.Cmdline
	spec.Memory = &vmm.MemoryFile{Path: t.MemoryPath()}
	spec.Restore = &vmm.Restore{State: t.StatePath(), IgnoreShared: true}
	cfg.Spec = spec
	cfg.Identity = &agentproto.IdentityRequest{
		Hostname: hostnameOf(cold.Cmdline), MachineID: newMachineID(), Disks: diskArgs(cold.Cmdline),
	}
	cfg.BootTimeout = min(cfg.BootTimeout, stretch(restoreTimeout))
	return nil
}

// restoreTimeout bounds a restore to the agent's identity answer on an
// idle host: a clone that does not answer by then (its memory file is
// corrupt, say) is killed and booted cold.
const restoreTimeout = 20 * time.Second

// hostnameOf is the pyro_hostname a cold boot's kernel arguments give.
func hostnameOf(cmdline string) string {
	for _, f := range strings.Fields(cmdline) {
		if v, ok := strings.CutPrefix(f, "pyro_hostname="); ok {
			return v
		}
	}
	return ""
}

// diskArgs are the data-disk arguments of a cold boot's kernel command
// line (the agent reads them with ParseDiskParams).
func diskArgs(cmdline string) string {
	var out []string
	for _, f := range strings.Fields(cmdline) {
		k, _, _ := strings.Cut(f, "=")
		switch k {
		case "pyro_wsdisk", "pyro_basedisk", "pyro_wschown":
			out = append(out, f)
		}
	}
	return strings.Join(out, " ")
}

// newMachineID is a fresh systemd machine id.
func newMachineID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// bootWarmOrCold spawns rec's supervisor: from saved state when it has
// one, and, when that fails, cold, saying why once and marking the
// template for rebuild (or dropping the suspended state).
func (e *Engine) bootWarmOrCold(ctx context.Context, rec *vmRecord) (*supervisor.Ready, int, error) {
	r, pid, err := e.spawnSupervisor(ctx, rec)
	var re *restoreError
	if err != nil && errors.As(err, &re) && ctx.Err() == nil {
		e.restoreFailed(rec, err)
		r, pid, err = e.spawnSupervisor(ctx, rec)
	}
	return r, pid, err
}

// restoreFailed records a failed restore: the template is marked for
// rebuild, or the suspended state dropped, and rec boots cold next.
func (e *Engine) restoreFailed(rec *vmRecord, err error) {
	if rec.Workspace != nil && rec.Workspace.Suspended != nil {
		e.log.Warn("resuming failed: booting the workspace from its disk (its processes are gone; its files are safe)", "workspace_id", rec.ID, "err", err)
		e.dropSuspended(rec)
		return
	}
	if w := rec.Warm; w != nil {
		e.templates.MarkRebuild(w.Template, "restore failed: "+firstLine(err.Error()))
		e.sayCold(rec.Environment, "restoring the template failed ("+firstLine(err.Error())+"); it will be rebuilt")
		rec.Warm = nil
	}
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

// Shape is the record's shape as the options gave it.
func (r *vmRecord) Shape() api.Shape {
	return api.Shape{VCPUCount: r.VCPUCount, MemMiB: r.MemMiB, TTLSeconds: r.TTLSeconds, Network: r.Network, AllowHostCompat: r.AllowHostCompat}
}
