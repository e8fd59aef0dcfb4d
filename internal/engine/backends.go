package engine

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"

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
	BackendAuto        = "auto"
	BackendQEMU        = "qemu"
	BackendFirecracker = "firecracker"
	BackendHostCompat  = "host_compat"
)

// ScratchSizeBytes is the virtual size of a Firecracker VM's scratch disk
// (sparse: it costs only what the guest writes).
const ScratchSizeBytes = 8 << 30

func checkBackendChoice(b string) error {
	switch b {
	case BackendAuto, BackendQEMU, BackendFirecracker, BackendHostCompat:
		return nil
	}
	return errdefs.New(errdefs.ErrInvalidArgument, "use auto, firecracker, qemu or host_compat", "unknown backend %q", b)
}

// guestKind picks the VMM a new guest boots with: the one the user asked
// for, else Firecracker when its binary is found and KVM is verified to
// run a guest, else QEMU (KVM or TCG). The choice is stored in the record
// so that every later start of the VM uses the same one.
func (e *Engine) guestKind(probeKernel string) (vmm.Kind, error) {
	switch e.opts.Backend {
	case BackendQEMU:
		return vmm.KindQEMU, nil
	case BackendFirecracker:
		if _, err := firecracker.FindBinary(""); err != nil {
			return "", err
		}
		k := firecracker.ProbeKVM(context.Background(), probeKernel)
		if !firecracker.KVMUsable(k, true) {
			return "", errdefs.New(errdefs.ErrFailedPrecondition,
				"firecracker needs a working KVM (see 'pyro doctor'); use --backend qemu, which falls back to TCG",
				"backend firecracker was requested but KVM is %s here: %s", k.Verdict, k.Reason)
		}
		return vmm.KindFirecracker, nil
	}
	if _, err := firecracker.FindBinary(""); err == nil && firecracker.ProbeKVM(context.Background(), probeKernel).Usable {
		return vmm.KindFirecracker, nil
	}
	return vmm.KindQEMU, nil
}

// guestTools reports why no guest can boot with the tools the chosen
// backend needs, or nil: Firecracker needs neither QEMU nor qemu-img.
func (e *Engine) guestTools() error {
	if e.opts.Backend == BackendFirecracker {
		_, err := firecracker.FindBinary("")
		return err
	}
	if e.opts.Backend == BackendAuto {
		if _, err := firecracker.FindBinary(""); err == nil && guestAvailable() != nil {
			return nil
		}
	}
	return guestAvailable()
}

// newBackend builds the backend a supervisor boots with. An empty kind is
// QEMU (records written before the kind was stored).
func newBackend(mode string, kind vmm.Kind, probeKernel string, log *slog.Logger) (vmm.Backend, error) {
	switch {
	case mode == ModeHostCompat:
		return hostcompat.New(), nil
	case kind == vmm.KindFirecracker:
		return firecracker.New(firecracker.Options{ProbeKernel: probeKernel, Explicit: true, Logger: log})
	}
	return qemu.New(qemu.Options{ProbeKernel: probeKernel, Logger: log})
}

// backendName names the backend a VM will use, e.g. "qemu-tcg" or "firecracker".
func (e *Engine) backendName(mode string, kind vmm.Kind, probeKernel string) string {
	switch {
	case mode == ModeHostCompat:
		return "host_compat"
	case kind == vmm.KindFirecracker:
		return "firecracker"
	}
	b, err := qemu.New(qemu.Options{ProbeKernel: probeKernel, Logger: e.log})
	if err != nil {
		return "qemu"
	}
	return "qemu-" + b.Accel()
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
// machine spec for the record's backend.
func (e *Engine) guestSpec(rec *vmRecord, spec *vmm.MachineSpec) error {
	if e.workspaceDisks(rec, spec) {
		return nil
	}
	host := fmt.Sprintf("pyro_hostname=pyro-%s", rec.ID[:8])
	if vmm.Kind(rec.BackendKind) != vmm.KindFirecracker {
		spec.Disks = []vmm.Disk{{Path: rec.Disk, Format: "qcow2"}}
		spec.Cmdline = "pyro_channel=virtio-serial pyro_root=/dev/vda " + host
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
