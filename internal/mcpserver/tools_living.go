package mcpserver

import (
	"context"
	"fmt"
	"sort"
	"strings"

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
	PublishedPorts []api.PublishPort `json:"published_ports,omitempty" jsonschema:"guest TCP ports to make reachable on the host's 127.0.0.1 while it runs: [{guest_port, host_port (0 or absent: a free port)}]; the workspace's network_policy must allow publishing"`
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
	NetworkPolicyArgs
}

var (
	shellDefaults     = map[string]any{"cwd": api.WorkspaceRoot, "cols": api.DefaultShellCols, "rows": api.DefaultShellRows}
	shellReadDefaults = map[string]any{"cursor": 0, "max_chars": api.DefaultShellMaxChars, "plain": false, "wait_for_idle_ms": 0}
	svcDefaults       = map[string]any{"cwd": api.WorkspaceRoot, "ready_timeout_seconds": api.DefaultReadyTimeoutSeconds,
		"ready_interval_ms": api.DefaultReadyIntervalMs, "restart": api.RestartNo}
)

func (s *Server) registerLiving() {
	e := s.eng
	addTool(s, toolDef{
		name: "workspace_update", title: "Update a workspace", hints: idempotent,
		desc: `Rename a workspace, set or clear its labels, move its expiry to ttl_seconds from now, or change its network_policy (live when the guest keeps a network device). ` +
			`A name works wherever a workspace_id does.`,
	}, func(ctx context.Context, in WorkspaceUpdateArgs) (*api.Workspace, error) {
		return e.UpdateWorkspace(ctx, in.WorkspaceID, api.WorkspaceUpdateOptions{Name: in.Name, Labels: in.Labels, ClearLabels: in.ClearLabels, TTLSeconds: in.TTLSeconds,
			NetworkPolicy: in.NetworkPolicy, Allow: in.Allow, AllowPublish: in.AllowPublish})
	}, wsText("updated"))

	addTool(s, toolDef{
		name: "shell_open", title: "Open a shell in a workspace", hints: runsCommand, defaults: shellDefaults, progress: "shell_open: opening a shell",
		desc: `Open an interactive shell (bash on a terminal) in a workspace, for REPLs, debuggers and programs that ask questions. ` +
			`It lives in the guest across calls until shell_close. Then shell_write input and shell_read output by cursor. Returns shell_id.`,
	}, func(ctx context.Context, in ShellOpenArgs) (*api.Shell, error) {
		return e.OpenShell(ctx, in.WorkspaceID, api.ShellOpenOptions{Cwd: in.Cwd, Cols: in.Cols, Rows: in.Rows, SecretEnv: in.SecretEnv})
	}, shellText("opened"))

	addTool(s, toolDef{
		name: "shell_write", title: "Type into a shell", hints: runsAnything, defaults: map[string]any{"append_newline": true},
		desc: `Type input into a shell, and press Enter unless append_newline is false. ` +
			`Then shell_read from your last next_cursor, with wait_for_idle_ms (e.g. 500) to get the whole answer.`,
	}, func(ctx context.Context, in ShellWriteArgs) (*api.ShellWriteResult, error) {
		return e.WriteShell(ctx, in.WorkspaceID, in.ShellID, api.ShellWriteOptions{Input: in.Input, NoNewline: in.AppendNewline != nil && !*in.AppendNewline})
	}, func(r *api.ShellWriteResult) string {
		return fmt.Sprintf("wrote %d bytes to shell %s of workspace %s", r.Written, r.ShellID, r.WorkspaceID)
	})

	addTool(s, toolDef{
		name: "shell_read", title: "Read a shell's output", hints: readOnly, defaults: shellReadDefaults,
		desc: `Read a shell's output from cursor (a byte offset; 0 is the start): returns the text and next_cursor, the cursor to read from next. ` +
			`Reads never take output from each other. plain strips colours and control codes. The last 1 MiB is kept; dropped says how much of what you asked for is gone.`,
	}, func(ctx context.Context, in ShellReadArgs) (*api.ShellReadResult, error) {
		return e.ReadShell(ctx, in.WorkspaceID, in.ShellID, api.ShellReadOptions{Cursor: in.Cursor, MaxChars: in.MaxChars, Plain: in.Plain, WaitForIdleMs: in.WaitForIdleMs})
	}, shellReadText)

	addTool(s, toolDef{
		name: "shell_signal", title: "Signal a shell", hints: runsAnything, defaults: map[string]any{"signal": "INT"},
		desc: `Send a signal to what runs in a shell's foreground: INT (as Ctrl-C, the default), TERM, KILL, HUP or QUIT.`,
	}, func(ctx context.Context, in ShellSignalArgs) (*api.Shell, error) {
		return e.SignalShell(ctx, in.WorkspaceID, in.ShellID, in.Signal)
	}, shellText("signalled"))

	addTool(s, toolDef{
		name: "shell_close", title: "Close a shell", hints: removes,
		desc: `Close a shell: hang it up (what still runs is killed) and forget it. Returns its exit code when it had one.`,
	}, onNamed[ShellArgs](e.CloseShell), shellText("closed"))

	addTool(s, toolDef{
		name: "shell_list", title: "List a workspace's shells", hints: readOnly,
		desc: `List a workspace's shells, running and exited, with their cursors (the end of their output so far).`,
	}, onWorkspace(e.ListShells), shellListText)

	addTool(s, toolDef{
		name: "service_start", title: "Start a service in a workspace", hints: runsCommand, defaults: svcDefaults, progress: "service_start: starting the service",
		desc: `Start a named long-running process in a workspace (a dev server, a database, a worker) and wait until it is ready ` +
			`by its readiness probe; it keeps running across calls. Not ready within ready_timeout_seconds, or exited, is an error with the end of its log. ` +
			`Its log is kept outside /workspace: service_logs.`,
	}, func(ctx context.Context, in ServiceStartArgs) (*api.Service, error) {
		if err := needCommand(in.Command); err != nil {
			return nil, err
		}
		return e.StartService(ctx, in.WorkspaceID, in.Name, api.ServiceStartOptions{Command: in.Command, Cwd: in.Cwd, Readiness: in.Readiness,
			ReadyTimeoutSeconds: in.ReadyTimeoutSeconds, ReadyIntervalMs: in.ReadyIntervalMs, Restart: in.Restart, SecretEnv: in.SecretEnv,
			PublishedPorts: in.PublishedPorts})
	}, serviceText("started"))

	addTool(s, toolDef{
		name: "service_list", title: "List a workspace's services", hints: readOnly,
		desc: `List a workspace's services with their state (starting, ready, failed, exited, stopped), pid, exit code and restarts.`,
	}, onWorkspace(e.ListServices), serviceListText)

	addTool(s, toolDef{
		name: "service_status", title: "Show a service", hints: readOnly,
		desc: `Report one service: state, pid, start/ready/end times, exit code, restart count.`,
	}, onNamed[ServiceArgs](e.StatusService), serviceText(""))

	addTool(s, toolDef{
		name: "service_logs", title: "Read a service's log", hints: readOnly, defaults: map[string]any{"tail_lines": api.DefaultServiceTailLines, "all": false},
		desc: `Return a service's log, stdout and stderr together: the last tail_lines lines (default 200), or all that is kept. It outlives the process.`,
	}, func(ctx context.Context, in ServiceLogsArgs) (*api.ServiceLogs, error) {
		tail := in.TailLines
		if in.All {
			tail = 0
		}
		return e.LogsService(ctx, in.WorkspaceID, in.Name, api.ServiceLogsOptions{TailLines: tail, All: in.All})
	}, serviceLogsText)

	addTool(s, toolDef{
		name: "service_stop", title: "Stop a service", hints: removes,
		desc: `Stop a service: TERM to its process group, KILL after 5 s. Its log stays readable.`,
	}, onNamed[ServiceArgs](e.StopService), serviceText("stopped"))
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
