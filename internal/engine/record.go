package engine

import (
	"path/filepath"
	"time"

	"github.com/pyro-mcp/pyro/api"
	"github.com/pyro-mcp/pyro/internal/catalog"
	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/state"
)

// vmRecord is what a VM's or workspace's record.json holds. Records written
// by earlier 2.x releases must keep loading: fields are only added.
type vmRecord struct {
	// SchemaVersion is recordSchema for records this pyro writes; records
	// of pyro 2.4 have none (0), and their workspaces are layout 1.
	SchemaVersion int    `json:"schema_version,omitempty"`
	ID            string `json:"id"`
	Kind          string `json:"kind"` // kindVM or kindWorkspace
	api.Machine
	// BackendKind is the VMM the guest boots with ("qemu", "firecracker";
	// empty in older records means qemu), fixed at create time so that
	// every start of the VM uses the same one (its disk depends on it).
	BackendKind   string             `json:"backend_kind,omitempty"`
	SupervisorPID int                `json:"supervisor_pid,omitempty"`
	Env           *catalog.Installed `json:"env,omitempty"`
	Disk          string             `json:"disk,omitempty"`
	// Workspace is set on workspaces only.
	Workspace *wsState `json:"workspace,omitempty"`
	// Warm names the template build the disks were made from, until the
	// first boot (warm.go).
	Warm *warmRef `json:"warm,omitempty"`
	// BootNIC says whether the machine that runs (or is suspended) has a
	// network device: set at each boot, kept by a resume. A policy change
	// that adds or removes the device makes the next stop power off and
	// the next start boot (nicChanged).
	BootNIC *bool `json:"boot_nic,omitempty"`
}

// nicChanged says whether rec's policy wants a network device the
// machine it runs (or saved) was not booted with, or the reverse.
func (rec *vmRecord) nicChanged() bool {
	return rec.BootNIC != nil && *rec.BootNIC != rec.netPolicy().NIC()
}

const (
	kindVM        = "vm"
	kindWorkspace = "workspace"
)

// Execution modes, as the backend choice (backends.go) names them.
const (
	ModeGuest      = api.ModeGuest
	ModeHostCompat = api.ModeHostCompat
)

// wsState is the workspace part of a record.
type wsState struct {
	Seed         api.WorkspaceSeed   `json:"seed"`
	NextSequence int                 `json:"next_sequence"`
	CommandCount int                 `json:"command_count"`
	LastCommand  *api.CommandSummary `json:"last_command,omitempty"`
	Restarts     int                 `json:"restarts"`

	// The disk layer (layers.go, snapshot.go): absent in 2.4 records.
	Disk      *wsDisk           `json:"disk,omitempty"`
	Snapshots []snapshotRec     `json:"snapshots,omitempty"`
	ForkOf    *api.ForkOrigin   `json:"fork_of,omitempty"`
	LastReset *api.ResetSummary `json:"last_reset,omitempty"`

	// Names, labels, secrets and activity (names.go, secrets.go): absent
	// in 2.4 records.
	Name           string            `json:"name,omitempty"`
	Labels         map[string]string `json:"labels,omitempty"`
	Secrets        []secretMeta      `json:"secrets,omitempty"`
	LastActivityAt *time.Time        `json:"last_activity_at,omitempty"`
	// Suspended is the saved state of a workspace stopped by suspending
	// it (suspend.go).
	Suspended *suspendRec `json:"suspended,omitempty"`
	// Ports are the published ports of running services by service, with
	// the host port each one got, bound again after a resume (ports.go):
	// absent in 2.4 records and in records of workspaces without any.
	Ports map[string][]api.PublishPort `json:"published_ports,omitempty"`
	// HistoryFolded is how many bytes of the history (logs.jsonl) the
	// counts above take in: NextSequence, CommandCount, LastCommand and
	// LastActivityAt. The entries after it are taken in whenever the
	// record is read (foldHistory), so that logging a command is one
	// durable append, without a rewrite of the record. Absent in records
	// of pyro 2.4 and of releases before it, whose counts take in their
	// whole history.
	HistoryFolded *int64 `json:"history_folded,omitempty"`
}

// Loaded takes in the history appended since the record was written
// (state.Loader): every read of a workspace's record, locked or not, sees
// its commands counted.
func (r *vmRecord) Loaded(dir string) {
	if r.Workspace != nil {
		r.Workspace.foldHistory(filepath.Join(dir, LogFile))
	}
}

// machine is the record's public part; the VMM's pid only while it runs.
func (r *vmRecord) machine(running bool) api.Machine {
	m := r.Machine
	m.NetworkPolicy = string(r.netPolicy().Mode) // 2.4 records have none
	if !running {
		m.VMMPid = 0
	}
	return m
}

func (r *vmRecord) view(running bool, note string) *api.VM {
	return &api.VM{VMID: r.ID, Machine: r.machine(running), Running: running, Note: note}
}

func (r *vmRecord) workspaceView(running bool, note string) *api.Workspace {
	ws := r.Workspace
	if ws == nil {
		ws = &wsState{}
	}
	return &api.Workspace{WorkspaceID: r.ID, Machine: r.machine(running), Running: running,
		CommandCount: ws.CommandCount, LastCommand: ws.LastCommand, WorkspaceSeed: ws.Seed, Restarts: ws.Restarts, Note: note,
		Name: ws.Name, SnapshotCount: len(ws.Snapshots), ForkOf: ws.ForkOf, LastReset: ws.LastReset,
		Labels: ws.Labels, Secrets: secretInfos(ws.Secrets), LastActivityAt: r.lastActivity()}
}

// read resolves ref in st and reads its record, without a lock.
func (e *Engine) read(st *state.Store, ref string) (*vmRecord, error) {
	id, err := e.resolve(st, ref)
	if err != nil {
		return nil, err
	}
	var rec vmRecord
	if err := st.Read(id, &rec); err != nil {
		return nil, err
	}
	return &rec, nil
}

// locked resolves ref in st, takes its lock and reads its record. The
// caller must call unlock.
func (e *Engine) locked(st *state.Store, ref string) (rec *vmRecord, unlock func(), err error) {
	id, err := e.resolve(st, ref)
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

// notDeleting fails when rec is being deleted.
func notDeleting(rec *vmRecord) error {
	if rec.State == api.StateDeleting {
		return errdefs.New(errdefs.ErrFailedPrecondition, "", "%s %s is being deleted", rec.Kind, rec.ID)
	}
	return nil
}

// liveness says whether rec's VM runs and, when it died on its own, what
// that means for this kind of object.
func (e *Engine) liveness(rec *vmRecord) (bool, string) {
	if e.alive(rec) {
		return true, ""
	}
	if rec.State != api.StateRunning {
		return false, ""
	}
	rec.State = api.StateExited
	if rec.Kind == kindWorkspace {
		return false, "the VM process is gone (killed or the host rebooted); /workspace is safe on its disk and the next exec boots it again"
	}
	return false, "the VM process is gone (killed or the host rebooted); start it again"
}

// list reads every record of st, with its liveness, through view.
func list[T any](e *Engine, st *state.Store, view func(*vmRecord, bool, string) T) ([]T, error) {
	ids, err := st.IDs()
	if err != nil {
		return nil, err
	}
	out := []T{}
	for _, id := range ids {
		var rec vmRecord
		if err := st.Read(id, &rec); err != nil {
			continue
		}
		running, note := e.liveness(&rec)
		out = append(out, view(&rec, running, note))
	}
	return out, nil
}
