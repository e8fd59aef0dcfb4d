package agent

import (
	"strconv"
	"strings"
)

// BootParams are the pyro_* kernel arguments (no dots: dotted arguments
// are taken as module parameters and never reach /init).
type BootParams struct {
	Channel   string // "virtio-serial" (default) or "vsock"
	Root      string // root disk, default /dev/vda
	Hostname  string
	Net       bool
	IP        string // CIDR, e.g. 10.0.2.15/24
	Gateway   string
	DNS       string
	VsockPort uint32
	// RootMode is "rw" (default: Root is the VM's own writable disk, a
	// qcow2 overlay under QEMU) or "overlay" (Firecracker: Root is the
	// shared base mounted read-only, and an overlayfs keeps its upper and
	// work directories on the Scratch disk).
	RootMode string
	Scratch  string // pyro_scratch, the overlay's writable disk
	// PowerOff is "poweroff" (default) or "reboot": Firecracker has no
	// power-off, a guest reboot (reboot=k) is what ends it.
	PowerOff string
	// ModParams maps a module to the "param=value ..." string given on the
	// kernel command line as module.param=value (e.g. Firecracker's
	// virtio_mmio.device=): the kernel applies those only to built-in
	// code, so the agent passes them when it loads the module.
	ModParams map[string]string
}

// ParseCmdline reads the pyro_* arguments from a kernel command line.
func ParseCmdline(cmdline string) BootParams {
	p := BootParams{Channel: "virtio-serial", Root: "/dev/vda", Hostname: "pyro", VsockPort: 1024, RootMode: "rw",
		Scratch: "/dev/vdb", PowerOff: "poweroff", ModParams: map[string]string{}}
	for _, f := range strings.Fields(cmdline) {
		k, v, hasValue := strings.Cut(f, "=")
		if mod, param, ok := strings.Cut(k, "."); ok && mod != "" && param != "" && !strings.HasPrefix(k, "pyro_") {
			mod = strings.ReplaceAll(mod, "-", "_")
			if hasValue {
				param += "=" + v
			}
			p.ModParams[mod] = strings.TrimSpace(p.ModParams[mod] + " " + param)
			continue
		}
		switch k {
		case "pyro_rootmode":
			p.RootMode = v
		case "pyro_scratch":
			p.Scratch = v
		case "pyro_poweroff":
			p.PowerOff = v
		case "pyro_channel":
			p.Channel = v
		case "pyro_root":
			p.Root = v
		case "pyro_hostname":
			p.Hostname = v
		case "pyro_net":
			p.Net = v == "1"
		case "pyro_ip":
			p.IP = v
		case "pyro_gw":
			p.Gateway = v
		case "pyro_dns":
			p.DNS = v
		case "pyro_vsock_port":
			if n, err := strconv.ParseUint(v, 10, 32); err == nil {
				p.VsockPort = uint32(n)
			}
		}
	}
	return p
}
