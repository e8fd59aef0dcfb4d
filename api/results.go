package api

import (
	"encoding/json"
	"time"
)

// Machine is what a VM and a workspace share: the environment, shape,
// backend and lifetime of the microVM under them.
type Machine struct {
	Environment     string     `json:"environment"`
	State           string     `json:"state"`
	VCPUCount       int        `json:"vcpu_count"`
	MemMiB          int        `json:"mem_mib"`
	TTLSeconds      int        `json:"ttl_seconds"`
	Network         bool       `json:"network"`
	AllowHostCompat bool       `json:"allow_host_compat"`
	ExecutionMode   string     `json:"execution_mode"`
	Backend         string     `json:"backend"`
	CreatedAt       time.Time  `json:"created_at"`
	ExpiresAt       time.Time  `json:"expires_at"`
	StartedAt       *time.Time `json:"started_at,omitempty"`
	BootMs          int64      `json:"boot_ms,omitempty"`
	VMMPid          int        `json:"vmm_pid,omitempty"` // while it runs
}

// VM is a VM record: `pyro vm status --json`, vm_status.
type VM struct {
	VMID string `json:"vm_id"`
	Machine
	Running bool   `json:"running"`
	Note    string `json:"note,omitempty"`
}

// VMList is `pyro vm list --json`.
type VMList struct {
	Count int   `json:"count"`
	VMs   []*VM `json:"vms"`
}

// ExecResult is one command's outcome, embedded in the exec results. A
// command that ran is a result whatever its exit status.
type ExecResult struct {
	ExitCode        int    `json:"exit_code"`
	Stdout          string `json:"stdout"`
	Stderr          string `json:"stderr"`
	StdoutTruncated bool   `json:"stdout_truncated"`
	StderrTruncated bool   `json:"stderr_truncated"`
	TimedOut        bool   `json:"timed_out"`
	Message         string `json:"message,omitempty"`
	DurationMs      int64  `json:"duration_ms"`
}

// RunResult is the outcome of a one-shot run: `pyro run --json`, vm_run.
type RunResult struct {
	Environment   string   `json:"environment"`
	VMID          string   `json:"vm_id"`
	ExecutionMode string   `json:"execution_mode"`
	Backend       string   `json:"backend"`
	VCPUCount     int      `json:"vcpu_count"`
	MemMiB        int      `json:"mem_mib"`
	Network       bool     `json:"network"`
	Command       []string `json:"command"` // the argv that ran; a shell string is ["/bin/sh", "-c", ...]
	ExecResult
	BootMs  int64 `json:"boot_ms"`
	TotalMs int64 `json:"total_ms"`
}

// VMExecResult is the outcome of exec in a VM, which deletes the VM
// afterwards: `pyro vm exec --json`, vm_exec.
type VMExecResult struct {
	VMID          string `json:"vm_id"`
	Environment   string `json:"environment"`
	ExecutionMode string `json:"execution_mode"`
	Backend       string `json:"backend"`
	ExecResult
	Cleaned bool `json:"cleaned"`
}

// DeleteResult is the outcome of deleting a VM: `pyro vm delete --json`.
type DeleteResult struct {
	VMID    string `json:"vm_id"`
	Deleted bool   `json:"deleted"`
}

// NetworkInfo describes a VM's network: `pyro vm network-info --json`.
type NetworkInfo struct {
	VMID                  string   `json:"vm_id"`
	Network               bool     `json:"network"`
	Mode                  string   `json:"mode"` // "none", "stack" (pyro's own network stack; "user" in 2.4) or "host" (host_compat)
	GuestIP               string   `json:"guest_ip,omitempty"`
	Gateway               string   `json:"gateway,omitempty"`
	DNS                   []string `json:"dns,omitempty"`
	HostLoopbackReachable bool     `json:"host_loopback_reachable"`
	Addresses             []string `json:"addresses,omitempty"` // as the guest reports them when running
}

// ReapResult lists the VMs and workspaces a reap removed: `pyro vm reap --json`.
type ReapResult struct {
	Reaped []string `json:"reaped"`
	Count  int      `json:"count"`
}

// Workspace is a workspace record: `pyro workspace status --json`,
// workspace_create, workspace_status.
type Workspace struct {
	WorkspaceID string `json:"workspace_id"`
	Machine
	Running       bool            `json:"running"`
	CommandCount  int             `json:"command_count"`
	LastCommand   *CommandSummary `json:"last_command,omitempty"`
	WorkspaceSeed WorkspaceSeed   `json:"workspace_seed"`
	Restarts      int             `json:"restarts"`
	Note          string          `json:"note,omitempty"`
	// Name is the workspace's name, when it was given one (at create,
	// update or fork).
	Name   string            `json:"name,omitempty"`
	Labels map[string]string `json:"labels,omitempty"`
	// Secrets names its secrets (never their values).
	Secrets []SecretInfo `json:"secrets,omitempty"`
	// SnapshotCount counts its snapshots, the baseline included.
	SnapshotCount int `json:"snapshot_count"`
	// ForkOf is where a forked workspace came from.
	ForkOf *ForkOrigin `json:"fork_of,omitempty"`
	// LastReset is the workspace's last reset, if any.
	LastReset *ResetSummary `json:"last_reset,omitempty"`
	// Disk describes its disks and what they occupy (guests only).
	Disk *WorkspaceDisk `json:"disk,omitempty"`
	// LastActivityAt is its last command, shell or service call, update or
	// start (created_at before any).
	LastActivityAt time.Time `json:"last_activity_at"`
	// ShellCount counts its shells whose process runs, ServiceCount its
	// services starting or ready (0 while it is not running).
	ShellCount   int `json:"shell_count"`
	ServiceCount int `json:"service_count"`
}

// WorkspaceList is `pyro workspace list --json`.
type WorkspaceList struct {
	Count      int          `json:"count"`
	Workspaces []*Workspace `json:"workspaces"`
}

// WorkspaceSeed says how /workspace was initialised.
type WorkspaceSeed struct {
	Mode       string `json:"mode"` // "empty", "directory" or "tar_archive"
	SourcePath string `json:"source_path,omitempty"`
	Entries    int    `json:"entries"`
	Bytes      int64  `json:"bytes"`
	Digest     string `json:"digest,omitempty"` // sha256 of the tar stream sent to the guest
	// OriginKind and OriginRef say where the files came from (see
	// SeedOrigin); empty for an empty workspace and in records written
	// before pyro 2.5.
	OriginKind string `json:"origin_kind,omitempty"`
	OriginRef  string `json:"origin_ref,omitempty"`
}

// Seed origin kinds, as WorkspaceSeed.OriginKind reports them.
const (
	OriginPath    = "path"    // seed_path named a host directory
	OriginArchive = "archive" // seed_path named a local .tar/.tar.gz/.tgz
	OriginProject = "project" // the MCP server's project: a git checkout's tracked and untracked-not-ignored files, or a plain directory
	OriginRepo    = "repo"    // a clean clone of a repository; OriginRef is "URL@COMMIT"
)

// SeedOrigin names where a seed came from when SeedPath is only a
// temporary export of it (a project's files, a clone).
type SeedOrigin struct {
	Kind string // OriginProject or OriginRepo
	Ref  string // the project's directory, or "URL@COMMIT"
}

// CommandSummary is a workspace's last command.
type CommandSummary struct {
	Sequence   int       `json:"sequence"`
	Command    []string  `json:"command"`
	ExitCode   int       `json:"exit_code"`
	TimedOut   bool      `json:"timed_out"`
	StartedAt  time.Time `json:"started_at"`
	DurationMs int64     `json:"duration_ms"`
}

// SyncResult is the outcome of a sync push: `pyro workspace sync push --json`.
type SyncResult struct {
	WorkspaceID string `json:"workspace_id"`
	SourcePath  string `json:"source_path"`
	Dest        string `json:"dest"`
	Mode        string `json:"mode"`
	Entries     int    `json:"entries"`
	Bytes       int64  `json:"bytes"`
	Digest      string `json:"digest"`
	DurationMs  int64  `json:"duration_ms"`
}

// WorkspaceExecResult is the outcome of exec in a workspace:
// `pyro workspace exec --json`, workspace_exec.
type WorkspaceExecResult struct {
	WorkspaceID   string   `json:"workspace_id"`
	Sequence      int      `json:"sequence"`
	ExecutionMode string   `json:"execution_mode"`
	Backend       string   `json:"backend"`
	Command       []string `json:"command"`
	Cwd           string   `json:"cwd"`
	ExecResult
	// Restarted says the workspace's VM was not running and was booted again
	// from its disk before the command ran.
	Restarted bool `json:"restarted"`
}

// WorkspaceLogs is a workspace's command history: `pyro workspace logs --json`.
type WorkspaceLogs struct {
	WorkspaceID string     `json:"workspace_id"`
	Entries     []LogEntry `json:"entries"`
	Count       int        `json:"count"`
}

// Kinds of workspace log entries (LogEntry.Kind); shells and services
// add theirs (LogShellOpen, ...).
const (
	LogExec     = "exec"     // a command (the only kind pyro 2.4 wrote)
	LogSnapshot = "snapshot" // snapshot create
	LogReset    = "reset"    // the workspace was reset to a snapshot
	LogFork     = "fork"     // a fork was made from it, or it is one
)

// LogEntry is one event of a workspace's history. An exec entry has the
// command's fields; the other kinds have only Kind, Sequence, StartedAt,
// DurationMs, Error and their own fields (their JSON omits the exec ones,
// but for a shell or service event's command, cwd and exit code).
type LogEntry struct {
	Kind     string   `json:"kind"`
	Sequence int      `json:"sequence"`
	Command  []string `json:"command"`
	// CommandTruncated says the stored command was cut at 64 KiB.
	CommandTruncated bool      `json:"command_truncated,omitempty"`
	Cwd              string    `json:"cwd"`
	ExitCode         int       `json:"exit_code"`
	Stdout           string    `json:"stdout"`
	Stderr           string    `json:"stderr"`
	StdoutTruncated  bool      `json:"stdout_truncated"`
	StderrTruncated  bool      `json:"stderr_truncated"`
	TimedOut         bool      `json:"timed_out"`
	StartedAt        time.Time `json:"started_at"`
	DurationMs       int64     `json:"duration_ms"`
	Error            string    `json:"error,omitempty"` // when pyro could not run it at all

	// Snapshot names the snapshot taken, reset to, or forked from ("" for
	// a fork of the moment).
	Snapshot string `json:"snapshot,omitempty"`
	// ForkWorkspaceID, on the source's fork entry, is the new workspace.
	ForkWorkspaceID string `json:"fork_workspace_id,omitempty"`
	// ForkOf, on a fork's first entry, is where it came from.
	ForkOf *ForkOrigin `json:"fork_of,omitempty"`
	// SnapshotSequence, on a reset entry, is the sequence of the snapshot
	// it went back to (0 for the baseline).
	SnapshotSequence int `json:"snapshot_sequence,omitempty"`
	// ResetBy marks history a reset rolled back: the sequence of the first
	// reset entry whose snapshot predates this entry.
	ResetBy int `json:"reset_by,omitempty"`
	// ShellID and Service name the shell or service of an event.
	ShellID string `json:"shell_id,omitempty"`
	Service string `json:"service,omitempty"`
}

// logEvent is the JSON of a non-exec entry.
type logEvent struct {
	Kind            string      `json:"kind"`
	Sequence        int         `json:"sequence"`
	StartedAt       time.Time   `json:"started_at"`
	DurationMs      int64       `json:"duration_ms"`
	Error           string      `json:"error,omitempty"`
	Snapshot        string      `json:"snapshot,omitempty"`
	ForkWorkspaceID string      `json:"fork_workspace_id,omitempty"`
	ForkOf          *ForkOrigin `json:"fork_of,omitempty"`
	SnapshotSeq     int         `json:"snapshot_sequence,omitempty"`
	ResetBy         int         `json:"reset_by,omitempty"`
	ShellID         string      `json:"shell_id,omitempty"`
	Service         string      `json:"service,omitempty"`
	Command         []string    `json:"command,omitempty"`
	Cwd             string      `json:"cwd,omitempty"`
	ExitCode        *int        `json:"exit_code,omitempty"`
}

// MarshalJSON writes an exec entry as pyro 2.4 did (plus kind and, when
// set, reset_by), and the other kinds without the exec fields.
func (e LogEntry) MarshalJSON() ([]byte, error) {
	if e.Kind == "" || e.Kind == LogExec {
		type plain LogEntry
		p := plain(e)
		p.Kind = LogExec
		return json.Marshal(p)
	}
	ev := logEvent{Kind: e.Kind, Sequence: e.Sequence, StartedAt: e.StartedAt, DurationMs: e.DurationMs, Error: e.Error,
		Snapshot: e.Snapshot, ForkWorkspaceID: e.ForkWorkspaceID, ForkOf: e.ForkOf, SnapshotSeq: e.SnapshotSequence, ResetBy: e.ResetBy,
		ShellID: e.ShellID, Service: e.Service, Command: e.Command, Cwd: e.Cwd}
	// A shell's close and a service's stop say how it ended; a service's
	// start, when it ended before it was ready.
	switch {
	case e.Kind == LogShellClose, e.Kind == LogServiceStop, e.Kind == LogServiceStart && e.ExitCode != 0:
		code := e.ExitCode
		ev.ExitCode = &code
	}
	return json.Marshal(ev)
}

// WorkspaceDeleteResult is the outcome of deleting a workspace:
// `pyro workspace delete --json`.
type WorkspaceDeleteResult struct {
	WorkspaceID string `json:"workspace_id"`
	Deleted     bool   `json:"deleted"`
}
