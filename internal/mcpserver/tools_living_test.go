package mcpserver

import (
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// livingArguments are the shell, service and update tools' arguments, for
// TestArguments: names, which are required, defaults.
func livingArguments() map[string]map[string]struct {
	Required bool
	Default  string
} {
	type arg = struct {
		Required bool
		Default  string
	}
	req := arg{Required: true}
	shell := func(kv ...any) map[string]arg {
		m := map[string]arg{"workspace_id": req, "shell_id": req}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1].(arg)
		}
		return m
	}
	svc := func(kv ...any) map[string]arg {
		m := map[string]arg{"workspace_id": req, "name": req}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1].(arg)
		}
		return m
	}
	return map[string]map[string]arg{
		"workspace_update": {"workspace_id": req, "name": {}, "labels": {}, "clear_labels": {}, "ttl_seconds": {}},
		"shell_open": {"workspace_id": req, "cwd": {Default: `"/workspace"`}, "cols": {Default: "120"}, "rows": {Default: "30"},
			"secret_env": {}},
		"shell_write":  shell("input", req, "append_newline", arg{Default: "true"}),
		"shell_read":   shell("cursor", arg{Default: "0"}, "max_chars", arg{Default: "65536"}, "plain", arg{Default: "false"}, "wait_for_idle_ms", arg{Default: "0"}),
		"shell_signal": shell("signal", arg{Default: `"INT"`}),
		"shell_close":  shell(),
		"shell_list":   {"workspace_id": req},
		"service_start": svc("command", req, "cwd", arg{Default: `"/workspace"`}, "readiness", arg{}, "ready_timeout_seconds", arg{Default: "30"},
			"ready_interval_ms", arg{Default: "500"}, "restart", arg{Default: `"no"`}, "secret_env", arg{}),
		"service_list":   {"workspace_id": req},
		"service_status": svc(),
		"service_logs":   svc("tail_lines", arg{Default: "200"}, "all", arg{Default: "false"}),
		"service_stop":   svc(),
	}
}

// TestLivingBadInput: the shell and service tools refuse bad input
// before they look for the workspace.
func TestLivingBadInput(t *testing.T) {
	cs := connect(t)
	for _, tc := range []struct {
		tool string
		args map[string]any
		want string
	}{
		{"shell_signal", map[string]any{"workspace_id": "nope", "shell_id": "x", "signal": "USR1"}, `error (invalid_argument): unknown signal "USR1"`},
		{"shell_read", map[string]any{"workspace_id": "nope", "shell_id": "x", "max_chars": -1}, "error (invalid_argument)"},
		{"shell_read", map[string]any{"workspace_id": "nope", "shell_id": "x"}, "error (not_found)"},
		{"service_start", map[string]any{"workspace_id": "nope", "name": "web", "command": "true",
			"readiness": map[string]any{"type": "http", "url": "ftp://x/"}}, "not an http URL"},
		{"service_start", map[string]any{"workspace_id": "nope", "name": "a b", "command": "true"}, `invalid service name "a b"`},
		{"service_start", map[string]any{"workspace_id": "nope", "name": "web", "command": "true", "restart": "always"}, "hint: use a restart of no or on-failure"},
		{"workspace_create", map[string]any{"environment": "debian:12", "secrets": []any{map[string]any{"name": "A=B", "value": "xxxxx"}}}, `invalid secret name "A=B"`},
		{"workspace_create", map[string]any{"environment": "debian:12", "name": "0123456789abcdef"}, "invalid workspace name"},
		{"workspace_update", map[string]any{"workspace_id": "nope"}, "nothing to update"},
	} {
		res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: tc.tool, Arguments: tc.args})
		if err != nil {
			t.Errorf("%s: %v", tc.tool, err)
			continue
		}
		if text := textOf(res); !res.IsError || !strings.Contains(text, tc.want) {
			t.Errorf("%s %v: %q, want an error with %q", tc.tool, tc.args, text, tc.want)
		}
	}
}
