package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/pyro-mcp/pyro/internal/mcpserver"
)

// The MCP clients whose own CLIs the host tests drive, pinned: npm
// installs them once into a directory the tests own
// ($PYRO_TEST_CLIENTS_DIR, else the user's cache), never globally.
var clientPackages = map[string]string{
	"@anthropic-ai/claude-code": "2.1.197",
	"@openai/codex":             "0.171.0",
}

var (
	clientsOnce sync.Once
	clientsBin  string
	clientsSkip string
)

// clientBinDir returns the bin directory of the installed clients, or
// skips the test with the reason; under CI=true a missing client fails.
func clientBinDir(t *testing.T) string {
	t.Helper()
	clientsOnce.Do(func() { clientsBin, clientsSkip = installClients() })
	if clientsSkip != "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true and the MCP clients cannot be installed: %s", clientsSkip)
		}
		t.Skip(clientsSkip)
	}
	return clientsBin
}

func installClients() (bin, skip string) {
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			return "", tool + " is not installed: the real-client host tests need node and npm"
		}
	}
	dir := os.Getenv("PYRO_TEST_CLIENTS_DIR")
	if dir == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			return "", "no cache directory for the MCP clients: " + err.Error()
		}
		dir = filepath.Join(cache, "pyro-test-clients")
	}
	var missing []string
	for pkg, ver := range clientPackages {
		var meta struct {
			Version string `json:"version"`
		}
		b, err := os.ReadFile(filepath.Join(dir, "node_modules", pkg, "package.json"))
		if err != nil || json.Unmarshal(b, &meta) != nil || meta.Version != ver {
			missing = append(missing, pkg+"@"+ver)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		os.MkdirAll(dir, 0o755)
		cmd := exec.CommandContext(ctx, "npm", append([]string{"install", "--prefix", dir, "--no-audit", "--no-fund", "--loglevel=error"}, missing...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Sprintf("npm install %s: %v\n%s", strings.Join(missing, " "), err, out)
		}
	}
	return filepath.Join(dir, "node_modules", ".bin"), ""
}

// offline is the argv prefix that runs a command in a network namespace
// of its own, so that nothing a client does can leave the machine; nil
// where no namespace can be made (then only the clients' own switches,
// set in clientHome, keep them quiet).
var offline = sync.OnceValue(func() []string {
	p, err := exec.LookPath("unshare")
	if err != nil {
		return nil
	}
	for _, flags := range []string{"-n", "-rn"} {
		if exec.Command(p, flags, "true").Run() == nil {
			return []string{p, flags, "--"}
		}
	}
	return nil
})

// clientHome is a private home for the clients and pyro, and the
// environment that uses it.
type clientHome struct {
	dir string
	env []string
}

func newClientHome(t *testing.T) *clientHome {
	bin := clientBinDir(t)
	home := t.TempDir()
	run, err := os.MkdirTemp("", "pyro-host-")
	if err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(home, ".state")
	t.Cleanup(func() {
		killProcessesMentioning(run, state)
		os.RemoveAll(run)
	})
	return &clientHome{dir: home, env: []string{
		"HOME=" + home, "PATH=" + bin + string(os.PathListSeparator) + pyroBinDir + string(os.PathListSeparator) + "/usr/bin:/bin",
		"TERM=dumb", "NO_COLOR=1", "LANG=C.UTF-8",
		// Claude Code: no update check, telemetry or error reporting.
		"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1", "DISABLE_AUTOUPDATER=1", "DISABLE_TELEMETRY=1", "DISABLE_ERROR_REPORTING=1",
		// The servers the clients start keep their state here.
		"PYRO_STATE_DIR=" + state, "PYRO_RUNTIME_DIR=" + run, "PYRO_CACHE_DIR=" + testCacheDir(),
	}}
}

// run runs argv offline in the home; it returns stdout+stderr and the
// exit code.
func (h *clientHome) run(t *testing.T, argv ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	full := append(slices.Clone(offline()), argv...)
	cmd := exec.CommandContext(ctx, full[0], full[1:]...)
	cmd.Env, cmd.Dir = h.env, h.dir
	out, err := cmd.CombinedOutput()
	code := 0
	if err != nil {
		code = -1
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
	}
	return string(out), code
}

func (h *clientHome) ok(t *testing.T, argv ...string) string {
	t.Helper()
	out, code := h.run(t, argv...)
	if code != 0 {
		t.Fatalf("%s: exit %d\n%s", strings.Join(argv, " "), code, out)
	}
	return out
}

// stdout runs argv offline in the home and returns its stdout alone.
func (h *clientHome) stdout(t *testing.T, argv ...string) string {
	t.Helper()
	full := append(slices.Clone(offline()), argv...)
	cmd := exec.CommandContext(t.Context(), full[0], full[1:]...)
	cmd.Env, cmd.Dir = h.env, h.dir
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
	return string(out)
}

// pyroJSON runs `pyro --json ARGS` (pyro being bin) and decodes stdout.
func (h *clientHome) pyroJSON(t *testing.T, bin string, args ...string) (map[string]any, int) {
	t.Helper()
	full := append(slices.Clone(offline()), append([]string{bin, "--json"}, args...)...)
	cmd := exec.CommandContext(t.Context(), full[0], full[1:]...)
	cmd.Env, cmd.Dir = h.env, h.dir
	out, err := cmd.Output()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	}
	var v map[string]any
	if jerr := json.Unmarshal(out, &v); jerr != nil {
		t.Fatalf("pyro %v: %v %s", args, err, out)
	}
	return v, code
}

// movedPyro is a copy of pyro elsewhere, to be deleted: a binary that
// moved after it was configured.
func movedPyro(t *testing.T) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "old", "pyro")
	os.MkdirAll(filepath.Dir(dst), 0o755)
	src, err := os.Open(filepath.Join(pyroBinDir, "pyro"))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(f, src); err != nil {
		t.Fatal(err)
	}
	f.Close()
	return dst
}

// codexServerStatus asks Codex itself, through its app server, to start
// its MCP servers and report them: Codex's own health check.
func (h *clientHome) codexServerStatus(t *testing.T) map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	full := append(slices.Clone(offline()), "codex", "app-server")
	cmd := exec.CommandContext(ctx, full[0], full[1:]...)
	cmd.Env, cmd.Dir = h.env, h.dir
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer stdin.Close()
	for _, msg := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"clientInfo":{"name":"pyro-test","version":"0"}}}`,
		`{"jsonrpc":"2.0","method":"initialized"}`,
		`{"jsonrpc":"2.0","id":2,"method":"mcpServerStatus/list","params":{"detail":"toolsAndAuthOnly"}}`,
	} {
		fmt.Fprintln(stdin, msg)
	}
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var resp struct {
			ID     int `json:"id"`
			Result struct {
				Data []map[string]any `json:"data"`
			} `json:"result"`
			Error any `json:"error"`
		}
		if json.Unmarshal(sc.Bytes(), &resp) != nil || resp.ID != 2 {
			continue
		}
		if resp.Error != nil {
			t.Fatalf("codex mcpServerStatus/list: %v", resp.Error)
		}
		for _, s := range resp.Result.Data {
			if s["name"] == "pyro" {
				return s
			}
		}
		return nil
	}
	t.Fatalf("codex app-server gave no answer: %v", sc.Err())
	return nil
}

func coreTools(t *testing.T) []string {
	tools, err := mcpserver.ProfileTools(mcpserver.ProfileWorkspaceCore)
	if err != nil {
		t.Fatal(err)
	}
	return tools
}

// TestHostClaudeCode: `pyro host connect claude-code` through `claude mcp
// add`, then Claude Code's own health check, a stale entry, repair,
// disconnect.
func TestHostClaudeCode(t *testing.T) {
	h := newClientHome(t)
	pyro := filepath.Join(pyroBinDir, "pyro")
	r, code := h.pyroJSON(t, pyro, "host", "connect", "claude-code")
	if code != 0 || r["action"] != "added" || r["profile"] != "workspace-core" || r["command"] != pyro {
		t.Fatalf("connect: %d %v", code, r)
	}
	out := h.ok(t, "claude", "mcp", "list")
	if !strings.Contains(out, "pyro: "+pyro+" mcp serve --profile workspace-core") || !strings.Contains(out, "Connected") {
		t.Fatalf("claude mcp list does not report pyro connected:\n%s", out)
	}
	if out := h.ok(t, "claude", "mcp", "get", "pyro"); !strings.Contains(out, "User config") || !strings.Contains(out, "Args: mcp serve --profile workspace-core") {
		t.Errorf("claude mcp get pyro:\n%s", out)
	}
	d, code := h.pyroJSON(t, pyro, "host", "doctor", "claude-code")
	st := d["hosts"].([]any)[0].(map[string]any)
	if code != 0 || d["ok"] != true || st["healthy"] != true || !cmp.Equal(toStrings(st["tools"]), coreTools(t)) {
		t.Errorf("host doctor: %d %v", code, d)
	}
	if r, _ := h.pyroJSON(t, pyro, "host", "connect", "claude-code"); r["action"] != "unchanged" {
		t.Errorf("second connect: %v", r)
	}

	// Configured from a binary that then moved away.
	moved := movedPyro(t)
	if r, code := h.pyroJSON(t, moved, "host", "connect", "claude-code", "--profile", "workspace-full"); code != 0 || r["action"] != "updated" {
		t.Fatalf("connect from the moved binary: %d %v", code, r)
	}
	os.RemoveAll(filepath.Dir(moved))
	if out, _ := h.run(t, "claude", "mcp", "list"); strings.Contains(out, "Connected") {
		t.Errorf("claude mcp list still connects to a deleted binary:\n%s", out)
	}
	d, code = h.pyroJSON(t, pyro, "host", "doctor", "claude-code")
	if st := d["hosts"].([]any)[0].(map[string]any); code != 1 || d["ok"] != false || !strings.Contains(st["problem"].(string), "does not exist") {
		t.Errorf("doctor of the stale entry: %d %v", code, d)
	}
	if r, code := h.pyroJSON(t, pyro, "host", "repair", "claude-code"); code != 0 || r["action"] != "updated" || r["command"] != pyro || r["profile"] != "workspace-full" {
		t.Fatalf("repair: %d %v", code, r)
	}
	if out := h.ok(t, "claude", "mcp", "list"); !strings.Contains(out, "Connected") || !strings.Contains(out, pyro+" mcp serve --profile workspace-full") {
		t.Errorf("claude mcp list after repair:\n%s", out)
	}

	if r, code := h.pyroJSON(t, pyro, "host", "disconnect", "claude-code"); code != 0 || r["action"] != "removed" {
		t.Fatalf("disconnect: %d %v", code, r)
	}
	if out, _ := h.run(t, "claude", "mcp", "list"); strings.Contains(out, "pyro") {
		t.Errorf("claude mcp list after disconnect:\n%s", out)
	}
}

// TestHostCodex: `pyro host connect codex` through `codex mcp add`; Codex
// itself starts the server and lists its tools (its app server's
// mcpServerStatus/list); stale entry, repair, disconnect.
func TestHostCodex(t *testing.T) {
	h := newClientHome(t)
	pyro := filepath.Join(pyroBinDir, "pyro")
	if r, code := h.pyroJSON(t, pyro, "host", "connect", "codex"); code != 0 || r["action"] != "added" {
		t.Fatalf("connect: %d %v", code, r)
	}
	var list []struct {
		Name      string `json:"name"`
		Enabled   bool   `json:"enabled"`
		Transport struct {
			Command string   `json:"command"`
			Args    []string `json:"args"`
		} `json:"transport"`
	}
	if err := json.Unmarshal([]byte(h.stdout(t, "codex", "mcp", "list", "--json")), &list); err != nil || len(list) != 1 ||
		list[0].Name != "pyro" || !list[0].Enabled || list[0].Transport.Command != pyro ||
		!slices.Equal(list[0].Transport.Args, []string{"mcp", "serve", "--profile", "workspace-core"}) {
		t.Fatalf("codex mcp list --json: %v %+v", err, list)
	}
	st := h.codexServerStatus(t)
	tools := []string{}
	for name := range st["tools"].(map[string]any) {
		tools = append(tools, name)
	}
	slices.Sort(tools)
	if st["toolsError"] != nil || !cmp.Equal(tools, coreTools(t)) {
		t.Fatalf("codex's own status of pyro: %v", st)
	}
	if info, _ := st["serverInfo"].(map[string]any); info["name"] != "pyro" {
		t.Errorf("serverInfo %v", st["serverInfo"])
	}

	moved := movedPyro(t)
	if _, code := h.pyroJSON(t, moved, "host", "connect", "codex"); code != 0 {
		t.Fatal("connect from the moved binary failed")
	}
	os.RemoveAll(filepath.Dir(moved))
	if st := h.codexServerStatus(t); st["toolsError"] == nil {
		t.Errorf("codex started a deleted binary: %v", st)
	}
	if d, code := h.pyroJSON(t, pyro, "host", "doctor", "codex"); code != 1 || d["ok"] != false {
		t.Errorf("doctor of the stale entry: %d %v", code, d)
	}
	if r, code := h.pyroJSON(t, pyro, "host", "repair", "codex"); code != 0 || r["action"] != "updated" || r["command"] != pyro {
		t.Fatalf("repair: %d %v", code, r)
	}
	if st := h.codexServerStatus(t); st["toolsError"] != nil || len(st["tools"].(map[string]any)) != len(coreTools(t)) {
		t.Errorf("codex after repair: %v", st)
	}
	if r, code := h.pyroJSON(t, pyro, "host", "disconnect", "codex"); code != 0 || r["action"] != "removed" {
		t.Fatalf("disconnect: %d %v", code, r)
	}
	if out := h.stdout(t, "codex", "mcp", "list", "--json"); strings.Contains(out, "pyro") {
		t.Errorf("codex mcp list after disconnect: %s", out)
	}
}

func toStrings(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}
