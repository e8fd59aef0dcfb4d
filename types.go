package pyro

import (
	"github.com/pyro-mcp/pyro/api"
	"github.com/pyro-mcp/pyro/internal/catalog"
	"github.com/pyro-mcp/pyro/internal/errdefs"
)

// Options and results. Each is defined once, with its fields and JSON keys,
// in package github.com/pyro-mcp/pyro/api, which the engine uses too: a
// result's JSON encoding is exactly what the CLI prints with --json and what
// the MCP tools return as structuredContent.
type (
	// Shape is the size and reach of a VM or workspace, embedded in the
	// create and run options: vCPUs, memory, TTL, network, host compat.
	Shape = api.Shape
	// CreateVMOptions shape a VM. Environment is required.
	CreateVMOptions = api.CreateVMOptions
	// CreateWorkspaceOptions shape a workspace and name its seed.
	CreateWorkspaceOptions = api.CreateWorkspaceOptions
	// RunOptions are a one-shot run: the VM's environment and shape, and
	// the command.
	RunOptions = api.RunOptions
	// ExecOptions describe one command: exactly one of Command (a shell
	// string) and Argv.
	ExecOptions = api.ExecOptions
	// PushOptions tune PushWorkspaceSync. A nil *PushOptions is valid.
	PushOptions = api.PushOptions

	// VM is a VM record: `pyro vm status --json`.
	VM = api.VM
	// VMList is `pyro vm list --json`.
	VMList = api.VMList
	// RunResult is the outcome of RunInVM: `pyro run --json`.
	RunResult = api.RunResult
	// ExecResult is one command's outcome, embedded in the exec results.
	ExecResult = api.ExecResult
	// VMExecResult is the outcome of ExecVM: `pyro vm exec --json`.
	VMExecResult = api.VMExecResult
	// DeleteResult is returned by DeleteVM.
	DeleteResult = api.DeleteResult
	// NetworkInfo describes a VM's network.
	NetworkInfo = api.NetworkInfo
	// ReapResult lists what ReapExpired removed.
	ReapResult = api.ReapResult

	// Workspace is a workspace record: `pyro workspace status --json`.
	Workspace = api.Workspace
	// WorkspaceList is `pyro workspace list --json`.
	WorkspaceList = api.WorkspaceList
	// WorkspaceSeed says how /workspace was initialised.
	WorkspaceSeed = api.WorkspaceSeed
	// CommandSummary is a workspace's last command.
	CommandSummary = api.CommandSummary
	// SyncResult is the outcome of PushWorkspaceSync.
	SyncResult = api.SyncResult
	// WorkspaceExecResult is the outcome of ExecWorkspace.
	WorkspaceExecResult = api.WorkspaceExecResult
	// WorkspaceLogs is a workspace's command history.
	WorkspaceLogs = api.WorkspaceLogs
	// LogEntry is one command of a workspace's history.
	LogEntry = api.LogEntry
	// WorkspaceDeleteResult is returned by DeleteWorkspace.
	WorkspaceDeleteResult = api.WorkspaceDeleteResult
	// WorkspaceDisk describes a workspace's disks and what they occupy.
	WorkspaceDisk = api.WorkspaceDisk
	// Snapshot is a point a workspace can be reset to or forked from.
	Snapshot = api.Snapshot
	// SnapshotList is the outcome of ListSnapshots.
	SnapshotList = api.SnapshotList
	// SnapshotDeleteResult is the outcome of DeleteSnapshot.
	SnapshotDeleteResult = api.SnapshotDeleteResult
	// ForkOptions tune ForkWorkspace. A nil *ForkOptions is valid.
	ForkOptions = api.ForkOptions
	// ForkOrigin says where a forked workspace came from.
	ForkOrigin = api.ForkOrigin
	// ResetSummary is a workspace's last reset.
	ResetSummary = api.ResetSummary
	// DiskEntry is one file of a stopped workspace's disk.
	DiskEntry = api.DiskEntry
	// DiskList is the outcome of ListWorkspaceDisk.
	DiskList = api.DiskList
	// DiskRead is the outcome of ReadWorkspaceDisk.
	DiskRead = api.DiskRead
	// DiskExportOptions tune ExportWorkspaceDisk.
	DiskExportOptions = api.DiskExportOptions
	// DiskExportResult is the outcome of ExportWorkspaceDisk.
	DiskExportResult = api.DiskExportResult
	// EnvironmentUsage is what the VMs and workspaces of an environment occupy.
	EnvironmentUsage = api.EnvironmentUsage

	// Environment is one catalog entry and its install state.
	Environment = api.Environment
	// EnvironmentList is `pyro env list --json`: the catalog and its version.
	EnvironmentList = api.EnvironmentList
	// InstalledEnvironment locates an installed environment's files.
	InstalledEnvironment = api.InstalledEnvironment
	// PullResult is the outcome of PullEnvironment: `pyro env pull --json`.
	PullResult = api.PullResult
	// EnvironmentInfo describes one environment: `pyro env inspect --json`.
	EnvironmentInfo = api.EnvironmentInfo
	// Manifest is an installed environment's recorded recipe and blobs.
	Manifest = api.Manifest
	// PruneResult is what PruneEnvironments removed: `pyro env prune --json`.
	PruneResult = api.PruneResult
	// PushResult is what PushEnvironment published: `pyro env push --json`.
	PushResult = api.PushResult

	// Progress is one report of a long operation (a pull, a boot, a seed).
	Progress = api.Progress
)

// CatalogVersion names this revision of the environment catalog.
const CatalogVersion = catalog.CatalogVersion

// The contract's defaults. A zero field in an options struct means these.
const (
	DefaultEnvironment    = api.DefaultEnvironment
	DefaultVCPUCount      = api.DefaultVCPUCount
	DefaultMemMiB         = api.DefaultMemMiB
	DefaultTimeoutSeconds = api.DefaultTimeoutSeconds
	DefaultVMTTLSeconds   = api.DefaultVMTTLSeconds
	DefaultWorkspaceTTL   = api.DefaultWorkspaceTTLSeconds
	WorkspaceRoot         = api.WorkspaceRoot
	DefaultDiskGiB        = api.DefaultDiskGiB   // a workspace's /workspace disk
	BaselineSnapshot      = api.BaselineSnapshot // the snapshot taken at create
	DefaultDiskReadBytes  = api.DefaultDiskReadBytes
	// Kinds of workspace log entries (LogEntry.Kind).
	LogExec        = api.LogExec
	LogSnapshot    = api.LogSnapshot
	LogReset       = api.LogReset
	LogFork        = api.LogFork
	ModeGuest      = api.ModeGuest      // execution_mode of a real guest
	ModeHostCompat = api.ModeHostCompat // execution_mode on the host, NOT isolated
)

// Error classes. Every error the Client returns wraps one of them, so
// callers can branch with errors.Is; ErrorCode and ErrorHint read the rest.
var (
	ErrNotFound           = errdefs.ErrNotFound           // unknown environment, VM, workspace or path
	ErrInvalidArgument    = errdefs.ErrInvalidArgument    // malformed request
	ErrAlreadyExists      = errdefs.ErrAlreadyExists      // the thing being created exists
	ErrConflict           = errdefs.ErrConflict           // ambiguous id prefix, or a lock is held
	ErrFailedPrecondition = errdefs.ErrFailedPrecondition // valid, but the current state forbids it
	ErrUnavailable        = errdefs.ErrUnavailable        // no guest can be booted or reached here
	ErrTimeout            = errdefs.ErrTimeout            // a deadline passed (boot, exec, pull)
	ErrInternal           = errdefs.ErrInternal           // a bug or an unexpected host failure
)
