package engine

import (
	"context"
	"fmt"

	"github.com/pyro-mcp/pyro/api"
	"github.com/pyro-mcp/pyro/internal/backendsel"
	"github.com/pyro-mcp/pyro/internal/flock"
	"github.com/pyro-mcp/pyro/internal/template"
	"github.com/pyro-mcp/pyro/internal/vmm"
)

// What the faces report of templates: their status against what this
// pyro would build now (env inspect, doctor --environment), and prune.

// templateStatus is t's status: warm, stale (and why) or rebuild.
func (e *Engine) templateStatus(ctx context.Context, t *template.Template) (string, string) {
	if t.Rebuild != "" {
		return api.TemplateRebuild, t.Rebuild
	}
	k := t.Key
	if k.Format != template.FormatVersion {
		return api.TemplateStale, "made by another pyro's template format"
	}
	inst, err := e.catalog.Resolve(ctx, k.Environment)
	if err != nil {
		return api.TemplateStale, "its environment is not installed"
	}
	if inst.KernelDigest != k.Kernel || inst.ModulesDigest != k.Modules || inst.RootfsDigest != k.Rootfs {
		return api.TemplateStale, "its environment was updated since"
	}
	sizeGiB := 0
	if len(k.Drives) > 1 {
		sizeGiB = int(k.Drives[1].SizeBytes >> 30)
	}
	wm, err := e.warmMachine(ctx, k.Kind, inst, vmm.Kind(k.Backend), api.Shape{VCPUCount: k.VCPUs, MemMiB: k.MemMiB, Network: k.Network}, sizeGiB)
	if err != nil {
		return api.TemplateStale, err.Error()
	}
	if wm.Key.ID() != t.ID {
		return api.TemplateStale, keyChange(k, wm.Key)
	}
	return api.TemplateWarm, ""
}

// keyChange says what differs between an old key and the current one.
func keyChange(old, now template.Key) string {
	switch {
	case old.Agent != now.Agent:
		return "pyro's guest agent changed since"
	case old.Initramfs != now.Initramfs:
		return "the initramfs changed since"
	case old.VMM != now.VMM:
		return "QEMU changed since"
	case old.Accel != now.Accel:
		return fmt.Sprintf("the accelerator is %s now, not %s", now.Accel, old.Accel)
	case old.NetMode != now.NetMode:
		return "the network backend changed since"
	}
	return "the machine's definition changed since"
}

// templateView is t as the faces show it.
func (e *Engine) templateView(ctx context.Context, t *template.Template) api.Template {
	k := t.Key
	v := api.Template{ID: t.ID, Environment: k.Environment, Kind: k.Kind, VCPUCount: k.VCPUs, MemMiB: k.MemMiB,
		Network: k.Network, Backend: k.Backend + "-" + k.Accel, CreatedAt: t.CreatedAt, Pyro: t.Pyro,
		BuildMs: t.BuildMs, SaveMs: t.SaveMs, StateBytes: t.StateBytes, MemoryBytes: t.MemoryAllocated,
		RootBytes: template.Allocated(t.RootPath())}
	if k.Backend == string(vmm.KindQEMU) {
		v.Backend = map[string]string{"kvm": backendsel.NameQEMUKVM, "tcg": backendsel.NameQEMUTCG}[k.Accel]
	}
	if len(k.Drives) > 1 {
		v.DiskGiB = int(k.Drives[1].SizeBytes >> 30)
	}
	v.Status, v.Reason = e.templateStatus(ctx, t)
	return v
}

// Templates lists the templates of env ("" for all), newest first.
func (e *Engine) Templates(ctx context.Context, env string) ([]api.Template, error) {
	ts, _, err := e.templates.List()
	if err != nil {
		return nil, err
	}
	out := []api.Template{}
	for _, t := range ts {
		if env == "" || t.Key.Environment == env {
			out = append(out, e.templateView(ctx, t))
		}
	}
	return out, nil
}

// EnvironmentTemplates says whether a `pyro run` and a workspace of env,
// default shape, would start warm, cold, or from a stale template.
func (e *Engine) EnvironmentTemplates(ctx context.Context, env string) (*api.EnvironmentTemplates, error) {
	res := &api.EnvironmentTemplates{Environment: env, Status: api.TemplateCold, Workspace: api.TemplateCold, Policy: e.templatesMode()}
	all, err := e.Templates(ctx, env)
	if err != nil {
		return nil, err
	}
	res.Templates = all
	if res.Policy == TemplatesOff {
		res.Hint = "PYRO_TEMPLATES=off: every start is cold"
		return res, nil
	}
	inst, err := e.catalog.Resolve(ctx, env)
	if err != nil {
		res.Hint = "pull it first: pyro env pull " + env
		return res, nil
	}
	vkind, err := e.guestKind(ctx, inst.KernelPath)
	if err != nil {
		res.Hint = "no guest can boot here: see pyro doctor"
		return res, nil
	}
	for _, kind := range []string{template.KindVM, template.KindWorkspace} {
		status := api.TemplateCold
		if wm, err := e.warmMachine(ctx, kind, inst, vkind, api.Shape{}, api.DefaultDiskGiB); err == nil {
			t, err := e.templates.Current(wm.Key.ID())
			switch {
			case err == nil && t.Rebuild == "":
				status = api.TemplateWarm
			case err == nil || t != nil:
				status = api.TemplateRebuild
			default:
				for _, v := range all {
					if v.Kind == kind && v.Status == api.TemplateStale {
						status = api.TemplateStale
					}
				}
			}
		}
		if kind == template.KindVM {
			res.Status = status
		} else {
			res.Workspace = status
		}
	}
	if res.Status != api.TemplateWarm || res.Workspace != api.TemplateWarm {
		res.Hint = "pyro prepare " + env + " builds them (the first run does too)"
	}
	return res, nil
}

// PruneTemplates removes the templates that are stale (their environment,
// agent or QEMU changed) and the remains of interrupted builds. A clone
// started from one keeps its files.
func (e *Engine) PruneTemplates(ctx context.Context) (removed []string, freed int64, err error) {
	ts, broken, err := e.templates.List()
	if err != nil {
		return nil, 0, err
	}
	drop := broken
	for _, t := range ts {
		if s, _ := e.templateStatus(ctx, t); s == api.TemplateStale {
			drop = append(drop, t.ID)
		}
	}
	for _, id := range drop {
		// A build in progress holds the lock: leave it alone.
		l, ok, err := flock.Try(e.templates.LockPath(id), flock.Exclusive)
		if err != nil || !ok {
			continue
		}
		n, err := e.templates.Remove(id)
		l.Unlock()
		if err == nil {
			removed = append(removed, id)
			freed += n
		}
	}
	return removed, freed, ctx.Err()
}

// PruneEnvironments prunes stale templates, then the environment cache
// (catalog.Prune).
func (e *Engine) PruneEnvironments(ctx context.Context) (*api.PruneResult, error) {
	removed, freed, err := e.PruneTemplates(ctx)
	if err != nil {
		return nil, err
	}
	res, err := e.catalog.Prune(ctx)
	if err != nil {
		return nil, err
	}
	res.RemovedTemplates = append([]string{}, removed...)
	res.FreedBytes += freed
	return res, nil
}
