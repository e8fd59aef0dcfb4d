package firecracker

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"

	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/vmm"
)

// Socket and file names inside MachineSpec.Dir (or the jailer's chroot).
const (
	APISocket   = "fc.sock"
	VsockSocket = "v.sock"
	LogFile     = "firecracker.log"      // the capped log, always in MachineSpec.Dir
	LogFIFO     = "firecracker.log.fifo" // what Firecracker writes its log to
	StderrFile  = "firecracker.stderr"
)

// DefaultVsockPort is the guest port the agent listens on
// (agent.ParseCmdline's default too).
const DefaultVsockPort = 1024

// GuestCID is the guest's vsock context id. Each Firecracker process has
// its own vsock device backed by unix sockets, so the CID need only be >= 3
// (0-2 are reserved), not unique on the host.
const GuestCID = 3

// maxSocketPath is sun_path's size on Linux (108) minus the trailing NUL.
const maxSocketPath = 107

// baseCmdline holds the kernel arguments every Firecracker boot needs.
// reboot=k makes a guest reboot reset through the i8042 controller, which
// Firecracker turns into a clean process exit (it has no power-off);
// pci=off because every device is virtio-mmio, which Firecracker describes
// with virtio_mmio.device= arguments it appends itself.
const baseCmdline = "console=ttyS0 reboot=k panic=-1 pci=off quiet i8042.noaux i8042.nomux i8042.dumbkbd"

// guestArgs are appended after the engine's arguments so that they win
// (the agent takes the last of a repeated pyro_* argument): the channel is
// vsock, and power-off becomes a reboot, which ends Firecracker.
func guestArgs(port uint32) string {
	return fmt.Sprintf("pyro_channel=vsock pyro_vsock_port=%d pyro_poweroff=reboot", port)
}

// Plan is what Start does: the files Firecracker needs and the API calls
// that boot it, in order.
type Plan struct {
	APISocket string    // host path of the API socket
	VsockUDS  string    // host path of the vsock device's unix socket
	Requests  []Request // machine-config, boot-source, drives, network, vsock, InstanceStart
	Net       *NetPlan  // nil without a network
}

// planConfig is what the plan depends on besides the spec.
type planConfig struct {
	VsockPort uint32
	// Root maps host paths to the paths Firecracker sees under the
	// jailer (chroot-relative); nil without it, where drives and the vsock
	// socket are named relative to spec.Dir, Firecracker's working
	// directory, and other files by their host paths.
	Root func(hostPath string) string
	// SockDir is where the API and vsock sockets live on the host.
	SockDir string
	// Net is the allocated network (see netLeases); nil with a network
	// plans the subnet the id hashes to.
	Net *NetPlan
}

// BuildPlan returns the ordered boot requests for spec. Firecracker needs
// the machine, boot source and devices configured before InstanceStart;
// drives attach in request order, so the environment's root is /dev/vda
// and the scratch disk /dev/vdb.
func BuildPlan(spec vmm.MachineSpec, cfg planConfig) (*Plan, error) {
	if err := checkSpec(spec); err != nil {
		return nil, err
	}
	if cfg.VsockPort == 0 {
		cfg.VsockPort = DefaultVsockPort
	}
	root := cfg.Root
	if root == nil {
		root = func(p string) string { return p }
	}
	sockDir := cfg.SockDir
	if sockDir == "" {
		sockDir = spec.Dir
	}
	vcpus, mem := spec.VCPUs, spec.MemMiB
	if vcpus <= 0 {
		vcpus = 1
	}
	if mem <= 0 {
		mem = 1024
	}
	p := &Plan{APISocket: filepath.Join(sockDir, APISocket), VsockUDS: filepath.Join(sockDir, VsockSocket)}
	for _, s := range []string{p.APISocket, p.VsockUDS} {
		if len(s) > maxSocketPath {
			return nil, errdefs.New(errdefs.ErrInvalidArgument,
				"set PYRO_RUNTIME_DIR (or XDG_RUNTIME_DIR) to a shorter directory such as /tmp/pyro",
				"socket path %q is %d bytes, more than the %d a unix socket allows", s, len(s), maxSocketPath)
		}
	}
	args := []string{baseCmdline}
	if spec.Network {
		p.Net = cfg.Net
		if p.Net == nil {
			p.Net = PlanNetwork(spec.ID)
		}
		args = append(args, p.Net.GuestArgs())
	}
	if s := strings.TrimSpace(spec.Cmdline); s != "" {
		args = append(args, s)
	}
	args = append(args, guestArgs(cfg.VsockPort))

	add := func(step, method, path string, body any) {
		p.Requests = append(p.Requests, Request{Step: step, Method: method, Path: path, Body: body})
	}
	add("machine-config", http.MethodPut, "/machine-config", MachineConfiguration{VCPUCount: vcpus, MemSizeMiB: mem})
	add("boot-source", http.MethodPut, "/boot-source", BootSource{
		KernelImagePath: root(spec.Kernel), InitrdPath: initrd(root, spec.Initrd), BootArgs: strings.Join(args, " "),
	})
	// Drives and the vsock socket are named relative to Firecracker's
	// working directory (spec.Dir, or the jail's root), where Start stages
	// the drives under fixed names: a snapshot refers to them by these
	// paths, and a clone restored in its own directory finds its own
	// (snapshot.go).
	for i, d := range spec.Disks {
		id := driveID(i, d)
		path := drivePrefix + id
		if cfg.Root != nil {
			path = root(d.Path)
		}
		add("drive "+id, http.MethodPut, "/drives/"+id, Drive{
			DriveID: id, PathOnHost: path, IsRootDevice: false, IsReadOnly: d.ReadOnly,
			// Writeback honours the guest's flushes, which is what makes a
			// workspace's scratch disk survive kill -9 after an exec.
			CacheType: "Writeback",
		})
	}
	if p.Net != nil {
		add("network eth0", http.MethodPut, "/network-interfaces/eth0", NetworkInterface{
			IfaceID: "eth0", HostDevName: p.Net.Tap, GuestMAC: p.Net.GuestMAC,
		})
	}
	uds := VsockSocket
	if cfg.Root != nil {
		uds = root(p.VsockUDS)
	}
	add("vsock", http.MethodPut, "/vsock", Vsock{GuestCID: GuestCID, UDSPath: uds})
	add("start", http.MethodPut, "/actions", InstanceActionInfo{ActionType: ActionInstanceStart})
	return p, nil
}

func initrd(root func(string) string, p string) string {
	if p == "" {
		return ""
	}
	return root(p)
}

// driveID names drive i: "rootfs" for the first (the environment's base),
// "scratch" for a second writable one, else "disk<i>".
func driveID(i int, d vmm.Disk) string {
	switch {
	case i == 0:
		return "rootfs"
	case i == 1 && !d.ReadOnly:
		return "scratch"
	default:
		return fmt.Sprintf("disk%d", i)
	}
}

func checkSpec(spec vmm.MachineSpec) error {
	if spec.Kernel == "" {
		return errdefs.New(errdefs.ErrInvalidArgument, "", "machine spec has no kernel")
	}
	if spec.Dir == "" {
		return errdefs.New(errdefs.ErrInvalidArgument, "", "machine spec has no runtime directory")
	}
	if spec.VCPUs > 32 {
		return errdefs.New(errdefs.ErrInvalidArgument, "use at most 32 vCPUs", "firecracker supports 1 to 32 vCPUs, not %d", spec.VCPUs)
	}
	for _, d := range spec.Disks {
		if d.Format != "" && d.Format != "raw" {
			return errdefs.New(errdefs.ErrInvalidArgument, "firecracker only takes raw disks; pyro gives it a read-only base and a raw scratch disk",
				"disk %s: format %q is not supported by firecracker", d.Path, d.Format)
		}
	}
	return nil
}
