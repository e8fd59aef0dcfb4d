package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/pyro-mcp/pyro/internal/mcpserver"
)

// contractTools2x are the MCP tools of the 2.x contract: the bare
// `pyro mcp serve` must keep serving every one of them.
var contractTools2x = []string{"vm_create", "vm_delete", "vm_exec", "vm_list_environments", "vm_network_info",
	"vm_reap_expired", "vm_run", "vm_start", "vm_status", "vm_stop", "workspace_create", "workspace_delete",
	"workspace_exec", "workspace_logs", "workspace_status", "workspace_sync_push"}

// TestMCPProfiles: tools/list of each profile over stdio is the table's
// column; the bare command is workspace-full.
func TestMCPProfiles(t *testing.T) {
	for _, profile := range append(slices.Clone(mcpserver.Profiles), "") {
		t.Run("profile="+profile, func(t *testing.T) {
			var args []string
			want := mcpserver.ToolNames
			if profile != "" {
				args = []string{"--profile", profile}
				want, _ = mcpserver.ProfileTools(profile)
			}
			m := startMCPWith(t, mcpStart{args: args, dir: t.TempDir()})
			res, err := m.session.ListTools(t.Context(), nil)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, tool := range res.Tools {
				got = append(got, tool.Name)
			}
			slices.Sort(got)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("tools/list (-table +served):\n%s", diff)
			}
			if ins := m.session.InitializeResult().Instructions; !strings.Contains(ins, "Limits:") {
				t.Errorf("instructions: %q", ins)
			}
		})
	}
}

// gitProject makes a git checkout holding a failing test (shell: the
// usual environment has no python), an ignored log and an ignored secrets
// file.
func gitProject(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed")
	}
	dir := t.TempDir()
	files := map[string]string{
		".gitignore": "*.log\n.env\n",
		"calc.sh":    "add() { echo $(($1 - $2)); }\n",
		"test.sh":    ". ./calc.sh\nr=$(add 2 3)\nif [ \"$r\" = 5 ]; then echo OK; else echo \"FAILED: add 2 3 = $r, want 5\"; exit 1; fi\n",
	}
	for name, body := range files {
		os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644)
	}
	for _, args := range [][]string{{"init", "-q"}, {"add", "-A"}, {"-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "calc"}} {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	os.WriteFile(filepath.Join(dir, "build.log"), []byte("ignored output\n"), 0o644)
	os.WriteFile(filepath.Join(dir, ".env"), []byte("API_TOKEN=secret\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "NOTES.md"), []byte("untracked, not ignored\n"), 0o644)
	return dir
}

// TestMCPReproFix is the on-ramp's proof: an agent's MCP client, over
// stdio, with the workspace-core profile, started inside a checkout that
// holds a failing test, reproduces the failure in a real guest, fixes it
// and sees the test pass, without ever naming the project.
func TestMCPReproFix(t *testing.T) {
	needGuestHere(t)
	repo := gitProject(t)
	outDir := t.TempDir() // where the fix is exported: allowed with --allow-path
	var listChanged atomic.Int32
	m := startMCPWith(t, mcpStart{dir: repo, args: []string{"--profile", "workspace-core", "--allow-path", outDir}, client: &mcp.ClientOptions{
		ResourceListChangedHandler: func(context.Context, *mcp.ResourceListChangedRequest) { listChanged.Add(1) },
	}})

	// 1. Create, no seed_path: the server's project is the seed.
	ws := m.ok(t, "workspace_create", map[string]any{"environment": "debian:12", "mem_mib": 512})
	id, _ := ws["workspace_id"].(string)
	seed, _ := ws["workspace_seed"].(map[string]any)
	if seed["origin_kind"] != "project" || seed["origin_ref"] != repo || seed["mode"] != "directory" {
		t.Fatalf("workspace_seed %v", seed)
	}
	t.Cleanup(func() {
		m.session.CallTool(context.Background(), &mcp.CallToolParams{Name: "workspace_delete", Arguments: map[string]any{"workspace_id": id}})
	})
	if r := m.ok(t, "workspace_exec", map[string]any{"workspace_id": id, "command": "ls -A | sort"}); r["stdout"] != ".gitignore\nNOTES.md\ncalc.sh\ntest.sh\n" {
		t.Errorf("seeded: %q (never .git, build.log or .env)", r["stdout"])
	}

	// 2. Reproduce: the test fails.
	test := map[string]any{"workspace_id": id, "command": "sh test.sh", "timeout_seconds": 120}
	if r := m.ok(t, "workspace_exec", test); r["exit_code"] == 0.0 || !strings.Contains(r["stdout"].(string), "FAILED") {
		t.Fatalf("the test did not fail: %v", r)
	}

	// 3. Read the file, with the file tool and as a resource.
	rf := m.ok(t, "workspace_file_read", map[string]any{"workspace_id": id, "path": "calc.sh"})
	if rf["path"] != "/workspace/calc.sh" || rf["encoding"] != "utf-8" || rf["truncated"] != false || !strings.Contains(rf["content"].(string), "$1 - $2") {
		t.Fatalf("workspace_file_read: %v", rf)
	}
	uri := "pyro://workspace/" + id + "/calc.sh"
	rr, err := m.session.ReadResource(t.Context(), &mcp.ReadResourceParams{URI: uri})
	if err != nil || len(rr.Contents) != 1 || !strings.Contains(rr.Contents[0].Text, "$1 - $2") {
		t.Fatalf("resources/read %s: %v %+v", uri, err, rr)
	}

	// Paths outside /workspace are refused, naming them.
	for _, p := range []string{"../etc/shadow", "/etc/shadow"} {
		if r := callResult(t, m, "workspace_file_read", map[string]any{"workspace_id": id, "path": p}); !r.IsError || !strings.Contains(contentText(r), "outside /workspace") {
			t.Errorf("workspace_file_read %s: %s", p, contentText(r))
		}
	}
	// A note of the agent's own, written and listed.
	wr := m.ok(t, "workspace_file_write", map[string]any{"workspace_id": id, "path": "notes/fix.md", "text": "calc.sh subtracts\n", "mode": "0600"})
	if wr["path"] != "/workspace/notes/fix.md" || wr["bytes"] != 18.0 || wr["created"] != true || wr["mode"] != "0600" {
		t.Fatalf("workspace_file_write: %v", wr)
	}
	ls := m.ok(t, "workspace_file_list", map[string]any{"workspace_id": id, "path": "notes"})
	if es, _ := ls["entries"].([]any); ls["count"] != 1.0 || len(es) != 1 || es[0].(map[string]any)["path"] != "/workspace/notes/fix.md" || es[0].(map[string]any)["size"] != 18.0 {
		t.Fatalf("workspace_file_list: %v", ls)
	}

	// 4. Fix it with a unified diff. A patch against lines the file does
	// not have changes nothing and says which line differs.
	bad := callResult(t, m, "workspace_patch_apply", map[string]any{"workspace_id": id, "patch": "--- a/calc.sh\n+++ b/calc.sh\n@@ -1 +1 @@\n-add() { echo $(($1 * $2)); }\n+add() { echo $(($1 + $2)); }\n"})
	if !bad.IsError || !strings.Contains(contentText(bad), `line 1 is "add() { echo $(($1 - $2)); }"`) {
		t.Fatalf("a patch that does not apply: %s", contentText(bad))
	}
	fix := "--- a/calc.sh\n+++ b/calc.sh\n@@ -1 +1 @@\n-add() { echo $(($1 - $2)); }\n+add() { echo $(($1 + $2)); }\n"
	pr := m.ok(t, "workspace_patch_apply", map[string]any{"workspace_id": id, "patch": fix})
	if files, _ := pr["files"].([]any); pr["count"] != 1.0 || len(files) != 1 || files[0].(map[string]any)["status"] != "modified" {
		t.Fatalf("workspace_patch_apply: %v", pr)
	}

	// 5. The test passes.
	if r := m.ok(t, "workspace_exec", test); r["exit_code"] != 0.0 || !strings.Contains(r["stdout"].(string), "OK") {
		t.Fatalf("the test still fails: %v", r)
	}

	// 6. The change, against the seed's baseline, and out to the host.
	d := m.ok(t, "workspace_diff", map[string]any{"workspace_id": id})
	entries, _ := d["entries"].([]any)
	if d["count"] != 2.0 || len(entries) != 2 || entries[1].(map[string]any)["path"] != "notes/fix.md" || entries[1].(map[string]any)["status"] != "added" {
		t.Fatalf("workspace_diff: %v", d)
	}
	if e := entries[0].(map[string]any); e["path"] != "calc.sh" || e["status"] != "modified" || !strings.Contains(e["patch"].(string), "+add() { echo $(($1 + $2)); }") {
		t.Fatalf("workspace_diff entry: %v", e)
	}
	out := filepath.Join(outDir, "calc.sh")
	ex := m.ok(t, "workspace_export", map[string]any{"workspace_id": id, "path": "calc.sh", "output_path": out})
	if ex["format"] != "file" || ex["output_path"] != out {
		t.Fatalf("workspace_export: %v", ex)
	}
	if b, _ := os.ReadFile(out); !strings.Contains(string(b), "$1 + $2") {
		t.Errorf("exported calc.sh: %q", b)
	}
	// Outside the allowed directories an export is refused, before anything is written.
	if r := callResult(t, m, "workspace_export", map[string]any{"workspace_id": id, "path": "calc.sh", "output_path": filepath.Join(t.TempDir(), "x")}); !r.IsError ||
		!strings.Contains(contentText(r), "outside the directories this MCP server may read") {
		t.Errorf("export outside the roots: %s", contentText(r))
	}
	sum := m.ok(t, "workspace_summary", map[string]any{"workspace_id": id})
	if ch, _ := sum["changes"].(map[string]any); sum["patches"] != 1.0 || sum["file_writes"] != 1.0 || sum["failed_commands"] != 1.0 || ch["count"] != 2.0 {
		t.Errorf("workspace_summary: %v", sum)
	}
	rr, err = m.session.ReadResource(t.Context(), &mcp.ReadResourceParams{URI: uri})
	if err != nil || !strings.Contains(rr.Contents[0].Text, "$1 + $2") {
		t.Fatalf("fixed file: %v %+v", err, rr)
	}
	lr, err := m.session.ListResources(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var uris []string
	for _, r := range lr.Resources {
		uris = append(uris, r.URI)
	}
	for _, want := range []string{"pyro://workspace/" + id + "/", uri, "pyro://workspace/" + id + "/test.sh"} {
		if !slices.Contains(uris, want) {
			t.Errorf("resources/list lacks %s: %v", want, uris)
		}
	}
	// The host's checkout is untouched; the history holds the agent's commands only.
	if b, _ := os.ReadFile(filepath.Join(repo, "calc.sh")); !strings.Contains(string(b), "$1 - $2") {
		t.Errorf("the host's calc.sh changed: %s", b)
	}
	// ls, the failing test, the write, the failed patch, the patch, the passing test, the export.
	if logs := m.ok(t, "workspace_logs", map[string]any{"workspace_id": id}); logs["count"] != 7.0 {
		t.Errorf("workspace_logs count %v, want 7", logs["count"])
	}

	// 7. Delete: the workspace and its resources are gone.
	if d := m.ok(t, "workspace_delete", map[string]any{"workspace_id": id}); d["deleted"] != true {
		t.Errorf("delete %v", d)
	}
	lr, _ = m.session.ListResources(t.Context(), nil)
	if len(lr.Resources) != 0 {
		t.Errorf("resources after delete: %v", lr.Resources)
	}
	for deadline := time.Now().Add(5 * time.Second); listChanged.Load() < 2 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	if n := listChanged.Load(); n < 2 {
		t.Errorf("%d resources/list_changed notifications, want one on create and one on delete", n)
	}
}

// TestMCPDefaultSeedFlags: --repo-url seeds a clean clone (a bare
// repository through file://), --no-project nothing, --project-path
// another directory. Host-compat workspaces keep it to the seeding.
func TestMCPDefaultSeedFlags(t *testing.T) {
	repo := gitProject(t)
	bare := filepath.Join(t.TempDir(), "calc.git")
	if out, err := exec.Command("git", "clone", "-q", "--bare", repo, bare).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	head, _ := exec.Command("git", "-C", repo, "rev-parse", "HEAD").Output()
	plain := t.TempDir()
	os.WriteFile(filepath.Join(plain, "only.txt"), []byte("x"), 0o644)
	hostCompat := []string{"PYRO_BACKEND=host_compat"}
	for _, tc := range []struct {
		name       string
		dir        string
		args       []string
		kind, ref  string
		files      string
		mentioning string
	}{
		{"repo-url", t.TempDir(), []string{"--repo-url", "file://" + bare}, "repo", "file://" + bare + "@" + strings.TrimSpace(string(head)),
			".gitignore\ncalc.sh\ntest.sh\n", "a clean clone of file://" + bare},
		{"no-project", repo, []string{"--no-project"}, "", "", "", ""},
		{"project-path", repo, []string{"--project-path", plain}, "project", plain, "only.txt\n", "the directory " + plain},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := startMCPWith(t, mcpStart{dir: tc.dir, args: append([]string{"--profile", "workspace-core"}, tc.args...), env: hostCompat})
			ins := m.session.InitializeResult().Instructions
			if tc.mentioning != "" && !strings.Contains(ins, tc.mentioning) || tc.mentioning == "" && strings.Contains(ins, "without seed_path") {
				t.Errorf("instructions:\n%s", ins)
			}
			ws := m.ok(t, "workspace_create", map[string]any{"environment": "debian:12", "allow_host_compat": true})
			id := ws["workspace_id"].(string)
			defer m.ok(t, "workspace_delete", map[string]any{"workspace_id": id})
			seed := ws["workspace_seed"].(map[string]any)
			if tc.kind == "" {
				if seed["mode"] != "empty" || seed["origin_kind"] != nil {
					t.Errorf("seed %v, want empty", seed)
				}
				return
			}
			if seed["origin_kind"] != tc.kind || seed["origin_ref"] != tc.ref {
				t.Errorf("seed %v, want %s %s", seed, tc.kind, tc.ref)
			}
			if r := m.ok(t, "workspace_exec", map[string]any{"workspace_id": id, "command": "ls -A | sort"}); r["stdout"] != tc.files {
				t.Errorf("files %q, want %q", r["stdout"], tc.files)
			}
		})
	}
}

// callResult calls a tool and returns its result, an error result included.
func callResult(t *testing.T, m *mcpEnv, tool string, args map[string]any) *mcp.CallToolResult {
	t.Helper()
	res, _ := m.call(t, t.Context(), tool, args, nil)
	return res
}
