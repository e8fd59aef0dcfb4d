package agentproto

import "encoding/json"

// Hello is exchanged on stream 0: the host sends its Hello first, the guest
// answers with its own. A different Proto on either side is a hard error.
type Hello struct {
	Proto    int      `json:"proto"`
	Software string   `json:"software"` // e.g. "pyro-agent 2.4.0"
	Features []string `json:"features,omitempty"`
}

// Request opens a stream.
type Request struct {
	Method string          `json:"method"`
	Params json.RawMessage `json:"params,omitempty"`
}

// Response closes a stream. Exactly one of Result and Error is set.
type Response struct {
	Result json.RawMessage `json:"result,omitempty"`
	Error  *WireError      `json:"error,omitempty"`
}

// WireError is an error reported by the guest.
type WireError struct {
	Code    string `json:"code"` // errdefs.Code values: "invalid_argument", "not_found", ...
	Message string `json:"message"`
	Hint    string `json:"hint,omitempty"` // what the user should do, when the guest knows
}

func (e *WireError) Error() string { return e.Message }

// Methods.
const (
	MethodPing       = "ping"        // params none; result PingResult
	MethodExec       = "exec"        // params ExecRequest; streams stdout/stderr; result ExecResult
	MethodPutArchive = "put_archive" // params PutArchiveRequest; host streams a tar as TypeData then TypeEOF; result PutArchiveResult
	MethodShutdown   = "shutdown"    // params none; guest syncs, answers, then powers off
)

// PingResult describes the guest.
type PingResult struct {
	KernelRelease string   `json:"kernel_release"`
	Hostname      string   `json:"hostname"`
	UptimeMs      int64    `json:"uptime_ms"`
	Addresses     []string `json:"addresses,omitempty"` // CIDR strings of non-loopback interfaces
}

// ExecRequest runs one command. Exactly one of Argv and Shell is set; Shell is
// run with /bin/sh -c.
type ExecRequest struct {
	Argv      []string          `json:"argv,omitempty"`
	Shell     string            `json:"shell,omitempty"`
	Cwd       string            `json:"cwd,omitempty"`
	Env       map[string]string `json:"env,omitempty"`
	TimeoutMs int64             `json:"timeout_ms,omitempty"` // 0: no timeout
	MaxOutput int               `json:"max_output,omitempty"` // per stream; 0: DefaultMaxOutput
	Stdin     bool              `json:"stdin,omitempty"`      // host will send TypeData/TypeEOF as stdin
	// Sync asks the guest to flush its writes to disk before answering, so
	// the command's effects survive the VMM being killed right after.
	Sync bool `json:"sync,omitempty"`
}

// DefaultMaxOutput caps each of stdout and stderr.
const DefaultMaxOutput = 1 << 20

// ExecResult ends an exec stream. The output itself arrives as TypeStdout and
// TypeStderr frames, at most MaxOutput bytes of each.
type ExecResult struct {
	ExitCode        int    `json:"exit_code"`
	TimedOut        bool   `json:"timed_out"`
	StdoutTruncated bool   `json:"stdout_truncated"`
	StderrTruncated bool   `json:"stderr_truncated"`
	DurationMs      int64  `json:"duration_ms"`
	Message         string `json:"message,omitempty"` // e.g. "command timed out after 5s; process group killed"
}

// PutArchiveRequest extracts a tar stream under Dest, which must be an
// absolute path under Root. Nothing is written when any member is unsafe
// (absolute, "..", a link escaping Dest, a device or FIFO) or the total
// exceeds MaxBytes.
type PutArchiveRequest struct {
	Dest     string `json:"dest"`
	Root     string `json:"root"` // e.g. "/workspace": Dest must be Root or under it
	MaxBytes int64  `json:"max_bytes"`
}

// PutArchiveResult reports what was written.
type PutArchiveResult struct {
	Entries int   `json:"entries"`
	Bytes   int64 `json:"bytes"`
}
