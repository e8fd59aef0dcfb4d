package agent

import (
	"reflect"
	"slices"
	"testing"

	"github.com/pyro-mcp/pyro/internal/agent/modules"
)

func TestParseCmdlineFirecracker(t *testing.T) {
	// What the firecracker backend boots with: the engine's arguments, the
	// backend's (last wins) and the virtio_mmio.device= ones Firecracker
	// appends itself.
	p := ParseCmdline("console=ttyS0 reboot=k panic=-1 pci=off pyro_channel=virtio-serial pyro_root=/dev/vda " +
		"pyro_rootmode=overlay pyro_scratch=/dev/vdb pyro_hostname=pyro-ab pyro_channel=vsock pyro_vsock_port=1024 " +
		"pyro_poweroff=reboot virtio_mmio.device=4K@0xd0000000:5 virtio_mmio.device=4K@0xd0001000:6 i8042.noaux")
	want := BootParams{Channel: "vsock", Root: "/dev/vda", Hostname: "pyro-ab", VsockPort: 1024, RootMode: "overlay",
		Scratch: "/dev/vdb", PowerOff: "reboot",
		ModParams: map[string]string{"virtio_mmio": "device=4K@0xd0000000:5 device=4K@0xd0001000:6", "i8042": "noaux"}}
	if !reflect.DeepEqual(p, want) {
		t.Errorf("got  %+v\nwant %+v", p, want)
	}
	if q := ParseCmdline("pyro_root=/dev/vda"); q.RootMode != "rw" || q.PowerOff != "poweroff" {
		t.Errorf("defaults: %+v", q)
	}
	if got := moduleName("/lib/modules/6.1/kernel/drivers/virtio/virtio-mmio.ko.xz"); got != "virtio_mmio" {
		t.Errorf("moduleName = %q", got)
	}
}

// Every module a boot loads is one the catalog ships (one list, in
// internal/agent/modules), and the order respects the dependencies.
func TestBootModules(t *testing.T) {
	shipped := map[string]int{}
	for i, m := range modules.All() {
		shipped[m] = i
	}
	tests := []struct {
		name string
		p    BootParams
		want []string
	}{
		{"qemu", ParseCmdline(""), modules.Boot},
		{"qemu network", ParseCmdline("pyro_net=1"), append(append([]string{}, modules.Boot...), modules.Net...)},
		{"firecracker", ParseCmdline("pyro_rootmode=overlay pyro_channel=vsock pyro_net=1"),
			slices.Concat(modules.Boot, modules.Overlay, modules.Net, modules.Vsock)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := bootModules(tt.p)
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("bootModules = %v, want %v", got, tt.want)
			}
			for _, m := range got {
				if _, ok := shipped[m]; !ok {
					t.Errorf("%s is loaded but not shipped", m)
				}
			}
		})
	}
}

func TestParseDiskParams(t *testing.T) {
	p := ParseDiskParams("console=ttyS0 pyro_root=/dev/vda pyro_wsdisk=pyro-ws pyro_basedisk=pyro-base pyro_wschown=1000:1000")
	if p != (DiskParams{Workspace: "pyro-ws", Baseline: "pyro-base", Chown: "1000:1000"}) {
		t.Errorf("%+v", p)
	}
	if p := ParseDiskParams("console=ttyS0 pyro_root=/dev/vda"); p != (DiskParams{}) {
		t.Errorf("a VM's command line: %+v", p)
	}
}
