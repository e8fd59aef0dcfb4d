package engine

import "time"

// Execution modes reported on every VM, workspace and result.
const (
	ModeGuest      = "guest"       // a real guest kernel behind a VMM
	ModeHostCompat = "host_compat" // on the host, in a private directory: NOT isolated
)

// VM states.
const (
	StateCreated  = "created"
	StateStarting = "starting"
	StateRunning  = "running"
	StateStopped  = "stopped"
	StateExited   = "exited" // the VMM process died without being stopped
	StateDeleting = "deleting"
)

// Defaults of the public contract.
const (
	DefaultVCPUs          = 1
	DefaultMemMiB         = 1024
	DefaultTimeoutSeconds = 30
	DefaultVMTTLSeconds   = 600
	MinMemMiB             = 128
	MaxTimeoutSeconds     = 24 * 3600
)

// CreateOptions describe a VM to create. Zero values take the contract's
// defaults (1 vCPU, 1024 MiB, TTL 600 s, no network, no host compat).
type CreateOptions struct {
	Environment     string `json:"environment"`
	VCPUCount       int    `json:"vcpu_count,omitempty"`
	MemMiB          int    `json:"mem_mib,omitempty"`
	TTLSeconds      int    `json:"ttl_seconds,omitempty"`
	Network         bool   `json:"network,omitempty"`
	AllowHostCompat bool   `json:"allow_host_compat,omitempty"`
}

// VM is the public view of a VM record: the JSON of `pyro vm status --json`.
type VM struct {
	VMID            string     `json:"vm_id"`
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
	VMMPid          int        `json:"vmm_pid,omitempty"`
	Running         bool       `json:"running"`
	Note            string     `json:"note,omitempty"`
}

// ExecOptions describe one command. Exactly one of Command and Shell is set.
type ExecOptions struct {
	Command        []string          `json:"command,omitempty"`
	Shell          string            `json:"shell,omitempty"`
	Cwd            string            `json:"cwd,omitempty"`
	Env            map[string]string `json:"env,omitempty"`
	TimeoutSeconds int               `json:"timeout_seconds,omitempty"`
}

// ExecResult is the outcome of one command in a guest.
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

// VMExecResult is the JSON of `pyro vm exec --json`: the result plus which
// VM ran it (and that it was cleaned up afterwards).
type VMExecResult struct {
	VMID          string `json:"vm_id"`
	Environment   string `json:"environment"`
	ExecutionMode string `json:"execution_mode"`
	Backend       string `json:"backend"`
	ExecResult
	Cleaned bool `json:"cleaned"`
}

// RunOptions are CreateOptions plus the command of a one-shot run.
type RunOptions struct {
	CreateOptions
	ExecOptions
}

// RunResult is the JSON of `pyro run --json`.
type RunResult struct {
	Environment   string   `json:"environment"`
	VMID          string   `json:"vm_id"`
	ExecutionMode string   `json:"execution_mode"`
	Backend       string   `json:"backend"`
	VCPUCount     int      `json:"vcpu_count"`
	MemMiB        int      `json:"mem_mib"`
	Network       bool     `json:"network"`
	Command       []string `json:"command"`
	ExecResult
	BootMs  int64 `json:"boot_ms"`
	TotalMs int64 `json:"total_ms"`
}

// DeleteResult is returned by delete.
type DeleteResult struct {
	VMID    string `json:"vm_id"`
	Deleted bool   `json:"deleted"`
}

// NetworkInfo describes a VM's network.
type NetworkInfo struct {
	VMID                  string   `json:"vm_id"`
	Network               bool     `json:"network"`
	Mode                  string   `json:"mode"` // "none", "user" (QEMU user-mode NAT) or "host" (host_compat)
	GuestIP               string   `json:"guest_ip,omitempty"`
	Gateway               string   `json:"gateway,omitempty"`
	DNS                   []string `json:"dns,omitempty"`
	HostLoopbackReachable bool     `json:"host_loopback_reachable"`
	Addresses             []string `json:"addresses,omitempty"` // as the guest reports them when running
}

// ReapResult lists what reap removed.
type ReapResult struct {
	Reaped []string `json:"reaped"`
	Count  int      `json:"count"`
}
