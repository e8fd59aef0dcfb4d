package firecracker

import (
	"path/filepath"

	"github.com/pyro-mcp/pyro/internal/vmm"
)

// vmmSpec is what the engine hands a firecracker machine.
func vmmSpec(dir string) vmm.MachineSpec {
	return vmm.MachineSpec{
		ID: "0123456789ab", Dir: dir, Kernel: filepath.Join(dir, "vmlinux"), Initrd: filepath.Join(dir, "initrd.cpio"),
		VCPUs: 2, MemMiB: 512,
		Disks: []vmm.Disk{
			{Path: filepath.Join(dir, "rootfs.ext4"), Format: "raw", ReadOnly: true},
			{Path: filepath.Join(dir, "scratch.ext4"), Format: "raw"},
		},
		Cmdline: "pyro_channel=virtio-serial pyro_root=/dev/vda pyro_rootmode=overlay pyro_scratch=/dev/vdb pyro_hostname=pyro-01234567",
		Console: filepath.Join(dir, "console.log"),
	}
}
