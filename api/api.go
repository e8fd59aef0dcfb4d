// Package api holds the plain types of pyro's public contract: the options
// and results of every operation, the environment catalog's records and the
// progress reports of long operations.
//
// Each type is defined once, here, and used by the engine itself, so its
// JSON encoding is exactly what `pyro ... --json` prints, what the MCP tools
// return as structuredContent and what the Go SDK (package
// github.com/pyro-mcp/pyro, which re-exports these names) hands back.
// Field names and JSON keys are part of the 2.x contract: fields may be
// added, never renamed or removed.
//
// The package has no behaviour beyond small helpers on these values; it
// imports nothing of pyro's.
package api

// Execution modes reported on every VM, workspace and result.
const (
	ModeGuest      = "guest"       // a real guest kernel behind a VMM
	ModeHostCompat = "host_compat" // on the host, in a private directory: NOT isolated
)

// VM and workspace states.
const (
	StateCreated  = "created"
	StateRunning  = "running"
	StateStopped  = "stopped"
	StateExited   = "exited" // the VMM process died without being stopped
	StateDeleting = "deleting"
	// StateSuspended is a workspace stopped by saving its memory and
	// device state next to its disk: start resumes it, processes and all.
	StateSuspended = "suspended"
)

// How a guest came up (Machine.Start, RunResult.Start).
const (
	StartCold   = "cold"   // booted
	StartWarm   = "warm"   // restored from a template of its environment and shape
	StartResume = "resume" // a suspended workspace restored from its own saved state
)

// The contract's defaults. A zero field in an options struct means these.
const (
	DefaultEnvironment         = "debian:12"
	DefaultVCPUCount           = 1
	DefaultMemMiB              = 1024
	DefaultTimeoutSeconds      = 30
	DefaultVMTTLSeconds        = 600
	DefaultWorkspaceTTLSeconds = 3600
	// WorkspaceRoot is where a workspace's files live in the guest, and
	// the default destination of a sync push.
	WorkspaceRoot = "/workspace"
)

// Limits of the contract.
const (
	MinMemMiB         = 128
	MaxTimeoutSeconds = 24 * 3600
)

// SeedEmpty is WorkspaceSeed.Mode of a workspace created without a seed.
const SeedEmpty = "empty"
