package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/pyro-mcp/pyro/internal/admission"
	"github.com/pyro-mcp/pyro/internal/agentproto"
	"github.com/pyro-mcp/pyro/internal/backendsel"
	"github.com/pyro-mcp/pyro/internal/catalog"
	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/state"
	"github.com/pyro-mcp/pyro/internal/vmm"
)

// vmRecord is what a VM's record.json holds.
type vmRecord struct {
	ID              string `json:"id"`
	Kind            string `json:"kind"` // kindVM or kindWorkspace
	Environment     string `json:"environment"`
	VCPUCount       int    `json:"vcpu_count"`
	MemMiB          int    `json:"mem_mib"`
	TTLSeconds      int    `json:"ttl_seconds"`
	Network         bool   `json:"network"`
	AllowHostCompat bool   `json:"allow_host_compat"`
	Mode            string `json:"execution_mode"`
	Backend         string `json:"backend"`
	// BackendKind is the VMM the guest boots with ("qemu", "firecracker";
	// empty in older records means qemu), fixed at create time so that
	// every start of the VM uses the same one (its disk depends on it).
	BackendKind   string             `json:"backend_kind,omitempty"`
	State         string             `json:"state"`
	CreatedAt     time.Time          `json:"created_at"`
	ExpiresAt     time.Time          `json:"expires_at"`
	StartedAt     *time.Time         `json:"started_at,omitempty"`
	BootMs        int64              `json:"boot_ms,omitempty"`
	SupervisorPID int                `json:"supervisor_pid,omitempty"`
	VMMPid        int                `json:"vmm_pid,omitempty"`
	Env           *catalog.Installed `json:"env,omitempty"`
	Disk          string             `json:"disk,omitempty"`
	// Workspace is set on workspaces only.
	Workspace *wsState `json:"workspace,omitempty"`
}

const (
	kindVM        = "vm"
	kindWorkspace = "workspace"
)

func (r *vmRecord) view(running bool, note string) *VM {
	v := &VM{
		VMID: r.ID, Environment: r.Environment, State: r.State, VCPUCount: r.VCPUCount, MemMiB: r.MemMiB,
		TTLSeconds: r.TTLSeconds, Network: r.Network, AllowHostCompat: r.AllowHostCompat,
		ExecutionMode: r.Mode, Backend: r.Backend, CreatedAt: r.CreatedAt, ExpiresAt: r.ExpiresAt,
		StartedAt: r.StartedAt, BootMs: r.BootMs, Running: running, Note: note,
	}
	if running {
		v.VMMPid = r.VMMPid
	}
	return v
}

// CreateVM records a new VM and prepares its disk; it does not boot it.
// The environment is pulled (or built) first if it is not installed.
func (e *Engine) CreateVM(ctx context.Context, o CreateOptions) (*VM, error) {
	rec, err := e.createRecord(ctx, kindVM, o)
	if err != nil {
		return nil, err
	}
	return rec.view(false, ""), nil
}

func (e *Engine) createRecord(ctx context.Context, kind string, o CreateOptions) (*vmRecord, error) {
	if err := e.validateCreate(&o); err != nil {
		return nil, err
	}
	mode, inst, err := e.chooseMode(ctx, o)
	if err != nil {
		return nil, err
	}
	var vkind vmm.Kind
	if mode == ModeGuest {
		if vkind, err = e.guestKind(ctx, inst.KernelPath); err != nil {
			return nil, err
		}
	}
	// Expired VMs and workspaces hold memory and disk: creating is a good
	// moment to collect them, so a TTL holds even if nobody runs reap.
	if _, err := e.ReapExpired(ctx); err != nil {
		e.log.Warn("reaping expired objects", "err", err)
	}
	st := e.storeOf(kind)
	id := state.NewID()
	dir, err := st.Create(id)
	if err != nil {
		return nil, err
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	rec := &vmRecord{
		ID: id, Kind: kind, Environment: o.Environment, VCPUCount: o.VCPUCount, MemMiB: o.MemMiB, TTLSeconds: o.TTLSeconds,
		Network: o.Network, AllowHostCompat: o.AllowHostCompat, Mode: mode, State: StateCreated,
		CreatedAt: now, ExpiresAt: now.Add(time.Duration(o.TTLSeconds) * time.Second), Env: inst,
	}
	probe := ""
	if inst != nil {
		probe = inst.KernelPath
	}
	rec.BackendKind = string(vkind)
	rec.Backend = e.backendName(ctx, mode, vkind, probe)
	if mode == ModeGuest {
		if err := e.catalog.Acquire(id, inst); err != nil {
			st.Remove(id)
			return nil, err
		}
		rec.Disk = filepath.Join(dir, diskName(vkind))
		if err := createDisk(ctx, vkind, inst, rec.Disk); err != nil {
			e.catalog.Release(id)
			st.Remove(id)
			return nil, err
		}
	} else if err := os.MkdirAll(filepath.Join(dir, "hostroot"), 0o700); err != nil {
		st.Remove(id)
		return nil, err
	}
	if err := st.Write(id, rec); err != nil {
		e.catalog.Release(id)
		st.Remove(id)
		return nil, err
	}
	e.log.Info(kind+" created", "id", id, "environment", o.Environment, "mode", mode)
	return rec, nil
}

// chooseMode picks guest or host_compat: host_compat only when the caller
// allowed it AND no guest can boot here.
func (e *Engine) chooseMode(ctx context.Context, o CreateOptions) (string, *catalog.Installed, error) {
	if e.opts.Backend == "host_compat" {
		if !o.AllowHostCompat {
			return "", nil, errdefs.New(errdefs.ErrInvalidArgument, "pass --allow-host-compat (allow_host_compat=true) to run on the host without isolation",
				"backend host_compat was requested but host compatibility is not allowed")
		}
		return ModeHostCompat, nil, nil
	}
	guestErr := e.guestTools()
	var inst *catalog.Installed
	if guestErr == nil {
		var err error
		inst, err = e.catalog.Pull(ctx, o.Environment)
		if err != nil {
			if ctx.Err() != nil || !o.AllowHostCompat {
				return "", nil, err
			}
			guestErr = err
		}
	}
	if guestErr == nil {
		return ModeGuest, inst, nil
	}
	if o.AllowHostCompat && e.opts.Backend != BackendQEMU && e.opts.Backend != BackendFirecracker {
		e.log.Warn("no guest can boot here; running on the host WITHOUT isolation (allow_host_compat)", "reason", guestErr)
		return ModeHostCompat, nil, nil
	}
	return "", nil, guestErr
}

func createOverlay(ctx context.Context, base, disk string) error {
	out, err := exec.CommandContext(ctx, "qemu-img", "create", "-q", "-f", "qcow2", "-b", base, "-F", "raw", disk).CombinedOutput()
	if err != nil {
		return errdefs.Wrap(errdefs.ErrInternal, err, "check free disk space and 'pyro doctor'", "creating the VM disk: %s", bytes.TrimSpace(out))
	}
	return nil
}

func (e *Engine) load(ref string) (*vmRecord, error) {
	id, err := e.vms.Resolve(ref)
	if err != nil {
		return nil, err
	}
	var rec vmRecord
	if err := e.vms.Read(id, &rec); err != nil {
		return nil, err
	}
	return &rec, nil
}

// locked resolves ref in st, takes its lock and reads its record. The
// caller must call unlock.
func (e *Engine) locked(st *state.Store, ref string) (rec *vmRecord, unlock func(), err error) {
	id, err := st.Resolve(ref)
	if err != nil {
		return nil, nil, err
	}
	lock, err := st.Lock(id)
	if err != nil {
		return nil, nil, err
	}
	rec = &vmRecord{}
	if err := st.Read(id, rec); err != nil {
		lock.Unlock()
		return nil, nil, err
	}
	return rec, lock.Unlock, nil
}

// StartVM boots a created or stopped VM and waits for its agent.
func (e *Engine) StartVM(ctx context.Context, ref string) (*VM, error) {
	rec, unlock, err := e.locked(e.vms, ref)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := e.startLocked(ctx, rec); err != nil {
		return nil, err
	}
	return rec.view(true, ""), nil
}

// startLocked boots rec unless it is already running. The caller holds its lock.
func (e *Engine) startLocked(ctx context.Context, rec *vmRecord) error {
	if rec.State == StateDeleting {
		return errdefs.New(errdefs.ErrFailedPrecondition, "", "vm %s is being deleted", rec.ID)
	}
	if e.alive(rec) {
		return nil
	}
	release, err := admission.Boot(ctx, e.opts.CacheDir)
	if err != nil {
		return err
	}
	ready, pid, err := e.spawnSupervisor(ctx, rec)
	release()
	if err != nil {
		return err
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	rec.State = StateRunning
	rec.StartedAt = &now
	rec.BootMs = ready.BootMs
	rec.SupervisorPID = pid
	rec.VMMPid = ready.VMMPid
	backendsel.RecordBoot(ready.Kind, ready.Accel, rec.Env, ready.BootMs)
	if err := e.storeOf(rec.Kind).Write(rec.ID, rec); err != nil {
		return err
	}
	e.log.Info("vm started", "vm_id", rec.ID, "boot_ms", ready.BootMs)
	return nil
}

// StatusVM reports a VM, checking whether its processes are really alive.
func (e *Engine) StatusVM(ctx context.Context, ref string) (*VM, error) {
	rec, err := e.load(ref)
	if err != nil {
		return nil, err
	}
	running, note := e.liveness(rec)
	return rec.view(running, note), nil
}

func (e *Engine) liveness(rec *vmRecord) (bool, string) {
	if e.alive(rec) {
		return true, ""
	}
	if rec.State == StateRunning {
		rec.State = StateExited
		return false, "the VM process is gone (killed or the host rebooted); start it again"
	}
	return false, ""
}

// ListVMs lists every VM.
func (e *Engine) ListVMs(ctx context.Context) ([]*VM, error) {
	ids, err := e.vms.IDs()
	if err != nil {
		return nil, err
	}
	out := []*VM{}
	for _, id := range ids {
		var rec vmRecord
		if err := e.vms.Read(id, &rec); err != nil {
			continue
		}
		running, note := e.liveness(&rec)
		out = append(out, rec.view(running, note))
	}
	return out, nil
}

// ExecVM runs one command in a VM (starting it first if needed), then
// deletes the VM: the contract's exec_vm auto-cleans.
func (e *Engine) ExecVM(ctx context.Context, ref string, o ExecOptions, stdout, stderr io.Writer) (*VMExecResult, error) {
	if err := validateExec(&o); err != nil {
		return nil, err
	}
	rec, err := e.load(ref)
	if err != nil {
		return nil, err
	}
	defer e.cleanup(rec.ID)
	if !e.alive(rec) {
		if _, err := e.StartVM(ctx, rec.ID); err != nil {
			return nil, err
		}
		if rec, err = e.load(rec.ID); err != nil {
			return nil, err
		}
	}
	res, err := e.exec(ctx, rec, o, stdout, stderr)
	if err != nil {
		return nil, err
	}
	return &VMExecResult{VMID: rec.ID, Environment: rec.Environment, ExecutionMode: rec.Mode, Backend: rec.Backend, ExecResult: *res, Cleaned: true}, nil
}

// cleanup deletes a VM even when the caller's context is cancelled (Ctrl-C).
func (e *Engine) cleanup(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := e.DeleteVM(ctx, id); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
		e.log.Warn("cleaning up vm", "vm_id", id, "err", err)
	}
}

// exec runs one command over the supervisor's socket.
func (e *Engine) exec(ctx context.Context, rec *vmRecord, o ExecOptions, stdout, stderr io.Writer) (*ExecResult, error) {
	c, err := e.dial(ctx, rec)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	req := agentproto.ExecRequest{Argv: o.Command, Shell: o.Shell, Cwd: o.Cwd, Env: o.Env, TimeoutMs: int64(o.TimeoutSeconds) * 1000,
		Sync: rec.Kind == kindWorkspace}
	var outBuf, errBuf bytes.Buffer
	outW, errW := io.Writer(&outBuf), io.Writer(&errBuf)
	if stdout != nil {
		outW = io.MultiWriter(&outBuf, stdout)
	}
	if stderr != nil {
		errW = io.MultiWriter(&errBuf, stderr)
	}
	// The guest enforces the timeout; the host deadline only catches a guest
	// that stopped answering.
	ectx, cancel := context.WithTimeout(ctx, time.Duration(o.TimeoutSeconds)*time.Second+30*time.Second)
	defer cancel()
	r, err := c.Exec(ectx, req, nil, outW, errW)
	if err != nil {
		if ctx.Err() == nil && ectx.Err() != nil {
			return nil, errdefs.Wrap(errdefs.ErrTimeout, err, "the guest stopped answering; check 'pyro vm status'", "exec in vm %s", rec.ID)
		}
		return nil, err
	}
	return &ExecResult{
		ExitCode: r.ExitCode, Stdout: outBuf.String(), Stderr: errBuf.String(),
		StdoutTruncated: r.StdoutTruncated, StderrTruncated: r.StderrTruncated,
		TimedOut: r.TimedOut, Message: r.Message, DurationMs: r.DurationMs,
	}, nil
}

// dial connects to a running VM's supervisor.
func (e *Engine) dial(ctx context.Context, rec *vmRecord) (*agentproto.Client, error) {
	conn, err := dialUnix(ctx, filepath.Join(e.runDir(rec.ID), "ctl.sock"))
	if err != nil {
		return nil, errdefs.Wrap(errdefs.ErrUnavailable, err, "start it again ('pyro vm start' or the next workspace exec)", "vm %s is not running", rec.ID)
	}
	hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := agentproto.NewClient(hctx, conn)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// StopVM powers a VM off; its disk stays.
func (e *Engine) StopVM(ctx context.Context, ref string) (*VM, error) {
	rec, unlock, err := e.locked(e.vms, ref)
	if err != nil {
		return nil, err
	}
	defer unlock()
	e.stopLocked(ctx, rec)
	rec.State = StateStopped
	if err := e.vms.Write(rec.ID, rec); err != nil {
		return nil, err
	}
	return rec.view(false, ""), nil
}

// stopLocked asks the guest to power off, then kills what is left after a
// deadline. The caller holds the lock.
func (e *Engine) stopLocked(ctx context.Context, rec *vmRecord) {
	if e.alive(rec) {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		if c, err := e.dial(sctx, rec); err == nil {
			c.Shutdown(sctx)
			c.Close()
		}
		cancel()
		deadline := time.Now().Add(10 * time.Second)
		for e.alive(rec) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
	}
	e.killProcesses(rec)
	os.RemoveAll(e.runDir(rec.ID))
}

// DeleteVM stops a VM and removes its disk and state.
func (e *Engine) DeleteVM(ctx context.Context, ref string) (*DeleteResult, error) {
	id, err := e.vms.Resolve(ref)
	if err != nil {
		return nil, err
	}
	if err := e.remove(ctx, e.vms, id); err != nil {
		return nil, err
	}
	return &DeleteResult{VMID: id, Deleted: true}, nil
}

// remove stops an object of st and deletes its directory (disk, logs, state).
func (e *Engine) remove(ctx context.Context, st *state.Store, id string) error {
	lock, err := st.Lock(id)
	if err != nil {
		return err
	}
	defer lock.Unlock()
	var rec vmRecord
	if err := st.Read(id, &rec); err != nil {
		return err
	}
	rec.State = StateDeleting
	st.Write(id, &rec)
	// The disk goes away with the record, so there is nothing to flush:
	// kill at once instead of a graceful power-off.
	e.killProcesses(&rec)
	os.RemoveAll(e.runDir(rec.ID))
	if err := st.Remove(id); err != nil {
		return fmt.Errorf("removing %s %s: %w", st.Kind, id, err)
	}
	e.catalog.Release(id)
	e.log.Info(st.Kind+" deleted", "id", id)
	return nil
}

// NetworkInfo describes a VM's network.
func (e *Engine) NetworkInfo(ctx context.Context, ref string) (*NetworkInfo, error) {
	rec, err := e.load(ref)
	if err != nil {
		return nil, err
	}
	ni := &NetworkInfo{VMID: rec.ID, Network: rec.Network, Mode: "none"}
	switch {
	case rec.Mode == ModeHostCompat:
		ni.Mode, ni.HostLoopbackReachable = "host", true
	case rec.Network:
		ni.Mode, ni.GuestIP, ni.Gateway, ni.DNS = "user", guestIP, guestGateway, []string{guestDNS}
	}
	if e.alive(rec) {
		if c, err := e.dial(ctx, rec); err == nil {
			if p, err := c.Ping(ctx); err == nil {
				ni.Addresses = p.Addresses
			}
			c.Close()
		}
	}
	return ni, nil
}

// ReapExpired stops and deletes every VM and workspace past its TTL.
func (e *Engine) ReapExpired(ctx context.Context) (*ReapResult, error) {
	res := &ReapResult{Reaped: []string{}}
	now := time.Now()
	for _, st := range []*state.Store{e.vms, e.wss} {
		ids, err := st.IDs()
		if err != nil {
			return nil, err
		}
		for _, id := range ids {
			var rec vmRecord
			if err := st.Read(id, &rec); err != nil || rec.ExpiresAt.IsZero() || now.Before(rec.ExpiresAt) {
				continue
			}
			if err := e.remove(ctx, st, id); err == nil {
				res.Reaped = append(res.Reaped, id)
			}
		}
	}
	res.Count = len(res.Reaped)
	return res, nil
}

// Run is the one-shot path: create, start, exec, delete — the VM is gone
// afterwards whatever happened, Ctrl-C included.
func (e *Engine) Run(ctx context.Context, o RunOptions, stdout, stderr io.Writer) (*RunResult, error) {
	start := time.Now()
	if err := e.validateCreate(&o.CreateOptions); err != nil {
		return nil, err
	}
	if err := validateExec(&o.ExecOptions); err != nil {
		return nil, err
	}
	rec, err := e.createRecord(ctx, kindVM, o.CreateOptions)
	if err != nil {
		return nil, err
	}
	defer e.cleanup(rec.ID)
	lock, err := e.vms.Lock(rec.ID)
	if err != nil {
		return nil, err
	}
	err = e.startLocked(ctx, rec)
	lock.Unlock()
	if err != nil {
		return nil, err
	}
	res, err := e.exec(ctx, rec, o.ExecOptions, stdout, stderr)
	if err != nil {
		return nil, err
	}
	cmd := o.Command
	if o.Shell != "" {
		cmd = []string{"/bin/sh", "-c", o.Shell}
	}
	return &RunResult{
		Environment: rec.Environment, VMID: rec.ID, ExecutionMode: rec.Mode, Backend: rec.Backend,
		VCPUCount: rec.VCPUCount, MemMiB: rec.MemMiB, Network: rec.Network, Command: cmd,
		ExecResult: *res, BootMs: rec.BootMs, TotalMs: time.Since(start).Milliseconds(),
	}, nil
}

// The addresses QEMU's user-mode network gives a guest.
const (
	guestIP      = "10.0.2.15"
	guestGateway = "10.0.2.2"
	guestDNS     = "10.0.2.3"
)
