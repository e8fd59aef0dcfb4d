package mcpserver

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/pyro-mcp/pyro/internal/engine"
	"github.com/pyro-mcp/pyro/internal/project"
)

// hostCompat serves an engine whose workspaces run on the host (this test
// binary is their supervisor, see TestMain): the resources and the
// project seed are exercised in about a second, without a guest. The
// real-guest versions are in cmd/pyro/onramp_test.go.
func hostCompat(t *testing.T, opts *Options, copts *mcp.ClientOptions) *mcp.ClientSession {
	t.Helper()
	exe, _ := os.Executable()
	return connectWithClient(t, opts, &engine.Options{CacheDir: t.TempDir(), StateDir: t.TempDir(), Backend: engine.BackendHostCompat, Binary: exe}, copts)
}

func call(t *testing.T, cs *mcp.ClientSession, tool string, args map[string]any) map[string]any {
	t.Helper()
	res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: tool, Arguments: args})
	if err != nil || res.IsError {
		t.Fatalf("%s %v: %v %s", tool, args, err, textOf(res))
	}
	var out map[string]any
	b, _ := json.Marshal(res.StructuredContent)
	json.Unmarshal(b, &out)
	return out
}

func gitRepo(t *testing.T, files map[string]string) string {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed")
	}
	dir := t.TempDir()
	for name, body := range files {
		os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755)
		os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644)
	}
	for _, args := range [][]string{{"init", "-q"}, {"add", "-A"}, {"-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "init"}} {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v %s", args, err, out)
		}
	}
	return dir
}

func TestProjectSeedAndResources(t *testing.T) {
	dir := gitRepo(t, map[string]string{".gitignore": "*.log\n", "src/app.py": "print('hi')\n", "bin.dat": "a\x00b"})
	os.WriteFile(filepath.Join(dir, "debug.log"), []byte("ignored"), 0o644)
	src, err := project.FromDir(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	changed := 0
	cs := hostCompat(t, &Options{Profile: ProfileWorkspaceCore, Project: src}, &mcp.ClientOptions{
		ResourceListChangedHandler: func(context.Context, *mcp.ResourceListChangedRequest) {
			mu.Lock()
			changed++
			mu.Unlock()
		},
	})
	if tools := listTools(t, cs); !strings.Contains(tools["workspace_create"].Description, "without seed_path, /workspace is seeded from the git checkout "+dir) {
		t.Errorf("workspace_create does not say what it seeds: %s", tools["workspace_create"].Description)
	}
	if !strings.Contains(cs.InitializeResult().Instructions, dir) {
		t.Errorf("instructions do not name the project")
	}

	ws := call(t, cs, "workspace_create", map[string]any{"environment": "debian:12", "allow_host_compat": true})
	id := ws["workspace_id"].(string)
	t.Cleanup(func() {
		cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "workspace_delete", Arguments: map[string]any{"workspace_id": id}})
	})
	seed := ws["workspace_seed"].(map[string]any)
	if seed["origin_kind"] != "project" || seed["origin_ref"] != dir || seed["source_path"] != dir || seed["mode"] != "directory" || seed["entries"] != 4.0 {
		t.Errorf("workspace_seed %v", seed)
	}
	out := call(t, cs, "workspace_exec", map[string]any{"workspace_id": id, "command": "find . -type f | sort"})
	if got := out["stdout"]; got != "./.gitignore\n./bin.dat\n./src/app.py\n" {
		t.Errorf("seeded files:\n%s", got)
	}
	// Explicit seed_path still wins.
	other := t.TempDir()
	os.WriteFile(filepath.Join(other, "x"), []byte("x"), 0o644)
	ws2 := call(t, cs, "workspace_create", map[string]any{"environment": "debian:12", "allow_host_compat": true, "seed_path": other})
	call(t, cs, "workspace_delete", map[string]any{"workspace_id": ws2["workspace_id"]})
	if s := ws2["workspace_seed"].(map[string]any); s["origin_kind"] != "path" || s["origin_ref"] != other {
		t.Errorf("explicit seed_path: %v", s)
	}

	// Resources: the workspace, its files, and reads.
	lr, err := cs.ListResources(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	uris := map[string]*mcp.Resource{}
	for _, r := range lr.Resources {
		uris[r.URI] = r
	}
	root := "pyro://workspace/" + id + "/"
	for _, u := range []string{root, root + "src/app.py", root + ".gitignore"} {
		if uris[u] == nil {
			t.Errorf("resources/list lacks %s: %v", u, lr.Resources)
		}
	}
	if r := uris[root+"src/app.py"]; r != nil && r.Size != 12 {
		t.Errorf("size of app.py %d", r.Size)
	}
	if uris["pyro://workspace/"+ws2["workspace_id"].(string)+"/"] != nil {
		t.Errorf("a deleted workspace is still listed")
	}
	tl, err := cs.ListResourceTemplates(t.Context(), nil)
	if err != nil || len(tl.ResourceTemplates) != 1 || tl.ResourceTemplates[0].URITemplate != "pyro://workspace/{workspace_id}/{+path}" {
		t.Errorf("templates %v %v", tl, err)
	}
	read := func(uri string) *mcp.ResourceContents {
		t.Helper()
		rr, err := cs.ReadResource(t.Context(), &mcp.ReadResourceParams{URI: uri})
		if err != nil {
			t.Fatalf("read %s: %v", uri, err)
		}
		return rr.Contents[0]
	}
	if c := read(root + "src/app.py"); c.Text != "print('hi')\n" {
		t.Errorf("app.py: %+v", c)
	}
	if c := read(root + "bin.dat"); string(c.Blob) != "a\x00b" || c.MIMEType != "application/octet-stream" {
		t.Errorf("bin.dat: %+v", c)
	}
	if c := read(root); !strings.Contains(c.Text, "src/app.py\t12\n") {
		t.Errorf("listing: %q", c.Text)
	}
	if c := read(root + "src"); c.Text != "src/app.py\t12\n" {
		t.Errorf("directory listing: %q", c.Text)
	}
	call(t, cs, "workspace_exec", map[string]any{"workspace_id": id, "command": "head -c 300000 /dev/zero | tr '\\0' x > big.txt && ln -s /etc/hostname escape"})
	if c := read(root + "big.txt"); len(c.Text) != MaxResourceBytes || c.Meta["truncated"] != true {
		t.Errorf("big.txt: %d bytes, meta %v", len(c.Text), c.Meta)
	}
	for _, uri := range []string{root + "nope.txt", root + "../etc/passwd", "pyro://workspace/nosuch/x", root + "escape"} {
		if _, err := cs.ReadResource(t.Context(), &mcp.ReadResourceParams{URI: uri}); err == nil {
			t.Errorf("read %s: no error", uri)
		}
	}
	// Reads are not commands: the history has the agent's two.
	if logs := call(t, cs, "workspace_logs", map[string]any{"workspace_id": id}); logs["count"] != 2.0 {
		t.Errorf("workspace_logs count %v: resource reads were logged", logs["count"])
	}

	call(t, cs, "workspace_delete", map[string]any{"workspace_id": id})
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := changed
		mu.Unlock()
		if n >= 2 || time.Now().After(deadline) {
			if n < 2 {
				t.Errorf("%d resources/list_changed notifications, want one per create and delete", n)
			}
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	lr, _ = cs.ListResources(t.Context(), nil)
	if len(lr.Resources) != 0 {
		t.Errorf("resources after delete: %v", lr.Resources)
	}
}
