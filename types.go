package pyro

import (
	"io"

	"github.com/pyro-mcp/pyro/internal/catalog"
	"github.com/pyro-mcp/pyro/internal/engine"
	"github.com/pyro-mcp/pyro/internal/errdefs"
)

// Results. Each is the engine's own type, so its JSON encoding is exactly
// what the CLI prints with --json and what the MCP tools return as
// structuredContent.
type (
	// VM is a VM record: `pyro vm status --json`.
	VM = engine.VM
	// RunResult is the outcome of RunInVM: `pyro run --json`.
	RunResult = engine.RunResult
	// ExecResult is one command's outcome, embedded in the exec results.
	ExecResult = engine.ExecResult
	// VMExecResult is the outcome of ExecVM: `pyro vm exec --json`.
	VMExecResult = engine.VMExecResult
	// DeleteResult is returned by DeleteVM.
	DeleteResult = engine.DeleteResult
	// NetworkInfo describes a VM's network.
	NetworkInfo = engine.NetworkInfo
	// ReapResult lists what ReapExpired removed.
	ReapResult = engine.ReapResult

	// Workspace is a workspace record: `pyro workspace status --json`.
	Workspace = engine.Workspace
	// WorkspaceSeed says how /workspace was initialised.
	WorkspaceSeed = engine.WorkspaceSeed
	// CommandSummary is a workspace's last command.
	CommandSummary = engine.CommandSummary
	// SyncResult is the outcome of PushWorkspaceSync.
	SyncResult = engine.SyncResult
	// WorkspaceExecResult is the outcome of ExecWorkspace.
	WorkspaceExecResult = engine.WorkspaceExecResult
	// WorkspaceLogs is a workspace's command history.
	WorkspaceLogs = engine.WorkspaceLogs
	// LogEntry is one command of a workspace's history.
	LogEntry = engine.LogEntry
	// WorkspaceDeleteResult is returned by DeleteWorkspace.
	WorkspaceDeleteResult = engine.WorkspaceDeleteResult

	// Environment is one catalog entry and its install state: an element
	// of `pyro env list --json`'s "environments".
	Environment = catalog.EnvStatus
	// InstalledEnvironment locates an installed environment's files.
	InstalledEnvironment = catalog.Installed
	// Manifest is an installed environment's recorded recipe and blobs.
	Manifest = catalog.Manifest
	// PruneResult is what PruneEnvironments removed: `pyro env prune --json`.
	PruneResult = catalog.PruneResult
	// Progress is one step of an environment pull.
	Progress = catalog.Progress
	// PushResult is what PushEnvironment published: `pyro env push --json`.
	PushResult = catalog.PushResult
)

// CatalogVersion names this revision of the environment catalog.
const CatalogVersion = catalog.CatalogVersion

// EnvironmentList is `pyro env list --json`: the catalog and its version.
type EnvironmentList struct {
	CatalogVersion string        `json:"catalog_version"`
	Environments   []Environment `json:"environments"`
}

// PullResult is the outcome of PullEnvironment: `pyro env pull --json`.
type PullResult struct {
	*InstalledEnvironment
	Source string `json:"source"` // "cache", "registry" or "build"
}

// EnvironmentInfo describes one environment: `pyro env inspect --json`.
type EnvironmentInfo struct {
	Name        string                `json:"name"`
	Version     string                `json:"version"`
	Description string                `json:"description"`
	Default     bool                  `json:"default"`
	Installed   bool                  `json:"installed"`
	Problem     string                `json:"problem,omitempty"` // why an installed environment does not count
	RegistryRef string                `json:"registry_ref,omitempty"`
	Manifest    *Manifest             `json:"manifest,omitempty"`
	Paths       *InstalledEnvironment `json:"paths,omitempty"`
}

// The contract's defaults. A zero field in an options struct means these.
const (
	DefaultEnvironment     = "debian:12"
	DefaultVCPUCount       = engine.DefaultVCPUs
	DefaultMemMiB          = engine.DefaultMemMiB
	DefaultTimeoutSeconds  = engine.DefaultTimeoutSeconds
	DefaultVMTTLSeconds    = engine.DefaultVMTTLSeconds
	DefaultWorkspaceTTL    = engine.DefaultWorkspaceTTLSeconds
	WorkspaceRoot          = engine.WorkspaceRoot
	ModeGuest              = engine.ModeGuest      // execution_mode of a real guest
	ModeHostCompat         = engine.ModeHostCompat // execution_mode on the host, NOT isolated
	defaultCommandExamples = `e.g. ExecOptions{Command: "git --version"} or ExecOptions{Argv: []string{"git", "--version"}}`
)

// CreateVMOptions shape a VM. Environment is required; zero values take the
// contract's defaults: 1 vCPU, 1024 MiB, TTL 600 s, no network, and no host
// compatibility fallback.
type CreateVMOptions struct {
	Environment     string
	VCPUCount       int
	MemMiB          int
	TTLSeconds      int
	Network         bool // outbound network for the guest; never the host's loopback
	AllowHostCompat bool // if no guest can boot, run on the host WITHOUT isolation
}

// ExecOptions describe one command: Command is a shell string run with
// /bin/sh -c (as in the MCP tools and the Python SDK); Argv runs a program
// directly. Set exactly one.
type ExecOptions struct {
	Command        string
	Argv           []string
	Cwd            string            // default: the agent's for VMs, /workspace for workspaces
	Env            map[string]string // added to the guest's environment
	TimeoutSeconds int               // default 30; the result then has TimedOut set
	// Stdout and Stderr, when set, receive the output as it arrives; the
	// result holds it too (capped).
	Stdout, Stderr io.Writer
}

// RunOptions are a one-shot run: the VM's shape and the command.
type RunOptions struct {
	Environment     string
	VCPUCount       int
	MemMiB          int
	TTLSeconds      int
	Network         bool
	AllowHostCompat bool

	Command        string
	Argv           []string
	Cwd            string
	Env            map[string]string
	TimeoutSeconds int
	Stdout, Stderr io.Writer
}

// CreateWorkspaceOptions shape a workspace. Zero values take the contract's
// defaults (1 vCPU, 1024 MiB, TTL 3600 s, no network, no host compat).
type CreateWorkspaceOptions struct {
	Environment     string
	VCPUCount       int
	MemMiB          int
	TTLSeconds      int
	Network         bool
	AllowHostCompat bool
	// SeedPath is a host directory or a local .tar/.tar.gz/.tgz archive
	// copied into /workspace before CreateWorkspace returns.
	SeedPath string
}

// PushOptions tune PushWorkspaceSync. A nil *PushOptions is valid.
type PushOptions struct {
	// Dest is /workspace (the default) or a directory under it.
	Dest string
}

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

// ErrorCode names err's class as the CLI's JSON and the MCP tools do:
// "not_found", "invalid_argument", "unavailable", ... ("internal" if none).
func ErrorCode(err error) string { return errdefs.Code(err) }

// ErrorHint returns what to do about err, or "".
func ErrorHint(err error) string { return errdefs.HintOf(err) }
