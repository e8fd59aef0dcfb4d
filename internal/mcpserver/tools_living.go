package mcpserver

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/pyro-mcp/pyro/api"
)

// The tools of living in a workspace: shells, services and workspace_update.
// (workspace_create's name, labels and secrets, workspace_list's labels
// and workspace_exec's secret_env are in tools.go's argument types.)

// SecretEnvArg exposes secrets as environment variables.
type SecretEnvArg struct {
	SecretEnv map[string]string `json:"secret_env,omitempty" jsonschema:"expose the workspace's secrets as environment variables: {SECRET_NAME: VARIABLE_NAME} (an empty variable name means the secret's own name)"`
}

// ShellArgs name one shell of a workspace.
type ShellArgs struct {
	WorkspaceArgs
	ShellID string `json:"shell_id" jsonschema:"the shell's id as returned by shell_open (an unambiguous prefix works)"`
}

// ShellOpenArgs are shell_open's arguments.
type ShellOpenArgs struct {
	WorkspaceArgs
	Cwd  string `json:"cwd,omitempty" jsonschema:"working directory in the guest (default /workspace)"`
	Cols int    `json:"cols,omitempty" jsonschema:"terminal columns (default 120)"`
	Rows int    `json:"rows,omitempty" jsonschema:"terminal rows (default 30)"`
	SecretEnvArg
}

// ShellReadArgs are shell_read's arguments.
type ShellReadArgs struct {
	ShellArgs
	Cursor        int64 `json:"cursor,omitempty" jsonschema:"byte offset in the shell's raw output to read from: 0 for the start, the next_cursor of your last read for what came since"`
	MaxChars      int   `json:"max_chars,omitempty" jsonschema:"most output to return, counted in bytes of the raw output (default 65536)"`
	Plain         bool  `json:"plain,omitempty" jsonschema:"strip colours and terminal control sequences and apply carriage returns and backspaces: what a person would see (default false)"`
	WaitForIdleMs int   `json:"wait_for_idle_ms,omitempty" jsonschema:"first wait until the shell has printed nothing for this many ms, e.g. 500 after a write, so that the answer is complete (at most 10000; a read returns within 30 s)"`
}

// ShellWriteArgs are shell_write's arguments.
type ShellWriteArgs struct {
	ShellArgs
	Input         string `json:"input" jsonschema:"text to type into the shell, e.g. 'make test' or '1+1'"`
	AppendNewline *bool  `json:"append_newline,omitempty" jsonschema:"press Enter after the input (default true)"`
}

// ShellSignalArgs are shell_signal's arguments.
type ShellSignalArgs struct {
	ShellArgs
	Signal string `json:"signal,omitempty" jsonschema:"INT (as Ctrl-C), TERM, KILL, HUP or QUIT; it goes to what runs in the shell's foreground"`
}

// ServiceArgs name one service of a workspace.
type ServiceArgs struct {
	WorkspaceArgs
	Name string `json:"name" jsonschema:"the service's name"`
}

// ServiceStartArgs are service_start's arguments.
type ServiceStartArgs struct {
	ServiceArgs
	Command             string         `json:"command" jsonschema:"shell command that runs the service in the foreground, e.g. 'python3 -m http.server 8000'"`
	Cwd                 string         `json:"cwd,omitempty" jsonschema:"working directory in the guest (default /workspace)"`
	Readiness           *api.Readiness `json:"readiness,omitempty" jsonschema:"when the service is ready: {type: file, path} | {type: tcp, port} | {type: http, url} | {type: command, command}; without it, ready once started"`
	ReadyTimeoutSeconds int            `json:"ready_timeout_seconds,omitempty" jsonschema:"fail (and stop it) if not ready within this many seconds (default 30)"`
	ReadyIntervalMs     int            `json:"ready_interval_ms,omitempty" jsonschema:"time between readiness probes in ms (default 500)"`
	Restart             string         `json:"restart,omitempty" jsonschema:"no, or on-failure: start it again, with a backoff, when it exits non-zero (default no)"`
	SecretEnvArg
}

// ServiceLogsArgs are service_logs' arguments.
type ServiceLogsArgs struct {
	ServiceArgs
	TailLines int  `json:"tail_lines,omitempty" jsonschema:"return the last N lines (default 200)"`
	All       bool `json:"all,omitempty" jsonschema:"return all of the log that is kept (the last 1 MiB) (default false)"`
}

// WorkspaceUpdateArgs are workspace_update's arguments.
type WorkspaceUpdateArgs struct {
	WorkspaceArgs
	Name        string            `json:"name,omitempty" jsonschema:"a new unique name, which then works wherever the workspace_id does"`
	Labels      map[string]string `json:"labels,omitempty" jsonschema:"labels to set: {key: value}"`
	ClearLabels []string          `json:"clear_labels,omitempty" jsonschema:"label keys to remove"`
	TTLSeconds  int               `json:"ttl_seconds,omitempty" jsonschema:"make the workspace expire this many seconds from now (it is never reaped while a command, shell or service runs in it)"`
}

var (
	shellDefaults     = map[string]any{"cwd": api.WorkspaceRoot, "cols": api.DefaultShellCols, "rows": api.DefaultShellRows}
	shellReadDefaults = map[string]any{"cursor": 0, "max_chars": api.DefaultShellMaxChars, "plain": false, "wait_for_idle_ms": 0}
	svcDefaults       = map[string]any{"cwd": api.WorkspaceRoot, "ready_timeout_seconds": api.DefaultReadyTimeoutSeconds,
		"ready_interval_ms": api.DefaultReadyIntervalMs, "restart": api.RestartNo}
	// typesInput runs what a model types: it may do anything in the guest.
	typesInput = &mcp.ToolAnnotations{DestructiveHint: boolp(true), OpenWorldHint: boolp(true)}
)

func (s *Server) registerLiving() {
	e := s.eng
	addTool(s, &mcp.Tool{
		Name: "workspace_update",
		Description: `Rename a workspace, set or clear its labels, or move its expiry to ttl_seconds from now. ` +
			`A name works wherever a workspace_id does.`,
		Annotations: withTitle(&mcp.ToolAnnotations{DestructiveHint: boolp(false), IdempotentHint: true, OpenWorldHint: boolp(false)}, "Update a workspace"),
	}, nil, "", func(ctx context.Context, in WorkspaceUpdateArgs) (*api.Workspace, error) {
		return e.UpdateWorkspace(ctx, in.WorkspaceID, api.WorkspaceUpdateOptions{Name: in.Name, Labels: in.Labels, ClearLabels: in.ClearLabels, TTLSeconds: in.TTLSeconds})
	}, wsText("updated"))

	addTool(s, &mcp.Tool{
		Name: "shell_open",
		Description: `Open an interactive shell (bash on a terminal) in a workspace, for REPLs, debuggers and programs that ask questions. ` +
			`It lives in the guest across calls until shell_close. Then shell_write input and shell_read output by cursor. Returns shell_id.`,
		Annotations: withTitle(runsCommand, "Open a shell in a workspace"),
	}, shellDefaults, "shell_open: opening a shell", func(ctx context.Context, in ShellOpenArgs) (*api.Shell, error) {
		return e.OpenShell(ctx, in.WorkspaceID, api.ShellOpenOptions{Cwd: in.Cwd, Cols: in.Cols, Rows: in.Rows, SecretEnv: in.SecretEnv})
	}, shellText("opened"))

	addTool(s, &mcp.Tool{
		Name: "shell_write",
		Description: `Type input into a shell, and press Enter unless append_newline is false. ` +
			`Then shell_read from your last next_cursor, with wait_for_idle_ms (e.g. 500) to get the whole answer.`,
		Annotations: withTitle(typesInput, "Type into a shell"),
	}, map[string]any{"append_newline": true}, "", func(ctx context.Context, in ShellWriteArgs) (*api.ShellWriteResult, error) {
		return e.WriteShell(ctx, in.WorkspaceID, in.ShellID, api.ShellWriteOptions{Input: in.Input, NoNewline: in.AppendNewline != nil && !*in.AppendNewline})
	}, func(r *api.ShellWriteResult) string {
		return fmt.Sprintf("wrote %d bytes to shell %s of workspace %s", r.Written, r.ShellID, r.WorkspaceID)
	})

	addTool(s, &mcp.Tool{
		Name: "shell_read",
		Description: `Read a shell's output from cursor (a byte offset; 0 is the start): returns the text and next_cursor, the cursor to read from next. ` +
			`Reads never take output from each other. plain strips colours and control codes. The last 1 MiB is kept; dropped says how much of what you asked for is gone.`,
		Annotations: withTitle(readOnly, "Read a shell's output"),
	}, shellReadDefaults, "", func(ctx context.Context, in ShellReadArgs) (*api.ShellReadResult, error) {
		return e.ReadShell(ctx, in.WorkspaceID, in.ShellID, api.ShellReadOptions{Cursor: in.Cursor, MaxChars: in.MaxChars, Plain: in.Plain, WaitForIdleMs: in.WaitForIdleMs})
	}, shellReadText)

	addTool(s, &mcp.Tool{
		Name:        "shell_signal",
		Description: `Send a signal to what runs in a shell's foreground: INT (as Ctrl-C, the default), TERM, KILL, HUP or QUIT.`,
		Annotations: withTitle(typesInput, "Signal a shell"),
	}, map[string]any{"signal": "INT"}, "", func(ctx context.Context, in ShellSignalArgs) (*api.Shell, error) {
		return e.SignalShell(ctx, in.WorkspaceID, in.ShellID, in.Signal)
	}, shellText("signalled"))

	addTool(s, &mcp.Tool{
		Name:        "shell_close",
		Description: `Close a shell: hang it up (what still runs is killed) and forget it. Returns its exit code when it had one.`,
		Annotations: withTitle(removes, "Close a shell"),
	}, nil, "", func(ctx context.Context, in ShellArgs) (*api.Shell, error) {
		return e.CloseShell(ctx, in.WorkspaceID, in.ShellID)
	}, shellText("closed"))

	addTool(s, &mcp.Tool{
		Name:        "shell_list",
		Description: `List a workspace's shells, running and exited, with their cursors (the end of their output so far).`,
		Annotations: withTitle(readOnly, "List a workspace's shells"),
	}, nil, "", func(ctx context.Context, in WorkspaceArgs) (*api.ShellList, error) {
		return e.ListShells(ctx, in.WorkspaceID)
	}, shellListText)

	addTool(s, &mcp.Tool{
		Name: "service_start",
		Description: `Start a named long-running process in a workspace (a dev server, a database, a worker) and wait until it is ready ` +
			`by its readiness probe; it keeps running across calls. Not ready within ready_timeout_seconds, or exited, is an error with the end of its log. ` +
			`Its log is kept outside /workspace: service_logs.`,
		Annotations: withTitle(runsCommand, "Start a service in a workspace"),
	}, svcDefaults, "service_start: starting the service", func(ctx context.Context, in ServiceStartArgs) (*api.Service, error) {
		if err := needCommand(in.Command); err != nil {
			return nil, err
		}
		return e.StartService(ctx, in.WorkspaceID, in.Name, api.ServiceStartOptions{Command: in.Command, Cwd: in.Cwd, Readiness: in.Readiness,
			ReadyTimeoutSeconds: in.ReadyTimeoutSeconds, ReadyIntervalMs: in.ReadyIntervalMs, Restart: in.Restart, SecretEnv: in.SecretEnv})
	}, serviceText("started"))

	addTool(s, &mcp.Tool{
		Name:        "service_list",
		Description: `List a workspace's services with their state (starting, ready, failed, exited, stopped), pid, exit code and restarts.`,
		Annotations: withTitle(readOnly, "List a workspace's services"),
	}, nil, "", func(ctx context.Context, in WorkspaceArgs) (*api.ServiceList, error) {
		return e.ListServices(ctx, in.WorkspaceID)
	}, serviceListText)

	addTool(s, &mcp.Tool{
		Name:        "service_status",
		Description: `Report one service: state, pid, start/ready/end times, exit code, restart count.`,
		Annotations: withTitle(readOnly, "Show a service"),
	}, nil, "", func(ctx context.Context, in ServiceArgs) (*api.Service, error) {
		return e.StatusService(ctx, in.WorkspaceID, in.Name)
	}, serviceText(""))

	addTool(s, &mcp.Tool{
		Name:        "service_logs",
		Description: `Return a service's log, stdout and stderr together: the last tail_lines lines (default 200), or all that is kept. It outlives the process.`,
		Annotations: withTitle(readOnly, "Read a service's log"),
	}, map[string]any{"tail_lines": api.DefaultServiceTailLines, "all": false}, "", func(ctx context.Context, in ServiceLogsArgs) (*api.ServiceLogs, error) {
		tail := in.TailLines
		if in.All {
			tail = 0
		}
		return e.LogsService(ctx, in.WorkspaceID, in.Name, api.ServiceLogsOptions{TailLines: tail, All: in.All})
	}, serviceLogsText)

	addTool(s, &mcp.Tool{
		Name:        "service_stop",
		Description: `Stop a service: TERM to its process group, KILL after 5 s. Its log stays readable.`,
		Annotations: withTitle(removes, "Stop a service"),
	}, nil, "", func(ctx context.Context, in ServiceArgs) (*api.Service, error) {
		return e.StopService(ctx, in.WorkspaceID, in.Name)
	}, serviceText("stopped"))
}

func shellText(verb string) func(*api.Shell) string {
	return func(sh *api.Shell) string {
		head := fmt.Sprintf("shell %s of workspace %s %s: state=%s cursor=%d", sh.ShellID, sh.WorkspaceID, verb, sh.State, sh.Cursor)
		if sh.ExitCode != nil {
			head += fmt.Sprintf(" exit_code=%d", *sh.ExitCode)
		}
		return head + "\n" + jsonText(sh)
	}
}

func shellReadText(r *api.ShellReadResult) string {
	var b strings.Builder
	fmt.Fprintf(&b, "shell %s: cursor=%d next_cursor=%d state=%s", r.ShellID, r.Cursor, r.NextCursor, r.State)
	if r.ExitCode != nil {
		fmt.Fprintf(&b, " exit_code=%d", *r.ExitCode)
	}
	if r.Dropped > 0 {
		fmt.Fprintf(&b, " (%d bytes before cursor %d are no longer kept)", r.Dropped, r.Cursor)
	}
	if r.More {
		b.WriteString(" (more output after next_cursor: read again)")
	}
	b.WriteString("\n")
	if r.Output == "" {
		b.WriteString("[no new output]")
	} else {
		b.WriteString("[output]\n" + r.Output)
	}
	return strings.TrimRight(b.String(), "\n")
}

func shellListText(l *api.ShellList) string {
	var b strings.Builder
	fmt.Fprintf(&b, "workspace %s: %d shell(s)\n", l.WorkspaceID, l.Count)
	for _, sh := range l.Shells {
		fmt.Fprintf(&b, "- %s state=%s cwd=%s cursor=%d", sh.ShellID, sh.State, sh.Cwd, sh.Cursor)
		if sh.ExitCode != nil {
			fmt.Fprintf(&b, " exit_code=%d", *sh.ExitCode)
		}
		b.WriteString("\n")
	}
	return strings.TrimRight(b.String(), "\n")
}

func serviceLine(sv *api.Service) string {
	line := fmt.Sprintf("service %s of workspace %s: state=%s", sv.Name, sv.WorkspaceID, sv.State)
	if sv.Pid > 0 {
		line += fmt.Sprintf(" pid=%d", sv.Pid)
	}
	if sv.ExitCode != nil {
		line += fmt.Sprintf(" exit_code=%d", *sv.ExitCode)
	}
	if sv.RestartCount > 0 {
		line += fmt.Sprintf(" restarts=%d", sv.RestartCount)
	}
	if sv.Message != "" {
		line += " (" + sv.Message + ")"
	}
	return line
}

func serviceText(verb string) func(*api.Service) string {
	return func(sv *api.Service) string {
		head := serviceLine(sv)
		if verb != "" {
			head = strings.Replace(head, ":", " "+verb+":", 1)
		}
		return head + "\n" + jsonText(sv)
	}
}

func serviceListText(l *api.ServiceList) string {
	var b strings.Builder
	fmt.Fprintf(&b, "workspace %s: %d service(s)\n", l.WorkspaceID, l.Count)
	if l.Note != "" {
		b.WriteString(l.Note + "\n")
	}
	svs := append([]api.Service(nil), l.Services...)
	sort.Slice(svs, func(i, j int) bool { return svs[i].Name < svs[j].Name })
	for i := range svs {
		b.WriteString("- " + serviceLine(&svs[i]) + "\n")
	}
	return strings.TrimRight(b.String(), "\n")
}

func serviceLogsText(l *api.ServiceLogs) string {
	var b strings.Builder
	fmt.Fprintf(&b, "service %s of workspace %s (state %s)", l.Name, l.WorkspaceID, l.State)
	if l.Truncated {
		b.WriteString(": the end of its log")
	}
	b.WriteString("\n")
	if l.Note != "" {
		b.WriteString(l.Note + "\n")
	}
	if l.Output == "" {
		b.WriteString("[log empty]")
	} else {
		b.WriteString(l.Output)
	}
	return strings.TrimRight(b.String(), "\n")
}
