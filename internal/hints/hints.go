// Package hints words an error's hint for the face that shows it. The
// engine says what a caller can change by the contract's argument name in
// backquotes ("allow host compatibility (`allow_host_compat`)"); the CLI
// spells that as a flag, the MCP server as a tool argument and the Go SDK
// as a field, so that no face tells its users about another face's knobs.
package hints

import (
	"strings"

	"github.com/pyro-mcp/pyro/internal/errdefs"
)

// Face is a way of using pyro.
type Face int

// The faces.
const (
	CLI Face = iota
	MCP
	Go
)

// spelling of each argument a hint may name, per face.
var spelling = map[string][3]string{
	"allow_host_compat": {"--allow-host-compat", "allow_host_compat: true", "AllowHostCompat"},
	"dest":              {"--dest", "dest", "PushOptions.Dest"},
	"seed_path":         {"--seed-path", "seed_path", "SeedPath"},
	"backend":           {"--backend", "$PYRO_BACKEND of the server", "Options.Backend"},
	"command":           {"the command after --", "command", "Command"},
	"argv":              {"several arguments after --", "command", "Argv"},
	"timeout_seconds":   {"--timeout-seconds", "timeout_seconds", "TimeoutSeconds"},
	"vcpu_count":        {"--vcpu-count", "vcpu_count", "VCPUCount"},
	"mem_mib":           {"--mem-mib", "mem_mib", "MemMiB"},
	"ttl_seconds":       {"--ttl-seconds", "ttl_seconds", "TTLSeconds"},
	"disk_gib":          {"--disk-gib", "disk_gib", "DiskGiB"},
	"max_bytes":         {"--max-bytes", "max_bytes", "the maxBytes argument"},
	"output_path":       {"--output", "output_path", "the outputPath argument"},
	"force":             {"--force", "force: true", "DiskExportOptions.Force"},
	"disk":              {"--disk", "disk", "DiskExportOptions.Disk"},
	// Workspaces' names, labels and secrets; shells and services.
	"name":                  {"--name", "name", "Name"},
	"labels":                {"--label KEY=VALUE", "labels", "Labels"},
	"clear_labels":          {"--clear-label KEY", "clear_labels", "ClearLabels"},
	"secrets":               {"--secret NAME=VALUE or --secret-file NAME=PATH", "secrets", "Secrets"},
	"value":                 {"--secret NAME=VALUE", "value", "Secret.Value"},
	"file_path":             {"--secret-file NAME=PATH", "file_path", "Secret.FilePath"},
	"secret_env":            {"--secret-env SECRET[=VAR]", "secret_env", "SecretEnv"},
	"cwd":                   {"--cwd", "cwd", "Cwd"},
	"cols":                  {"--cols", "cols", "Cols"},
	"rows":                  {"--rows", "rows", "Rows"},
	"cursor":                {"--cursor", "cursor", "Cursor"},
	"next_cursor":           {"next_cursor (printed by each read)", "next_cursor", "NextCursor"},
	"max_chars":             {"--max-chars", "max_chars", "MaxChars"},
	"wait_for_idle_ms":      {"--wait-for-idle-ms", "wait_for_idle_ms", "WaitForIdleMs"},
	"input":                 {"--input", "input", "Input"},
	"signal":                {"--signal", "signal", "the signal argument"},
	"ready_timeout_seconds": {"--ready-timeout-seconds", "ready_timeout_seconds", "ReadyTimeoutSeconds"},
	"ready_interval_ms":     {"--ready-interval-ms", "ready_interval_ms", "ReadyIntervalMs"},
	"restart":               {"--restart", "restart", "Restart"},
	"readiness":             {"one of --ready-file, --ready-tcp, --ready-http, --ready-command", "readiness", "Readiness"},
	"tail_lines":            {"--tail-lines", "tail_lines", "TailLines"},
	"all":                   {"--all", "all", "All"},
	"shell_list":            {"'pyro workspace shell list'", "shell_list", "ListShells"},
	"service_list":          {"'pyro workspace service list'", "service_list", "ListServices"},
	"service_logs":          {"'pyro workspace service logs'", "service_logs", "LogsService"},
	// The MCP server's own settings: a model cannot change them, its user can.
	"project_path": {"--project-path", "the server's --project-path", "ServerOptions.ProjectPath"},
	"repo_url":     {"--repo-url", "the server's --repo-url", "ServerOptions.RepoURL"},
	"repo_ref":     {"--repo-ref", "the server's --repo-ref", "ServerOptions.RepoRef"},
	"no_project":   {"--no-project", "the server's --no-project", "a ServerOptions without ProjectPath"},
	"allow_path":   {"--allow-path", "--allow-path DIR", "ServerOptions.AllowPaths"},
}

// Render spells every `argument` of hint for face f. Backquoted words that
// are not arguments stay as they are.
func Render(hint string, f Face) string {
	if !strings.Contains(hint, "`") {
		return hint
	}
	var b strings.Builder
	rest := hint
	for {
		i := strings.IndexByte(rest, '`')
		if i < 0 {
			break
		}
		j := strings.IndexByte(rest[i+1:], '`')
		if j < 0 {
			break
		}
		word := rest[i+1 : i+1+j]
		b.WriteString(rest[:i])
		if s, ok := spelling[word]; ok {
			b.WriteString(s[f])
		} else {
			b.WriteString(rest[i : i+j+2])
		}
		rest = rest[i+j+2:]
	}
	b.WriteString(rest)
	return b.String()
}

// Rehint returns err with its hint rendered for f, keeping its message and
// class; err itself when the hint names no argument.
func Rehint(err error, f Face) error {
	h := errdefs.HintOf(err)
	r := Render(h, f)
	if r == h {
		return err
	}
	if e, ok := err.(*errdefs.Error); ok {
		// A copy with the hint in front: the chain stays as it was.
		c := *e
		c.Hint = r
		return &c
	}
	// Wrapped with context by fmt.Errorf: keep the text and the class.
	return &errdefs.Error{Class: errdefs.ClassOf(err), Msg: err.Error(), Hint: r}
}
