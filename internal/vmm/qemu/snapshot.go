package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/vmm"
)

// Saving and restoring a machine's state: QEMU's migration stream written
// to, and read from, a file descriptor pyro hands over. QEMU runs under
// -sandbox spawn=deny, so it cannot run an exec: migration command, and
// QEMU 7.2 has no file: URI; a descriptor (QMP getfd with SCM_RIGHTS to
// save, an inherited descriptor to restore) needs neither.
//
// A template is saved with x-ignore-shared: its RAM is a shared file
// (spec.Memory) that the stream leaves out, so the state is device state
// only (tens of KB). A clone maps that file privately (copy-on-write) and
// reads the same capability's stream. A suspended workspace's RAM is
// anonymous or a private mapping, so its stream carries every page.

// maxBandwidth lifts QEMU's migration bandwidth cap (128 MiB/s by
// default): the stream goes to a local file while the guest is paused.
const maxBandwidth = 1 << 40

// stateFDName is the name the saving side's descriptor gets in QEMU.
const stateFDName = "pyro-state"

// Save pauses the machine whose runtime directory is dir and writes its
// state to o.State (created 0600, replaced if it exists). The machine
// stays paused; the caller kills it once Save returns.
func Save(ctx context.Context, dir string, o vmm.SaveOptions) error {
	f, err := os.OpenFile(o.State, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return errdefs.Wrap(errdefs.ErrInternal, err, "check free disk space", "creating the state file")
	}
	defer f.Close()
	q, err := DialQMP(ctx, dir)
	if err != nil {
		return err
	}
	defer q.Close()
	if err := q.Execute(ctx, "stop", nil, nil); err != nil {
		return err
	}
	if err := setMigration(ctx, q, o.IgnoreShared); err != nil {
		return err
	}
	if err := q.ExecuteWithFile(ctx, "getfd", map[string]any{"fdname": stateFDName}, f); err != nil {
		return err
	}
	if err := q.Execute(ctx, "migrate", map[string]any{"uri": "fd:" + stateFDName}, nil); err != nil {
		return err
	}
	if err := waitMigration(ctx, q, nil); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return errdefs.Wrap(errdefs.ErrInternal, err, "check free disk space", "writing the state file")
	}
	return nil
}

// setMigration sets the capabilities and parameters both sides of a
// stream must agree on, and turns on MIGRATION events (waitMigration
// waits for them instead of polling).
func setMigration(ctx context.Context, q *QMP, ignoreShared bool) error {
	caps := []map[string]any{
		{"capability": "x-ignore-shared", "state": ignoreShared},
		{"capability": "events", "state": true},
	}
	if err := q.Execute(ctx, "migrate-set-capabilities", map[string]any{"capabilities": caps}, nil); err != nil {
		return err
	}
	return q.Execute(ctx, "migrate-set-parameters", map[string]any{"max-bandwidth": maxBandwidth}, nil)
}

// migrationInfo is the part of query-migrate pyro reads.
type migrationInfo struct {
	Status    string `json:"status"`
	ErrorDesc string `json:"error-desc"`
}

// waitMigration waits until the stream completed or failed: it asks for
// the status once, then follows QEMU's MIGRATION events. exited, when
// set, is the destination QEMU's exit (it exits when its incoming stream
// fails, which also ends the monitor connection).
func waitMigration(ctx context.Context, q *QMP, exited <-chan struct{}) error {
	var info migrationInfo
	if err := q.Execute(ctx, "query-migrate", nil, &info); err != nil {
		return err
	}
	for {
		switch info.Status {
		case "completed":
			return nil
		case "failed", "cancelled":
			if info.ErrorDesc == "" {
				_ = q.Execute(ctx, "query-migrate", nil, &info)
			}
			return errdefs.New(errdefs.ErrInternal, "", "migration %s: %s", info.Status, info.ErrorDesc)
		}
		st, err := q.nextMigration(ctx)
		if err != nil {
			select {
			case <-exited:
				return errors.New("qemu exited")
			default:
			}
			if ctx.Err() != nil {
				return errdefs.Wrap(errdefs.ErrTimeout, ctx.Err(), "", "waiting for the machine's state to be %s", map[bool]string{true: "read", false: "written"}[exited != nil])
			}
			return err
		}
		info.Status = st
	}
}

// restore runs a machine started with -incoming defer from its saved
// state: it connects to the agent's socket first, so that the guest's
// port, which was open when the state was saved, never sees its host
// leave; reads the state from the inherited descriptor; and continues the
// guest once every device is back. Any failure is vmm.ErrNotRestorable.
func (m *machine) restore(ctx context.Context, spec vmm.MachineSpec) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", filepath.Join(spec.Dir, AgentSocket))
	if err != nil {
		return notRestorable(err, "connecting to the agent's socket")
	}
	q, err := DialQMP(ctx, spec.Dir)
	if err != nil {
		c.Close()
		return notRestorable(err, "")
	}
	defer q.Close()
	fail := func(err error, what string) error {
		c.Close()
		select {
		case <-m.proc.Done():
			err = startError(filepath.Join(spec.Dir, StderrFile), m.proc.ExitErr())
		default:
		}
		return notRestorable(err, what)
	}
	if err := setMigration(ctx, q, spec.Restore.IgnoreShared); err != nil {
		return fail(err, "")
	}
	if err := q.Execute(ctx, "migrate-incoming", map[string]any{"uri": fmt.Sprintf("fd:%d", stateFD)}, nil); err != nil {
		return fail(err, "")
	}
	if err := waitMigration(ctx, q, m.proc.Done()); err != nil {
		return fail(err, "reading the saved state")
	}
	if err := q.Execute(ctx, "cont", nil, nil); err != nil {
		return fail(err, "")
	}
	m.agent = c
	return nil
}

func notRestorable(err error, what string) error {
	if what != "" {
		err = fmt.Errorf("%s: %w", what, err)
	}
	return errdefs.Wrap(errdefs.ErrUnavailable, errors.Join(vmm.ErrNotRestorable, err), "", "restoring the machine")
}

// ExecuteWithFile runs one command with f's descriptor attached
// (SCM_RIGHTS), as getfd and add-fd expect.
func (q *QMP) ExecuteWithFile(ctx context.Context, cmd string, args any, f *os.File) error {
	uc, ok := q.c.(*net.UnixConn)
	if !ok {
		return errdefs.New(errdefs.ErrInternal, "", "qmp %s: not a unix socket", cmd)
	}
	req := map[string]any{"execute": cmd}
	if args != nil {
		req["arguments"] = args
	}
	b, _ := json.Marshal(req)
	if dl, ok := ctx.Deadline(); ok {
		uc.SetDeadline(dl)
	}
	if _, _, err := uc.WriteMsgUnix(append(b, '\n'), unix.UnixRights(int(f.Fd())), nil); err != nil {
		return errdefs.Wrap(errdefs.ErrUnavailable, err, "", "qmp %s", cmd)
	}
	return q.readReturn(ctx, cmd, nil)
}
