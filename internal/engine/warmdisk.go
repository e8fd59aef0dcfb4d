package engine

import (
	"context"
	"os"
	"path/filepath"

	"github.com/pyro-mcp/pyro/api"
	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/layers"
	"github.com/pyro-mcp/pyro/internal/template"
	"github.com/pyro-mcp/pyro/internal/vmm"
)

// A clone's disks equal the template's at its save: its root is a new
// qcow2 layer over the template's root layer (hard-linked beside it, so
// the clone never depends on the template staying in the cache); a
// workspace's data disk and baseline are its own, mounted only after the
// restore. A clone's first boot restores only while its root layer is
// still empty (pristine): a disk something has written to never gets a
// memory image that does not know about it.

// templateRootName is the hard link of a template's root layer in a VM's
// directory.
const templateRootName = "template-root.qcow2"

// createVMDisk makes a new VM's writable disk: over a template's root
// layer when one fits (rec.Warm names it), else over the environment's
// root image (under Firecracker: warmfc.go).
func (e *Engine) createVMDisk(ctx context.Context, rec *vmRecord, vkind vmm.Kind, o api.CreateVMOptions, mayBuild bool) error {
	if vkind == vmm.KindFirecracker {
		return e.createFCDisk(ctx, rec, o, mayBuild)
	}
	t := e.templateFor(ctx, template.KindVM, rec, vkind, o.Shape, 0, o.Cold, mayBuild)
	if t == nil {
		size, err := fileSize(rec.Env.RootfsPath)
		if err != nil {
			return errdefs.Wrap(errdefs.ErrFailedPrecondition, err, "reinstall it with 'pyro env pull "+rec.Environment+"'", "environment %s's root image", rec.Environment)
		}
		return e.noSpaceOr(layers.WriteOverlayFile(rec.Disk, rec.Env.RootfsPath, size), filepath.Dir(rec.Disk))
	}
	base := filepath.Join(filepath.Dir(rec.Disk), templateRootName)
	if err := linkTemplateRoot(t, base); err != nil {
		return errdefs.Wrap(errdefs.ErrInternal, err, "check free disk space", "linking the template's root layer")
	}
	size, err := fileSize(rec.Env.RootfsPath)
	if err != nil {
		return err
	}
	if err := layers.WriteOverlayFile(rec.Disk, templateRootName, size); err != nil {
		os.Remove(base)
		return e.noSpaceOr(err, filepath.Dir(rec.Disk))
	}
	rec.Warm = &warmRef{Template: t.ID, Build: t.Build, Kind: template.KindVM}
	return nil
}

// noSpaceOr classes a disk creation error as the host's full disk when it is.
func (e *Engine) noSpaceOr(err error, dir string) error {
	if err != nil && hostFull(dir) {
		return errdefs.Wrap(errdefs.ErrUnavailable, err, "free disk space in the state directory ($PYRO_STATE_DIR)", "creating the VM disk")
	}
	return err
}

// templateFor is the template a new machine's disks are made from, or nil
// (cold): it saves the missing one first when mayBuild and the policy
// allow, and says once why the machine starts cold otherwise.
func (e *Engine) templateFor(ctx context.Context, kind string, rec *vmRecord, vkind vmm.Kind, sh api.Shape, sizeGiB int, cold, mayBuild bool) *template.Template {
	c := e.chooseTemplate(ctx, kind, rec.Env, vkind, sh, sizeGiB, cold, mayBuild)
	if c.T != nil {
		return c.T
	}
	if c.Build {
		if c.Rebuild {
			e.log.Warn("rebuilding the warm-start template: "+c.Why, "environment", rec.Environment)
		} else {
			e.log.Info("saving a warm-start template on the way: later starts of this shape are warm", "environment", rec.Environment)
		}
		t, err := e.buildTemplate(ctx, c.WM, true)
		if err == nil && t != nil {
			return t
		}
		if err != nil {
			c.Why = "saving a template failed: " + firstLine(err.Error())
		} else {
			c.Why = "" // another pyro is saving it: quietly cold this once
		}
	}
	e.sayCold(rec.Environment, c.Why)
	return nil
}

// pristine says whether a qcow2 layer made by layers.WriteOverlayFile (or
// NewOverlay) has never been written: an empty overlay is four clusters
// (header, refcount table, refcount block, L1 table), and QEMU grows the
// file with the first cluster it allocates.
func pristine(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Size() <= 4<<16
}

// warmRootLayer puts a template's root layer into the pool under a new
// name, for a workspace's root to be a layer over it; the caller has
// named it in the record's pending layers.
func (e *Engine) warmRootLayer(t *template.Template, name string) error {
	if err := linkTemplateRoot(t, e.layers.Path(name)); err != nil {
		return errdefs.Wrap(errdefs.ErrInternal, err, "check free disk space", "adding the template's root layer to the pool")
	}
	return nil
}
