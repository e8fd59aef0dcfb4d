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
	"strings"
	"time"

	"github.com/pyro-mcp/pyro/api"
	"github.com/pyro-mcp/pyro/internal/agentproto"
	"github.com/pyro-mcp/pyro/internal/backendsel"
	"github.com/pyro-mcp/pyro/internal/catalog"
	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/hostbin"
	"github.com/pyro-mcp/pyro/internal/progress"
	"github.com/pyro-mcp/pyro/internal/state"
	"github.com/pyro-mcp/pyro/internal/vmm"
	"github.com/pyro-mcp/pyro/internal/vmm/qemu"
)

// Phases of the operations that create and boot a guest.
const (
	phaseEnvironment = "environment"
	phaseDisk        = "disk"
	phaseBoot        = "boot"
	phaseExec        = "exec"
)

// CreateVM records a new VM and prepares its disk; it does not boot it.
// The environment is pulled (or built) first if it is not installed.
func (e *Engine) CreateVM(ctx context.Context, o api.CreateVMOptions) (*api.VM, error) {
	defer e.enter()()
	ctx, op := e.start(ctx, "vm create", phaseEnvironment, phaseDisk)
	if err := validateCreate(&o, api.DefaultVMTTLSeconds); err != nil {
		return nil, err
	}
	rec, err := e.createRecord(ctx, kindVM, o, false)
	if err != nil {
		return nil, err
	}
	op.Done()
	return rec.view(false, ""), nil
}

// createRecord makes a VM or workspace of validated options: it chooses
// where it runs, pulls its environment, and creates its directory, disk
// and record. It reports the environment and disk phases of the
// operation in ctx. A VM's disk is made from a template when one fits
// (warm.go); mayBuild lets it save the missing template first, for an
// operation that boots at once (a run).
func (e *Engine) createRecord(ctx context.Context, kind string, o api.CreateVMOptions, mayBuild bool) (*vmRecord, error) {
	op := progress.From(ctx)
	op.Describe(o.Environment, "")
	op.Phase(phaseEnvironment)
	done := e.timed("environment")
	mode, inst, err := e.chooseMode(ctx, o)
	if err != nil {
		return nil, err
	}
	done()
	done = e.timed("backend")
	var vkind vmm.Kind
	if mode == api.ModeGuest {
		if vkind, err = e.guestKind(ctx, inst.KernelPath); err != nil {
			return nil, err
		}
	}
	if err := checkBackendPolicy(mode, vkind, o.Shape); err != nil {
		return nil, err
	}
	policy, err := shapePolicy(&o.Shape)
	if err != nil {
		return nil, err
	}
	done()
	// Expired VMs and workspaces hold memory and disk: creating is a good
	// moment to collect them, so a TTL holds even if nobody runs reap.
	done = e.timed("reap")
	if _, err := e.reapExpired(ctx); err != nil {
		e.log.Warn("reaping expired objects", "err", err)
	}
	done()
	done = e.timed("record.create")
	st := e.storeOf(kind)
	id := state.NewID()
	op.Describe("", id)
	op.Phase(phaseDisk)
	dir, err := st.Create(id)
	if err != nil {
		return nil, err
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	rec := &vmRecord{SchemaVersion: recordSchema, ID: id, Kind: kind, Env: inst, Machine: api.Machine{
		Environment: o.Environment, VCPUCount: o.VCPUCount, MemMiB: o.MemMiB, TTLSeconds: o.TTLSeconds,
		Network: o.Network, AllowHostCompat: o.AllowHostCompat, ExecutionMode: mode, State: api.StateCreated,
		CreatedAt: now, ExpiresAt: now.Add(time.Duration(o.TTLSeconds) * time.Second),
	}}
	setPolicy(&rec.Machine, policy)
	probe := ""
	if inst != nil {
		probe = inst.KernelPath
	}
	rec.BackendKind = string(vkind)
	rec.Backend = e.backendName(ctx, mode, vkind, probe)
	if mode == api.ModeGuest {
		if err := e.catalog.Acquire(id, inst); err != nil {
			st.Remove(id)
			return nil, err
		}
		done()
		done = e.timed("disk")
		// A QEMU workspace's disks are layers of the pool (CreateWorkspace).
		if kind != kindWorkspace || vkind == vmm.KindFirecracker {
			rec.Disk = filepath.Join(dir, diskName(vkind))
			if err := e.createVMDisk(ctx, rec, vkind, o, mayBuild); err != nil {
				e.catalog.Release(id)
				st.Remove(id)
				return nil, err
			}
		}
	} else if err := os.MkdirAll(filepath.Join(dir, "hostroot"), 0o700); err != nil {
		st.Remove(id)
		return nil, err
	}
	done()
	done = e.timed("record.write")
	if err := st.Write(id, rec); err != nil {
		e.catalog.Release(id)
		st.Remove(id)
		return nil, err
	}
	done()
	e.log.Info(kind+" created", "id", id, "environment", o.Environment, "mode", mode)
	return rec, nil
}

// chooseMode picks guest or host_compat: host_compat only when the caller
// allowed it AND no isolated backend can boot a guest on this host (the
// backend choice's verdict, backendsel). A registry that failed, an
// environment that cannot be built or a broken image is an error, never a
// reason to run without isolation.
func (e *Engine) chooseMode(ctx context.Context, o api.CreateVMOptions) (string, *catalog.Installed, error) {
	if e.opts.Backend == BackendHostCompat {
		if !o.AllowHostCompat {
			return "", nil, errdefs.New(errdefs.ErrInvalidArgument, "allow host compatibility (`allow_host_compat`) to run on the host WITHOUT isolation",
				"backend host_compat was requested but host compatibility is not allowed")
		}
		return api.ModeHostCompat, nil, nil
	}
	guestErr := e.guestTools()
	var inst *catalog.Installed
	if guestErr == nil {
		res, err := e.catalog.Pull(ctx, o.Environment)
		if err != nil {
			return "", nil, err
		}
		inst = res.InstalledEnvironment
	}
	if guestErr == nil {
		return api.ModeGuest, inst, nil
	}
	if o.AllowHostCompat && e.opts.Backend != BackendQEMU && e.opts.Backend != BackendFirecracker {
		e.log.Warn("no guest can boot here; running on the host WITHOUT isolation (allow_host_compat)", "reason", guestErr)
		return api.ModeHostCompat, nil, nil
	}
	return "", nil, guestErr
}

// createOverlay makes a qcow2 overlay of base with the qemu-img hostbin
// resolves (the same one doctor and the backend choice found).
func createOverlay(ctx context.Context, base, disk string) error {
	qemuImg, err := hostbin.QEMUImg.Find("")
	if err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, qemuImg, "create", "-q", "-f", "qcow2", "-b", base, "-F", "raw", disk).CombinedOutput()
	if err != nil {
		if hostFull(filepath.Dir(disk)) {
			return errdefs.Wrap(errdefs.ErrUnavailable, err, "free disk space in the state directory ($PYRO_STATE_DIR)", "creating the VM disk: %s", bytes.TrimSpace(out))
		}
		return errdefs.Wrap(errdefs.ErrInternal, err, "check free disk space and 'pyro doctor'", "creating the VM disk: %s", bytes.TrimSpace(out))
	}
	return nil
}

// StartVM boots a created or stopped VM and waits for its agent.
func (e *Engine) StartVM(ctx context.Context, ref string) (*api.VM, error) {
	defer e.enter()()
	ctx, op := e.start(ctx, "vm start", phaseBoot)
	rec, unlock, err := e.locked(e.vms, ref)
	if err != nil {
		return nil, err
	}
	defer unlock()
	op.Describe(rec.Environment, rec.ID)
	if err := e.startLocked(ctx, rec); err != nil {
		return nil, err
	}
	op.Done()
	return rec.view(true, ""), nil
}

// startLocked boots rec unless it is already running, reporting the boot
// phase of the operation in ctx. The caller holds its lock.
func (e *Engine) startLocked(ctx context.Context, rec *vmRecord) error {
	if err := notDeleting(rec); err != nil {
		return err
	}
	if e.alive(rec) {
		return nil
	}
	progress.From(ctx).Phase(phaseBoot)
	if err := e.prepareDisks(ctx, rec); err != nil {
		return err
	}
	done := e.timed("boot")
	ready, pid, err := e.bootWarmOrCold(ctx, rec)
	if err != nil {
		return err
	}
	done()
	done = e.timed("boot.after")
	now := time.Now().UTC().Truncate(time.Millisecond)
	rec.State = api.StateRunning
	rec.Start = ready.Start
	rec.Warm = nil // its disks are its own from now on
	if ready.Start != startResume || rec.BootNIC == nil {
		nic := rec.netPolicy().NIC()
		rec.BootNIC = &nic
	}
	e.resumed(rec)
	rec.StartedAt = &now
	rec.BootMs = ready.BootMs
	rec.SupervisorPID = pid
	rec.VMMPid = ready.VMMPid
	if err := e.afterBoot(ctx, rec); err != nil {
		e.killProcesses(rec)
		return err
	}
	e.rebindPorts(ctx, rec)
	backendsel.RecordBoot(ready.Kind, ready.Accel, rec.Env, ready.BootMs)
	if ws := rec.Workspace; ws != nil && ws.Disk != nil {
		ws.Disk.Chown = "" // done by the agent at this boot
	}
	done()
	done = e.timed("record.write")
	write := e.storeOf(rec.Kind).Write
	if oneShot(ctx) {
		write = e.storeOf(rec.Kind).WriteUnsynced
	}
	if err := write(rec.ID, rec); err != nil {
		return err
	}
	done()
	e.log.Info("vm started", "vm_id", rec.ID, "boot_ms", ready.BootMs)
	return nil
}

// StatusVM reports a VM, checking whether its processes are really alive.
func (e *Engine) StatusVM(ctx context.Context, ref string) (*api.VM, error) {
	rec, err := e.read(e.vms, ref)
	if err != nil {
		return nil, err
	}
	running, note := e.liveness(rec)
	return rec.view(running, note), nil
}

// ListVMs lists every VM.
func (e *Engine) ListVMs(ctx context.Context) ([]*api.VM, error) {
	return list(e, e.vms, (*vmRecord).view)
}

// ExecVM runs one command in a VM (starting it first if needed), then
// deletes the VM: the contract's exec_vm auto-cleans.
func (e *Engine) ExecVM(ctx context.Context, ref string, o api.ExecOptions) (*api.VMExecResult, error) {
	defer e.enter()()
	ctx, op := e.start(ctx, "vm exec", phaseBoot, phaseExec)
	if err := validateExec(&o); err != nil {
		return nil, err
	}
	if len(o.SecretEnv) > 0 {
		return nil, errNoSecretEnv
	}
	rec, err := e.read(e.vms, ref)
	if err != nil {
		return nil, err
	}
	op.Describe(rec.Environment, rec.ID)
	defer e.cleanup(rec.ID)
	if err := e.boot(ctx, e.vms, rec); err != nil {
		return nil, err
	}
	op.Phase(phaseExec)
	res, err := e.exec(ctx, rec, o)
	if err != nil {
		return nil, err
	}
	op.Done()
	return &api.VMExecResult{VMID: rec.ID, Environment: rec.Environment, ExecutionMode: rec.ExecutionMode, Backend: rec.Backend, ExecResult: *res, Cleaned: true}, nil
}

// boot starts rec under its lock unless it runs, and reloads it.
func (e *Engine) boot(ctx context.Context, st *state.Store, rec *vmRecord) error {
	if e.alive(rec) {
		return nil
	}
	done := e.timed("record.lock")
	lock, err := st.Lock(rec.ID)
	if err != nil {
		return err
	}
	defer lock.Unlock()
	if err := st.Read(rec.ID, rec); err != nil {
		return err
	}
	done()
	return e.startLocked(ctx, rec)
}

// exec runs one command over the supervisor's socket. A command whose
// output only goes to memory uses the engine's shared connection to the
// supervisor; one streaming to the caller's writers gets its own, so that a
// slow writer never holds up other commands' frames.
func (e *Engine) exec(ctx context.Context, rec *vmRecord, o api.ExecOptions) (*api.ExecResult, error) {
	var c *agentproto.Client
	var err error
	if o.Stdout == nil && o.Stderr == nil {
		c, err = e.agent(ctx, rec)
	} else {
		c, err = e.dial(ctx, rec)
		if c != nil {
			defer c.Close()
		}
	}
	if err != nil {
		return nil, err
	}
	req := agentproto.ExecRequest{Argv: o.Argv, Shell: o.Command, Cwd: o.Cwd, Env: o.Env, TimeoutMs: int64(o.TimeoutSeconds) * 1000,
		Sync: rec.Kind == kindWorkspace}
	// The client already caps what a guest can send (the default
	// max_output per stream); the buffers hold no more whatever happens.
	var outBuf, errBuf agentproto.OutputBuffer
	outW, errW := io.Writer(&outBuf), io.Writer(&errBuf)
	if o.Stdout != nil {
		outW = io.MultiWriter(&outBuf, o.Stdout)
	}
	if o.Stderr != nil {
		errW = io.MultiWriter(&errBuf, o.Stderr)
	}
	// The guest enforces the timeout; the host deadline only catches a guest
	// that stopped answering.
	ectx, cancel := context.WithTimeout(ctx, time.Duration(o.TimeoutSeconds)*time.Second+30*time.Second)
	defer cancel()
	r, err := c.Exec(ectx, req, nil, outW, errW)
	if err != nil {
		if ctx.Err() == nil && ectx.Err() != nil {
			return nil, errdefs.Wrap(errdefs.ErrTimeout, err, "the guest stopped answering; check its status", "exec in %s %s", rec.Kind, rec.ID)
		}
		return nil, e.noSpace(rec, err)
	}
	return &api.ExecResult{
		ExitCode: r.ExitCode, Stdout: outBuf.String(), Stderr: errBuf.String(),
		StdoutTruncated: r.StdoutTruncated || outBuf.Truncated(), StderrTruncated: r.StderrTruncated || errBuf.Truncated(),
		TimedOut: r.TimedOut, Message: r.Message, DurationMs: r.DurationMs,
	}, nil
}

// dial connects to a running VM's supervisor.
func (e *Engine) dial(ctx context.Context, rec *vmRecord) (*agentproto.Client, error) {
	conn, err := dialUnix(ctx, filepath.Join(e.runDir(rec.ID), "ctl.sock"))
	if err != nil {
		return nil, errdefs.Wrap(errdefs.ErrUnavailable, err, "start it again (a workspace's next exec boots it)", "%s %s is not running", rec.Kind, rec.ID)
	}
	hctx, cancel := context.WithTimeout(ctx, stretch(10*time.Second))
	defer cancel()
	c, err := agentproto.NewClient(hctx, conn)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// StopVM powers a VM off; its disk stays.
func (e *Engine) StopVM(ctx context.Context, ref string) (*api.VM, error) {
	defer e.enter()()
	rec, err := e.stop(ctx, e.vms, ref)
	if err != nil {
		return nil, err
	}
	return rec.view(false, ""), nil
}

// stop powers the VM of ref in st off and records it stopped.
func (e *Engine) stop(ctx context.Context, st *state.Store, ref string) (*vmRecord, error) {
	rec, unlock, err := e.locked(st, ref)
	if err != nil {
		return nil, err
	}
	defer unlock()
	e.stopLocked(ctx, rec)
	rec.State = api.StateStopped
	if err := st.Write(rec.ID, rec); err != nil {
		return nil, err
	}
	return rec, nil
}

// stopLocked asks the guest to power off, then kills what is left after a
// deadline. The caller holds the lock.
func (e *Engine) stopLocked(ctx context.Context, rec *vmRecord) {
	if e.alive(rec) {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stretch(5*time.Second))
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
func (e *Engine) DeleteVM(ctx context.Context, ref string) (*api.DeleteResult, error) {
	defer e.enter()()
	id, err := e.vms.Resolve(ref)
	if err != nil {
		return nil, err
	}
	if err := e.remove(ctx, e.vms, id); err != nil {
		return nil, err
	}
	return &api.DeleteResult{VMID: id, Deleted: true}, nil
}

// remove stops an object of st and deletes its directory (disk, logs, state).
func (e *Engine) remove(ctx context.Context, st *state.Store, id string) error {
	lock, err := e.lockForRemoval(ctx, st, id)
	if err != nil {
		return err
	}
	return e.removeLocked(st, id, lock)
}

// lockForRemoval takes id's lock for a delete. A holder that does not let
// go within removalWait is waiting on its guest (a boot, a seed): the VM
// is killed without the lock and without the guest's help, which ends the
// holder's guest calls and so its hold, and the lock is then awaited.
func (e *Engine) lockForRemoval(ctx context.Context, st *state.Store, id string) (*state.Lock, error) {
	wctx, cancel := context.WithTimeout(ctx, removalWait)
	lock, err := st.LockContext(wctx, id)
	cancel()
	if err == nil || ctx.Err() != nil || !errors.Is(err, context.DeadlineExceeded) {
		return lock, err
	}
	e.log.Warn("the "+st.Kind+" is busy: killing its VM to delete it", "id", id)
	var rec vmRecord
	if st.Read(id, &rec) == nil {
		e.killProcesses(&rec)
	}
	killSupervisorsOf(id)
	return st.LockContext(ctx, id)
}

// removeLocked is remove under lock, which it releases.
func (e *Engine) removeLocked(st *state.Store, id string, lock *state.Lock) error {
	defer lock.Unlock()
	var rec vmRecord
	if err := st.Read(id, &rec); err != nil {
		return err
	}
	rec.State = api.StateDeleting
	// No fsync: the directory goes right after, and a host that crashed
	// in between left a record whose processes are gone either way.
	st.WriteUnsynced(id, &rec)
	// The disk goes away with the record, so there is nothing to flush:
	// kill at once instead of a graceful power-off.
	done := e.timed("cleanup.kill")
	e.killProcesses(&rec)
	done()
	done = e.timed("cleanup.remove")
	defer done()
	os.RemoveAll(e.runDir(rec.ID))
	if err := st.Remove(id); err != nil {
		return fmt.Errorf("removing %s %s: %w", st.Kind, id, err)
	}
	e.catalog.Release(id)
	e.log.Info(st.Kind+" deleted", "id", id)
	if st == e.wss {
		e.sweep() // what only it needed; its forks keep what they read
	}
	return nil
}

// NetworkInfo describes a VM's network.
func (e *Engine) NetworkInfo(ctx context.Context, ref string) (*api.NetworkInfo, error) {
	rec, err := e.read(e.vms, ref)
	if err != nil {
		return nil, err
	}
	ni := &api.NetworkInfo{VMID: rec.ID, Network: rec.Network, Mode: "none"}
	switch {
	case rec.ExecutionMode == api.ModeHostCompat:
		ni.Mode, ni.HostLoopbackReachable = "host", true
	case rec.Network:
		// pyro's own network stack (qemu's netstack.go) serves these
		// addresses to every guest; the JSON value is "stack".
		ip, _, _ := strings.Cut(qemu.GuestIP, "/")
		ni.Mode, ni.GuestIP, ni.Gateway, ni.DNS = "stack", ip, qemu.GuestGW, []string{qemu.GuestDNS}
	}
	if e.alive(rec) {
		pctx, cancel := context.WithTimeout(ctx, guestCallTimeout())
		if c, err := e.dial(pctx, rec); err == nil {
			if p, err := c.Ping(pctx); err == nil {
				ni.Addresses = p.Addresses
			}
			c.Close()
		}
		cancel()
	}
	return ni, nil
}

// ReapExpired stops and deletes every VM and workspace past its TTL.
func (e *Engine) ReapExpired(ctx context.Context) (*api.ReapResult, error) {
	defer e.enter()()
	return e.reapExpired(ctx)
}

func (e *Engine) reapExpired(ctx context.Context) (*api.ReapResult, error) {
	res := &api.ReapResult{Reaped: []string{}}
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
			// Never wait behind a busy record: its holder is working
			// on it, and its own supervisor powers it off at expiry.
			lock, ok, err := st.TryLock(id)
			if err != nil || !ok {
				continue
			}
			// Never under a running command, shell or service: reaped
			// once idle.
			if st == e.wss && e.busy(ctx, &rec) {
				lock.Unlock()
				continue
			}
			if err := e.removeLocked(st, id, lock); err == nil {
				res.Reaped = append(res.Reaped, id)
			}
		}
	}
	res.Count = len(res.Reaped)
	return res, nil
}
