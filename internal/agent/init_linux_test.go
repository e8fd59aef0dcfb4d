package agent

import (
	"reflect"
	"testing"
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

func TestParseDiskParams(t *testing.T) {
	p := ParseDiskParams("console=ttyS0 pyro_root=/dev/vda pyro_wsdisk=pyro-ws pyro_basedisk=pyro-base pyro_wschown=1000:1000")
	if p != (DiskParams{Workspace: "pyro-ws", Baseline: "pyro-base", Chown: "1000:1000"}) {
		t.Errorf("%+v", p)
	}
	if p := ParseDiskParams("console=ttyS0 pyro_root=/dev/vda"); p != (DiskParams{}) {
		t.Errorf("a VM's command line: %+v", p)
	}
}
