package hostcfg

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/pyro-mcp/pyro/internal/errdefs"
)

// TestMain lets this test binary stand in for `pyro mcp serve`: a tiny
// MCP server with one tool, so that doctor's probe has something real to
// start. The real pyro and the real clients are tested in cmd/pyro.
func TestMain(m *testing.M) {
	if len(os.Args) >= 3 && os.Args[1] == "mcp" && os.Args[2] == "serve" {
		s := mcp.NewServer(&mcp.Implementation{Name: "pyro", Version: "test"}, nil)
		mcp.AddTool(s, &mcp.Tool{Name: "vm_run"}, func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
			return nil, nil, nil
		})
		s.Run(context.Background(), &mcp.StdioTransport{})
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func testOptions(t *testing.T) *Options {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	return &Options{Home: home, Self: self, Env: []string{"HOME=" + home, "PATH=" + t.TempDir()}}
}

func readJSON(t *testing.T, path string) map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatalf("%s: %v\n%s", path, err, data)
	}
	return v
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	os.MkdirAll(filepath.Dir(path), 0o755)
	if err := os.WriteFile(path, []byte(data), 0o640); err != nil {
		t.Fatal(err)
	}
}

// The JSON-config hosts on their documented formats: merge with the
// servers already there, back the file up, repair, disconnect.
func TestJSONHosts(t *testing.T) {
	ctx := t.Context()
	for _, tc := range []struct {
		host     string
		path     string // under home
		existing string
		// entry extracts pyro's entry from the file, and other says
		// whether the other server survived.
		entry func(map[string]any) any
		other func(map[string]any) any
	}{
		{"cursor", ".cursor/mcp.json",
			`{"mcpServers": {"github": {"command": "gh-mcp", "args": ["--x"]}}, "theme": "dark"}`,
			func(v map[string]any) any { return v["mcpServers"].(map[string]any)["pyro"] },
			func(v map[string]any) any { return v["mcpServers"].(map[string]any)["github"] }},
		{"claude-desktop", ".config/Claude/claude_desktop_config.json",
			`{"mcpServers": {"fs": {"command": "npx", "args": ["fs"], "env": {"A": "1"}}}, "globalShortcut": "Ctrl+Space"}`,
			func(v map[string]any) any { return v["mcpServers"].(map[string]any)["pyro"] },
			func(v map[string]any) any { return v["mcpServers"].(map[string]any)["fs"] }},
		{"opencode", ".config/opencode/opencode.json",
			`{"$schema": "https://example.com/config.json", "mcp": {"jira": {"type": "remote", "url": "https://example.com/mcp", "enabled": true}}, "model": "x"}`,
			func(v map[string]any) any { return v["mcp"].(map[string]any)["pyro"] },
			func(v map[string]any) any { return v["mcp"].(map[string]any)["jira"] }},
	} {
		t.Run(tc.host, func(t *testing.T) {
			o := testOptions(t)
			h, err := Lookup(tc.host)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(o.Home, tc.path)
			writeFile(t, path, tc.existing)
			before := readJSON(t, path)

			// --print changes nothing.
			r, err := h.Connect(ctx, o, "workspace-core", true)
			if err != nil || r.Action != ActionPlanned || !strings.Contains(r.Config, o.Self) {
				t.Fatalf("print: %+v %v", r, err)
			}
			if diff := cmp.Diff(before, readJSON(t, path)); diff != "" {
				t.Fatalf("--print changed the file:\n%s", diff)
			}

			r, err = h.Connect(ctx, o, "workspace-core", false)
			if err != nil || r.Action != ActionAdded || r.ConfigPath != path || r.Profile != "workspace-core" {
				t.Fatalf("connect: %+v %v", r, err)
			}
			if b, err := os.ReadFile(r.Backup); err != nil || string(b) != tc.existing {
				t.Errorf("backup %q: %v %q", r.Backup, err, b)
			}
			after := readJSON(t, path)
			if diff := cmp.Diff(tc.other(before), tc.other(after)); diff != "" {
				t.Errorf("another server changed:\n%s", diff)
			}
			for k, v := range before {
				if k != "mcp" && k != "mcpServers" && !cmp.Equal(v, after[k]) {
					t.Errorf("setting %s changed: %v -> %v", k, v, after[k])
				}
			}
			if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o640 {
				t.Errorf("mode %v, want the file's own 0640", fi.Mode().Perm())
			}
			e, err := h.Read(ctx, o)
			if want := NewEntry(o.Self, "workspace-core"); err != nil || e == nil || !e.Equal(want) {
				t.Fatalf("read back %+v %v, want %+v", e, err, want)
			}
			if tc.host == "opencode" {
				got := tc.entry(after).(map[string]any)
				if got["type"] != "local" || got["enabled"] != true || len(got["command"].([]any)) != 5 {
					t.Errorf("opencode entry %v", got)
				}
			}

			// Connected again: nothing to do.
			if r, err := h.Connect(ctx, o, "workspace-core", false); err != nil || r.Action != ActionUnchanged || r.Backup != "" {
				t.Errorf("reconnect: %+v %v", r, err)
			}
			st, err := h.Doctor(ctx, o)
			if err != nil || !st.Healthy || !slices.Equal(st.Tools, []string{"vm_run"}) || st.ServerVersion != "test" {
				t.Errorf("doctor: %+v %v", st, err)
			}

			// The binary moves: doctor says so, repair fixes it and keeps the flags.
			stale := NewEntry(filepath.Join(o.Home, "old", "pyro"), "vm-run")
			stale.Args = append(stale.Args, "--no-project")
			if _, err := writeJSONEntry(h.format, path, &stale); err != nil {
				t.Fatal(err)
			}
			st, _ = h.Doctor(ctx, o)
			if st.Healthy || !st.Configured || !strings.Contains(st.Problem, "does not exist") || st.Hint != "pyro host repair "+tc.host {
				t.Errorf("doctor of a stale entry: %+v", st)
			}
			r, err = h.Repair(ctx, o, false)
			if err != nil || r.Action != ActionUpdated || r.Command != o.Self || !slices.Equal(r.Args, stale.Args) {
				t.Fatalf("repair: %+v %v", r, err)
			}
			if st, _ := h.Doctor(ctx, o); !st.Healthy || st.Profile != "vm-run" {
				t.Errorf("doctor after repair: %+v", st)
			}

			r, err = h.Disconnect(ctx, o, false)
			if err != nil || r.Action != ActionRemoved {
				t.Fatalf("disconnect: %+v %v", r, err)
			}
			if got := tc.entry(readJSON(t, path)); got != nil {
				t.Errorf("entry left after disconnect: %v", got)
			}
			if diff := cmp.Diff(tc.other(before), tc.other(readJSON(t, path))); diff != "" {
				t.Errorf("disconnect touched another server:\n%s", diff)
			}
			if r, err := h.Disconnect(ctx, o, false); err != nil || r.Action != ActionNotConfigured {
				t.Errorf("second disconnect: %+v %v", r, err)
			}
			if _, err := h.Repair(ctx, o, false); err == nil || !strings.Contains(err.Error(), "has no pyro entry") {
				t.Errorf("repair of nothing: %v", err)
			}
		})
	}
}

func TestJSONHostEdges(t *testing.T) {
	ctx := t.Context()
	o := testOptions(t)
	h, _ := Lookup("cursor")
	path := filepath.Join(o.Home, ".cursor", "mcp.json")

	// No file yet: created, private, no backup.
	r, err := h.Connect(ctx, o, "workspace-full", false)
	if err != nil || r.Action != ActionAdded || r.Backup != "" {
		t.Fatalf("connect to nothing: %+v %v", r, err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("new file mode %v", fi.Mode().Perm())
	}
	// A profile change updates the entry, keeping keys pyro does not own.
	writeFile(t, path, `{"mcpServers": {"pyro": {"command": "/x/pyro", "args": ["mcp", "serve"], "env": {"PYRO_LOG_LEVEL": "info"}}}}`)
	if r, err := h.Connect(ctx, o, "workspace-core", false); err != nil || r.Action != ActionUpdated {
		t.Fatalf("update: %+v %v", r, err)
	}
	got := readJSON(t, path)["mcpServers"].(map[string]any)["pyro"].(map[string]any)
	if got["env"].(map[string]any)["PYRO_LOG_LEVEL"] != "info" || got["command"] != o.Self {
		t.Errorf("updated entry %v", got)
	}
	// JSON with comments is not rewritten.
	writeFile(t, path, "{\n  // mine\n  \"mcpServers\": {}\n}\n")
	if _, err := h.Connect(ctx, o, "workspace-core", false); err == nil || !strings.Contains(err.Error(), "not a JSON object") {
		t.Errorf("JSONC: %v", err)
	}
	if b, _ := os.ReadFile(path); !strings.Contains(string(b), "// mine") {
		t.Errorf("a file pyro could not parse was rewritten")
	}

	// OpenCode 2 nests servers under mcp.servers and has no "enabled".
	oc, _ := Lookup("opencode")
	ocPath := filepath.Join(o.Home, ".config", "opencode", "opencode.json")
	writeFile(t, ocPath, `{"mcp": {"servers": {"other": {"type": "local", "command": ["x"]}}}}`)
	if _, err := oc.Connect(ctx, o, "workspace-core", false); err != nil {
		t.Fatal(err)
	}
	srv := readJSON(t, ocPath)["mcp"].(map[string]any)["servers"].(map[string]any)
	if p, _ := srv["pyro"].(map[string]any); p == nil || p["enabled"] != nil || srv["other"] == nil {
		t.Errorf("opencode 2 servers %v", srv)
	}
	// Only an opencode.jsonc: that is the file pyro reads.
	o2 := testOptions(t)
	writeFile(t, filepath.Join(o2.Home, ".config", "opencode", "opencode.jsonc"), `{"mcp": {}}`)
	if r, err := oc.Connect(ctx, o2, "workspace-core", false); err != nil || !strings.HasSuffix(r.ConfigPath, "opencode.jsonc") {
		t.Errorf("jsonc: %+v %v", r, err)
	}
}

func TestCLIHostWithoutCLI(t *testing.T) {
	o := testOptions(t)
	for _, name := range []string{"claude-code", "codex"} {
		h, _ := Lookup(name)
		_, err := h.Connect(t.Context(), o, "workspace-core", false)
		if err == nil || !strings.Contains(err.Error(), "is not on PATH") {
			t.Errorf("%s without its CLI: %v", name, err)
		}
		r, err := h.PrintConfig(o, "workspace-core")
		if err != nil || len(r.Via) != 1 || r.Via[0][0] != h.CLI || !strings.Contains(r.Config, o.Self) {
			t.Errorf("%s print-config: %+v %v", name, r, err)
		}
	}
	if _, err := Lookup("vscode"); err == nil || !strings.Contains(errdefs.HintOf(err), "claude-code, codex, opencode, claude-desktop, cursor") {
		t.Errorf("unknown host: %v", err)
	}
	if got := codexSnippet(Entry{Command: "/p/pyro", Args: []string{"mcp", "serve"}}); got != "[mcp_servers.pyro]\ncommand = \"/p/pyro\"\nargs = [\"mcp\", \"serve\"]\ntool_timeout_sec = 600\n" {
		t.Errorf("codex snippet %q", got)
	}
}
