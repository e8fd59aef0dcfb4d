package api

import (
	"io"
	"time"
)

// Living in a workspace: secrets given at create, interactive shells and
// long-running services in the guest, names and labels to find it by.

// Secret is one secret given at create: its value, or a host file to
// read it from (one trailing newline is dropped). Set exactly one of
// Value and FilePath.
type Secret struct {
	Name     string `json:"name" jsonschema:"the secret's name: letters, digits and _, not starting with a digit (e.g. API_TOKEN)"`
	Value    string `json:"value,omitempty" jsonschema:"the secret's value (or give file_path)"`
	FilePath string `json:"file_path,omitempty" jsonschema:"a host file holding the value (or give value)"`
}

// SecretInfo is what pyro shows of a secret: never its value.
type SecretInfo struct {
	Name       string `json:"name"`
	SourceKind string `json:"source_kind"` // SecretFromValue or SecretFromFile
}

// Secret source kinds.
const (
	SecretFromValue = "value"
	SecretFromFile  = "file"
)

// Secret limits.
const (
	MaxSecrets          = 32
	MaxSecretBytes      = 64 << 10
	MinSecretBytes      = 4 // shorter values would hide ordinary output
	SecretsGuestDir     = "/run/pyro-secrets"
	RedactedPlaceholder = "[REDACTED]"
)

// WorkspaceUpdateOptions change a workspace's name, labels or expiry.
// Zero fields change nothing.
type WorkspaceUpdateOptions struct {
	Name        string            `json:"name,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`       // set (added or replaced)
	ClearLabels []string          `json:"clear_labels,omitempty"` // removed
	// TTLSeconds, when set, makes the workspace expire that many seconds
	// from now.
	TTLSeconds int `json:"ttl_seconds,omitempty"`
}

// WorkspaceListOptions filter a workspace list. A nil *WorkspaceListOptions
// lists every workspace.
type WorkspaceListOptions struct {
	// Labels keeps the workspaces that have every one of these labels.
	Labels map[string]string `json:"labels,omitempty"`
}

// Kinds of workspace log entries written for shells and services
// (LogEntry.Kind; LogExec and the disk kinds are in results.go).
const (
	LogShellOpen    = "shell_open"
	LogShellClose   = "shell_close"
	LogServiceStart = "service_start"
	LogServiceStop  = "service_stop"
)

// Shell states.
const (
	ShellRunning = "running"
	ShellExited  = "exited" // its process ended on its own: exit_code says how
	ShellClosed  = "closed"
)

// Shell defaults and limits.
const (
	DefaultShellCols     = 120
	DefaultShellRows     = 30
	DefaultShellMaxChars = 65536
	MaxShellMaxChars     = 1 << 20
	// MaxShellWaitForIdleMs bounds wait_for_idle_ms; a read waits at most
	// MaxShellReadWaitMs in all.
	MaxShellWaitForIdleMs = 10000
	MaxShellReadWaitMs    = 30000
	// ShellBufferBytes of each shell's output are kept.
	ShellBufferBytes = 1 << 20
)

// ShellOpenOptions describe a shell to open. Zero values take the defaults:
// /workspace, 120 columns, 30 rows.
type ShellOpenOptions struct {
	Cwd  string `json:"cwd,omitempty"`
	Cols int    `json:"cols,omitempty"`
	Rows int    `json:"rows,omitempty"`
	// SecretEnv exposes secrets as environment variables: secret name to
	// variable name ("" means the secret's own name).
	SecretEnv map[string]string `json:"secret_env,omitempty"`
}

// Shell is one shell of a workspace: `pyro workspace shell open --json`,
// shell_open, shell_signal, shell_close.
type Shell struct {
	WorkspaceID string     `json:"workspace_id"`
	ShellID     string     `json:"shell_id"`
	State       string     `json:"state"`
	Pid         int        `json:"pid,omitempty"`
	Cwd         string     `json:"cwd"`
	Cols        int        `json:"cols"`
	Rows        int        `json:"rows"`
	StartedAt   time.Time  `json:"started_at"`
	EndedAt     *time.Time `json:"ended_at,omitempty"`
	ExitCode    *int       `json:"exit_code,omitempty"`
	// Cursor is the end of its output so far: a read from here returns
	// what it prints next.
	Cursor int64 `json:"cursor"`
}

// ShellList is `pyro workspace shell list --json`, shell_list.
type ShellList struct {
	WorkspaceID string  `json:"workspace_id"`
	Shells      []Shell `json:"shells"`
	Count       int     `json:"count"`
}

// ShellReadOptions describe one read of a shell's output.
type ShellReadOptions struct {
	// Cursor is a byte offset in the shell's raw output: 0 for the
	// start, a previous read's NextCursor for what came since.
	Cursor int64 `json:"cursor,omitempty"`
	// MaxChars bounds the output returned (default 65536; counted in
	// bytes of the raw output).
	MaxChars int `json:"max_chars,omitempty"`
	// Plain strips ANSI and control sequences and applies carriage
	// returns and backspaces.
	Plain bool `json:"plain,omitempty"`
	// WaitForIdleMs first waits until the shell has printed nothing for
	// that long (at most MaxShellWaitForIdleMs; the read returns within
	// MaxShellReadWaitMs whatever happens).
	WaitForIdleMs int `json:"wait_for_idle_ms,omitempty"`
}

// ShellReadResult is one read: `pyro workspace shell read --json`, shell_read.
type ShellReadResult struct {
	WorkspaceID string `json:"workspace_id"`
	ShellID     string `json:"shell_id"`
	// Cursor is where Output starts: the cursor asked for, or the start
	// of the kept output when the one asked for was older (Dropped bytes
	// are lost).
	Cursor     int64  `json:"cursor"`
	NextCursor int64  `json:"next_cursor"`
	Output     string `json:"output"`
	Dropped    int64  `json:"dropped"`
	// More says output after NextCursor is already there (max_chars cut).
	More     bool   `json:"more"`
	Plain    bool   `json:"plain"`
	State    string `json:"state"`
	ExitCode *int   `json:"exit_code,omitempty"`
}

// ShellWriteOptions are input for a shell. A newline is appended unless
// NoNewline is set.
type ShellWriteOptions struct {
	Input     string `json:"input"`
	NoNewline bool   `json:"no_newline,omitempty"`
}

// ShellWriteResult says how much input was written.
type ShellWriteResult struct {
	WorkspaceID string `json:"workspace_id"`
	ShellID     string `json:"shell_id"`
	Written     int    `json:"written"`
}

// TermSize is a terminal's size.
type TermSize struct {
	Cols int `json:"cols"`
	Rows int `json:"rows"`
}

// ShellAttachOptions connect a terminal to a shell: Stdin is typed into
// it, its output goes to Stdout, and each size sent on Resize resizes it.
// The attach ends when the shell ends or the call's context is cancelled
// (a detach: the shell keeps running).
type ShellAttachOptions struct {
	Stdin  io.Reader
	Stdout io.Writer
	Resize <-chan TermSize
	// Replay is how much of the output already printed to show first
	// (bytes; whole lines where it can).
	Replay int
}

// Service states.
const (
	ServiceStarting = "starting"
	ServiceReady    = "ready"
	ServiceFailed   = "failed"  // not ready within its timeout, or could not start
	ServiceExited   = "exited"  // its process ended on its own: exit_code says how
	ServiceStopped  = "stopped" // stopped by a request, or with the workspace
)

// Readiness probe types, and restart policies.
const (
	ReadyFile        = "file"
	ReadyTCP         = "tcp"
	ReadyHTTP        = "http"
	ReadyCommand     = "command"
	RestartNo        = "no"
	RestartOnFailure = "on-failure"
)

// Service defaults.
const (
	DefaultReadyTimeoutSeconds = 30
	DefaultReadyIntervalMs     = 500
	DefaultServiceTailLines    = 200
	// ServiceStopGraceSeconds is how long a stop waits between TERM and KILL.
	ServiceStopGraceSeconds = 5
)

// Readiness says when a service is ready: a file exists (path, relative to
// the service's cwd), 127.0.0.1:port accepts TCP connections, an HTTP GET
// of url answers 2xx or 3xx, or a shell command exits 0.
type Readiness struct {
	Type    string `json:"type" jsonschema:"file, tcp, http or command"`
	Path    string `json:"path,omitempty" jsonschema:"for file: the file that appears when the service is ready (relative to its cwd)"`
	Port    int    `json:"port,omitempty" jsonschema:"for tcp: the port on 127.0.0.1 in the guest"`
	URL     string `json:"url,omitempty" jsonschema:"for http: an http:// URL that answers 2xx or 3xx when ready"`
	Command string `json:"command,omitempty" jsonschema:"for command: a shell command that exits 0 when ready"`
}

// ServiceStartOptions describe a service: its command (exactly one of
// Command, a shell string, and Argv), where it runs, its readiness and
// restart policy.
type ServiceStartOptions struct {
	Command             string            `json:"command,omitempty"`
	Argv                []string          `json:"argv,omitempty"`
	Cwd                 string            `json:"cwd,omitempty"`
	Readiness           *Readiness        `json:"readiness,omitempty"`
	ReadyTimeoutSeconds int               `json:"ready_timeout_seconds,omitempty"`
	ReadyIntervalMs     int               `json:"ready_interval_ms,omitempty"`
	Restart             string            `json:"restart,omitempty"` // RestartNo (default) or RestartOnFailure
	SecretEnv           map[string]string `json:"secret_env,omitempty"`
}

// PublishedPort is a guest port reachable from the host. (Ports are
// published with the network policy; until then the list is empty.)
type PublishedPort struct {
	GuestPort   int    `json:"guest_port"`
	HostAddress string `json:"host_address"`
	HostPort    int    `json:"host_port"`
	Protocol    string `json:"protocol"`
}

// Service is one service of a workspace: `pyro workspace service status
// --json`, service_start, service_status, service_stop.
type Service struct {
	WorkspaceID    string          `json:"workspace_id"`
	Name           string          `json:"name"`
	State          string          `json:"state"`
	Command        []string        `json:"command"`
	Cwd            string          `json:"cwd"`
	Readiness      *Readiness      `json:"readiness,omitempty"`
	Restart        string          `json:"restart"`
	Pid            int             `json:"pid,omitempty"`
	StartedAt      *time.Time      `json:"started_at,omitempty"`
	ReadyAt        *time.Time      `json:"ready_at,omitempty"`
	EndedAt        *time.Time      `json:"ended_at,omitempty"`
	ExitCode       *int            `json:"exit_code,omitempty"`
	RestartCount   int             `json:"restart_count"`
	Message        string          `json:"message,omitempty"`
	PublishedPorts []PublishedPort `json:"published_ports"`
}

// ServiceList is `pyro workspace service list --json`, service_list.
type ServiceList struct {
	WorkspaceID string    `json:"workspace_id"`
	Services    []Service `json:"services"`
	Count       int       `json:"count"`
	Note        string    `json:"note,omitempty"`
}

// ServiceLogsOptions choose the part of a log: the last TailLines lines
// (default 200) or All that is kept.
type ServiceLogsOptions struct {
	TailLines int  `json:"tail_lines,omitempty"`
	All       bool `json:"all,omitempty"`
}

// ServiceLogs is a service's log (stdout and stderr together):
// `pyro workspace service logs --json`, service_logs.
type ServiceLogs struct {
	WorkspaceID string `json:"workspace_id"`
	Name        string `json:"name"`
	State       string `json:"state"`
	Output      string `json:"output"`
	// Truncated says older output exists that is not in Output.
	Truncated bool   `json:"truncated"`
	Note      string `json:"note,omitempty"`
}
