package engine

import (
	"context"

	"github.com/pyro-mcp/pyro/internal/hostbin"
	"github.com/pyro-mcp/pyro/internal/vmm"
	"github.com/pyro-mcp/pyro/internal/vmm/firecracker"
	"github.com/pyro-mcp/pyro/internal/vmm/qemu"
)

// The backend-neutral side of saving a running machine (vmm.Saver's
// contract): the machine is reached through its runtime directory, by
// the backend that started it. QEMU writes RAM into the state (or leaves
// it in its shared memory file); Firecracker writes it to o.Memory.

// saveMachine pauses the machine of kind running in run and saves it.
func saveMachine(ctx context.Context, kind vmm.Kind, run string, o vmm.SaveOptions) error {
	if kind == vmm.KindFirecracker {
		return firecracker.Save(ctx, run, o)
	}
	return qemu.Save(ctx, run, o)
}

// continueMachine runs a machine on after a save that failed.
func continueMachine(ctx context.Context, kind vmm.Kind, run string) error {
	if kind == vmm.KindFirecracker {
		return firecracker.Resume(ctx, run)
	}
	q, err := qemu.DialQMP(ctx, run)
	if err != nil {
		return err
	}
	defer q.Close()
	return q.Execute(ctx, "cont", nil, nil)
}

// firecrackerIdentity names the Firecracker binary a machine is saved
// with, as fileIdentity names QEMU's.
func firecrackerIdentity() string {
	bin, err := hostbin.Firecracker.Find("")
	if err != nil {
		return ""
	}
	return fileIdentity(bin)
}

// quiesceMounts are the guest filesystems frozen before rec's machine is
// saved. Firecracker's root is an overlayfs, which Linux cannot freeze;
// its full snapshot flushes the drives itself, and disk tools and disk
// snapshots are refused on its workspaces, so nothing is frozen there.
func quiesceMounts(kind vmm.Kind, mounts []string) []string {
	if kind == vmm.KindFirecracker {
		return []string{}
	}
	return mounts
}
