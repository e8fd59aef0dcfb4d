// Package qemu is the QEMU microvm backend: KVM when the kvm probe proved
// it boots a guest here, TCG software emulation otherwise. The guest agent
// is reached over a virtio-serial port exposed as a unix socket, the
// optional network is pyro's own user-space stack in this process (no root,
// see internal/netstack and netstack.go), and every machine's sockets and
// QEMU's stderr live in the spec's private runtime directory.
//
//	b, err := qemu.New(qemu.Options{ProbeKernel: inst.KernelPath})
//	m, err := b.Start(ctx, vmm.MachineSpec{ID: "ab12", Dir: dir, Kernel: k, Initrd: i, ...})
//	conn, err := m.AgentConn(ctx)
package qemu

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/hostbin"
	"github.com/pyro-mcp/pyro/internal/kvm"
	"github.com/pyro-mcp/pyro/internal/vmm"
)

// Network modes.
const (
	// NetPasst runs passt(1) per VM with --no-map-gw: egress to the
	// internet, no path to services on the host's loopback, but the host's
	// other addresses and its networks stay reachable. Kept for comparison
	// with NetStack; egress only.
	NetPasst = "passt"
	// NetSlirp is QEMU's built-in user networking. libslirp maps every
	// address of the virtual network (10.0.2.2 among them) to the host's
	// 127.0.0.1 and QEMU 7.2 exposes no switch to stop it, so the guest can
	// reach host loopback services. Only used when asked for explicitly.
	NetSlirp = "slirp"
)

// Binary names.
const (
	DefaultBin   = "qemu-system-x86_64"
	DefaultPasst = "passt"
)

// DefaultTBSizeMiB caps TCG's translation cache. QEMU's default lets it
// grow to ~70 MB resident on an idle Debian guest; see docs/reference/doctor.md
// for the measurement behind the value.
const DefaultTBSizeMiB = 64

// Options configures a Backend. The zero value picks everything itself.
type Options struct {
	// Bin is qemu-system-x86_64; empty means $PYRO_QEMU_BIN, else PATH.
	Bin string
	// Accel is "kvm", "tcg", or empty to ask the kvm probe.
	Accel string
	// ProbeKernel is a guest kernel the kvm probe may boot to verify KVM
	// (typically an installed environment's). Without it KVM is not trusted.
	ProbeKernel string
	// KVM, when set, is a probe result to use instead of probing.
	KVM *kvm.Result
	// TBSizeMiB is TCG's translation cache size; 0 means DefaultTBSizeMiB,
	// -1 keeps QEMU's default.
	TBSizeMiB int
	// Net is NetStack, NetPasst or NetSlirp; empty means
	// $PYRO_NET_BACKEND, else NetStack.
	Net string
	// PasstBin is passt; empty means $PYRO_PASST_BIN, else PATH.
	PasstBin string
	Logger   *slog.Logger
}

// Backend starts QEMU microvm machines.
type Backend struct {
	bin, passt string
	cfg        config
	kvm        kvm.Result
	log        *slog.Logger
}

var _ vmm.Backend = (*Backend)(nil)

// New finds QEMU and settles the accelerator. With Accel empty it runs the
// kvm probe, which is bounded by its own deadline (~5 s) and cached per
// host boot, so it costs nothing after the first call.
func New(opts Options) (*Backend, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	bin, err := FindBinary(opts.Bin)
	if err != nil {
		return nil, err
	}
	b := &Backend{bin: bin, log: log}
	b.cfg.TSCkHz = HostTSCkHz()
	b.cfg.Sandbox = Sandbox(bin)
	b.cfg.TCGCPU = os.Getenv("PYRO_QEMU_TCG_CPU")
	switch opts.TBSizeMiB {
	case 0:
		b.cfg.TBSizeMiB = DefaultTBSizeMiB
	case -1:
	default:
		b.cfg.TBSizeMiB = opts.TBSizeMiB
	}
	switch {
	case opts.Accel == "kvm" || opts.Accel == "tcg":
		b.cfg.Accel = opts.Accel
		b.kvm = kvm.Result{Verdict: "not probed", Usable: opts.Accel == "kvm", Reason: "accelerator chosen by the caller"}
	case opts.Accel != "":
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "use kvm, tcg or leave it empty", "unknown accelerator %q", opts.Accel)
	default:
		if opts.KVM != nil {
			b.kvm = *opts.KVM
		} else {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			b.kvm = kvm.Probe(ctx, kvm.Options{QEMU: bin, Kernel: opts.ProbeKernel})
			cancel()
		}
		b.cfg.Accel = "tcg"
		if b.kvm.Usable {
			b.cfg.Accel = "kvm"
		}
	}
	b.cfg.Net = opts.Net
	if b.cfg.Net == "" {
		b.cfg.Net = os.Getenv("PYRO_NET_BACKEND")
	}
	if b.cfg.Net == "" {
		b.cfg.Net = NetStack
	}
	if b.cfg.Net != NetStack && b.cfg.Net != NetPasst && b.cfg.Net != NetSlirp {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "use stack (the default), passt or slirp", "unknown network backend %q", b.cfg.Net)
	}
	if b.cfg.Net == NetPasst {
		// A missing passt only matters to machines that ask for a network;
		// Start reports it then.
		b.passt, _ = FindPasst(opts.PasstBin)
	}
	log.Debug("qemu backend", "bin", bin, "accel", b.cfg.Accel, "kvm", b.kvm.Verdict, "net", b.cfg.Net, "sandbox", b.cfg.Sandbox != "")
	return b, nil
}

// FindBinary resolves QEMU: bin, else $PYRO_QEMU_BIN, else PATH (hostbin
// owns the policy).
func FindBinary(bin string) (string, error) { return hostbin.QEMU.Find(bin) }

// FindPasst resolves passt: bin, else $PYRO_PASST_BIN, else PATH.
func FindPasst(bin string) (string, error) { return hostbin.Passt.Find(bin) }

// Accel is "kvm" or "tcg".
func (b *Backend) Accel() string { return b.cfg.Accel }

// KVM is the probe result the accelerator was chosen from.
func (b *Backend) KVM() kvm.Result { return b.kvm }

// NetMode is the network backend guests get: NetStack, NetPasst or NetSlirp.
func (b *Backend) NetMode() string { return b.cfg.Net }

// Binary is the QEMU executable in use.
func (b *Backend) Binary() string { return b.bin }

// Capabilities implements vmm.Backend.
func (b *Backend) Capabilities() vmm.Capabilities {
	desc := "QEMU microvm under TCG software emulation (isolated, ~10x slower than the host)"
	if b.cfg.Accel == "kvm" {
		desc = "QEMU microvm under KVM"
	}
	return vmm.Capabilities{
		Kind:        vmm.KindQEMU,
		Accel:       b.cfg.Accel,
		Isolated:    true,
		Network:     b.cfg.Net != NetPasst || b.passt != "",
		Channel:     "virtio-serial",
		Persistent:  true,
		MaxVCPUs:    runtime.NumCPU(),
		MaxMemMiB:   vmm.MaxGuestMemMiB(),
		Description: desc,
	}
}

// Args returns the QEMU arguments Start would use for spec (for logs,
// `--dry-run`s and tests).
func (b *Backend) Args(spec vmm.MachineSpec) ([]string, error) { return buildArgs(spec, b.cfg) }

// Start implements vmm.Backend. ctx bounds only the start-up: the machine
// lives on after Start returns, until Kill or the caller's process dies
// (QEMU and passt get Pdeathsig SIGKILL, see vmm.StartProcess; the network
// stack lives in the caller's process).
func (b *Backend) Start(ctx context.Context, spec vmm.MachineSpec) (vmm.Machine, error) {
	args, err := buildArgs(spec, b.cfg)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(spec.Kernel); err != nil {
		return nil, errdefs.Wrap(errdefs.ErrNotFound, err, "reinstall the environment with 'pyro env pull'", "guest kernel")
	}
	for _, name := range []string{AgentSocket, QMPSocket} {
		_ = os.Remove(filepath.Join(spec.Dir, name))
	}
	m := &machine{dir: spec.Dir, steps: map[string]time.Duration{}}
	t0 := time.Now()
	// What QEMU inherits, at the descriptors buildArgs names; this
	// process's copies are closed once QEMU holds them.
	extra := make([]*os.File, lastFD-2)
	saved, err := openSaved(spec)
	if err != nil {
		return nil, err
	}
	for i, f := range saved {
		if f != nil {
			defer f.Close()
			extra[memFD-3+i] = f
		}
	}
	var console *vmm.Console
	if spec.Console != "" {
		if console, err = vmm.StartConsole(spec.Console, 0); err != nil {
			return nil, err
		}
		defer console.CloseWriter()
		extra[consoleFD-3] = console.Writer()
	}
	qemuEnd, err := b.startNet(spec, m)
	if err != nil {
		return nil, err
	}
	if qemuEnd != nil {
		defer qemuEnd.Close()
		extra[netFD-3] = qemuEnd
	}
	stderrPath := filepath.Join(spec.Dir, StderrFile)
	stderr, err := os.OpenFile(stderrPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		m.stopNet()
		return nil, fmt.Errorf("creating qemu stderr file: %w", err)
	}
	defer stderr.Close()
	cmd := exec.Command(b.bin, args...)
	cmd.Dir = spec.Dir
	cmd.Stderr = stderr
	cmd.ExtraFiles = extra
	b.log.Debug("starting qemu", "id", spec.ID, "args", args)
	m.step("qemu.1.setup", &t0)
	m.proc, err = vmm.StartProcess(cmd, "qemu", stderrPath, func() {
		m.stopNet()
		if console != nil {
			// Let the last console bytes reach the log before Wait returns.
			select {
			case <-console.Done():
			case <-time.After(2 * time.Second):
			}
		}
	})
	if err != nil {
		m.stopNet()
		return nil, errdefs.Wrap(errdefs.ErrUnavailable, err, "check that "+b.bin+" runs", "starting qemu")
	}
	m.step("qemu.2.exec", &t0)

	// QEMU creates its sockets before it opens disks and kernel, so a
	// socket on disk proves nothing; a QMP answer comes only once the
	// machine is built and running.
	if err := waitQMP(ctx, filepath.Join(spec.Dir, QMPSocket), m.proc.Done()); err != nil {
		select {
		case <-m.proc.Done():
			return nil, errdefs.Wrap(errdefs.ErrUnavailable, startError(stderrPath, m.proc.ExitErr()),
				"see "+stderrPath+"; 'pyro doctor' checks this host", "qemu exited during start-up")
		default:
		}
		_ = m.Kill()
		if ctx.Err() != nil {
			return nil, errdefs.Wrap(errdefs.ErrTimeout, ctx.Err(), "", "starting qemu")
		}
		return nil, errdefs.Wrap(errdefs.ErrUnavailable, err, "see "+stderrPath, "starting qemu")
	}
	m.step("qemu.3.monitor", &t0)
	if spec.Restore != nil {
		if err := m.restore(ctx, spec); err != nil {
			_ = m.Kill()
			return nil, err
		}
		m.step("qemu.4.restore", &t0)
	}
	return m, nil
}

// openSaved opens the memory file and the saved state a spec names, for
// QEMU to inherit at memFD and stateFD (nil where the spec has none). A
// restore whose files cannot be opened is vmm.ErrNotRestorable.
func openSaved(spec vmm.MachineSpec) ([2]*os.File, error) {
	var out [2]*os.File
	if spec.Memory != nil {
		f, err := os.OpenFile(spec.Memory.Path, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			if spec.Restore != nil {
				return out, notRestorable(err, "opening the memory file")
			}
			return out, errdefs.Wrap(errdefs.ErrInternal, err, "", "opening the memory file")
		}
		out[0] = f
	}
	if spec.Restore != nil {
		f, err := os.Open(spec.Restore.State)
		if err != nil {
			if out[0] != nil {
				out[0].Close()
			}
			return out, notRestorable(err, "opening the saved state")
		}
		out[1] = f
	}
	return out, nil
}

// waitQMP dials QEMU's monitor, negotiates and asks for the run state.
func waitQMP(ctx context.Context, sock string, done <-chan struct{}) error {
	var d net.Dialer
	for {
		c, err := d.DialContext(ctx, "unix", sock)
		if err == nil {
			err = qmpHello(ctx, c)
			c.Close()
			if err == nil {
				return nil
			}
		}
		select {
		case <-done:
			return errors.New("qemu exited")
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func qmpHello(ctx context.Context, c net.Conn) error {
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	r := bufio.NewReader(c)
	if _, err := r.ReadString('\n'); err != nil { // greeting
		return err
	}
	for _, cmd := range []string{`{"execute":"qmp_capabilities"}`, `{"execute":"query-status"}`} {
		if _, err := io.WriteString(c, cmd+"\n"); err != nil {
			return err
		}
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return err
			}
			if strings.Contains(line, `"return"`) {
				break
			}
			if strings.Contains(line, `"error"`) {
				return fmt.Errorf("qmp: %s", strings.TrimSpace(line))
			}
			// Anything else is an asynchronous event.
		}
	}
	return nil
}

func startError(stderrPath string, waitErr error) error {
	b, _ := os.ReadFile(stderrPath)
	msg := strings.TrimSpace(string(b))
	if msg == "" {
		return waitErr
	}
	if i := strings.LastIndex(msg, "\n"); i >= 0 && strings.Count(msg, "\n") > 5 {
		msg = msg[i+1:]
	}
	return errors.New(msg)
}

// passtUser is who passt runs as when pyro runs as root: it needs no
// privilege at all once it holds its socket (passt itself refuses to keep
// root, and would pick nobody on its own).
const passtUser = "nobody"

// startPasst runs passt in the foreground for one VM, serving the network
// on one end of a socket pair and returning the other end for QEMU: no
// socket file, so passt needs no access to the VM's runtime directory and,
// when pyro runs as root, runs as nobody. --no-map-gw stops passt from
// mapping the gateway to the host's loopback, which is the point of using
// it: the guest gets the internet but not the host's 127.0.0.1 services.
func startPasst(bin, dir string) (proc *vmm.Process, qemuEnd *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("creating the network socket pair: %w", err)
	}
	passtEnd, qemuEnd := os.NewFile(uintptr(fds[0]), "passt-net"), os.NewFile(uintptr(fds[1]), "qemu-net")
	defer passtEnd.Close()
	ip, _, _ := strings.Cut(GuestIP, "/")
	args := []string{
		"--foreground", "--fd", "3",
		"--address", ip, "--netmask", "24", "--gateway", GuestGW,
		"--no-map-gw", "--dns-forward", GuestDNS,
		"--no-dhcp", "--no-ndp", "--no-dhcpv6", "--no-ra",
		"--tcp-ports", "none", "--udp-ports", "none",
		"--quiet",
	}
	if os.Geteuid() == 0 {
		args = append(args, "--runas", passtUser)
	}
	logPath := filepath.Join(dir, "passt.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		qemuEnd.Close()
		return nil, nil, fmt.Errorf("creating passt log: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = []*os.File{passtEnd}
	proc, err = vmm.StartProcess(cmd, "passt", logPath, nil)
	if err != nil {
		qemuEnd.Close()
		return nil, nil, errdefs.Wrap(errdefs.ErrUnavailable, err, "check that "+bin+" runs", "starting passt")
	}
	// passt reports a bad argument by exiting at once; a healthy one
	// serves its descriptor from the start.
	select {
	case <-proc.Done():
		qemuEnd.Close()
		b, _ := os.ReadFile(logPath)
		return nil, nil, errdefs.Wrap(errdefs.ErrUnavailable, fmt.Errorf("%v: %s", proc.ExitErr(), strings.TrimSpace(string(b))),
			"see "+logPath, "passt exited during start-up")
	case <-time.After(20 * time.Millisecond):
	}
	return proc, qemuEnd, nil
}

type machine struct {
	dir   string
	agent net.Conn // connected by restore, handed out by AgentConn
	proc  *vmm.Process
	passt *vmm.Process
	net   *netStack // pyro's network stack, when it carries the network
	// steps are how long the steps of Start took (StartSteps).
	steps map[string]time.Duration

	once sync.Once
}

// StartSteps says how long the steps of Start took (the supervisor
// reports them).
func (m *machine) StartSteps() map[string]time.Duration { return m.steps }

// step records the time since *t as name's, and moves *t to now.
func (m *machine) step(name string, t *time.Time) {
	now := time.Now()
	m.steps[name] = now.Sub(*t)
	*t = now
}

func (m *machine) Pid() int { return m.proc.Pid() }

// AgentConn dials the agent socket, retrying until it answers, QEMU exits
// or ctx ends. Connect once and keep the connection for the VM's life: the
// guest sees EOF whenever no host side is connected.
func (m *machine) AgentConn(ctx context.Context) (io.ReadWriteCloser, error) {
	if c := m.agent; c != nil {
		m.agent = nil
		return c, nil
	}
	sock := filepath.Join(m.dir, AgentSocket)
	var d net.Dialer
	for {
		c, err := d.DialContext(ctx, "unix", sock)
		if err == nil {
			return c, nil
		}
		select {
		case <-m.proc.Done():
			return nil, errdefs.Wrap(errdefs.ErrUnavailable, m.proc.ExitErr(), "see "+filepath.Join(m.dir, StderrFile), "qemu exited before the agent connected")
		case <-ctx.Done():
			return nil, errdefs.Wrap(errdefs.ErrTimeout, ctx.Err(), "", "connecting to the guest agent socket")
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Wait blocks until QEMU exits. A guest power-off or reboot is a clean exit.
func (m *machine) Wait() error { return m.proc.Wait() }

// Kill ends QEMU's process group at once and reaps it.
func (m *machine) Kill() error { return m.proc.Kill() }

// stopNet ends the machine's network: passt's process, or the stack.
func (m *machine) stopNet() {
	m.once.Do(func() {
		if m.passt != nil {
			_ = m.passt.Kill()
		}
		if m.net != nil {
			m.net.close()
		}
	})
}

// HostTSCkHz is the host's TSC frequency in kHz, passed to the guest as
// tsc_early_khz so it never calibrates against the emulated PIT. 0 if
// unknown.
func HostTSCkHz() int { return kvm.HostTSCkHz() }
