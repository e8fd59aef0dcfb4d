package engine

import (
	"context"
	"errors"
	"time"

	"github.com/pyro-mcp/pyro/api"
	"github.com/pyro-mcp/pyro/internal/errdefs"
)

// oneShotKey marks the context of a run, whose VM lives for one command.
type oneShotKey struct{}

// oneShot says whether ctx is a run's: its VM is deleted when the command
// ends, so the record of its start needs no fsync (its creation's has
// one: a host that crashes mid-run leaves a readable record to reap).
func oneShot(ctx context.Context) bool { return ctx.Value(oneShotKey{}) != nil }

// Run is the one-shot path: create, start, exec, delete — the VM is gone
// afterwards whatever happened, Ctrl-C included.
func (e *Engine) Run(ctx context.Context, o api.RunOptions) (*api.RunResult, error) {
	defer e.enter()()
	ctx, op := e.start(ctx, "run", phaseEnvironment, phaseDisk, phaseBoot, phaseExec)
	ctx = context.WithValue(ctx, oneShotKey{}, true)
	vo, ex := o.VM(), o.Exec()
	if err := validateCreate(&vo, api.DefaultVMTTLSeconds); err != nil {
		return nil, err
	}
	if err := validateExec(&ex); err != nil {
		return nil, err
	}
	rec, err := e.createRecord(ctx, kindVM, vo, true)
	if err != nil {
		return nil, err
	}
	defer e.cleanup(rec.ID)
	if err := e.boot(ctx, e.vms, rec); err != nil {
		return nil, err
	}
	op.Phase(phaseExec)
	done := e.timed("exec")
	res, err := e.exec(ctx, rec, ex)
	if err != nil {
		return nil, err
	}
	done()
	op.Done()
	return &api.RunResult{
		Environment: rec.Environment, VMID: rec.ID, ExecutionMode: rec.ExecutionMode, Backend: rec.Backend,
		VCPUCount: rec.VCPUCount, MemMiB: rec.MemMiB, Network: rec.Network, NetworkPolicy: string(rec.netPolicy().Mode), Command: argv(ex),
		ExecResult: *res, BootMs: rec.BootMs, TotalMs: op.Elapsed().Milliseconds(), Start: rec.Start,
	}, nil
}

// cleanup deletes a VM even when the caller's context is cancelled (Ctrl-C).
func (e *Engine) cleanup(id string) {
	defer e.timed("cleanup")()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.remove(ctx, e.vms, id); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
		e.log.Warn("cleaning up vm", "vm_id", id, "err", err)
	}
}
