package engine

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"time"

	"github.com/pyro-mcp/pyro/api"
	"github.com/pyro-mcp/pyro/internal/agentproto"
	"github.com/pyro-mcp/pyro/internal/atomicfile"
	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/state"
)

// What the shells and services of a workspace share: the guest they live
// in, what runs there now (which keeps a workspace from being reaped), how
// they end with a cold stop, and the events they leave in the log.

// busyRecheck is how long a workspace past its expiry that still runs
// something waits before it is looked at again.
const busyRecheck = 30 * time.Second

// stopGrace is what a stop gives each service between TERM and KILL.
const stopGrace = api.ServiceStopGraceSeconds * time.Second

// servicesFile keeps the last state and log tail of a workspace's
// services when a cold stop ends them (redacted like every output).
const servicesFile = "services.json"

// savedServices is servicesFile's content.
type savedServices struct {
	SavedAt  time.Time                `json:"saved_at"`
	Services []agentproto.ServiceInfo `json:"services"`
}

// liveWorkspace resolves ref to a workspace whose guest runs: shells and
// services live there and nowhere else.
func (e *Engine) liveWorkspace(ref string) (*vmRecord, error) {
	rec, err := e.loadWorkspace(ref)
	if err != nil {
		return nil, err
	}
	if !e.alive(rec) {
		return nil, errdefs.New(errdefs.ErrFailedPrecondition, "open a new shell or start the service again: either boots the workspace",
			"workspace %s is not running: its shells and services ended when it stopped", rec.ID)
	}
	return rec, nil
}

// activity asks a running workspace's guest what runs there; nil when it
// is not running or does not answer.
func (e *Engine) activity(ctx context.Context, rec *vmRecord) *agentproto.Activity {
	if !e.alive(rec) {
		return nil
	}
	actx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	c, err := e.dial(actx, rec)
	if err != nil {
		return nil
	}
	defer c.Close()
	a, err := c.Activity(actx)
	if err != nil {
		return nil
	}
	return a
}

// busy says whether a command, shell or service runs in rec: the reaper
// leaves such a workspace alone until it is idle.
func (e *Engine) busy(ctx context.Context, rec *vmRecord) bool {
	a := e.activity(ctx, rec)
	return a != nil && a.Busy()
}

// livingView is rec's public view with the counts of what runs in it.
func (e *Engine) livingView(ctx context.Context, rec *vmRecord, running bool, note string) *api.Workspace {
	w := e.workspaceView(rec, running, note)
	if running {
		if a := e.activity(ctx, rec); a != nil {
			w.ShellCount, w.ServiceCount = a.Shells, a.Services
		}
	}
	return w
}

// stopShellsAndServices closes every shell and stops every service of a
// running workspace (TERM, then KILL after stopGrace), and keeps the
// services' last states and log tails for `service list|status|logs`. A
// cold stop calls it; so must a reset or a fork's source before it
// changes the disk under them. (A warm stop, which suspends the guest,
// would not.)
func (e *Engine) stopShellsAndServices(ctx context.Context, rec *vmRecord) error {
	if !e.alive(rec) {
		return nil
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stopGrace+15*time.Second)
	defer cancel()
	c, err := e.dial(sctx, rec)
	if err != nil {
		return err
	}
	defer c.Close()
	res, err := c.StopAll(sctx, agentproto.StopAllRequest{GraceMs: stopGrace.Milliseconds(), LogTailBytes: 64 << 10})
	if err != nil {
		return err
	}
	if len(res.Services) > 0 {
		red := e.redactor(rec.ID)
		for i := range res.Services {
			res.Services[i].LogTail = red.String(res.Services[i].LogTail)
		}
		data, _ := json.Marshal(savedServices{SavedAt: time.Now().UTC(), Services: res.Services})
		if err := atomicfile.WriteFile(filepath.Join(e.wss.Path(rec.ID), servicesFile), data, 0o600); err != nil {
			e.log.Warn("saving services", "workspace_id", rec.ID, "err", err)
		}
	}
	return nil
}

// savedServicesOf reads what the last cold stop kept (nil when nothing).
func (e *Engine) savedServicesOf(id string) *savedServices {
	data, err := os.ReadFile(filepath.Join(e.wss.Path(id), servicesFile))
	if err != nil {
		return nil
	}
	var s savedServices
	if json.Unmarshal(data, &s) != nil {
		return nil
	}
	return &s
}

// appendEvent logs a shell or service event with the next sequence
// number, through the history's one writer (wslog.go); it does not count
// as a command. The event's call is done, so a failure only warns.
func (e *Engine) appendEvent(id string, entry api.LogEntry) {
	err := e.update(id, func(rec *vmRecord) error {
		entry.Sequence = rec.Workspace.NextSequence
		if err := e.writeEntry(id, entry); err != nil {
			return err
		}
		rec.Workspace.NextSequence++
		now := time.Now().UTC().Truncate(time.Millisecond)
		rec.Workspace.LastActivityAt = &now
		return nil
	})
	if err != nil {
		e.log.Warn("logging workspace event", "workspace_id", id, "kind", entry.Kind, "err", err)
	}
}

// expiryRecheck is a workspace supervisor's answer when its TTL passes:
// the record's expiry if it was extended since, a later look if the guest
// still runs a command, a shell or a service, else power off now.
func expiryRecheck(dir, ctlSock string) func(context.Context) time.Time {
	return func(ctx context.Context) time.Time {
		var rec vmRecord
		data, err := os.ReadFile(filepath.Join(dir, state.RecordFile))
		if err != nil || json.Unmarshal(data, &rec) != nil || rec.Kind != kindWorkspace {
			return time.Time{}
		}
		if time.Now().Before(rec.ExpiresAt) {
			return rec.ExpiresAt
		}
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		conn, err := dialUnix(actx, ctlSock)
		if err != nil {
			return time.Time{}
		}
		c, err := agentproto.NewClient(actx, conn)
		if err != nil {
			return time.Time{}
		}
		defer c.Close()
		if a, err := c.Activity(actx); err == nil && a.Busy() {
			return time.Now().Add(busyRecheck)
		}
		return time.Time{}
	}
}

// errNoSecretEnv refuses secret_env where there are no secrets.
var errNoSecretEnv = errdefs.New(errdefs.ErrInvalidArgument, "secrets belong to workspaces: create one with `secrets`", "a VM has no secrets")

// afterBoot readies a freshly booted workspace before anyone can use it:
// its secrets go into the guest, and the services a cold stop kept are
// forgotten (they are of a guest that is gone).
func (e *Engine) afterBoot(ctx context.Context, rec *vmRecord) error {
	if rec.Kind != kindWorkspace {
		return nil
	}
	os.Remove(filepath.Join(e.wss.Path(rec.ID), servicesFile))
	return e.deliverSecrets(ctx, rec)
}
