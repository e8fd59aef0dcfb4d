package engine

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"

	"github.com/pyro-mcp/pyro/internal/backendsel"
	"github.com/pyro-mcp/pyro/internal/catalog"
	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/vmlinux"
	"github.com/pyro-mcp/pyro/internal/vmm"
	"github.com/pyro-mcp/pyro/internal/vmm/firecracker"
	"github.com/pyro-mcp/pyro/internal/vmm/hostcompat"
	"github.com/pyro-mcp/pyro/internal/vmm/qemu"
)

// Backend choices (Options.Backend, --backend, $PYRO_BACKEND).
const (
	BackendAuto        = backendsel.Auto
	BackendQEMU        = backendsel.QEMU
	BackendFirecracker = backendsel.Firecracker
	BackendHostCompat  = backendsel.HostCompat
)

// ScratchSizeBytes is the virtual size of a Firecracker VM's scratch disk
// (sparse: it costs only what the guest writes).
const ScratchSizeBytes = 8 << 30

func checkBackendChoice(b string) error { return backendsel.Check(b) }

// guestKind picks the VMM a new guest boots with, by the one policy
// (backendsel) that doctor reports too. ctx bounds the KVM probe. The
// choice is stored in the record so that every later start of the VM uses
// the same one.
func (e *Engine) guestKind(ctx context.Context, probeKernel string) (vmm.Kind, error) {
	c, err := backendsel.Select(ctx, e.opts.Backend, probeKernel)
	if err != nil {
		return "", err
	}
	return c.Kind, nil
}

// guestTools reports why no guest can boot with the tools the chosen
// backend needs, or nil; it runs before the environment is pulled, so it
// judges KVM by the device alone and never blocks.
func (e *Engine) guestTools() error {
	return backendsel.Precheck(e.opts.Backend)
}

// newBackend builds the backend a supervisor boots with. An empty kind is
// QEMU (records written before the kind was stored). ctx bounds the KVM
// probe that settles QEMU's accelerator.
func newBackend(ctx context.Context, mode string, kind vmm.Kind, probeKernel string, log *slog.Logger) (vmm.Backend, error) {
	if mode == ModeHostCompat {
		// The supervisor serves one machine: it contains the commands.
		return hostcompat.NewContained(), nil
	}
	f := backendsel.Gather(ctx, probeKernel)
	if kind == vmm.KindFirecracker {
		return firecracker.New(firecracker.Options{Bin: f.Firecracker, KVM: &f.KVM, ProbeKernel: probeKernel, Explicit: true, Logger: log})
	}
	return qemu.New(qemu.Options{Bin: f.QEMU, KVM: &f.KVM, ProbeKernel: probeKernel, Logger: log})
}

// backendName names the backend a VM will use, e.g. "qemu-tcg" or "firecracker".
func (e *Engine) backendName(ctx context.Context, mode string, kind vmm.Kind, probeKernel string) string {
	switch {
	case mode == ModeHostCompat:
		return "host_compat"
	case kind == vmm.KindFirecracker:
		return backendsel.NameFirecracker
	}
	c, err := backendsel.Select(ctx, backendsel.QEMU, probeKernel)
	if err != nil {
		return "qemu"
	}
	return c.Name
}

// diskName is the per-VM writable disk's file name for kind.
func diskName(kind vmm.Kind) string {
	if kind == vmm.KindFirecracker {
		return "scratch.ext4"
	}
	return "disk.qcow2"
}

// createDisk makes a VM's writable disk: a qcow2 overlay of the base for
// QEMU, a sparse empty ext4 scratch disk for Firecracker (which has no
// qcow2; the guest overlays it on the read-only base).
func createDisk(ctx context.Context, kind vmm.Kind, inst *catalog.Installed, disk string) error {
	if kind != vmm.KindFirecracker {
		return createOverlay(ctx, inst.RootfsPath, disk)
	}
	if err := os.WriteFile(disk, nil, 0o600); err != nil {
		return err
	}
	if err := os.Truncate(disk, ScratchSizeBytes); err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, "mkfs.ext4", "-q", "-F", "-L", "scratch", "-m", "0", disk).CombinedOutput()
	if err != nil {
		os.Remove(disk)
		return errdefs.Wrap(errdefs.ErrInternal, err, "install e2fsprogs; check free disk space and 'pyro doctor'", "creating the VM scratch disk: %s", bytes.TrimSpace(out))
	}
	return nil
}

// guestSpec fills the disks, kernel and kernel arguments of a guest's
// machine spec for the record's backend. scratch says the VM's disk is
// deleted with it (a run's): the guest's flushes need not reach the host.
func (e *Engine) guestSpec(rec *vmRecord, spec *vmm.MachineSpec, scratch bool) error {
	if e.workspaceDisks(rec, spec) {
		return nil
	}
	host := fmt.Sprintf("pyro_hostname=pyro-%s", rec.ID[:8])
	if vmm.Kind(rec.BackendKind) != vmm.KindFirecracker {
		spec.Disks = []vmm.Disk{{Path: rec.Disk, Format: "qcow2", Scratch: scratch}}
		spec.Cmdline = "pyro_channel=virtio-serial pyro_root=/dev/vda " + host + benchGuestArgs()
		return nil
	}
	// Firecracker wants an uncompressed ELF kernel on x86_64; derive it
	// once per kernel into the cache.
	k, err := vmlinux.Cached(e.opts.CacheDir, spec.Kernel)
	if err != nil {
		return errdefs.Wrap(errdefs.ErrFailedPrecondition, err, "reinstall the environment with 'pyro env pull'", "preparing the kernel for firecracker")
	}
	spec.Kernel = k
	spec.Disks = []vmm.Disk{
		{Path: rec.Env.RootfsPath, Format: "raw", ReadOnly: true},
		{Path: rec.Disk, Format: "raw"},
	}
	spec.Cmdline = "pyro_channel=vsock pyro_root=/dev/vda pyro_rootmode=overlay pyro_scratch=/dev/vdb " + host
	return nil
}

// benchGuestArgs are the pyro_bench_* kernel arguments bench/ asks for in
// $PYRO_BENCH_GUEST_ARGS (the agent's profiler); anything else there is
// ignored.
func benchGuestArgs() string {
	var out string
	for _, f := range strings.Fields(os.Getenv("PYRO_BENCH_GUEST_ARGS")) {
		if strings.HasPrefix(f, "pyro_bench_") {
			out += " " + f
		}
	}
	return out
}
