package mcpserver

import (
	"fmt"
	"strings"

	"github.com/pyro-mcp/pyro/api"
	"github.com/pyro-mcp/pyro/internal/agentproto"
	"github.com/pyro-mcp/pyro/internal/archive"
)

// instructions is what the initialize result tells the model: the intended
// workflow with the tools this profile serves, and the limits worth
// knowing before the first call. It names only tools the server has, so a
// tool that lands later shows up here once it has its row.
func (s *Server) instructions() string {
	var b strings.Builder
	b.WriteString("pyro runs shell commands inside real, disposable microVMs (Debian guests).\n")
	if s.serves("vm_run") {
		b.WriteString("Use vm_run for one-shot work: it boots a fresh VM, runs one command and deletes the VM.\n")
	}
	if s.serves("workspace_create") {
		fmt.Fprintf(&b, "For multi-step work on files use a workspace: %s → %s", "workspace_create", s.present("workspace_exec",
			"workspace_file_list", "workspace_file_read", "workspace_file_write", "workspace_patch_apply", "workspace_sync_push"))
		if after := s.present("workspace_diff", "workspace_export", "workspace_summary"); after != "" {
			fmt.Fprintf(&b, " → %s", after)
		}
		b.WriteString(" → workspace_delete. Files in /workspace persist between calls; delete the workspace when done.\n")
		if s.project != nil {
			fmt.Fprintf(&b, "workspace_create without seed_path copies %s into /workspace; the host's copy is never changed.\n", s.project)
		}
		if s.serves("workspace_list") {
			b.WriteString("workspace_list shows the workspaces that exist (also those of earlier sessions); reuse one instead of creating another.\n")
		}
		if s.serves("shell_open") {
			b.WriteString("For a REPL, a debugger or a prompt: shell_open → shell_write → shell_read (cursor = the last next_cursor, wait_for_idle_ms ~500, plain) → shell_close.\n")
		}
		if s.serves("service_start") {
			b.WriteString("For a server the commands need: service_start with a readiness probe; service_logs shows its output; it runs until service_stop.\n")
		}
		if s.hasArg("workspace_create", "secrets") {
			b.WriteString("Secrets given to workspace_create reach commands through secret_env and show as [REDACTED] in every output.\n")
		}
	}
	if s.serves("vm_create") {
		b.WriteString("vm_create / vm_start / vm_exec are lower-level; vm_exec deletes its VM after the command.\n")
	}
	b.WriteString("Limits: a command runs with /bin/sh -c")
	if s.serves("workspace_exec") {
		b.WriteString(" (in /workspace for workspace_exec)")
	}
	fmt.Fprintf(&b, " and is killed after timeout_seconds (default %d, at most %d); stdout and stderr are kept up to %d MiB each.",
		api.DefaultTimeoutSeconds, api.MaxTimeoutSeconds, agentproto.DefaultMaxOutput>>20)
	if s.hasArg("workspace_create", "network") || s.hasArg("vm_run", "network") {
		b.WriteString(" Guests have no network unless network is true.")
	} else {
		b.WriteString(" Guests have no network.")
	}
	if s.serves("workspace_create") {
		fmt.Fprintf(&b, " A workspace is deleted after ttl_seconds (default %d). Seeds and pushes carry at most %d GiB and %d entries; seed_path and source_path are paths on the machine running pyro.",
			api.DefaultWorkspaceTTLSeconds, archive.DefaultLimits.MaxBytes>>30, archive.DefaultLimits.MaxEntries)
		if s.res != nil || s.serves("workspace_list") {
			fmt.Fprintf(&b, " Each workspace's files are also resources: %s.", resourceTemplate)
		}
	}
	b.WriteString("\nEnvironments: debian:12 (default, with git), debian:12-base (minimal), debian:12-build (compilers).")
	return b.String()
}

// present joins the tools of names this server has with " / ".
func (s *Server) present(names ...string) string {
	var have []string
	for _, n := range names {
		if _, ok := toolProfiles[n]; ok && s.serves(n) {
			have = append(have, n)
		}
	}
	return strings.Join(have, " / ")
}
