package qemu

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/vmm"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestBuildArgsGolden(t *testing.T) {
	tcg := config{Accel: "tcg", TSCkHz: 2596152, TBSizeMiB: 64, Net: NetPasst, Sandbox: SandboxPolicy}
	tests := []struct {
		name string
		spec vmm.MachineSpec
		cfg  config
	}{
		{"minimal_defaults", vmm.MachineSpec{ID: "a1", Dir: "/tmp/pyro-0/a1", Kernel: "/c/vmlinuz"}, config{Accel: "tcg"}},
		{"tcg_workspace", vmm.MachineSpec{
			ID: "ws1", Dir: "/tmp/pyro-0/ws1", Kernel: "/c/vmlinuz", Initrd: "/tmp/pyro-0/ws1/initrd",
			Cmdline: "pyro_root=/dev/vda", VCPUs: 2, MemMiB: 512,
			Disks: []vmm.Disk{
				{Path: "/c/blobs/root.ext4", Format: "raw", ReadOnly: true},
				{Path: "/s/ws1/disk,1.qcow2", Format: "qcow2"},
			},
			Console: "/s/ws1/console.log",
		}, tcg},
		{"kvm_network_passt", vmm.MachineSpec{
			ID: "n1", Dir: "/tmp/pyro-0/n1", Kernel: "/c/vmlinuz", Initrd: "/i", VCPUs: 1, MemMiB: 1024, Network: true,
		}, config{Accel: "kvm", TSCkHz: 3000000, TBSizeMiB: 64, Net: NetPasst}},
		{"tcg_network_slirp", vmm.MachineSpec{
			ID: "n2", Dir: "/tmp/pyro-0/n2", Kernel: "/c/vmlinuz", Network: true,
		}, config{Accel: "tcg", Net: NetSlirp}},
		{"template_shared_memory", vmm.MachineSpec{
			ID: "t1", Dir: "/tmp/pyro-0/t1", Kernel: "/c/vmlinuz", Initrd: "/i", MemMiB: 1024,
			Disks:  []vmm.Disk{{Path: "/c/templates/x/root.qcow2", Format: "qcow2"}},
			Memory: &vmm.MemoryFile{Path: "/c/templates/x/memory", Shared: true},
		}, tcg},
		{"clone_restore", vmm.MachineSpec{
			ID: "c1", Dir: "/tmp/pyro-0/c1", Kernel: "/c/vmlinuz", Initrd: "/i", MemMiB: 1024,
			Disks:   []vmm.Disk{{Path: "/s/c1/disk.qcow2", Format: "qcow2", Scratch: true}},
			Memory:  &vmm.MemoryFile{Path: "/c/templates/x/memory"},
			Restore: &vmm.Restore{State: "/c/templates/x/state", IgnoreShared: true},
		}, tcg},
		{"resume_suspended", vmm.MachineSpec{
			ID: "r1", Dir: "/tmp/pyro-0/r1", Kernel: "/c/vmlinuz", Initrd: "/i", MemMiB: 512,
			Disks:   []vmm.Disk{{Path: "/s/layers/a.qcow2", Format: "qcow2"}},
			Restore: &vmm.Restore{State: "/s/workspaces/r1/suspend.state"},
		}, tcg},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args, err := buildArgs(tt.spec, tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			got := strings.Join(args, "\n") + "\n"
			golden := filepath.Join("testdata", tt.name+".golden")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update)", err)
			}
			if string(want) != got {
				t.Errorf("args mismatch (go test -update rewrites %s)\nwant:\n%s\ngot:\n%s", golden, want, got)
			}
		})
	}
}

func TestCheckSpec(t *testing.T) {
	long := "/tmp/" + strings.Repeat("x", 100)
	tests := []struct {
		name    string
		spec    vmm.MachineSpec
		class   error
		wantSub string
	}{
		{"ok", vmm.MachineSpec{Dir: "/tmp/pyro-0/x", Kernel: "/k"}, nil, ""},
		{"no kernel", vmm.MachineSpec{Dir: "/tmp/x"}, errdefs.ErrInvalidArgument, "no kernel"},
		{"no dir", vmm.MachineSpec{Kernel: "/k"}, errdefs.ErrInvalidArgument, "runtime directory"},
		{"socket path too long", vmm.MachineSpec{Dir: long, Kernel: "/k"}, errdefs.ErrInvalidArgument, "more than the 107"},
		{"bad disk format", vmm.MachineSpec{Dir: "/tmp/x", Kernel: "/k", Disks: []vmm.Disk{{Path: "/d", Format: "vmdk"}}}, errdefs.ErrInvalidArgument, "vmdk"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkSpec(tt.spec)
			if tt.class == nil {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if !errors.Is(err, tt.class) || !strings.Contains(err.Error(), tt.wantSub) {
				t.Fatalf("got %v, want %v containing %q", err, tt.class, tt.wantSub)
			}
			if tt.name == "socket path too long" && errdefs.HintOf(err) == "" {
				t.Error("path-length error carries no hint")
			}
		})
	}
}
