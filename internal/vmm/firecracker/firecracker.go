// Package firecracker is the Firecracker backend: a microVM per machine,
// configured through Firecracker's HTTP API on a unix socket (plain
// net/http, no generated client), booted from the uncompressed vmlinux
// derived from the environment's bzImage, with the agent reached over
// Firecracker's vsock (a unix socket and a CONNECT/OK handshake).
//
// Firecracker has no qcow2, so a machine gets the environment's raw ext4
// read-only as /dev/vda plus a raw scratch disk as /dev/vdb, and the guest
// agent (pyro_rootmode=overlay) mounts an overlayfs whose upper and work
// directories live on the scratch disk. Networking is a TAP device per VM,
// routed and masqueraded by the host, with host services out of reach; see
// net.go and docs/reference/firecracker.md.
//
//	b, err := firecracker.New(firecracker.Options{ProbeKernel: inst.KernelPath})
//	m, err := b.Start(ctx, vmm.MachineSpec{ID: "ab12", Dir: dir, Kernel: bzImage, Initrd: i, Disks: ...})
//	conn, err := m.AgentConn(ctx)
package firecracker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/pyro-mcp/pyro/internal/backendsel"
	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/hostbin"
	"github.com/pyro-mcp/pyro/internal/kvm"
	"github.com/pyro-mcp/pyro/internal/paths"
	"github.com/pyro-mcp/pyro/internal/vmlinux"
	"github.com/pyro-mcp/pyro/internal/vmm"
)

// DefaultBin is the binary looked up on PATH.
const DefaultBin = "firecracker"

// Options configures a Backend. The zero value finds everything itself.
type Options struct {
	// Bin is firecracker; empty means $PYRO_FIRECRACKER_BIN, else PATH.
	Bin string
	// Jailer, when set, runs Firecracker through the jailer; nil reads
	// PYRO_FIRECRACKER_JAILER and friends (see JailerFromEnv).
	Jailer *Jailer
	// KVM, when set, is a probe result to use instead of probing.
	KVM *kvm.Result
	// ProbeKernel is a guest kernel the kvm probe may boot (with QEMU) to
	// verify KVM really runs a guest.
	ProbeKernel string
	// Explicit is set when the user asked for firecracker by name: then a
	// KVM that looks fine but could not be test-booted (no QEMU) is
	// trusted; automatic selection needs a verified KVM.
	Explicit bool
	// CacheDir holds derived vmlinux kernels; empty means paths.CacheDir().
	CacheDir string
	// VsockPort is the guest port of the agent; 0 means DefaultVsockPort.
	VsockPort uint32
	Logger    *slog.Logger
}

// Backend starts Firecracker microVMs.
type Backend struct {
	bin, version string
	jailer       *Jailer
	kvm          kvm.Result
	cacheDir     string
	port         uint32
	log          *slog.Logger
	run          runner
	leases       netLeases
}

var _ vmm.Backend = (*Backend)(nil)

// FindBinary resolves Firecracker: bin, else $PYRO_FIRECRACKER_BIN, else
// PATH (hostbin owns the policy).
func FindBinary(bin string) (string, error) { return hostbin.Firecracker.Find(bin) }

// Version is the first line of `firecracker --version`, e.g. "Firecracker v1.12.0".
func Version(ctx context.Context, bin string) string {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, bin, "--version").Output()
	for _, l := range strings.Split(string(out), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			return l
		}
	}
	return ""
}

// ProbeKVM runs the shared kvm probe, test-booting kernel with QEMU when
// QEMU is installed (Firecracker itself cannot be asked without a guest).
// ctx bounds it; the probe scales its own deadline.
func ProbeKVM(ctx context.Context, kernel string) kvm.Result {
	return kvm.Probe(ctx, kvm.Options{QEMU: hostbin.QEMU.Path(), Kernel: kernel})
}

// KVMUsable says whether Firecracker may run on k (backendsel owns the
// policy).
func KVMUsable(k kvm.Result, explicit bool) bool { return backendsel.FirecrackerKVM(k, explicit) }

// New finds Firecracker and checks KVM.
func New(opts Options) (*Backend, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	bin, err := FindBinary(opts.Bin)
	if err != nil {
		return nil, err
	}
	b := &Backend{bin: bin, jailer: opts.Jailer, cacheDir: opts.CacheDir, port: opts.VsockPort, log: log, run: execRunner,
		leases: defaultNetLeases()}
	if b.cacheDir == "" {
		b.cacheDir = paths.CacheDir()
	}
	if b.port == 0 {
		b.port = DefaultVsockPort
	}
	if b.jailer == nil {
		if b.jailer, err = JailerFromEnv(); err != nil {
			return nil, err
		}
	}
	if opts.KVM != nil {
		b.kvm = *opts.KVM
	} else {
		b.kvm = ProbeKVM(context.Background(), opts.ProbeKernel)
	}
	if !KVMUsable(b.kvm, opts.Explicit) {
		return nil, errdefs.New(errdefs.ErrFailedPrecondition,
			"firecracker needs a working KVM (see 'pyro doctor'); use --backend qemu, which falls back to TCG",
			"firecracker cannot run here: KVM is %s: %s", b.kvm.Verdict, b.kvm.Reason)
	}
	b.version = Version(context.Background(), bin)
	log.Debug("firecracker backend", "bin", bin, "version", b.version, "kvm", b.kvm.Verdict, "jailer", b.jailer != nil)
	return b, nil
}

// Binary is the Firecracker executable in use.
func (b *Backend) Binary() string { return b.bin }

// FirecrackerVersion is what `firecracker --version` printed.
func (b *Backend) FirecrackerVersion() string { return b.version }

// KVM is the probe result the backend was accepted on.
func (b *Backend) KVM() kvm.Result { return b.kvm }

// Capabilities implements vmm.Backend.
func (b *Backend) Capabilities() vmm.Capabilities {
	return vmm.Capabilities{
		Kind: vmm.KindFirecracker, Accel: "kvm", Isolated: true, Network: canAdminNet(), Channel: "vsock",
		Persistent: true, MaxVCPUs: min(32, runtime.NumCPU()), MaxMemMiB: vmm.MaxGuestMemMiB(),
		Description: "Firecracker microVM under KVM (read-only base + overlay on a scratch disk, vsock agent channel)",
	}
}

// Plan returns what Start would do for spec, without touching the host
// (for logs, dry runs and tests). Kernel paths are used as given.
func (b *Backend) Plan(spec vmm.MachineSpec) (*Plan, error) {
	return BuildPlan(spec, planConfig{VsockPort: b.port})
}

// Start implements vmm.Backend. ctx bounds only the start-up; Firecracker
// (and the jailer) get Pdeathsig SIGKILL, so they die with the caller.
// Whatever Start made (jail directory, TAP, subnet lease, log FIFO) is
// removed on every early return, and when the machine exits.
func (b *Backend) Start(ctx context.Context, spec vmm.MachineSpec) (vmm.Machine, error) {
	if err := checkSpec(spec); err != nil {
		return nil, err
	}
	if spec.Restore != nil {
		// A restore configures nothing but the snapshot (snapshot.go): the
		// kernel is in the saved memory.
		if err := checkRestore(spec); err != nil {
			return nil, err
		}
	} else {
		if spec.Network && !canAdminNet() {
			return nil, errNoNetAdmin()
		}
		kernel, err := vmlinux.Cached(b.cacheDir, spec.Kernel)
		if err != nil {
			return nil, errdefs.Wrap(errdefs.ErrFailedPrecondition, err, "firecracker needs an uncompressed vmlinux; reinstall the environment with 'pyro env pull'", "guest kernel")
		}
		spec.Kernel = kernel
	}

	m := &machine{dir: spec.Dir, port: b.port, log: b.log, run: b.run, leases: b.leases}
	started := false
	defer func() {
		if !started {
			m.cleanup()
		}
	}()
	cfg := planConfig{VsockPort: b.port}
	var argv []string
	var err error
	owner, group := -1, -1
	logFIFO := filepath.Join(spec.Dir, LogFIFO)
	if j := b.jailer; j != nil {
		jid := "pyro-" + spec.ID
		root := j.ChrootDir(b.bin, jid)
		m.jailDir = filepath.Dir(root)
		_ = os.RemoveAll(m.jailDir)
		if err := os.MkdirAll(root, 0o750); err != nil {
			return nil, fmt.Errorf("creating the jailer chroot: %w", err)
		}
		if cfg.Root, err = j.stageAll(root, spec); err != nil {
			return nil, err
		}
		cfg.SockDir = root
		m.jailRoot = root
		argv = append([]string{j.Bin}, j.Args(b.bin, jid)...)
		owner, group = j.UID, j.GID
		logFIFO = filepath.Join(root, LogFIFO)
	}
	// Firecracker's own log: the guest can make it warn, so it goes
	// through a FIFO into a capped file like the console.
	if m.fcLog, err = vmm.StartLogFIFO(logFIFO, filepath.Join(spec.Dir, LogFile), 0, owner, group); err != nil {
		return nil, err
	}
	if spec.Network {
		if cfg.Net, err = b.setupNetwork(ctx, spec.ID, owner); err != nil {
			return nil, err
		}
		m.net = cfg.Net
	}
	plan, err := BuildPlan(spec, cfg)
	if err != nil {
		return nil, err
	}
	m.plan = plan
	if cfg.Root == nil {
		if err := stageDrives(spec.Dir, spec); err != nil {
			return nil, err
		}
	}
	if err := writeMachine(spec.Dir, machineRecord{APISocket: plan.APISocket, Jail: m.jailRoot, Network: spec.Network}); err != nil {
		return nil, errdefs.Wrap(errdefs.ErrInternal, err, "check that the runtime directory is writable", "recording the machine")
	}
	if argv == nil {
		argv = []string{b.bin, "--api-sock", plan.APISocket, "--id", "pyro-" + spec.ID, "--log-path", logFIFO, "--level", "Warning"}
	}
	for _, s := range []string{plan.APISocket, plan.VsockUDS} {
		_ = os.Remove(s)
	}

	// The guest's serial console is Firecracker's stdout.
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = spec.Dir
	if spec.Console != "" {
		if m.console, err = vmm.StartConsole(spec.Console, 0); err != nil {
			return nil, err
		}
		defer m.console.CloseWriter()
		cmd.Stdout = m.console.Writer()
	}
	stderrPath := filepath.Join(spec.Dir, StderrFile)
	stderr, err := os.OpenFile(stderrPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("creating firecracker stderr file: %w", err)
	}
	defer stderr.Close()
	cmd.Stderr = stderr
	b.log.Debug("starting firecracker", "id", spec.ID, "argv", argv)
	if m.proc, err = vmm.StartProcess(cmd, "firecracker", stderrPath, m.cleanup); err != nil {
		return nil, errdefs.Wrap(errdefs.ErrUnavailable, err, "check that "+argv[0]+" runs", "starting firecracker")
	}
	started = true // from here the process's exit cleans up

	fail := func(err error, what string) (vmm.Machine, error) {
		_ = m.Kill()
		if ctx.Err() != nil {
			return nil, errdefs.Wrap(errdefs.ErrTimeout, ctx.Err(), "", "%s", what)
		}
		return nil, errdefs.Wrap(errdefs.ErrUnavailable, err, "see "+stderrPath+" and "+filepath.Join(spec.Dir, LogFile), "%s", what)
	}
	api := NewClient(plan.APISocket)
	m.api = api
	if err := api.WaitReady(ctx, m.proc.Done()); err != nil {
		return fail(errors.Join(err, tailErr(stderrPath)), "waiting for the firecracker API")
	}
	if spec.Restore != nil {
		root := cfg.Root
		if root == nil {
			root = func(p string) string { return p }
		}
		if err := m.restore(ctx, spec, root); err != nil {
			_ = m.Kill()
			return nil, err
		}
		return m, nil
	}
	if err := Boot(ctx, api, plan.Requests); err != nil {
		return fail(err, "configuring firecracker")
	}
	return m, nil
}

// setupNetwork allocates the VM's subnet and builds its TAP and rules,
// holding the lease lock until the TAP exists.
func (b *Backend) setupNetwork(ctx context.Context, id string, owner int) (*NetPlan, error) {
	p, unlock, err := b.leases.allocate(ctx, id)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := p.Setup(ctx, b.run, owner); err != nil {
		b.leases.release(p)
		return nil, err
	}
	return p, nil
}

// Boot sends the plan's requests in order, stopping at the first error.
func Boot(ctx context.Context, api *Client, reqs []Request) error {
	for _, r := range reqs {
		if err := api.Send(ctx, r); err != nil {
			return fmt.Errorf("step %s: %w", r.Step, err)
		}
	}
	return nil
}

type machine struct {
	dir     string
	proc    *vmm.Process
	api     *Client
	plan    *Plan
	net     *NetPlan
	leases  netLeases
	jailDir string
	// jailRoot is the jailer's chroot ("" without the jailer).
	jailRoot string
	console  *vmm.Console
	fcLog    *vmm.Console
	port     uint32
	log      *slog.Logger
	run      runner

	once sync.Once
}

var _ vmm.Machine = (*machine)(nil)

func (m *machine) Pid() int { return m.proc.Pid() }

// done is closed once Firecracker exited (never, before it started).
func (m *machine) done() <-chan struct{} {
	if m.proc == nil {
		return nil
	}
	return m.proc.Done()
}

// AgentConn dials the agent through the vsock device, retrying while the
// guest boots.
func (m *machine) AgentConn(ctx context.Context) (io.ReadWriteCloser, error) {
	c, err := DialVsock(ctx, m.plan.VsockUDS, m.port, m.done())
	if err != nil {
		select {
		case <-m.done():
			return nil, errdefs.Wrap(errdefs.ErrUnavailable, err, "see "+filepath.Join(m.dir, StderrFile), "firecracker exited before the agent connected")
		default:
		}
		if ctx.Err() != nil {
			return nil, errdefs.Wrap(errdefs.ErrTimeout, err, "", "connecting to the guest agent over vsock")
		}
		return nil, errdefs.Wrap(errdefs.ErrUnavailable, err, "", "connecting to the guest agent over vsock")
	}
	return c, nil
}

// Shutdown asks the guest to stop (SendCtrlAltDel, x86 only) and kills
// Firecracker if it has not exited by ctx's deadline. The engine normally
// stops a guest through the agent first; this is the VMM-level fallback.
func (m *machine) Shutdown(ctx context.Context) error {
	if m.api != nil {
		_ = m.api.Do(ctx, http.MethodPut, "/actions", InstanceActionInfo{ActionType: ActionSendCtrlAltDel}, nil)
	}
	select {
	case <-m.done():
		return nil
	case <-ctx.Done():
		return m.Kill()
	}
}

// Wait blocks until Firecracker exits. A guest reboot (our power-off) is a
// clean exit.
func (m *machine) Wait() error { return m.proc.Wait() }

// Kill ends Firecracker's process group at once and reaps it.
func (m *machine) Kill() error { return m.proc.Kill() }

// cleanup removes what Start made: the TAP, its set element and subnet
// lease, the jail directory (the staged hard links, never the files they
// point at), and stops the log copies. It runs once: on an early return of
// Start, else when Firecracker exits.
func (m *machine) cleanup() {
	m.once.Do(func() {
		if m.api != nil {
			m.api.Close()
		}
		if m.net != nil {
			m.net.Teardown(context.Background(), m.run)
			m.leases.release(m.net)
		}
		if m.console != nil {
			m.console.Stop()
		}
		if m.fcLog != nil {
			m.fcLog.Stop()
		}
		if m.jailDir != "" {
			_ = os.RemoveAll(m.jailDir)
		}
	})
}

func tailErr(path string) error {
	if t := vmm.LastLine(path); t != "" {
		return errors.New(t)
	}
	return nil
}
