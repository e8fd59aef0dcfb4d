package main

import (
	"encoding/json"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// pathCase is one host path a client names, and whether the server must
// take it.
type pathCase struct {
	name, tool, arg, path string
	ok                    bool
}

// checkPaths runs each case through m against a host_compat workspace
// (commands and seeds run on the host: no guest needed) and checks that a
// refused path is refused before anything is created or copied, with an
// error that names the allowed directories.
func checkPaths(t *testing.T, m *mcpEnv, allowed []string, cases []pathCase) {
	t.Helper()
	ws := m.ok(t, "workspace_create", map[string]any{"environment": "debian:12", "allow_host_compat": true})
	id := ws["workspace_id"].(string)
	defer m.ok(t, "workspace_delete", map[string]any{"workspace_id": id})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			args := map[string]any{"environment": "debian:12", "allow_host_compat": true}
			if c.tool == "workspace_sync_push" {
				args = map[string]any{"workspace_id": id, "dest": "/workspace/" + strings.ReplaceAll(c.name, " ", "-")}
			}
			if c.arg == "file_path" {
				// A secret's file follows the same rules as seed_path.
				args["secrets"] = []map[string]any{{"name": "TOKEN", "file_path": c.path}}
			} else {
				args[c.arg] = c.path
			}
			before := m.wsCount(t)
			res, out := m.call(t, t.Context(), c.tool, args, nil)
			text := contentText(res)
			if c.ok {
				if res.IsError {
					t.Fatalf("refused: %s", text)
				}
				if c.tool == "workspace_create" {
					m.ok(t, "workspace_delete", map[string]any{"workspace_id": out["workspace_id"]})
				}
				return
			}
			if !res.IsError {
				t.Fatalf("accepted %s %s: %v", c.arg, c.path, out)
			}
			if !strings.Contains(text, "invalid_argument") || !strings.Contains(text, "outside the directories this MCP server may read") {
				t.Errorf("error %q", text)
			}
			for _, a := range allowed {
				if !strings.Contains(text, a) {
					t.Errorf("error does not name the allowed root %s: %q", a, text)
				}
			}
			if strings.Contains(text, "TOP-SECRET") {
				t.Errorf("error leaks the file: %q", text)
			}
			if n := m.wsCount(t); n != before {
				t.Errorf("%d workspaces after the refusal, %d before", n, before)
			}
		})
	}
}

// wsCount is `pyro workspace list --json`'s count with the server's state.
func (m *mcpEnv) wsCount(t *testing.T) int {
	t.Helper()
	cmd := exec.Command(filepath.Join(pyroBinDir, "pyro"), "workspace", "list", "--json")
	cmd.Env = m.env
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("pyro workspace list: %v", err)
	}
	var l struct {
		Count int `json:"count"`
	}
	if err := json.Unmarshal(out, &l); err != nil {
		t.Fatalf("pyro workspace list: %v: %s", err, out)
	}
	return l.Count
}

// secretAndRoot makes a directory outside any root holding a "secret", and
// a root with a seed, a link to the secret and a link to its directory.
func secretAndRoot(t *testing.T) (root, secret string) {
	t.Helper()
	secret = t.TempDir()
	os.WriteFile(filepath.Join(secret, "id_ed25519"), []byte("TOP-SECRET\n"), 0o600)
	root = t.TempDir()
	os.MkdirAll(filepath.Join(root, "src"), 0o755)
	os.WriteFile(filepath.Join(root, "src", "main.go"), []byte("package main\n"), 0o644)
	os.WriteFile(filepath.Join(root, "token"), []byte("tok-inside-1234\n"), 0o600)
	os.Symlink(secret, filepath.Join(root, "link-dir"))
	os.Symlink(filepath.Join(secret, "id_ed25519"), filepath.Join(root, "link-file"))
	return root, secret
}

func outsideCases(root, secret string) []pathCase {
	return []pathCase{
		{"seed inside", "workspace_create", "seed_path", filepath.Join(root, "src"), true},
		{"seed outside", "workspace_create", "seed_path", secret, false},
		{"seed file outside", "workspace_create", "seed_path", filepath.Join(secret, "id_ed25519"), false},
		{"seed dotdot", "workspace_create", "seed_path", filepath.Join(root, "..", filepath.Base(secret)), false},
		{"seed symlink to a dir outside", "workspace_create", "seed_path", filepath.Join(root, "link-dir"), false},
		{"seed symlink to a file outside", "workspace_create", "seed_path", filepath.Join(root, "link-file"), false},
		{"seed missing outside", "workspace_create", "seed_path", filepath.Join(secret, "nope"), false},
		{"seed root of the host", "workspace_create", "seed_path", "/", false},
		{"push inside", "workspace_sync_push", "source_path", filepath.Join(root, "src"), true},
		{"push outside", "workspace_sync_push", "source_path", secret, false},
		{"push symlink outside", "workspace_sync_push", "source_path", filepath.Join(root, "link-dir"), false},
		{"secret file inside", "workspace_create", "file_path", filepath.Join(root, "token"), true},
		{"secret file outside", "workspace_create", "file_path", filepath.Join(secret, "id_ed25519"), false},
		{"secret symlink to a file outside", "workspace_create", "file_path", filepath.Join(root, "link-file"), false},
	}
}

// TestMCPHostPathsClientRoots: a client that lists roots confines the
// paths to them, through a real MCP client over stdio.
func TestMCPHostPathsClientRoots(t *testing.T) {
	root, secret := secretAndRoot(t)
	m := startMCPWith(t, mcpStart{env: []string{"PYRO_BACKEND=host_compat"},
		roots: []*mcp.Root{{URI: (&url.URL{Scheme: "file", Path: root}).String(), Name: "project"}}})
	checkPaths(t, m, []string{root}, outsideCases(root, secret))
}

// TestMCPHostPathsFallback: a client without roots is confined to the
// server's working directory, plus --allow-path directories.
func TestMCPHostPathsFallback(t *testing.T) {
	root, secret := secretAndRoot(t)
	extra := t.TempDir()
	os.WriteFile(filepath.Join(extra, "data.csv"), []byte("a,b\n"), 0o644)
	m := startMCPWith(t, mcpStart{dir: root, env: []string{"PYRO_BACKEND=host_compat"}, args: []string{"--no-project", "--allow-path", extra},
		client: &mcp.ClientOptions{Capabilities: &mcp.ClientCapabilities{}}})
	cases := append(outsideCases(root, secret),
		pathCase{"seed relative to the working directory", "workspace_create", "seed_path", "src", true},
		pathCase{"seed under --allow-path", "workspace_create", "seed_path", extra, true})
	checkPaths(t, m, []string{root, extra}, cases)
}

// TestMCPHostPathsOlderProtocol speaks the 2025-06-18 protocol by hand, as
// most MCP clients do: the server asks for the roots with its own
// roots/list request in the middle of the tool call.
func TestMCPHostPathsOlderProtocol(t *testing.T) {
	root, secret := secretAndRoot(t)
	runDir, err := os.MkdirTemp("", "pyro-mcp-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(runDir)
	cmd := exec.Command(filepath.Join(pyroBinDir, "pyro"), "mcp", "serve", "--no-project")
	cmd.Env = append(os.Environ(), "PYRO_RUNTIME_DIR="+runDir, "PYRO_STATE_DIR="+t.TempDir(), "PYRO_CACHE_DIR="+t.TempDir(), "PYRO_BACKEND=host_compat")
	cmd.Dir = t.TempDir()
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); cmd.Wait() }()
	dec := json.NewDecoder(stdout)
	send := func(v any) {
		b, _ := json.Marshal(v)
		stdin.Write(append(b, '\n'))
	}
	rootsAsked := 0
	// call sends one request and answers the server's roots/list requests
	// until the response to it arrives.
	call := func(id int, method string, params any) map[string]any {
		send(map[string]any{"jsonrpc": "2.0", "id": id, "method": method, "params": params})
		for {
			var msg map[string]any
			if err := dec.Decode(&msg); err != nil {
				t.Fatalf("reading the server: %v", err)
			}
			if msg["method"] == "roots/list" {
				rootsAsked++
				send(map[string]any{"jsonrpc": "2.0", "id": msg["id"], "result": map[string]any{
					"roots": []any{map[string]any{"uri": "file://" + root, "name": "project"}}}})
				continue
			}
			if msg["id"] == float64(id) {
				return msg
			}
		}
	}
	init := call(1, "initialize", map[string]any{"protocolVersion": "2025-06-18",
		"capabilities": map[string]any{"roots": map[string]any{"listChanged": false}}, "clientInfo": map[string]any{"name": "by-hand", "version": "0"}})
	if init["result"] == nil {
		t.Fatalf("initialize: %v", init)
	}
	send(map[string]any{"jsonrpc": "2.0", "method": "notifications/initialized"})

	result := func(msg map[string]any) (bool, string) {
		r, _ := msg["result"].(map[string]any)
		if r == nil {
			t.Fatalf("no result: %v", msg)
		}
		content, _ := r["content"].([]any)
		var text string
		for _, c := range content {
			text += c.(map[string]any)["text"].(string)
		}
		return r["isError"] == true, text
	}
	bad := call(2, "tools/call", map[string]any{"name": "workspace_create", "arguments": map[string]any{
		"environment": "debian:12", "allow_host_compat": true, "seed_path": secret}})
	if isErr, text := result(bad); !isErr || !strings.Contains(text, root+" (the client's root)") {
		t.Fatalf("outside the client's root: error=%v %q", isErr, text)
	}
	good := call(3, "tools/call", map[string]any{"name": "workspace_create", "arguments": map[string]any{
		"environment": "debian:12", "allow_host_compat": true, "seed_path": filepath.Join(root, "src")}})
	isErr, text := result(good)
	if isErr {
		t.Fatalf("inside the client's root: %q", text)
	}
	if rootsAsked != 2 {
		t.Errorf("roots/list asked %d times, want once per call", rootsAsked)
	}
	id := good["result"].(map[string]any)["structuredContent"].(map[string]any)["workspace_id"]
	call(4, "tools/call", map[string]any{"name": "workspace_delete", "arguments": map[string]any{"workspace_id": id}})

	// "arguments": null once crashed the whole server (a go-sdk panic):
	// now it is a call without arguments, refused, and the server lives on.
	if r := call(5, "tools/call", map[string]any{"name": "vm_run", "arguments": nil}); r["result"] == nil && r["error"] == nil {
		t.Fatalf("arguments null: %v", r)
	}
	if r := call(6, "ping", map[string]any{}); r["result"] == nil {
		t.Fatalf("the server died after arguments null: %v", r)
	}
}
