package engine

// Warm start under Firecracker (issue 18): the same templates, clones and
// fallbacks as under QEMU (warm.go), saved and loaded through
// Firecracker's snapshot API (internal/vmm/firecracker/snapshot.go).
// What differs is the disk: Firecracker has no qcow2, so its machine is
// the environment's root image read-only plus a raw scratch disk that the
// guest's overlayfs root writes to. A template keeps that scratch disk as
// it was at the save in its root file (template.RootFile; raw ext4 here,
// not a qcow2 layer), and a clone's scratch disk is a sparse copy of it
// (a reflink where the filesystem has them). A clone's first boot
// restores only while its scratch disk was never written: the copy's
// modification time is set to fcPristineTime, which any write changes.
//
// Firecracker VMs and workspaces are one machine, so both use the "vm"
// template. A machine with a network has none: its guest's address
// belongs to its run (Firecracker saves no networked machine). None of
// this can run on the host it was written on (no usable KVM); the
// backend's requests are checked against Firecracker's API description.

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/pyro-mcp/pyro/api"
	"github.com/pyro-mcp/pyro/internal/catalog"
	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/hostbin"
	"github.com/pyro-mcp/pyro/internal/template"
	"github.com/pyro-mcp/pyro/internal/vmm"
	"github.com/pyro-mcp/pyro/internal/vmm/firecracker"
)

// fcPristineTime marks a clone's scratch disk that no guest has written.
var fcPristineTime = time.Unix(1, 0)

// fcWarmMachine describes the template a Firecracker machine of this
// shape and environment would be cloned from.
func (e *Engine) fcWarmMachine(ctx context.Context, inst *catalog.Installed, sh api.Shape) (*warmMachine, error) {
	if sh.Network {
		return nil, errdefs.New(errdefs.ErrFailedPrecondition, "", "firecracker templates are made for machines without a network only")
	}
	img, err := e.initramfs(ctx, inst)
	if err != nil {
		return nil, err
	}
	bin, err := hostbin.Firecracker.Find("")
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
		Console: phDir + "/console",
		Cmdline: "pyro_channel=vsock pyro_root=/dev/vda pyro_rootmode=overlay pyro_scratch=/dev/vdb pyro_hostname=" + templateHostname,
		Memory:  &vmm.MemoryFile{Path: phMemory},
		Disks: []vmm.Disk{
			{Path: inst.RootfsPath, Format: "raw", ReadOnly: true},
			{Path: phDisk + "1", Format: "raw"},
		},
	}
	digest, err := firecracker.MachineDigest(spec, 0)
	if err != nil {
		return nil, err
	}
	key := template.Key{
		Format: template.FormatVersion, Kind: template.KindVM, Backend: string(vmm.KindFirecracker), Accel: "kvm",
		Environment: inst.Name, Kernel: inst.KernelDigest, Modules: inst.ModulesDigest, Rootfs: inst.RootfsDigest,
		Agent: img.Agent, Initramfs: img.Digest, VMM: fileIdentity(bin), VCPUs: vcpus, MemMiB: mem,
		Drives: []template.Drive{
			{Role: "root", SizeBytes: rootSize, ReadOnly: true},
			{Role: "scratch", SizeBytes: ScratchSizeBytes},
		},
		Machine: digest,
	}
	return &warmMachine{Kind: template.KindVM, Key: key, Spec: spec, Inst: inst}, nil
}

// fcTemplateSpec is wm's machine with a build's own files: a fresh
// scratch disk at the template's root file; RAM is written to the memory
// file by the save (Firecracker boots on anonymous memory).
func (e *Engine) fcTemplateSpec(ctx context.Context, wm *warmMachine, id, dir string) (*vmm.MachineSpec, error) {
	spec := wm.Spec
	spec.ID = "tmpl-" + id[:7]
	spec.Dir = filepath.Join(e.opts.RuntimeDir, "t-"+id[:10])
	spec.Console = filepath.Join(dir, template.ConsoleFile)
	spec.Memory = &vmm.MemoryFile{Path: filepath.Join(dir, template.MemoryFile), Shared: true}
	spec.Disks = append([]vmm.Disk(nil), wm.Spec.Disks...)
	scratch := filepath.Join(dir, template.RootFile)
	if err := createDisk(ctx, vmm.KindFirecracker, wm.Inst, scratch); err != nil {
		return nil, err
	}
	spec.Disks[1].Path = scratch
	return &spec, nil
}

// createFCDisk makes a new Firecracker VM's scratch disk: a copy of a
// template's when one fits (rec.Warm names it), else an empty one.
func (e *Engine) createFCDisk(ctx context.Context, rec *vmRecord, o api.CreateVMOptions, mayBuild bool) error {
	t := e.templateFor(ctx, template.KindVM, rec, vmm.KindFirecracker, o.Shape, 0, o.Cold, mayBuild)
	if t == nil {
		return createDisk(ctx, vmm.KindFirecracker, rec.Env, rec.Disk)
	}
	out, err := exec.CommandContext(ctx, "cp", "--reflink=auto", "--sparse=always", t.RootPath(), rec.Disk).CombinedOutput()
	if err == nil {
		err = os.Chtimes(rec.Disk, fcPristineTime, fcPristineTime)
	}
	if err != nil {
		os.Remove(rec.Disk)
		return e.noSpaceOr(errdefs.Wrap(errdefs.ErrInternal, err, "check free disk space", "copying the template's scratch disk: %s", bytes.TrimSpace(out)), filepath.Dir(rec.Disk))
	}
	rec.Warm = &warmRef{Template: t.ID, Build: t.Build, Kind: template.KindVM}
	return nil
}

// pristineDisk says whether a clone's writable disk was never written: an
// empty qcow2 layer under QEMU, a scratch disk still bearing
// fcPristineTime under Firecracker.
func pristineDisk(kind vmm.Kind, path string) bool {
	if kind != vmm.KindFirecracker {
		return pristine(path)
	}
	fi, err := os.Stat(path)
	return err == nil && fi.ModTime().Equal(fcPristineTime)
}
