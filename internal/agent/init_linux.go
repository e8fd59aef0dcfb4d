// RunInit and the small pieces of PID 1 that belong to no other concern:
// early mounts, the console logger, power-off. The rest of the guest's
// set-up is split by concern: cmdline_linux.go (the pyro_* arguments),
// modules_linux.go, root_linux.go (the root filesystem and switch_root),
// channel_linux.go (serving the host), net_linux.go.

package agent

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pyro-mcp/pyro/internal/agent/modules"
	"github.com/pyro-mcp/pyro/internal/benchprof"
)

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

	found := findModules()
	modParams = p.ModParams
	loadModules(log, found, bootModules(p))
	if strings.Contains(string(cmdline), BenchChannelArg) {
		benchChannel(log) // bench/'s channel bound; powers off
	}
	late := openModules(found, modules.Late)
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
	ensureMachineID()
	if err := linkUp("lo"); err != nil {
		log.Warn("lo", "err", err)
	}
	if p.Net {
		if err := configureNet(p); err != nil {
			log.Warn("network", "err", err)
		}
	}
	reaper := NewReaper()
	h := NewHandler(Config{FSRoot: "/", Reap: reaper, PowerOff: powerOff, Logger: log, Durable: true, SecretsDir: GuestSecretsDir})
	log.Info("ready", "channel", p.Channel, "setup", time.Since(start).Round(time.Millisecond),
		"modules", tModules.Round(time.Millisecond), "root", tRoot.Round(time.Millisecond))
	go loadOpened(log, late)
	if strings.Contains(string(cmdline), BenchProfileArg) {
		go benchprof.Serve(BenchProfilePath, log)
	}
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

// offCmd is how the agent ends the machine: power-off, or a reboot under
// Firecracker (pyro_poweroff=reboot).
var offCmd = unix.LINUX_REBOOT_CMD_POWER_OFF

func powerOff() {
	unix.Sync()
	unix.Kill(-1, unix.SIGKILL)
	unix.Sync()
	unmountDisks()
	unix.Mount("", "/", "", unix.MS_REMOUNT|unix.MS_RDONLY, "")
	unix.Reboot(offCmd)
}
