package mcpserver

import (
	"context"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/pyro-mcp/pyro/internal/engine"
)

// connect serves a fresh engine (empty cache and state: no guest is
// booted by these tests) over in-memory transports.
func connect(t *testing.T) *mcp.ClientSession {
	t.Helper()
	return connectWith(t, nil, nil)
}

// connectWith serves a fresh engine with the server options opts (and
// engine options eo, when set) over in-memory transports.
func connectWith(t *testing.T, opts *Options, eo *engine.Options) *mcp.ClientSession {
	t.Helper()
	return connectWithClient(t, opts, eo, nil)
}

// connectWithClient is connectWith with client options.
func connectWithClient(t *testing.T, opts *Options, eo *engine.Options, copts *mcp.ClientOptions) *mcp.ClientSession {
	t.Helper()
	run, err := os.MkdirTemp("", "pyro-mcp-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(run) })
	o := engine.Options{CacheDir: t.TempDir(), StateDir: t.TempDir()}
	if eo != nil {
		o = *eo
	}
	o.RuntimeDir = run
	e, err := engine.New(o)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(e, opts)
	if err != nil {
		t.Fatal(err)
	}
	ct, st := mcp.NewInMemoryTransports()
	ctx := t.Context()
	ss, err := s.MCP().Connect(ctx, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ss.Close() })
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "test", Version: "0"}, copts).Connect(ctx, ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

func TestToolList(t *testing.T) {
	cs := connect(t)
	res, err := cs.ListTools(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	tools := map[string]*mcp.Tool{}
	for _, tool := range res.Tools {
		names = append(names, tool.Name)
		tools[tool.Name] = tool
		if tool.Description == "" || tool.OutputSchema == nil || tool.Annotations == nil || tool.Annotations.Title == "" {
			t.Errorf("%s: missing description, output schema or annotations", tool.Name)
		}
	}
	slices.Sort(names)
	if diff := cmp.Diff(ToolNames, names); diff != "" {
		t.Errorf("tools (-want +got):\n%s", diff)
	}
	if !strings.Contains(tools["vm_run"].Description, "Use this first") {
		t.Errorf("vm_run does not say it comes first: %q", tools["vm_run"].Description)
	}
	if !strings.Contains(tools["vm_exec"].Description, "DELETE") {
		t.Errorf("vm_exec does not say it auto-cleans")
	}
	for _, name := range []string{"vm_list_environments", "vm_status", "vm_network_info", "workspace_status", "workspace_logs", "workspace_list"} {
		if !tools[name].Annotations.ReadOnlyHint {
			t.Errorf("%s: not readOnly", name)
		}
	}
	for _, name := range []string{"vm_delete", "vm_exec", "vm_reap_expired", "workspace_delete", "workspace_exec"} {
		if a := tools[name].Annotations; a.ReadOnlyHint || a.DestructiveHint == nil || !*a.DestructiveHint {
			t.Errorf("%s: not destructive", name)
		}
	}
}

// TestArguments pins the public argument names, which are required, and
// the contract's defaults as the input schemas advertise them.
func TestArguments(t *testing.T) {
	cs := connect(t)
	res, err := cs.ListTools(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	type arg struct {
		Required bool
		Default  string
	}
	got := map[string]map[string]arg{}
	for _, tool := range res.Tools {
		var sch struct {
			Properties map[string]struct {
				Default json.RawMessage `json:"default"`
			} `json:"properties"`
			Required []string `json:"required"`
		}
		b, _ := json.Marshal(tool.InputSchema)
		if err := json.Unmarshal(b, &sch); err != nil {
			t.Fatal(err)
		}
		got[tool.Name] = map[string]arg{}
		for name, p := range sch.Properties {
			got[tool.Name][name] = arg{Required: slices.Contains(sch.Required, name), Default: string(p.Default)}
		}
	}
	shape := func(ttl string) map[string]arg {
		return map[string]arg{"vcpu_count": {Default: "1"}, "mem_mib": {Default: "1024"}, "ttl_seconds": {Default: ttl},
			"network": {Default: "false"}, "allow_host_compat": {Default: "false"}, "environment": {Required: true}}
	}
	with := func(m map[string]arg, kv ...any) map[string]arg {
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1].(arg)
		}
		return m
	}
	vm := map[string]arg{"vm_id": {Required: true}}
	ws := map[string]arg{"workspace_id": {Required: true}}
	want := map[string]map[string]arg{
		"vm_run":               with(shape("600"), "command", arg{Required: true}, "timeout_seconds", arg{Default: "30"}),
		"vm_create":            shape("600"),
		"vm_start":             vm,
		"vm_exec":              with(map[string]arg{"vm_id": {Required: true}}, "command", arg{Required: true}, "timeout_seconds", arg{Default: "30"}),
		"vm_stop":              vm,
		"vm_delete":            vm,
		"vm_status":            vm,
		"vm_network_info":      vm,
		"vm_reap_expired":      {},
		"vm_list_environments": {},
		"workspace_create":     with(shape("3600"), "seed_path", arg{}, "disk_gib", arg{Default: "10"}, "name", arg{}, "labels", arg{}, "secrets", arg{}),
		"workspace_list":       {"labels": {}},
		"workspace_sync_push":  {"workspace_id": {Required: true}, "source_path": {Required: true}, "dest": {Default: `"/workspace"`}},
		"workspace_exec":       {"workspace_id": {Required: true}, "command": {Required: true}, "timeout_seconds": {Default: "30"}, "secret_env": {}},
		"workspace_status":     ws,
		"workspace_logs":       ws,
		"workspace_delete":     ws,
		"workspace_start":      ws,
		"workspace_stop":       ws,
		"snapshot_create":      {"workspace_id": {Required: true}, "name": {Required: true}},
		"snapshot_delete":      {"workspace_id": {Required: true}, "name": {Required: true}},
		"snapshot_list":        ws,
		"workspace_reset":      {"workspace_id": {Required: true}, "snapshot": {Default: `"baseline"`}},
		"workspace_fork":       {"workspace_id": {Required: true}, "snapshot": {}, "name": {}},
		"workspace_disk_list":  {"workspace_id": {Required: true}, "path": {Default: `"/workspace"`}, "recursive": {Default: "false"}},
		"workspace_disk_read":  {"workspace_id": {Required: true}, "path": {Required: true}, "max_bytes": {Default: "65536"}},
		"workspace_disk_export": {"workspace_id": {Required: true}, "output_path": {Required: true}, "disk": {},
			"force": {Default: "false"}},
	}
	for name, args := range livingArguments() {
		want[name] = map[string]arg{}
		for k, v := range args {
			want[name][k] = arg(v)
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("arguments (-want +got):\n%s", diff)
	}
}

func TestErrors(t *testing.T) {
	cs := connect(t)
	for _, tc := range []struct {
		tool string
		args map[string]any
		want []string
	}{
		{"vm_run", map[string]any{"environment": "debian:11", "command": "true"},
			[]string{"error (not_found)", `unknown environment "debian:11"`, "hint: valid environments: debian:12, debian:12-base, debian:12-build"}},
		{"vm_run", map[string]any{"environment": "debian:12", "command": "  "}, []string{"error (invalid_argument): empty command", `"git --version"`}},
		{"vm_run", map[string]any{"environment": "debian:12", "command": "true", "vcpu_count": 999}, []string{"error (invalid_argument)", "vcpu_count 999 is out of range"}},
		{"vm_run", map[string]any{"command": "true"}, []string{"environment"}},
		{"vm_run", map[string]any{"environment": "debian:12", "command": 7}, []string{"command"}},
		{"vm_status", map[string]any{"vm_id": "nope"}, []string{"error (not_found)"}},
		{"workspace_exec", map[string]any{"workspace_id": "nope", "command": "ls"}, []string{"error (not_found)"}},
		{"workspace_logs", map[string]any{"workspace_id": "nope"}, []string{"error (not_found)"}},
		{"workspace_sync_push", map[string]any{"workspace_id": "nope", "source_path": "/nonexistent", "dest": "/etc"}, []string{"error (invalid_argument)"}},
		{"workspace_create", map[string]any{"environment": "debian:12", "seed_path": "/nonexistent/seed"}, []string{"error (not_found)", "/nonexistent/seed"}},
	} {
		res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: tc.tool, Arguments: tc.args})
		if err != nil {
			t.Errorf("%s %v: protocol error %v", tc.tool, tc.args, err)
			continue
		}
		text := textOf(res)
		if !res.IsError {
			t.Errorf("%s %v: not an error: %s", tc.tool, tc.args, text)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(text, w) {
				t.Errorf("%s %v: %q does not contain %q", tc.tool, tc.args, text, w)
			}
		}
	}
}

func TestListEnvironments(t *testing.T) {
	cs := connect(t)
	res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "vm_list_environments"})
	if err != nil || res.IsError {
		t.Fatalf("%v %s", err, textOf(res))
	}
	var l EnvironmentList
	b, _ := json.Marshal(res.StructuredContent)
	if err := json.Unmarshal(b, &l); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range l.Environments {
		names = append(names, e.Name)
	}
	if diff := cmp.Diff([]string{"debian:12", "debian:12-base", "debian:12-build"}, names); diff != "" {
		t.Errorf("environments (-want +got):\n%s", diff)
	}
	if !strings.Contains(textOf(res), "debian:12 (default)") {
		t.Errorf("text: %s", textOf(res))
	}
}

func TestReapEmpty(t *testing.T) {
	cs := connect(t)
	res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "vm_reap_expired", Arguments: map[string]any{}})
	if err != nil || res.IsError {
		t.Fatalf("%v %s", err, textOf(res))
	}
	b, _ := json.Marshal(res.StructuredContent)
	if got := string(b); got != `{"count":0,"reaped":[]}` {
		t.Errorf("structured content %s", got)
	}
}

func textOf(res *mcp.CallToolResult) string {
	if res == nil {
		return ""
	}
	var parts []string
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			parts = append(parts, tc.Text)
		}
	}
	return strings.Join(parts, "\n")
}
