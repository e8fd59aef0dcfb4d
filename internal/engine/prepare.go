package engine

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/pyro-mcp/pyro/api"
	"github.com/pyro-mcp/pyro/internal/admission"
	"github.com/pyro-mcp/pyro/internal/agentproto"
	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/flock"
	"github.com/pyro-mcp/pyro/internal/layers"
	"github.com/pyro-mcp/pyro/internal/paths"
	"github.com/pyro-mcp/pyro/internal/proctree"
	"github.com/pyro-mcp/pyro/internal/progress"
	"github.com/pyro-mcp/pyro/internal/template"
	"github.com/pyro-mcp/pyro/internal/version"
	"github.com/pyro-mcp/pyro/internal/vmm"
)

// phaseTemplate builds warm-start templates.
const phaseTemplate = "template"

// Template builds. A template is a cold boot of its machine (template.go's
// three files, with placeholders for a workspace's data disk and
// baseline, never mounted), then the agent is quiesced (its root frozen,
// every request but identity refused), QEMU paused and its device state
// written beside the memory file it ran on, and the machine killed. The
// build directory is committed only when all of it succeeded.

// buildTemplate saves wm's template and returns it. Inline (on the way of
// a run or a workspace create), it does not wait for another pyro that is
// building the same template: it returns nil, nil.
func (e *Engine) buildTemplate(ctx context.Context, wm *warmMachine, inline bool) (*template.Template, error) {
	id := wm.Key.ID()
	if err := paths.EnsurePrivate(e.templates.Dir); err != nil {
		return nil, errdefs.Wrap(errdefs.ErrFailedPrecondition, err, "check that $PYRO_CACHE_DIR is writable", "creating the templates directory")
	}
	op := progress.From(ctx)
	var lock *flock.Lock
	if inline {
		l, ok, err := flock.Try(e.templates.LockPath(id), flock.Exclusive)
		if err != nil || !ok {
			return nil, err
		}
		lock = l
	} else {
		l, err := flock.Acquire(ctx, e.templates.LockPath(id), flock.Exclusive, func() {
			op.PhaseStep(op.Current().Phase, "waiting for another pyro building the same template")
		})
		if err != nil {
			return nil, err
		}
		lock = l
	}
	defer lock.Unlock()
	if t, err := e.templates.Current(id); err == nil && t.Rebuild == "" {
		return t, nil
	}
	op.PhaseStep(op.Current().Phase, "saving a warm-start template (once per environment and shape)")
	start := time.Now()
	build, dir, err := e.templates.NewBuild(id)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(dir)
		}
	}()
	vkind := vmm.Kind(wm.Key.Backend)
	spec, err := e.templateSpec(ctx, wm, id, dir)
	if err != nil {
		return nil, err
	}
	cfg := superviseConfig{Mode: api.ModeGuest, Backend: e.opts.Backend, Kind: vkind, Spec: *spec,
		ControlSock: filepath.Join(spec.Dir, "ctl.sock"), BootTimeout: e.opts.BootTimeout}
	release, err := admission.Boot(ctx, e.opts.CacheDir)
	if err != nil {
		return nil, err
	}
	ready, pid, err := e.launch(ctx, dir, cfg)
	release()
	if err != nil {
		return nil, fmt.Errorf("booting the template's guest: %w", err)
	}
	defer stopBuilder(pid, ready.VMMPid, spec.Dir)
	saveStart := time.Now()
	if err := quiesceTemplate(ctx, filepath.Join(spec.Dir, "ctl.sock"), quiesceMounts(vkind, []string{"/"})); err != nil {
		return nil, err
	}
	sctx, cancel := context.WithTimeout(ctx, stretch(60*time.Second))
	defer cancel()
	if err := saveMachine(sctx, vkind, spec.Dir, vmm.SaveOptions{State: filepath.Join(dir, template.StateFile), IgnoreShared: true,
		Memory: filepath.Join(dir, template.MemoryFile)}); err != nil {
		return nil, fmt.Errorf("saving the template's guest: %w", err)
	}
	saveMs := time.Since(saveStart).Milliseconds()
	stopBuilder(pid, ready.VMMPid, spec.Dir)
	for _, p := range spec.Disks[1:] {
		if p.Path != filepath.Join(dir, template.RootFile) { // Firecracker's scratch disk
			os.Remove(p.Path) // placeholders
		}
	}
	m, err := e.templateMeta(wm, id, build, dir)
	if err != nil {
		return nil, err
	}
	m.BootMs, m.SaveMs, m.BuildMs = ready.BootMs, saveMs, time.Since(start).Milliseconds()
	if err := e.templates.Commit(*m); err != nil {
		return nil, err
	}
	ok = true
	e.log.Info("template saved", "environment", wm.Inst.Name, "kind", wm.Kind, "id", id, "build_ms", m.BuildMs, "save_ms", saveMs,
		"memory_bytes", m.MemoryAllocated, "state_bytes", m.StateBytes)
	return e.templates.Current(id)
}

// templateSpec is wm's machine with a build's own files: the root layer
// over the environment's image, sparse placeholders for a workspace's
// data disk and baseline, the memory file shared.
func (e *Engine) templateSpec(ctx context.Context, wm *warmMachine, id, dir string) (*vmm.MachineSpec, error) {
	if vmm.Kind(wm.Key.Backend) == vmm.KindFirecracker {
		return e.fcTemplateSpec(ctx, wm, id, dir)
	}
	spec := wm.Spec
	spec.ID = "tmpl-" + id[:7]
	spec.Dir = filepath.Join(e.opts.RuntimeDir, "t-"+id[:10])
	spec.Console = filepath.Join(dir, template.ConsoleFile)
	spec.Memory = &vmm.MemoryFile{Path: filepath.Join(dir, template.MemoryFile), Shared: true}
	spec.Disks = append([]vmm.Disk(nil), wm.Spec.Disks...)
	root := filepath.Join(dir, template.RootFile)
	if err := layers.WriteOverlayFile(root, wm.Inst.RootfsPath, wm.Key.Drives[0].SizeBytes); err != nil {
		return nil, err
	}
	spec.Disks[0].Path = root
	for i := 1; i < len(spec.Disks); i++ {
		p := filepath.Join(dir, fmt.Sprintf("placeholder%d.raw", i))
		f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			return nil, err
		}
		err = f.Truncate(wm.Key.Drives[i].SizeBytes)
		f.Close()
		if err != nil {
			return nil, err
		}
		spec.Disks[i].Path, spec.Disks[i].Format = p, "raw"
	}
	return &spec, nil
}

// quiesceTemplate readies the template's guest for its save: one command
// first (so that a clone's first command finds the shell, the C library
// and the agent's exec path already in its page cache), then the quiesce.
func quiesceTemplate(ctx context.Context, sock string, mounts []string) error {
	ctx, cancel := context.WithTimeout(ctx, guestCallTimeout())
	defer cancel()
	conn, err := dialUnix(ctx, sock)
	if err != nil {
		return errdefs.Wrap(errdefs.ErrUnavailable, err, "", "connecting to the template's guest")
	}
	c, err := agentproto.NewClient(ctx, conn)
	if err != nil {
		conn.Close()
		return err
	}
	defer c.Close()
	if _, err := c.Exec(ctx, agentproto.ExecRequest{Argv: []string{"/bin/sh", "-c", "true"}}, nil, nil, nil); err != nil {
		return fmt.Errorf("warming the template's guest up: %w", err)
	}
	if _, err := c.Quiesce(ctx, agentproto.QuiesceRequest{Mounts: mounts, Template: true, TimeoutMs: 60_000}); err != nil {
		return fmt.Errorf("quiescing the template's guest: %w", err)
	}
	return nil
}

// stopBuilder kills a template build's supervisor and QEMU and waits for
// QEMU to be gone, so that its files are complete and closed. Safe to
// call twice.
func stopBuilder(supervisorPID, vmmPID int, run string) {
	if supervisorPID > 0 {
		proctree.KillDescendants(supervisorPID)
		syscall.Kill(-supervisorPID, syscall.SIGKILL)
		syscall.Kill(supervisorPID, syscall.SIGKILL)
	}
	if vmmPID > 0 {
		syscall.Kill(vmmPID, syscall.SIGKILL)
		for i := 0; i < 500 && syscall.Kill(vmmPID, 0) == nil; i++ {
			time.Sleep(10 * time.Millisecond)
		}
	}
	os.RemoveAll(run)
}

// templateMeta describes a saved build; its memory and root layer are
// flushed to disk first (a template that outlived a host crash half
// written would restore garbage).
func (e *Engine) templateMeta(wm *warmMachine, id, build, dir string) (*template.Meta, error) {
	m := &template.Meta{ID: id, Key: wm.Key, Build: build, CreatedAt: time.Now().UTC().Truncate(time.Millisecond),
		Pyro: version.Version, RootBacking: wm.Inst.RootfsPath}
	for _, f := range []string{template.MemoryFile, template.RootFile, template.StateFile} {
		if err := syncFile(filepath.Join(dir, f)); err != nil {
			return nil, errdefs.Wrap(errdefs.ErrInternal, err, "check free disk space", "writing the template's %s", f)
		}
	}
	var err error
	if m.StateSHA256, err = template.FileSHA256(filepath.Join(dir, template.StateFile)); err != nil {
		return nil, err
	}
	for _, f := range []struct {
		name string
		size *int64
	}{{template.StateFile, &m.StateBytes}, {template.MemoryFile, &m.MemoryBytes}, {template.RootFile, &m.RootBytes}} {
		if *f.size, err = fileSize(filepath.Join(dir, f.name)); err != nil {
			return nil, err
		}
	}
	m.MemoryAllocated = template.Allocated(filepath.Join(dir, template.MemoryFile))
	return m, nil
}

func syncFile(p string) error {
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// Prepare builds the templates new VMs (`pyro run`, vm create) and
// workspaces of each environment start from, pulling the environment
// first when needed; a template that is already usable is kept.
func (e *Engine) Prepare(ctx context.Context, o api.PrepareOptions) (*api.PrepareResult, error) {
	defer e.enter()()
	envs := o.Environments
	if len(envs) == 0 {
		envs = []string{api.DefaultEnvironment}
	}
	ctx, op := e.start(ctx, "prepare", phaseEnvironment, phaseTemplate)
	if o.DiskGiB == 0 {
		o.DiskGiB = api.DefaultDiskGiB
	}
	if o.DiskGiB < 1 || o.DiskGiB > api.MaxDiskGiB {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, fmt.Sprintf("use a `disk_gib` from 1 to %d", api.MaxDiskGiB), "disk_gib %d is out of range", o.DiskGiB)
	}
	if e.templatesMode() == TemplatesOff {
		return nil, errdefs.New(errdefs.ErrFailedPrecondition, "unset PYRO_TEMPLATES (or set it to auto)", "templates are turned off (PYRO_TEMPLATES=off)")
	}
	res := &api.PrepareResult{Templates: []api.Template{}}
	for _, env := range envs {
		vo := api.CreateVMOptions{Environment: env, Shape: o.Shape}
		if err := validateCreate(&vo, api.DefaultVMTTLSeconds); err != nil {
			return nil, err
		}
		op.Describe(env, "")
		op.Phase(phaseEnvironment)
		mode, inst, err := e.chooseMode(ctx, vo)
		if err != nil {
			return nil, err
		}
		if mode != api.ModeGuest {
			return nil, errdefs.New(errdefs.ErrFailedPrecondition, "", "templates need a guest: no VM can boot here")
		}
		vkind, err := e.guestKind(ctx, inst.KernelPath)
		if err != nil {
			return nil, err
		}
		op.Phase(phaseTemplate)
		seen := map[string]bool{}
		for _, kind := range []string{template.KindVM, template.KindWorkspace} {
			wm, err := e.warmMachine(ctx, kind, inst, vkind, vo.Shape, o.DiskGiB)
			if err != nil {
				return nil, err
			}
			if seen[wm.Key.ID()] {
				continue // one machine for both kinds (Firecracker)
			}
			seen[wm.Key.ID()] = true
			t, err := e.templates.Current(wm.Key.ID())
			built := false
			if err != nil || t.Rebuild != "" {
				if t, err = e.buildTemplate(ctx, wm, false); err != nil {
					return nil, fmt.Errorf("building the %s template of %s: %w", kind, env, err)
				}
				built = true
			}
			v := e.templateView(ctx, t)
			v.Built = built
			res.Templates = append(res.Templates, v)
		}
	}
	res.TotalMs = op.Elapsed().Milliseconds()
	op.Done()
	return res, nil
}
