package mcpserver

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/pyro-mcp/pyro/api"
)

// The readable text block of each result. structuredContent carries the
// full JSON; the text is what a model or a person reads first.

func jsonText(v any) string {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

const hostCompatWarning = "WARNING: execution_mode=host_compat: this ran on the host WITHOUT isolation\n"

// execText renders the result of vm_run, vm_exec and workspace_exec.
func execText[T *api.RunResult | *api.VMExecResult | *api.WorkspaceExecResult](r T) string {
	var b strings.Builder
	var res *api.ExecResult
	var mode string
	switch v := any(r).(type) {
	case *api.RunResult:
		res, mode = &v.ExecResult, v.ExecutionMode
		fmt.Fprintf(&b, "exit_code=%d duration_ms=%d environment=%s backend=%s boot_ms=%d (vm %s deleted)\n",
			v.ExitCode, v.DurationMs, v.Environment, v.Backend, v.BootMs, v.VMID)
	case *api.VMExecResult:
		res, mode = &v.ExecResult, v.ExecutionMode
		fmt.Fprintf(&b, "exit_code=%d duration_ms=%d environment=%s backend=%s (vm %s deleted)\n",
			v.ExitCode, v.DurationMs, v.Environment, v.Backend, v.VMID)
	case *api.WorkspaceExecResult:
		res, mode = &v.ExecResult, v.ExecutionMode
		fmt.Fprintf(&b, "exit_code=%d duration_ms=%d workspace=%s sequence=%d cwd=%s", v.ExitCode, v.DurationMs, v.WorkspaceID, v.Sequence, v.Cwd)
		if v.Restarted {
			b.WriteString(" (the workspace was restarted from its disk first)")
		}
		b.WriteString("\n")
	}
	if mode == api.ModeHostCompat {
		b.WriteString(hostCompatWarning)
	}
	if res.TimedOut {
		fmt.Fprintf(&b, "TIMED OUT: %s\n", res.Message)
	}
	writeStream(&b, "stdout", res.Stdout, res.StdoutTruncated)
	writeStream(&b, "stderr", res.Stderr, res.StderrTruncated)
	return strings.TrimRight(b.String(), "\n")
}

func writeStream(b *strings.Builder, name, s string, truncated bool) {
	if s == "" {
		fmt.Fprintf(b, "[%s: empty]\n", name)
		return
	}
	fmt.Fprintf(b, "[%s]\n%s", name, s)
	if !strings.HasSuffix(s, "\n") {
		b.WriteString("\n")
	}
	if truncated {
		fmt.Fprintf(b, "[%s truncated]\n", name)
	}
}

func vmText(verb string) func(*api.VM) string {
	return func(v *api.VM) string {
		head := fmt.Sprintf("vm %s %s: environment=%s state=%s running=%v backend=%s", v.VMID, verb, v.Environment, v.State, v.Running, v.Backend)
		if verb == "" {
			head = fmt.Sprintf("vm %s: environment=%s state=%s running=%v backend=%s", v.VMID, v.Environment, v.State, v.Running, v.Backend)
		}
		if v.ExecutionMode == api.ModeHostCompat {
			head += "\n" + strings.TrimSpace(hostCompatWarning)
		}
		return head + "\n" + jsonText(v)
	}
}

func wsText(verb string) func(*api.Workspace) string {
	return func(w *api.Workspace) string {
		head := fmt.Sprintf("workspace %s", w.WorkspaceID)
		if verb != "" {
			head += " " + verb
		}
		head += fmt.Sprintf(": environment=%s state=%s running=%v commands=%d seed=%s", w.Environment, w.State, w.Running, w.CommandCount, w.WorkspaceSeed.Mode)
		if w.ExecutionMode == api.ModeHostCompat {
			head += "\n" + strings.TrimSpace(hostCompatWarning)
		}
		return head + "\n" + jsonText(w)
	}
}

func logsText(l *api.WorkspaceLogs) string {
	var b strings.Builder
	fmt.Fprintf(&b, "workspace %s: %d command(s)\n", l.WorkspaceID, l.Count)
	for _, e := range l.Entries {
		switch e.Kind {
		case api.LogSnapshot, api.LogReset, api.LogFork:
			fmt.Fprintf(&b, "#%d %s snapshot=%q", e.Sequence, e.Kind, e.Snapshot)
			if e.ForkWorkspaceID != "" {
				fmt.Fprintf(&b, " fork=%s", e.ForkWorkspaceID)
			}
			if e.ForkOf != nil {
				fmt.Fprintf(&b, " fork_of=%s", e.ForkOf.WorkspaceID)
			}
			b.WriteString("\n")
			continue
		}
		what := shellJoin(e.Command)
		switch {
		case e.ShellID != "":
			what = e.Kind + " " + e.ShellID
		case e.Service != "":
			what = e.Kind + " " + e.Service + ": " + what
		}
		fmt.Fprintf(&b, "#%d exit_code=%d duration_ms=%d cwd=%s: %s", e.Sequence, e.ExitCode, e.DurationMs, e.Cwd, what)
		if e.ResetBy > 0 {
			fmt.Fprintf(&b, " (rolled back by reset #%d)", e.ResetBy)
		}
		b.WriteString("\n")
		if e.Error != "" {
			fmt.Fprintf(&b, "error: %s\n", e.Error)
		}
		if e.TimedOut {
			b.WriteString("TIMED OUT\n")
		}
		if e.Stdout != "" {
			writeStream(&b, "stdout", e.Stdout, e.StdoutTruncated)
		}
		if e.Stderr != "" {
			writeStream(&b, "stderr", e.Stderr, e.StderrTruncated)
		}
	}
	return strings.TrimRight(b.String(), "\n")
}

// shellJoin shows ["/bin/sh","-c","x"] as x.
func shellJoin(argv []string) string {
	if len(argv) == 3 && argv[0] == "/bin/sh" && argv[1] == "-c" {
		return argv[2]
	}
	return strings.Join(argv, " ")
}

func envListText(l *api.EnvironmentList) string {
	var b strings.Builder
	fmt.Fprintf(&b, "catalog %s:\n", l.CatalogVersion)
	for _, e := range l.Environments {
		inst := "not installed (pulled on first use)"
		if e.Installed {
			inst = "installed"
		}
		def := ""
		if e.Default {
			def = " (default)"
		}
		fmt.Fprintf(&b, "- %s%s %s, %s: %s\n", e.Name, def, e.Version, inst, e.Description)
	}
	return strings.TrimRight(b.String(), "\n")
}

func wsListText(l *api.WorkspaceList) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d workspace(s)\n", l.Count)
	for _, w := range l.Workspaces {
		fmt.Fprintf(&b, "- %s", w.WorkspaceID)
		if w.Name != "" {
			fmt.Fprintf(&b, " name=%s", w.Name)
		}
		fmt.Fprintf(&b, " environment=%s state=%s running=%v commands=%d shells=%d services=%d seed=%s expires_at=%s",
			w.Environment, w.State, w.Running, w.CommandCount, w.ShellCount, w.ServiceCount, w.WorkspaceSeed.Mode, w.ExpiresAt.Format(time.RFC3339))
		for _, k := range slices.Sorted(maps.Keys(w.Labels)) {
			fmt.Fprintf(&b, " label:%s=%s", k, w.Labels[k])
		}
		if w.WorkspaceSeed.OriginRef != "" {
			fmt.Fprintf(&b, " (%s %s)", w.WorkspaceSeed.OriginKind, w.WorkspaceSeed.OriginRef)
		}
		b.WriteString("\n")
	}
	return strings.TrimRight(b.String(), "\n")
}
