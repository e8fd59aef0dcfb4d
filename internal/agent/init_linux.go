package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pyro-mcp/pyro/internal/agentproto"
)

// Modules the guest needs, in load order. Missing ones are skipped (a
// kernel may have them built in).
var (
	// bootModules are needed before anything else: the disk and the channel.
	bootModules  = []string{"virtio_ring", "virtio", "virtio_mmio", "virtio_blk", "virtio_console"}
	netModules   = []string{"failover", "net_failover", "virtio_net"}
	vsockModules = []string{"vsock", "vmw_vsock_virtio_transport_common", "vmw_vsock_virtio_transport"}
	// overlayModules serve pyro_rootmode=overlay.
	overlayModules = []string{"overlay"}
	// lateModules load after the agent is ready: nothing waits for them.
	lateModules = []string{"virtio_balloon"}
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

// prefixWriter sends each write to the console as one "pyro-agent:" line.
type prefixWriter struct{ w io.Writer }

func (p prefixWriter) Write(b []byte) (int, error) {
	p.w.Write(append([]byte("pyro-agent: "), b...))
	return len(b), nil
}

// RunInit is the guest's PID 1: it sets the machine up, switches into the
// root disk and serves the host until power-off. It never returns; on a
// fatal error it logs to the console and powers off, since PID 1 exiting
// panics the kernel.
func RunInit() {
	start := time.Now()
	mountEarly()
	console, err := os.OpenFile("/dev/console", os.O_WRONLY, 0)
	if err != nil {
		console = os.Stderr
	}
	log := slog.New(slog.NewTextHandler(prefixWriter{console}, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
	slog.SetDefault(log)
	cmdline, _ := os.ReadFile("/proc/cmdline")
	p := ParseCmdline(string(cmdline))
	if p.PowerOff == "reboot" {
		offCmd = unix.LINUX_REBOOT_CMD_RESTART
	}
	fatal := func(err error) {
		log.Error("fatal; powering off", "err", err)
		unix.Sync()
		unix.Reboot(offCmd)
		select {}
	}
	os.Setenv("PATH", envGet(DefaultEnv, "PATH"))
	if strings.Contains(string(cmdline), "pyro_bench_marker=1") {
		// bench/'s floor: the kernel reached our /init; print and power off.
		fmt.Fprintln(console, "PYRO-BENCH-MARKER")
		unix.Reboot(offCmd)
		select {}
	}

	mods := append([]string{}, bootModules...)
	if p.RootMode == "overlay" {
		mods = append(mods, overlayModules...)
	}
	if p.Net {
		mods = append(mods, netModules...)
	}
	if p.Channel == "vsock" {
		mods = append(mods, vsockModules...)
	}
	found := findModules()
	modParams = p.ModParams
	loadModules(log, found, mods)
	late := openModules(found, lateModules)
	tModules := time.Since(start)
	if err := switchRoot(p); err != nil {
		fatal(err)
	}
	tRoot := time.Since(start)
	os.MkdirAll("/workspace", 0o755)
	if err := mountDisks(log, ParseDiskParams(string(cmdline))); err != nil {
		fatal(err)
	}
	unix.Sethostname([]byte(p.Hostname))
	if err := linkUp("lo"); err != nil {
		log.Warn("lo", "err", err)
	}
	if p.Net {
		if err := configureNet(p); err != nil {
			log.Warn("network", "err", err)
		}
	}
	reaper := NewReaper()
	h := NewHandler(Config{FSRoot: "/", Reap: reaper, PowerOff: powerOff, Logger: log, Durable: true})
	log.Info("ready", "channel", p.Channel, "setup", time.Since(start).Round(time.Millisecond),
		"modules", tModules.Round(time.Millisecond), "root", tRoot.Round(time.Millisecond))
	go loadOpened(log, late)
	switch p.Channel {
	case "vsock":
		fatal(serveVsock(log, h, p.VsockPort))
	default:
		fatal(serveVirtioSerial(log, h, "pyro.agent"))
	}
}

func mountEarly() {
	for _, m := range []struct {
		src, dst, typ string
		flags         uintptr
		data          string
	}{
		{"proc", "/proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"sysfs", "/sys", "sysfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID, "mode=0755"},
	} {
		os.MkdirAll(m.dst, 0o755)
		unix.Mount(m.src, m.dst, m.typ, m.flags, m.data)
	}
}

// findModules maps module names to their files under
// /lib/modules/$(uname -r) in the initramfs.
func findModules() map[string]string {
	var u unix.Utsname
	unix.Uname(&u)
	dir := filepath.Join("/lib/modules", unix.ByteSliceToString(u.Release[:]))
	found := map[string]string{}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			name := d.Name()
			for _, ext := range []string{".ko", ".ko.xz", ".ko.zst", ".ko.gz"} {
				if strings.HasSuffix(name, ext) {
					found[strings.ReplaceAll(strings.TrimSuffix(name, ext), "-", "_")] = p
				}
			}
		}
		return nil
	})
	return found
}

// loadModules loads names, in order, skipping any the initramfs lacks (built
// into the kernel, or not shipped).
func loadModules(log *slog.Logger, found map[string]string, names []string) {
	loadOpened(log, openModules(found, names))
}

// openModules opens the files of names that exist, in order. Opened files
// stay loadable after the switch to the real root hides the initramfs.
func openModules(found map[string]string, names []string) []*os.File {
	var files []*os.File
	for _, m := range names {
		if p, ok := found[m]; ok {
			if f, err := os.Open(p); err == nil {
				files = append(files, f)
			}
		}
	}
	return files
}

// modParams are the command line's module.param=value arguments, by module.
var modParams map[string]string

// offCmd is how the agent ends the machine: power-off, or a reboot under
// Firecracker (pyro_poweroff=reboot).
var offCmd = unix.LINUX_REBOOT_CMD_POWER_OFF

// moduleName is a module file's name as the kernel knows it.
func moduleName(path string) string {
	name := filepath.Base(path)
	for _, ext := range []string{".ko", ".ko.xz", ".ko.zst", ".ko.gz"} {
		name = strings.TrimSuffix(name, ext)
	}
	return strings.ReplaceAll(name, "-", "_")
}

func loadOpened(log *slog.Logger, files []*os.File) {
	for _, f := range files {
		flags := 0
		if !strings.HasSuffix(f.Name(), ".ko") {
			flags = unix.MODULE_INIT_COMPRESSED_FILE
		}
		if err := unix.FinitModule(int(f.Fd()), modParams[moduleName(f.Name())], flags); err != nil && !errors.Is(err, unix.EEXIST) {
			log.Warn("loading module", "module", filepath.Base(f.Name()), "err", err)
		}
		f.Close()
	}
}

// waitDisk waits for a block device node to appear.
func waitDisk(dev string) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		if _, err := os.Stat(dev); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("disk %s did not appear within 15s (is virtio_blk loaded?)", dev)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// mountRoot builds the future root at /newroot: the VM's own disk
// read-write, or (pyro_rootmode=overlay) the shared base read-only under
// an overlayfs whose upper and work directories live on the scratch disk,
// so the VM's writes persist there across reboots.
func mountRoot(p BootParams) error {
	if err := waitDisk(p.Root); err != nil {
		return err
	}
	os.MkdirAll("/newroot", 0o755)
	if p.RootMode != "overlay" {
		if err := unix.Mount(p.Root, "/newroot", "ext4", 0, ""); err != nil {
			return fmt.Errorf("mounting %s on /newroot: %w", p.Root, err)
		}
		return nil
	}
	if err := waitDisk(p.Scratch); err != nil {
		return err
	}
	for _, d := range []string{"/lower", "/scratch"} {
		os.MkdirAll(d, 0o755)
	}
	if err := unix.Mount(p.Root, "/lower", "ext4", unix.MS_RDONLY, "noload"); err != nil {
		return fmt.Errorf("mounting %s read-only on /lower: %w", p.Root, err)
	}
	if err := unix.Mount(p.Scratch, "/scratch", "ext4", 0, ""); err != nil {
		return fmt.Errorf("mounting scratch %s: %w", p.Scratch, err)
	}
	for _, d := range []string{"/scratch/upper", "/scratch/work"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	opts := "lowerdir=/lower,upperdir=/scratch/upper,workdir=/scratch/work"
	if err := unix.Mount("overlay", "/newroot", "overlay", 0, opts); err != nil {
		return fmt.Errorf("mounting the overlay root (%s): %w (is the overlay module in the environment?)", opts, err)
	}
	return nil
}

// switchRoot mounts the root (see mountRoot) at /newroot, moves the early
// mounts into it, mounts the rest and makes it /.
func switchRoot(p BootParams) error {
	if err := mountRoot(p); err != nil {
		return err
	}
	// Free the initramfs copy of the modules and of ourselves: the page
	// cache holds our running text, the rest is dead weight in RAM.
	os.RemoveAll("/lib")
	os.Remove("/init")
	for _, d := range []string{"/proc", "/sys", "/dev"} {
		os.MkdirAll("/newroot"+d, 0o755)
		if err := unix.Mount(d, "/newroot"+d, "", unix.MS_MOVE, ""); err != nil {
			return fmt.Errorf("moving %s: %w", d, err)
		}
	}
	if err := os.Chdir("/newroot"); err != nil {
		return err
	}
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("moving root: %w", err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("chroot: %w", err)
	}
	os.Chdir("/")
	for _, m := range []struct{ src, dst, typ, data string }{
		{"devpts", "/dev/pts", "devpts", "newinstance,ptmxmode=0666,mode=0620,gid=5"},
		{"tmpfs", "/dev/shm", "tmpfs", "mode=1777"},
		{"tmpfs", "/tmp", "tmpfs", "mode=1777"},
		{"tmpfs", "/run", "tmpfs", "mode=0755"},
	} {
		os.MkdirAll(m.dst, 0o755)
		if err := unix.Mount(m.src, m.dst, m.typ, unix.MS_NOSUID|unix.MS_NODEV, m.data); err != nil {
			slog.Warn("mount", "dst", m.dst, "err", err)
		}
	}
	if _, err := os.Lstat("/dev/ptmx"); err == nil {
		os.Remove("/dev/ptmx")
	}
	os.Symlink("pts/ptmx", "/dev/ptmx")
	return nil
}

func powerOff() {
	unix.Sync()
	unix.Kill(-1, unix.SIGKILL)
	unix.Sync()
	unmountDisks()
	unix.Mount("", "/", "", unix.MS_REMOUNT|unix.MS_RDONLY, "")
	unix.Reboot(offCmd)
}

// serveVirtioSerial serves the host on the virtio-serial port named name.
// While no host is connected read() returns EOF at once, so it reopens
// the port after a short sleep rather than spinning.
func serveVirtioSerial(log *slog.Logger, h *Handler, name string) error {
	dev, err := findVirtioPort(name, 15*time.Second)
	if err != nil {
		return err
	}
	for {
		f, err := os.OpenFile(dev, os.O_RDWR, 0)
		if err != nil {
			return fmt.Errorf("opening %s: %w", dev, err)
		}
		began := time.Now()
		err = agentproto.Serve(context.Background(), f, h)
		if err != nil && !errors.Is(err, io.EOF) {
			log.Warn("connection ended", "err", err)
		}
		if time.Since(began) < time.Second {
			time.Sleep(50 * time.Millisecond)
		}
	}
}

func findVirtioPort(name string, wait time.Duration) (string, error) {
	deadline := time.Now().Add(wait)
	for {
		ents, _ := os.ReadDir("/sys/class/virtio-ports")
		for _, e := range ents {
			b, err := os.ReadFile(filepath.Join("/sys/class/virtio-ports", e.Name(), "name"))
			if err != nil || strings.TrimSpace(string(b)) != name {
				continue
			}
			dev := "/dev/" + e.Name()
			if _, err := os.Stat(dev); err != nil {
				// No node yet (devtmpfs normally makes it): make one from sysfs.
				if mm, err := os.ReadFile(filepath.Join("/sys/class/virtio-ports", e.Name(), "dev")); err == nil {
					var maj, min uint32
					fmt.Sscanf(strings.TrimSpace(string(mm)), "%d:%d", &maj, &min)
					unix.Mknod(dev, unix.S_IFCHR|0o600, int(unix.Mkdev(maj, min)))
				}
			}
			if _, err := os.Stat(dev); err == nil {
				return dev, nil
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no virtio-serial port named %s within %s (is virtio_console loaded?)", name, wait)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func serveVsock(log *slog.Logger, h *Handler, port uint32) error {
	fd, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("vsock socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrVM{CID: unix.VMADDR_CID_ANY, Port: port}); err != nil {
		return fmt.Errorf("vsock bind port %d: %w", port, err)
	}
	if err := unix.Listen(fd, 8); err != nil {
		return fmt.Errorf("vsock listen: %w", err)
	}
	for {
		nfd, _, err := unix.Accept4(fd, unix.SOCK_CLOEXEC)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return fmt.Errorf("vsock accept: %w", err)
		}
		f := os.NewFile(uintptr(nfd), "vsock")
		go func() {
			if err := agentproto.Serve(context.Background(), f, h); err != nil {
				log.Warn("vsock connection ended", "err", err)
			}
		}()
	}
}

// linkUp sets IFF_UP on an interface.
func linkUp(name string) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("%s flags: %w", name, err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("%s up: %w", name, err)
	}
	return nil
}

// configureNet gives eth0 its address, a default route and resolv.conf:
// minbase has no DHCP client or iproute2, so the agent does it itself.
func configureNet(p BootParams) error {
	ip, ipn, err := net.ParseCIDR(p.IP)
	if err != nil {
		return fmt.Errorf("pyro_ip %q: %w", p.IP, err)
	}
	const dev = "eth0"
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := net.InterfaceByName(dev); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not appear (is virtio_net loaded?)", dev)
		}
		time.Sleep(10 * time.Millisecond)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	for _, set := range []struct {
		req uint
		ip  net.IP
	}{{unix.SIOCSIFADDR, ip.To4()}, {unix.SIOCSIFNETMASK, net.IP(ipn.Mask).To4()}} {
		ifr, _ := unix.NewIfreq(dev)
		if err := ifr.SetInet4Addr(set.ip); err != nil {
			return err
		}
		if err := unix.IoctlIfreq(fd, set.req, ifr); err != nil {
			return fmt.Errorf("%s address: %w", dev, err)
		}
	}
	if err := linkUp(dev); err != nil {
		return err
	}
	if p.Gateway != "" {
		ifc, _ := net.InterfaceByName(dev)
		if err := addDefaultRoute(net.ParseIP(p.Gateway).To4(), ifc.Index); err != nil {
			return fmt.Errorf("default route via %s: %w", p.Gateway, err)
		}
	}
	if p.DNS != "" {
		os.Remove("/etc/resolv.conf") // may be a dangling symlink
		return os.WriteFile("/etc/resolv.conf", []byte("nameserver "+p.DNS+"\n"), 0o644)
	}
	return nil
}

// addDefaultRoute sends one RTM_NEWROUTE over rtnetlink and reads the ack.
func addDefaultRoute(gw net.IP, ifindex int) error {
	if gw == nil {
		return errors.New("not an IPv4 address")
	}
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	attr := func(typ uint16, data []byte) []byte {
		b := make([]byte, 4, 4+len(data))
		*(*uint16)(unsafePointer(&b[0])) = uint16(4 + len(data))
		*(*uint16)(unsafePointer(&b[2])) = typ
		return append(b, data...)
	}
	oif := make([]byte, 4)
	*(*uint32)(unsafePointer(&oif[0])) = uint32(ifindex)
	rtm := []byte{unix.AF_INET, 0, 0, 0, unix.RT_TABLE_MAIN, unix.RTPROT_BOOT, unix.RT_SCOPE_UNIVERSE, unix.RTN_UNICAST, 0, 0, 0, 0}
	body := append(rtm, attr(unix.RTA_GATEWAY, gw)...)
	body = append(body, attr(unix.RTA_OIF, oif)...)
	msg := make([]byte, unix.NLMSG_HDRLEN, unix.NLMSG_HDRLEN+len(body))
	hdr := (*unix.NlMsghdr)(unsafePointer(&msg[0]))
	hdr.Len = uint32(unix.NLMSG_HDRLEN + len(body))
	hdr.Type = unix.RTM_NEWROUTE
	hdr.Flags = unix.NLM_F_REQUEST | unix.NLM_F_CREATE | unix.NLM_F_EXCL | unix.NLM_F_ACK
	hdr.Seq = 1
	msg = append(msg, body...)
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}
	buf := make([]byte, 4096)
	n, _, err := unix.Recvfrom(fd, buf, 0)
	if err != nil {
		return err
	}
	msgs, err := syscall.ParseNetlinkMessage(buf[:n])
	if err != nil {
		return err
	}
	for _, m := range msgs {
		if m.Header.Type == unix.NLMSG_ERROR && len(m.Data) >= 4 {
			if code := int32(*(*uint32)(unsafePointer(&m.Data[0]))); code != 0 {
				return unix.Errno(-code)
			}
		}
	}
	return nil
}
