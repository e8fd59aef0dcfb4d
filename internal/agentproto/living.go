package agentproto

import (
	"bytes"
	"context"
	"io"
	"math"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/lazyregexp"
)

// What lives in a workspace between requests: secrets, shells and
// services. The agent owns them, so they outlive the host process that
// asked for them; every request below is one ordinary stream. Output
// (a shell's, a service's log) travels as TypeStdout frames on the
// request's stream, and the response carries where it came from.
const (
	MethodSecretsSet    = "secrets_set"    // params SecretsSetRequest; result none
	MethodActivity      = "activity"       // params none; result Activity
	MethodStopAll       = "stop_all"       // params StopAllRequest; result StopAllResult
	MethodShellOpen     = "shell_open"     // params ShellOpenRequest; result ShellInfo
	MethodShellRead     = "shell_read"     // params ShellReadRequest; streams output; result ShellReadResult
	MethodShellWrite    = "shell_write"    // params ShellWriteRequest; result ShellWriteResult
	MethodShellSignal   = "shell_signal"   // params ShellSignalRequest; result ShellInfo
	MethodShellResize   = "shell_resize"   // params ShellResizeRequest; result ShellInfo
	MethodShellClose    = "shell_close"    // params ShellRef; result ShellInfo
	MethodShellList     = "shell_list"     // params none; result ShellList
	MethodShellAttach   = "shell_attach"   // params ShellAttachRequest; host streams input as TypeData, guest streams output; result ShellInfo
	MethodServiceStart  = "service_start"  // params ServiceStartRequest; result ServiceInfo (once ready, failed or ended)
	MethodServiceList   = "service_list"   // params none; result ServiceList
	MethodServiceStatus = "service_status" // params ServiceRef; result ServiceInfo
	MethodServiceLogs   = "service_logs"   // params ServiceLogsRequest; streams the log; result ServiceLogsResult
	MethodServiceStop   = "service_stop"   // params ServiceStopRequest; result ServiceInfo
)

// Secret is one secret's name and value.
type Secret struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// SecretsSetRequest replaces the guest's secrets: files under the agent's
// secrets directory (a tmpfs in a guest) and the values it redacts.
type SecretsSetRequest struct {
	Secrets []Secret `json:"secrets"`
}

// Activity is what runs in the guest now: a workspace is not reaped while
// any of it is non-zero.
type Activity struct {
	Execs    int `json:"execs"`
	Shells   int `json:"shells"`   // shells whose process runs
	Services int `json:"services"` // services starting or ready
}

// Busy reports whether anything runs.
func (a *Activity) Busy() bool { return a.Execs+a.Shells+a.Services > 0 }

// Shell states.
const (
	ShellRunning = "running"
	ShellExited  = "exited" // its process ended on its own; ExitCode says how
	ShellClosed  = "closed" // closed by a request (its process was hung up)
)

// ShellOpenRequest starts an interactive shell on a new pseudo-terminal.
type ShellOpenRequest struct {
	Cwd  string            `json:"cwd,omitempty"`
	Cols int               `json:"cols,omitempty"`
	Rows int               `json:"rows,omitempty"`
	Env  map[string]string `json:"env,omitempty"`
}

// ShellInfo describes a shell.
type ShellInfo struct {
	ID        string     `json:"shell_id"`
	State     string     `json:"state"`
	Pid       int        `json:"pid,omitempty"`
	Cwd       string     `json:"cwd"`
	Cols      int        `json:"cols"`
	Rows      int        `json:"rows"`
	StartedAt time.Time  `json:"started_at"`
	EndedAt   *time.Time `json:"ended_at,omitempty"`
	ExitCode  *int       `json:"exit_code,omitempty"`
	// End is the offset just past the last byte of output so far.
	End int64 `json:"end"`
}

// ShellRef names a shell: its id or a unique prefix of it.
type ShellRef struct {
	ID string `json:"shell_id"`
}

// ShellReadRequest reads output from Cursor (a byte offset in the shell's
// output stream), at most MaxBytes. With WaitIdleMs, the read first waits
// until the shell has printed nothing (and been sent nothing) for that
// long, or its process ended, or MaxWaitMs passed.
type ShellReadRequest struct {
	ID         string `json:"shell_id"`
	Cursor     int64  `json:"cursor"`
	MaxBytes   int    `json:"max_bytes"`
	WaitIdleMs int64  `json:"wait_idle_ms,omitempty"`
	MaxWaitMs  int64  `json:"max_wait_ms,omitempty"`
}

// ShellReadResult ends a read whose bytes arrived as TypeStdout frames:
// they run from Start to Next. Dropped counts the bytes between the
// cursor asked for and Start that are no longer kept.
type ShellReadResult struct {
	Start   int64     `json:"start"`
	Next    int64     `json:"next"`
	Dropped int64     `json:"dropped"`
	Shell   ShellInfo `json:"shell"`
}

// MaxShellInput bounds one write to a shell.
const MaxShellInput = 1 << 20

// ShellWriteRequest sends input to the shell's terminal.
type ShellWriteRequest struct {
	ID   string `json:"shell_id"`
	Data []byte `json:"data"`
}

// ShellWriteResult says how much input was written.
type ShellWriteResult struct {
	Written int `json:"written"`
}

// ShellSignalRequest sends a signal (INT, TERM, KILL, HUP, QUIT) to the
// shell's foreground process group.
type ShellSignalRequest struct {
	ID     string `json:"shell_id"`
	Signal string `json:"signal"`
}

// ShellResizeRequest sets the terminal's size.
type ShellResizeRequest struct {
	ID   string `json:"shell_id"`
	Cols int    `json:"cols"`
	Rows int    `json:"rows"`
}

// ShellAttachRequest streams the shell's output from Cursor (-1: from
// the current end) until the shell ends or the host cancels the stream
// (a detach), and writes the host's TypeData to the terminal.
type ShellAttachRequest struct {
	ID     string `json:"shell_id"`
	Cursor int64  `json:"cursor"`
}

// ShellList lists the shells, open and exited.
type ShellList struct {
	Shells []ShellInfo `json:"shells"`
}

// Service states.
const (
	ServiceStarting = "starting" // running, not yet ready (or waiting to restart)
	ServiceReady    = "ready"
	ServiceFailed   = "failed"  // never became ready in time, or could not start
	ServiceExited   = "exited"  // its process ended on its own; ExitCode says how
	ServiceStopped  = "stopped" // stopped by a request
)

// Readiness probe types.
const (
	ReadyFile    = "file"
	ReadyTCP     = "tcp"
	ReadyHTTP    = "http"
	ReadyCommand = "command"
)

// Readiness says when a service is ready: a file exists (Path, relative
// to the service's cwd), a TCP port on 127.0.0.1 accepts (Port), an HTTP
// GET answers 2xx or 3xx (URL), or a shell command exits 0 (Command).
type Readiness struct {
	Type    string `json:"type"`
	Path    string `json:"path,omitempty"`
	Port    int    `json:"port,omitempty"`
	URL     string `json:"url,omitempty"`
	Command string `json:"command,omitempty"`
}

// Restart policies.
const (
	RestartNo        = "no"
	RestartOnFailure = "on-failure"
)

// ServiceStartRequest starts a named service in its own process group
// and answers once it is ready, failed or ended.
type ServiceStartRequest struct {
	Name            string            `json:"name"`
	Argv            []string          `json:"argv"`
	Cwd             string            `json:"cwd,omitempty"`
	Env             map[string]string `json:"env,omitempty"`
	Readiness       *Readiness        `json:"readiness,omitempty"`
	ReadyTimeoutMs  int64             `json:"ready_timeout_ms"`
	ReadyIntervalMs int64             `json:"ready_interval_ms"`
	Restart         string            `json:"restart,omitempty"`
}

// ServiceInfo describes a service.
type ServiceInfo struct {
	Name      string     `json:"name"`
	State     string     `json:"state"`
	Argv      []string   `json:"argv"`
	Cwd       string     `json:"cwd"`
	Readiness *Readiness `json:"readiness,omitempty"`
	Restart   string     `json:"restart"`
	Pid       int        `json:"pid,omitempty"`
	StartedAt *time.Time `json:"started_at,omitempty"`
	ReadyAt   *time.Time `json:"ready_at,omitempty"`
	EndedAt   *time.Time `json:"ended_at,omitempty"`
	ExitCode  *int       `json:"exit_code,omitempty"`
	Restarts  int        `json:"restarts"`
	Message   string     `json:"message,omitempty"`
	// LogTail is the end of the log, on a start that did not become
	// ready and in StopAllResult.
	LogTail string `json:"log_tail,omitempty"`
}

// ServiceRef names a service.
type ServiceRef struct {
	Name string `json:"name"`
}

// ServiceLogsRequest reads a service's log: its last TailLines lines, or
// everything kept with All.
type ServiceLogsRequest struct {
	Name      string `json:"name"`
	TailLines int    `json:"tail_lines,omitempty"`
	All       bool   `json:"all,omitempty"`
}

// ServiceLogsResult ends a log read whose bytes arrived as TypeStdout
// frames. Truncated says older output exists that was not sent.
type ServiceLogsResult struct {
	Truncated bool        `json:"truncated"`
	Service   ServiceInfo `json:"service"`
}

// ServiceStopRequest stops a service: TERM to its process group, KILL
// after GraceMs.
type ServiceStopRequest struct {
	Name    string `json:"name"`
	GraceMs int64  `json:"grace_ms"`
}

// ServiceList lists the services.
type ServiceList struct {
	Services []ServiceInfo `json:"services"`
}

// StopAllRequest closes every shell and stops every service (each with
// GraceMs), before a stop or a reset of the machine.
type StopAllRequest struct {
	GraceMs int64 `json:"grace_ms"`
	// LogTailBytes of each service's log come back in the result.
	LogTailBytes int `json:"log_tail_bytes,omitempty"`
}

// StopAllResult is what was running and how it ended.
type StopAllResult struct {
	Shells   []ShellInfo   `json:"shells"`
	Services []ServiceInfo `json:"services"`
}

func (c *Client) do(ctx context.Context, method string, params, result any) error {
	_, err := c.call(ctx, method, params, result, nil, false, nil, nil, 0)
	return err
}

// SetSecrets replaces the guest's secrets.
func (c *Client) SetSecrets(ctx context.Context, secrets []Secret) error {
	return c.do(ctx, MethodSecretsSet, SecretsSetRequest{Secrets: secrets}, nil)
}

// Activity reports what runs in the guest.
func (c *Client) Activity(ctx context.Context) (*Activity, error) {
	var a Activity
	return &a, c.do(ctx, MethodActivity, nil, &a)
}

// StopAll closes every shell and stops every service.
func (c *Client) StopAll(ctx context.Context, req StopAllRequest) (*StopAllResult, error) {
	var r StopAllResult
	return &r, c.do(ctx, MethodStopAll, req, &r)
}

// ShellOpen starts a shell.
func (c *Client) ShellOpen(ctx context.Context, req ShellOpenRequest) (*ShellInfo, error) {
	var r ShellInfo
	return &r, c.do(ctx, MethodShellOpen, req, &r)
}

// ShellRead reads a shell's output; the bytes run from the result's Start
// to its Next.
func (c *Client) ShellRead(ctx context.Context, req ShellReadRequest) (*ShellReadResult, []byte, error) {
	var r ShellReadResult
	var out bytes.Buffer
	if _, err := c.call(ctx, MethodShellRead, req, &r, nil, false, &out, nil, int64(req.MaxBytes)); err != nil {
		return nil, nil, err
	}
	return &r, out.Bytes(), nil
}

// ShellWrite sends input to a shell.
func (c *Client) ShellWrite(ctx context.Context, req ShellWriteRequest) (*ShellWriteResult, error) {
	var r ShellWriteResult
	return &r, c.do(ctx, MethodShellWrite, req, &r)
}

// ShellSignal signals a shell's foreground process group.
func (c *Client) ShellSignal(ctx context.Context, req ShellSignalRequest) (*ShellInfo, error) {
	var r ShellInfo
	return &r, c.do(ctx, MethodShellSignal, req, &r)
}

// ShellResize sets a shell's terminal size.
func (c *Client) ShellResize(ctx context.Context, req ShellResizeRequest) (*ShellInfo, error) {
	var r ShellInfo
	return &r, c.do(ctx, MethodShellResize, req, &r)
}

// ShellClose hangs a shell up and forgets it.
func (c *Client) ShellClose(ctx context.Context, id string) (*ShellInfo, error) {
	var r ShellInfo
	return &r, c.do(ctx, MethodShellClose, ShellRef{ID: id}, &r)
}

// ShellList lists the shells.
func (c *Client) ShellList(ctx context.Context) (*ShellList, error) {
	var r ShellList
	return &r, c.do(ctx, MethodShellList, nil, &r)
}

// ShellAttach connects stdin and stdout to a shell's terminal until the
// shell ends (its info comes back) or ctx ends (a detach: ctx's error).
// The shell keeps running after a detach.
func (c *Client) ShellAttach(ctx context.Context, req ShellAttachRequest, stdin io.Reader, stdout io.Writer) (*ShellInfo, error) {
	var r ShellInfo
	if _, err := c.call(ctx, MethodShellAttach, req, &r, stdin, false, stdout, nil, math.MaxInt64); err != nil {
		return nil, err
	}
	return &r, nil
}

// ServiceStart starts a service and waits for its readiness.
func (c *Client) ServiceStart(ctx context.Context, req ServiceStartRequest) (*ServiceInfo, error) {
	var r ServiceInfo
	return &r, c.do(ctx, MethodServiceStart, req, &r)
}

// ServiceList lists the services.
func (c *Client) ServiceList(ctx context.Context) (*ServiceList, error) {
	var r ServiceList
	return &r, c.do(ctx, MethodServiceList, nil, &r)
}

// ServiceStatus describes one service.
func (c *Client) ServiceStatus(ctx context.Context, name string) (*ServiceInfo, error) {
	var r ServiceInfo
	return &r, c.do(ctx, MethodServiceStatus, ServiceRef{Name: name}, &r)
}

// ServiceLogs reads a service's log.
func (c *Client) ServiceLogs(ctx context.Context, req ServiceLogsRequest) (*ServiceLogsResult, []byte, error) {
	var r ServiceLogsResult
	var out bytes.Buffer
	if _, err := c.call(ctx, MethodServiceLogs, req, &r, nil, false, &out, nil, DefaultMaxOutput); err != nil {
		return nil, nil, err
	}
	return &r, out.Bytes(), nil
}

// ServiceStop stops a service.
func (c *Client) ServiceStop(ctx context.Context, req ServiceStopRequest) (*ServiceInfo, error) {
	var r ServiceInfo
	return &r, c.do(ctx, MethodServiceStop, req, &r)
}

// The rules both ends apply: the host checks a request before it sends
// it (so bad input changes nothing), the agent again when it serves it.
var (
	secretName  = lazyregexp.New(`^[A-Za-z_][A-Za-z0-9_]{0,63}$`)
	serviceName = lazyregexp.New(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
)

// CheckSecretName refuses a secret name that is not an environment
// variable's (it is also the secret's file name in the guest).
func CheckSecretName(name string) error {
	if !secretName.MatchString(name) {
		return errdefs.New(errdefs.ErrInvalidArgument, "name a secret with letters, digits and _, not starting with a digit (at most 64), e.g. API_TOKEN",
			"invalid secret name %q", name)
	}
	return nil
}

// CheckServiceName refuses a malformed service name.
func CheckServiceName(name string) error {
	if !serviceName.MatchString(name) {
		return errdefs.New(errdefs.ErrInvalidArgument, "name a service with 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit",
			"invalid service name %q", name)
	}
	return nil
}

// Signals a shell may be sent, by name.
var Signals = []string{"INT", "TERM", "KILL", "HUP", "QUIT"}

// CheckSignal returns the canonical name of INT, SIGINT, int, ...
func CheckSignal(name string) (string, error) {
	n := strings.TrimPrefix(strings.ToUpper(strings.TrimSpace(name)), "SIG")
	if slices.Contains(Signals, n) {
		return n, nil
	}
	return "", errdefs.New(errdefs.ErrInvalidArgument, "use a `signal` of INT, TERM, KILL, HUP or QUIT", "unknown signal %q", name)
}

// CheckReadiness refuses a malformed readiness probe (nil is none).
func CheckReadiness(r *Readiness) error {
	if r == nil {
		return nil
	}
	bad := func(hint, format string, a ...any) error {
		return errdefs.New(errdefs.ErrInvalidArgument, hint, format, a...)
	}
	switch r.Type {
	case ReadyFile:
		if r.Path == "" {
			return bad("give the file that appears when the service is ready (`readiness`)", "readiness type file needs a path")
		}
	case ReadyTCP:
		if r.Port < 1 || r.Port > 65535 {
			return bad("give a port from 1 to 65535 (`readiness`)", "readiness port %d is out of range", r.Port)
		}
	case ReadyHTTP:
		u, err := url.Parse(r.URL)
		if err != nil || u.Scheme != "http" || u.Host == "" {
			return bad("give an http:// URL, e.g. http://127.0.0.1:8000/ (`readiness`)", "readiness URL %q is not an http URL", r.URL)
		}
	case ReadyCommand:
		if r.Command == "" {
			return bad("give the command that exits 0 when the service is ready (`readiness`)", "readiness type command needs a command")
		}
	default:
		return bad("use a readiness of type file, tcp, http or command (`readiness`)", "unknown readiness type %q", r.Type)
	}
	return nil
}

// CheckRestart returns the restart policy ("" is RestartNo).
func CheckRestart(p string) (string, error) {
	switch p {
	case "":
		return RestartNo, nil
	case RestartNo, RestartOnFailure:
		return p, nil
	}
	return "", errdefs.New(errdefs.ErrInvalidArgument, "use a `restart` of no or on-failure", "unknown restart policy %q", p)
}
