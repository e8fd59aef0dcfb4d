package qemu

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/vmm"
)

// Socket and file names inside MachineSpec.Dir.
const (
	AgentSocket = "agent.sock"
	QMPSocket   = "qmp.sock"
	StderrFile  = "qemu.stderr"
)

// maxSocketPath is sun_path's size on Linux (108) minus the trailing NUL.
const maxSocketPath = 107

// Descriptors QEMU inherits (exec.Cmd.ExtraFiles, in this order): the write
// end of the console pipe the supervisor keeps capped (vmm.Console),
// QEMU's end of the socket pair passt serves the network on, the file
// that holds guest RAM (spec.Memory) and the saved state a restore reads
// (spec.Restore). Files are handed over open, never named to QEMU by a
// path it would resolve later: a template replaced meanwhile can never
// mix one build's memory with another's state.
const (
	consoleFD = 3
	netFD     = 4
	memFD     = 5
	stateFD   = 6
	lastFD    = stateFD
)

// ramID is the id of the memory backend every machine's RAM is: a
// migration stream names RAM blocks by it, so a machine booted with
// anonymous RAM can be restored onto a file and back.
const ramID = "mem"

// AgentPortName is the virtio-serial port name the guest agent looks for in
// /sys/class/virtio-ports/*/name.
const AgentPortName = "pyro.agent"

// Guest network addresses. They are slirp's defaults; pyro's stack and
// passt are told to use the same ones so the guest agent does not care
// which one is in use.
const (
	GuestIP  = "10.0.2.15/24"
	GuestGW  = "10.0.2.2"
	GuestDNS = "10.0.2.3"
)

// baseCmdline holds the kernel arguments every boot needs. tsc_early_khz and
// tsc=reliable stop ~1 boot in 8 freezing on PIT calibration under TCG;
// reboot=t makes a guest reboot leave QEMU (-no-reboot) every time.
const baseCmdline = "console=ttyS0 quiet panic=-1 reboot=t"

// DefaultTCGCPU is the guest CPU under TCG: every feature TCG emulates,
// except ERMS and FSRM ("fast" rep movsb/stosb). With them the guest kernel
// copies and clears memory with rep movsb/stosb, which TCG runs one byte per
// emulated iteration; without them it uses rep movsq/stosq, eight bytes per
// iteration, and glibc uses its vector loops. Page-cache writes and
// copies through pipes ran 2-3 times faster in the guest (100 MB written by
// dd: 1.9-4.3 s -> 1.0-1.9 s), and every page fault zeroes a page this way.
// $PYRO_QEMU_TCG_CPU overrides it.
const DefaultTCGCPU = "max,-erms,-fsrm"

// config is what the command line depends on besides the spec, so that
// tests can pin it.
type config struct {
	Accel     string // "kvm" or "tcg"
	TSCkHz    int    // host TSC frequency; 0 leaves it to the guest
	TBSizeMiB int    // TCG translation cache size; 0 keeps QEMU's default
	Net       string // NetStack, NetPasst or NetSlirp
	TCGCPU    string // CPU model under TCG; "" means DefaultTCGCPU
	Sandbox   string // -sandbox value; "" runs without QEMU's seccomp filter
}

// buildArgs returns QEMU's arguments (without the program name) for spec.
func buildArgs(spec vmm.MachineSpec, cfg config) ([]string, error) {
	if err := checkSpec(spec); err != nil {
		return nil, err
	}
	vcpus, mem := spec.VCPUs, spec.MemMiB
	if vcpus <= 0 {
		vcpus = 1
	}
	if mem <= 0 {
		mem = 1024
	}
	a := []string{
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-name", "pyro-" + spec.ID,
	}
	switch cfg.Accel {
	case "kvm":
		a = append(a, "-accel", "kvm", "-cpu", "host")
	default:
		tcg := "tcg"
		if cfg.TBSizeMiB > 0 {
			tcg += ",tb-size=" + strconv.Itoa(cfg.TBSizeMiB)
		}
		cpu := cfg.TCGCPU
		if cpu == "" {
			cpu = DefaultTCGCPU
		}
		a = append(a, "-accel", tcg, "-cpu", cpu)
	}
	a = append(a,
		"-M", "microvm,x-option-roms=off,rtc=on,memory-backend="+ramID,
		"-m", strconv.Itoa(mem),
		"-object", memoryBackend(spec, mem),
		"-smp", strconv.Itoa(vcpus),
	)
	if r := spec.Restore; r == nil || !r.IgnoreShared {
		a = append(a, "-kernel", spec.Kernel)
		if spec.Initrd != "" {
			a = append(a, "-initrd", spec.Initrd)
		}
		a = append(a, "-append", kernelCmdline(spec, cfg))
	}
	// A template's clone runs on from a guest that booted long ago: QEMU
	// would only read the kernel and initramfs (~25 MB) into the firmware's
	// configuration, which nothing reads again (measured: a tenth of a warm
	// run's CPU went to reading them). Its kernel arguments are in the
	// template's memory; the clone's own come with its identity.

	for i, d := range spec.Disks {
		format := d.Format
		if format == "" {
			format = "raw"
		}
		// werror/rerror=report: a host disk that fills up fails the guest's
		// write (and the agent reports it) instead of pausing the VM.
		drive := fmt.Sprintf("id=disk%d,file=%s,format=%s,if=none,discard=unmap,werror=report,rerror=report", i, escapeOpt(d.Path), format)
		if d.Scratch {
			// Gone with the machine: a guest's flush (ext4's commits, a
			// thaw's superblock, an fsync) is not worth a host fdatasync.
			drive += ",cache.no-flush=on"
		}
		if d.ReadOnly {
			drive = fmt.Sprintf("id=disk%d,file=%s,format=%s,if=none,readonly=on", i, escapeOpt(d.Path), format)
		}
		dev := fmt.Sprintf("virtio-blk-device,drive=disk%d", i)
		if d.Serial != "" {
			dev += ",serial=" + escapeOpt(d.Serial)
		}
		a = append(a, "-drive", drive, "-device", dev)
	}

	a = append(a,
		"-device", "virtio-serial-device",
		"-chardev", "socket,id=agent,path="+escapeOpt(filepath.Join(spec.Dir, AgentSocket))+",server=on,wait=off",
		"-device", "virtserialport,chardev=agent,name="+AgentPortName,
		"-qmp", "unix:"+filepath.Join(spec.Dir, QMPSocket)+",server=on,wait=off",
		// Free page reporting hands pages the guest frees back to the host,
		// which keeps an idle VM's RSS down after a big command.
		"-device", "virtio-balloon-device,free-page-reporting=on",
	)
	if spec.Console != "" {
		// A pipe, not the log file: QEMU would append to a file without
		// bound; the supervisor keeps the log capped (vmm.Console).
		a = append(a, "-chardev", fmt.Sprintf("file,id=con,path=/dev/fd/%d", consoleFD), "-serial", "chardev:con")
	} else {
		a = append(a, "-serial", "null")
	}
	if spec.NetworkPolicy().NIC() {
		switch cfg.Net {
		case NetStack, NetPasst:
			a = append(a, "-netdev", fmt.Sprintf("stream,id=net0,server=off,addr.type=fd,addr.str=%d", netFD))
		default:
			a = append(a, "-netdev", "user,id=net0")
		}
		a = append(a, "-device", "virtio-net-device,netdev=net0")
	}
	if cfg.Sandbox != "" {
		a = append(a, "-sandbox", cfg.Sandbox)
	}
	if spec.Restore != nil {
		// The state arrives through QMP (migrate-incoming), once the
		// supervisor holds the agent's socket: see restore in snapshot.go.
		a = append(a, "-incoming", "defer")
	}
	return a, nil
}

// memoryBackend is the -object that holds guest RAM: anonymous memory,
// or spec.Memory's file (inherited as memFD), shared or private.
func memoryBackend(spec vmm.MachineSpec, mem int) string {
	if spec.Memory == nil {
		return fmt.Sprintf("memory-backend-ram,id=%s,size=%dM", ramID, mem)
	}
	share := "off"
	if spec.Memory.Shared {
		share = "on"
	}
	return fmt.Sprintf("memory-backend-file,id=%s,size=%dM,mem-path=/dev/fd/%d,share=%s", ramID, mem, memFD, share)
}

// tcgCmdline is added under TCG: the guest maps programs and libraries at
// the same addresses every time (norandmaps, no ASLR). QEMU 7.2 keeps
// translated x86 code by virtual address, so with randomised addresses
// every new process translates ld.so and libc again; without, it reuses
// them. Starting /bin/true in the guest, measured in one VM switching the
// sysctl: 47-74 ms with ASLR, 17-29 ms without, on a loaded host.
const tcgCmdline = "norandmaps"

func kernelCmdline(spec vmm.MachineSpec, cfg config) string {
	parts := []string{baseCmdline}
	if cfg.Accel != "kvm" {
		parts = append(parts, tcgCmdline)
	}
	if cfg.TSCkHz > 0 {
		parts = append(parts, fmt.Sprintf("tsc_early_khz=%d tsc=reliable", cfg.TSCkHz))
	}
	if spec.NetworkPolicy().NIC() {
		parts = append(parts, "pyro_net=1 pyro_ip="+GuestIP+" pyro_gw="+GuestGW+" pyro_dns="+GuestDNS)
	}
	if s := strings.TrimSpace(spec.Cmdline); s != "" {
		parts = append(parts, s)
	}
	return strings.Join(parts, " ")
}

// escapeOpt doubles commas, QEMU's escape inside option values.
func escapeOpt(s string) string { return strings.ReplaceAll(s, ",", ",,") }

func checkSpec(spec vmm.MachineSpec) error {
	if spec.Kernel == "" {
		return errdefs.New(errdefs.ErrInvalidArgument, "", "machine spec has no kernel")
	}
	if spec.Dir == "" {
		return errdefs.New(errdefs.ErrInvalidArgument, "", "machine spec has no runtime directory")
	}
	for _, name := range []string{AgentSocket, QMPSocket} {
		p := filepath.Join(spec.Dir, name)
		if len(p) > maxSocketPath {
			return errdefs.New(errdefs.ErrInvalidArgument,
				"set PYRO_RUNTIME_DIR (or XDG_RUNTIME_DIR) to a shorter directory such as /tmp/pyro",
				"socket path %q is %d bytes, more than the %d a unix socket allows", p, len(p), maxSocketPath)
		}
	}
	for _, d := range spec.Disks {
		if d.Format != "" && d.Format != "raw" && d.Format != "qcow2" {
			return errdefs.New(errdefs.ErrInvalidArgument, "", "disk %s: unsupported format %q (want raw or qcow2)", d.Path, d.Format)
		}
	}
	return nil
}
