package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/pyro-mcp/pyro/internal/guesttest"
	"github.com/pyro-mcp/pyro/internal/mcpserver"
)

// mcpEnv is one `pyro mcp serve` subprocess with private state, driven by
// the go-sdk's real client over stdio.
type mcpEnv struct {
	session  *mcp.ClientSession
	dir      string // the server's working directory: host paths a client names must be under it
	env      []string
	progress chan *mcp.ProgressNotificationParams
}

func startMCP(t *testing.T) *mcpEnv {
	t.Helper()
	return startMCPWith(t, mcpStart{})
}

// mcpStart varies how startMCPWith starts the server.
type mcpStart struct {
	dir    string             // working directory; "" is a fresh empty one (not a git checkout: no project)
	args   []string           // after `pyro mcp serve`
	env    []string           // added to the environment
	client *mcp.ClientOptions // progress notifications are collected whatever it says
	roots  []*mcp.Root        // the client's roots (roots/list)
}

// startMCPWith starts `pyro mcp serve` as o says, with its own state.
func startMCPWith(t *testing.T, o mcpStart) *mcpEnv {
	t.Helper()
	runDir, err := os.MkdirTemp("", "pyro-mcp-")
	if err != nil {
		t.Fatal(err)
	}
	stateDir := t.TempDir()
	m := &mcpEnv{
		env: append(os.Environ(), "PYRO_RUNTIME_DIR="+runDir, "PYRO_STATE_DIR="+stateDir,
			"PYRO_CACHE_DIR="+testCacheDir(), "PYRO_LOG_LEVEL=info"),
		progress: make(chan *mcp.ProgressNotificationParams, 100),
	}
	m.env = append(m.env, o.env...)
	if o.dir == "" {
		o.dir = t.TempDir()
	}
	m.dir = o.dir
	cmd := exec.Command(filepath.Join(pyroBinDir, "pyro"), append([]string{"mcp", "serve"}, o.args...)...)
	cmd.Env, cmd.Dir = m.env, o.dir
	stderr, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = stderr
	copts := o.client
	if copts == nil {
		copts = &mcp.ClientOptions{}
	}
	copts.ProgressNotificationHandler = func(_ context.Context, req *mcp.ProgressNotificationClientRequest) {
		select {
		case m.progress <- req.Params:
		default:
		}
	}
	client := mcp.NewClient(&mcp.Implementation{Name: "pyro-test", Version: "0"}, copts)
	client.AddRoots(o.roots...)
	m.session, err = client.Connect(t.Context(), &mcp.CommandTransport{Command: cmd}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		m.session.Close()
		killProcessesMentioning(runDir, stateDir)
		os.RemoveAll(runDir)
		if t.Failed() {
			b, _ := os.ReadFile(stderr.Name())
			t.Logf("pyro mcp serve stderr:\n%s", b)
		}
	})
	return m
}

func (m *mcpEnv) call(t *testing.T, ctx context.Context, tool string, args map[string]any, meta mcp.Meta) (*mcp.CallToolResult, map[string]any) {
	t.Helper()
	res, err := m.session.CallTool(ctx, &mcp.CallToolParams{Name: tool, Arguments: args, Meta: meta})
	if err != nil {
		t.Fatalf("%s: %v", tool, err)
	}
	var out map[string]any
	if res.StructuredContent != nil {
		b, _ := json.Marshal(res.StructuredContent)
		json.Unmarshal(b, &out)
	}
	return res, out
}

func (m *mcpEnv) ok(t *testing.T, tool string, args map[string]any) map[string]any {
	t.Helper()
	res, out := m.call(t, t.Context(), tool, args, nil)
	if res.IsError {
		t.Fatalf("%s %v: %s", tool, args, contentText(res))
	}
	return out
}

func contentText(res *mcp.CallToolResult) string {
	var parts []string
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			parts = append(parts, tc.Text)
		}
	}
	return strings.Join(parts, "\n")
}

// vmCount is `pyro vm list --json`'s count with the server's state.
func (m *mcpEnv) vmCount(t *testing.T) int {
	cmd := exec.Command(filepath.Join(pyroBinDir, "pyro"), "vm", "list", "--json")
	cmd.Env = m.env
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("pyro vm list: %v", err)
	}
	var l struct {
		Count int `json:"count"`
	}
	if err := json.Unmarshal(out, &l); err != nil {
		t.Fatalf("pyro vm list: %v: %s", err, out)
	}
	return l.Count
}

// vmsRunning counts the server's VMs whose guest is up.
func (m *mcpEnv) vmsRunning(t *testing.T) int {
	cmd := exec.Command(filepath.Join(pyroBinDir, "pyro"), "vm", "list", "--json")
	cmd.Env = m.env
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("pyro vm list: %v", err)
	}
	var l struct {
		VMs []struct {
			Running bool `json:"running"`
		} `json:"vms"`
	}
	if err := json.Unmarshal(out, &l); err != nil {
		t.Fatalf("pyro vm list: %v: %s", err, out)
	}
	n := 0
	for _, v := range l.VMs {
		if v.Running {
			n++
		}
	}
	return n
}

// subdir makes a directory under the server's working directory, where a
// client without roots may name host paths.
func (m *mcpEnv) subdir(t *testing.T, name string) string {
	t.Helper()
	d := filepath.Join(m.dir, name)
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}

// needGuestHere gates the guest tests with the same condition as [guest].
func needGuestHere(t *testing.T) { guesttest.Need(t) }

func TestMCPToolsAndErrors(t *testing.T) {
	m := startMCP(t)
	tools, err := m.session.ListTools(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tool := range tools.Tools {
		names = append(names, tool.Name)
	}
	slices.Sort(names)
	// The bare command serves every tool: the 2.x contract's and more.
	for _, name := range contractTools2x {
		if !slices.Contains(names, name) {
			t.Errorf("2.x contract tool %s is not served", name)
		}
	}
	if diff := cmp.Diff(mcpserver.ToolNames, names); diff != "" {
		t.Errorf("tools (-mcpserver.ToolNames +served):\n%s", diff)
	}
	if got := m.session.InitializeResult().ServerInfo.Name; got != "pyro" {
		t.Errorf("server name %q", got)
	}

	res, _ := m.call(t, t.Context(), "vm_run", map[string]any{"environment": "ubuntu:24.04", "command": "true"}, nil)
	text := contentText(res)
	if !res.IsError || !strings.Contains(text, `unknown environment "ubuntu:24.04"`) || !strings.Contains(text, "debian:12, debian:12-base, debian:12-build") {
		t.Errorf("unknown environment: isError=%v %q", res.IsError, text)
	}
	// Bad input is a tool error, and the server lives on.
	res, _ = m.call(t, t.Context(), "vm_run", map[string]any{"environment": 12}, nil)
	if !res.IsError {
		t.Errorf("bad input accepted: %s", contentText(res))
	}
	out := m.ok(t, "vm_list_environments", nil)
	if envs, _ := out["environments"].([]any); len(envs) != 3 {
		t.Errorf("vm_list_environments: %v", out)
	}
}

func TestMCPRunWithProgress(t *testing.T) {
	needGuestHere(t)
	m := startMCP(t)
	res, out := m.call(t, t.Context(), "vm_run", map[string]any{"environment": "debian:12", "command": "git --version"}, mcp.Meta{"progressToken": "run-1"})
	if res.IsError {
		t.Fatal(contentText(res))
	}
	if out["exit_code"] != 0.0 || !strings.HasPrefix(out["stdout"].(string), "git version 2.39") || out["execution_mode"] != "guest" {
		t.Errorf("structured content %v", out)
	}
	if !strings.Contains(contentText(res), "git version 2.39") {
		t.Errorf("text %q", contentText(res))
	}
	select {
	case p := <-m.progress:
		if p.ProgressToken != "run-1" || !strings.Contains(p.Message, "vm_run") {
			t.Errorf("progress %+v", p)
		}
	default:
		t.Error("no progress notification")
	}
	if n := m.vmCount(t); n != 0 {
		t.Errorf("%d VMs left after vm_run", n)
	}
}

func TestMCPWorkspaceFlow(t *testing.T) {
	needGuestHere(t)
	m := startMCP(t)
	seed, more := m.subdir(t, "seed"), m.subdir(t, "more")
	os.WriteFile(filepath.Join(seed, "main.sh"), []byte("echo seeded\n"), 0o644)
	os.WriteFile(filepath.Join(more, "patch.txt"), []byte("v2\n"), 0o644)

	ws := m.ok(t, "workspace_create", map[string]any{"environment": "debian:12", "seed_path": seed, "mem_mib": 512})
	id, _ := ws["workspace_id"].(string)
	if seedInfo, _ := ws["workspace_seed"].(map[string]any); id == "" || seedInfo["mode"] != "directory" {
		t.Fatalf("workspace_create: %v", ws)
	}
	if r := m.ok(t, "workspace_exec", map[string]any{"workspace_id": id, "command": "sh main.sh > out.txt && cat out.txt"}); r["stdout"] != "seeded\n" || r["cwd"] != "/workspace" {
		t.Errorf("first exec %v", r)
	}
	if r := m.ok(t, "workspace_sync_push", map[string]any{"workspace_id": id, "source_path": more}); r["dest"] != "/workspace" {
		t.Errorf("sync push %v", r)
	}
	if r := m.ok(t, "workspace_exec", map[string]any{"workspace_id": id, "command": "cat out.txt patch.txt; exit 4"}); r["stdout"] != "seeded\nv2\n" || r["exit_code"] != 4.0 {
		t.Errorf("second exec %v", r)
	}
	if st := m.ok(t, "workspace_status", map[string]any{"workspace_id": id}); st["command_count"] != 2.0 || st["running"] != true {
		t.Errorf("status %v", st)
	}
	logs := m.ok(t, "workspace_logs", map[string]any{"workspace_id": id})
	// The push has an entry of its own (kind sync) between the commands.
	if entries, _ := logs["entries"].([]any); logs["count"] != 3.0 || len(entries) != 3 {
		t.Errorf("logs %v", logs)
	}
	if d := m.ok(t, "workspace_delete", map[string]any{"workspace_id": id}); d["deleted"] != true {
		t.Errorf("delete %v", d)
	}
	res, _ := m.call(t, t.Context(), "workspace_status", map[string]any{"workspace_id": id}, nil)
	if !res.IsError || !strings.Contains(contentText(res), "not_found") {
		t.Errorf("status after delete: %s", contentText(res))
	}
}

// TestMCPCancel cancels a running vm_run: the guest command dies with its
// VM, and no VM is left.
func TestMCPCancel(t *testing.T) {
	needGuestHere(t)
	m := startMCP(t)
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Add(1)
	var callErr error
	start := time.Now()
	go func() {
		defer wg.Done()
		_, callErr = m.session.CallTool(ctx, &mcp.CallToolParams{Name: "vm_run",
			Arguments: map[string]any{"environment": "debian:12", "command": "sleep 1000", "timeout_seconds": 2000}})
	}()
	// Wait until the guest is up (the command starts right after), however
	// long the boot takes on this host.
	deadline := time.Now().Add(3 * time.Minute)
	for m.vmsRunning(t) == 0 && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	if m.vmsRunning(t) == 0 {
		t.Fatal("the vm_run guest never came up")
	}
	cancel()
	wg.Wait()
	if callErr == nil {
		t.Error("cancelled call returned no error")
	}
	n := -1
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		if n = m.vmCount(t); n == 0 {
			break
		}
	}
	if n != 0 {
		t.Fatalf("%d VM(s) left after cancelling", n)
	}
	if took := time.Since(start); took > 4*time.Minute {
		t.Errorf("cancel took %s", took)
	}
	// The server still serves.
	if out := m.ok(t, "vm_reap_expired", nil); out["count"] != 0.0 {
		t.Errorf("reap %v", out)
	}
}
