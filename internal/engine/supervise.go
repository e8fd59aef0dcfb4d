package engine

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pyro-mcp/pyro/api"
	"github.com/pyro-mcp/pyro/internal/admission"
	"github.com/pyro-mcp/pyro/internal/agentproto"
	"github.com/pyro-mcp/pyro/internal/benchprof"
	"github.com/pyro-mcp/pyro/internal/catalog"
	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/initramfs"
	"github.com/pyro-mcp/pyro/internal/proctree"
	"github.com/pyro-mcp/pyro/internal/progress"
	"github.com/pyro-mcp/pyro/internal/supervisor"
	"github.com/pyro-mcp/pyro/internal/version"
	"github.com/pyro-mcp/pyro/internal/vmm"
)

// SuperviseCommand is the hidden pyro verb a supervisor process runs as.
const SuperviseCommand = "__supervise"

// superviseConfig is written by the engine and read by the supervisor.
type superviseConfig struct {
	Mode        string          `json:"execution_mode"`
	Backend     string          `json:"backend"`
	Kind        vmm.Kind        `json:"backend_kind,omitempty"`
	Spec        vmm.MachineSpec `json:"spec"`
	ControlSock string          `json:"control_sock"`
	BootTimeout time.Duration   `json:"boot_timeout"`
	ExpiresAt   time.Time       `json:"expires_at"`
	// Identity is given to a restored guest before it is ready (warm.go).
	Identity *agentproto.IdentityRequest `json:"identity,omitempty"`
	// LaunchedAt is when the engine started the supervisor: its ready
	// report times its own start-up from it.
	LaunchedAt time.Time `json:"launched_at,omitempty"`
}

// supervisorBinary is the pyro binary to run supervisors with:
// Options.Binary, else this executable.
func (e *Engine) supervisorBinary() (string, error) {
	if e.opts.Binary != "" {
		return e.opts.Binary, nil
	}
	return os.Executable()
}

// spawnSupervisor boots rec's machine through a new supervisor: from its
// saved state when it has one (a template clone's first boot, a suspended
// workspace: warm.go), else cold.
func (e *Engine) spawnSupervisor(ctx context.Context, rec *vmRecord) (*supervisor.Ready, int, error) {
	dir := e.storeOf(rec.Kind).Path(rec.ID)
	run := e.runDir(rec.ID)
	done := e.timed("boot.spec")
	spec, err := e.coldSpec(ctx, rec, dir, run)
	if err != nil {
		return nil, 0, err
	}
	cfg := superviseConfig{
		Mode: rec.ExecutionMode, Backend: e.opts.Backend, Kind: vmm.Kind(rec.BackendKind), Spec: *spec, ControlSock: filepath.Join(run, "ctl.sock"),
		BootTimeout: e.opts.BootTimeout, ExpiresAt: rec.ExpiresAt,
	}
	if err := e.restoreSpec(ctx, rec, &cfg); err != nil {
		return nil, 0, err
	}
	done()
	done = e.timed("admission")
	release, err := e.admit(ctx, cfg.Spec)
	if err != nil {
		return nil, 0, err
	}
	defer release()
	done()
	return e.launch(ctx, dir, cfg)
}

// admit waits for a slot to start spec in (internal/admission): a
// restore from a template takes a restore slot, which never waits behind
// the host's cold boots; a boot, or a resume (which reads all of the
// machine's memory), a boot slot.
func (e *Engine) admit(ctx context.Context, spec vmm.MachineSpec) (func(), error) {
	if r := spec.Restore; r != nil && r.IgnoreShared {
		return admission.Restore(ctx, e.opts.CacheDir)
	}
	return admission.Boot(ctx, e.opts.CacheDir)
}

// coldSpec is the machine that boots rec from its disks.
func (e *Engine) coldSpec(ctx context.Context, rec *vmRecord, dir, run string) (*vmm.MachineSpec, error) {
	spec := vmm.MachineSpec{
		ID: rec.ID[:12], Dir: run, VCPUs: rec.VCPUCount, MemMiB: rec.MemMiB, Network: rec.Network, NetPolicy: rec.netPolicySpec(),
		Console: filepath.Join(dir, "console.log"),
	}
	op := progress.From(ctx)
	if rec.ExecutionMode == api.ModeHostCompat {
		spec.WorkDir = filepath.Join(dir, "hostroot")
	} else {
		op.PhaseStep(phaseBoot, "initramfs")
		img, err := e.initramfs(ctx, rec.Env)
		if err != nil {
			return nil, err
		}
		spec.Kernel, spec.Initrd = rec.Env.KernelPath, img.Path
		if err := e.guestSpec(rec, &spec, oneShot(ctx)); err != nil {
			return nil, err
		}
	}
	return &spec, nil
}

// initramfs builds (or finds) the initramfs guests of env boot with.
func (e *Engine) initramfs(ctx context.Context, env *catalog.Installed) (*initramfs.Image, error) {
	agent, err := initramfs.FindAgent(e.opts.CacheDir, e.opts.AgentBinary, e.opts.Binary, agentproto.AgentVersion())
	if err != nil {
		return nil, err
	}
	return initramfs.Resolve(ctx, e.opts.CacheDir, agent, env.ModulesPath)
}

// launch starts a supervisor for cfg in the state directory dir and waits
// for its report: the guest ready, or why not.
func (e *Engine) launch(ctx context.Context, dir string, cfg superviseConfig) (*supervisor.Ready, int, error) {
	done := e.timed("boot.launch")
	run := cfg.Spec.Dir
	os.RemoveAll(run)
	if err := os.MkdirAll(run, 0o700); err != nil {
		return nil, 0, fmt.Errorf("creating runtime directory: %w", err)
	}
	op := progress.From(ctx)
	cfg.LaunchedAt = time.Now()
	data, _ := json.MarshalIndent(cfg, "", "  ")
	cfgPath := filepath.Join(dir, "supervisor.json")
	if err := os.WriteFile(cfgPath, data, 0o600); err != nil {
		return nil, 0, err
	}
	exe, err := e.supervisorBinary()
	if err != nil {
		return nil, 0, err
	}
	logf, err := os.OpenFile(filepath.Join(dir, "supervisor.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, 0, err
	}
	defer logf.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, 0, err
	}
	defer pr.Close()
	cmd := exec.Command(exe, SuperviseCommand, dir)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = []*os.File{pw}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		pw.Close()
		return nil, 0, fmt.Errorf("starting supervisor: %w", err)
	}
	pw.Close()
	pid := cmd.Process.Pid
	done()
	done = e.timed("boot.supervisor")
	op.PhaseStep(phaseBoot, "guest")
	// Reap the supervisor when it exits, for long-lived callers (MCP server).
	go cmd.Wait()

	got := make(chan *supervisor.Ready, 1)
	go func() {
		var r supervisor.Ready
		line, err := bufio.NewReader(pr).ReadBytes('\n')
		if err != nil || json.Unmarshal(line, &r) != nil {
			r = supervisor.Ready{Error: "supervisor exited before the guest was ready: " + tail(filepath.Join(dir, "supervisor.log"), 800)}
		}
		got <- &r
	}()
	readyWait := stretch(cfg.BootTimeout + readyMargin)
	readyDeadline := time.NewTimer(readyWait)
	defer readyDeadline.Stop()
	select {
	case r := <-got:
		if !r.OK {
			syscall.Kill(-pid, syscall.SIGKILL)
			// The supervisor's class and hint travel with its error; only a
			// failure that came without a hint gets the generic one.
			class, hint := errdefs.FromCode(r.ErrorCode), r.Hint
			if r.ErrorCode == "" {
				class = errdefs.ErrUnavailable
			}
			if hint == "" {
				hint = "run 'pyro doctor'; or allow host compatibility (`allow_host_compat`) to run on the host without isolation"
			}
			console := tail(filepath.Join(dir, "console.log"), 1500)
			msg := r.Error
			if console != "" {
				msg += "\n--- guest console (last lines) ---\n" + console
			}
			err := errdefs.New(class, hint, "booting the guest: %s", msg)
			if r.Restored {
				err = &restoreError{err: err}
			}
			return nil, 0, err
		}
		done()
		for _, t := range r.Timings {
			e.logTiming("supervisor."+t.Step, time.Duration(t.Ms*float64(time.Millisecond)))
		}
		if r.Identity != nil {
			e.logTiming("supervisor.identity.guest", time.Duration(r.Identity.TookMs)*time.Millisecond)
		}
		return r, pid, nil
	case <-ctx.Done():
		syscall.Kill(-pid, syscall.SIGKILL)
		return nil, 0, ctx.Err()
	case <-readyDeadline.C:
		// The supervisor enforces the boot timeout itself; one that says
		// nothing past it is stuck, and the record lock must not wait on it.
		proctree.KillDescendants(pid)
		syscall.Kill(-pid, syscall.SIGKILL)
		return nil, 0, errdefs.New(errdefs.ErrTimeout, "run 'pyro doctor'; the host may be overloaded",
			"booting the guest: the supervisor did not answer within %s", readyWait.Round(time.Second))
	}
}

// SupervisorProfile is the file in a VM's state directory where its
// supervisor writes the CPU profiles bench/ asks for (internal/benchprof).
const SupervisorProfile = "supervisor.pprof"

// RunSupervisor is the body of `pyro __supervise DIR`: fd 3 is the ready pipe.
func RunSupervisor(ctx context.Context, dir string, log *slog.Logger) error {
	start := time.Now()
	data, err := os.ReadFile(filepath.Join(dir, "supervisor.json"))
	if err != nil {
		return err
	}
	var cfg superviseConfig
	if err := json.Unmarshal(data, &cfg); err != nil {
		return err
	}
	ready := os.NewFile(3, "ready")
	if benchprof.Enabled() {
		go benchprof.Serve(filepath.Join(dir, SupervisorProfile), log)
	}
	b, err := newBackend(ctx, cfg.Mode, cfg.Kind, cfg.Spec.Kernel, log)
	if err != nil {
		if ready != nil {
			data, _ := json.Marshal(supervisor.Failed(err))
			ready.Write(append(data, '\n'))
			ready.Close()
		}
		return err
	}
	var before []supervisor.Timing
	if !cfg.LaunchedAt.IsZero() {
		before = []supervisor.Timing{{Step: "exec", Ms: msOf(start.Sub(cfg.LaunchedAt))}, {Step: "backend", Ms: msOf(time.Since(start))}}
	}
	return supervisor.Run(ctx, b, supervisor.Config{
		Before: before,
		Spec:   cfg.Spec, ControlSock: cfg.ControlSock, BootTimeout: cfg.BootTimeout, ExpiresAt: cfg.ExpiresAt,
		Software: "pyro " + version.Version, Logger: log, Identity: cfg.Identity,
		Recheck: expiryRecheck(dir, cfg.ControlSock),
		NetSock: filepath.Join(filepath.Dir(cfg.ControlSock), netSockName),
	}, ready)
}

// alive reports whether rec's supervisor process is running.
func (e *Engine) alive(rec *vmRecord) bool {
	return rec.SupervisorPID > 0 && isSupervisor(rec.SupervisorPID, rec.ID)
}

// isSupervisor checks pid is a live (not zombie) supervisor of id, so a
// recycled pid is never mistaken for ours.
func isSupervisor(pid int, id string) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	if i := strings.LastIndexByte(string(stat), ')'); i > 0 && i+2 < len(stat) && stat[i+2] == 'Z' {
		return false
	}
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return false
	}
	return strings.Contains(string(cmdline), SuperviseCommand) && strings.Contains(string(cmdline), id)
}

func (e *Engine) killProcesses(rec *vmRecord) {
	if rec.SupervisorPID > 0 && isSupervisor(rec.SupervisorPID, rec.ID) {
		// Its descendants first, while it is alive to hold them: a
		// host_compat supervisor is the subreaper of everything its
		// commands started, daemons included (proctree). A guest's
		// supervisor has only the VMM (and passt), each in a process
		// group of its own and killed with it (Pdeathsig); walking
		// /proc until a dying QEMU is gone cost a run ~45 ms.
		if rec.ExecutionMode == api.ModeHostCompat {
			proctree.KillDescendants(rec.SupervisorPID)
		}
		syscall.Kill(-rec.SupervisorPID, syscall.SIGKILL)
		syscall.Kill(rec.SupervisorPID, syscall.SIGKILL)
	}
	if rec.VMMPid > 0 && isVMM(rec.VMMPid, rec.ID) {
		syscall.Kill(-rec.VMMPid, syscall.SIGKILL)
		syscall.Kill(rec.VMMPid, syscall.SIGKILL)
	}
}

// isVMM checks pid is a live process whose command line names this VM's files.
func isVMM(pid int, id string) bool {
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	return err == nil && strings.Contains(string(cmdline), id[:12])
}

func dialUnix(ctx context.Context, path string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "unix", path)
}

// tail returns up to n bytes from the end of a file, trimmed to whole lines.
func tail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return ""
	}
	off := fi.Size() - n
	if off < 0 {
		off = 0
	}
	buf := make([]byte, fi.Size()-off)
	f.ReadAt(buf, off)
	s := string(buf)
	if off > 0 {
		if i := strings.IndexByte(s, '\n'); i >= 0 {
			s = s[i+1:]
		}
	}
	return strings.TrimSpace(s)
}
