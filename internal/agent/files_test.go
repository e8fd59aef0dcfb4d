package agent_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/pyro-mcp/pyro/api"
	"github.com/pyro-mcp/pyro/internal/agent"
	"github.com/pyro-mcp/pyro/internal/agentproto"
	"github.com/pyro-mcp/pyro/internal/errdefs"
)

// serveFiles runs the real handler rooted at a temp dir with a workspace
// and a baseline tree at /base; it returns the client and the host paths
// of /workspace and the baseline.
func serveFiles(t testing.TB) (*agentproto.Client, string, string) {
	t.Helper()
	root := t.TempDir()
	ws, base := filepath.Join(root, "workspace"), filepath.Join(root, "base")
	os.Mkdir(ws, 0o755)
	os.Mkdir(base, 0o755)
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	os.WriteFile(filepath.Join(root, "etc", "shadow"), []byte("root:secret\n"), 0o600)
	host, guest := net.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- agentproto.Serve(context.Background(), guest, agent.NewHandler(agent.Config{FSRoot: root, Baseline: "/base"}))
	}()
	c, err := agentproto.NewClient(t.Context(), host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); <-done })
	return c, ws, base
}

func write(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if target, ok := strings.CutPrefix(body, "->"); ok {
			if err := os.Symlink(target, p); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func readFile(t *testing.T, c *agentproto.Client, p string, max int64) (string, *agentproto.FileReadResult, error) {
	var b bytes.Buffer
	r, err := c.ReadFile(t.Context(), agentproto.FileReadRequest{Path: p, MaxBytes: max}, &b)
	return b.String(), r, err
}

func TestFileWriteReadList(t *testing.T) {
	c, ws, _ := serveFiles(t)
	r, err := c.WriteFile(t.Context(), agentproto.FileWriteRequest{Path: "src/deep/a.txt"}, strings.NewReader("hello\n"))
	if err != nil {
		t.Fatal(err)
	}
	if r.Bytes != 6 || !r.Created || r.Mode != 0o644 || r.Path != "/workspace/src/deep/a.txt" {
		t.Errorf("write result %+v", r)
	}
	// Overwrite keeps the mode unless told; an explicit mode wins.
	os.Chmod(filepath.Join(ws, "src/deep/a.txt"), 0o600)
	r, err = c.WriteFile(t.Context(), agentproto.FileWriteRequest{Path: "/workspace/src/deep/a.txt"}, strings.NewReader("again\n"))
	if err != nil || r.Created || r.Mode != 0o600 {
		t.Errorf("rewrite %+v %v", r, err)
	}
	if _, err := c.WriteFile(t.Context(), agentproto.FileWriteRequest{Path: "run.sh", Mode: 0o755}, strings.NewReader("#!/bin/sh\n")); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(filepath.Join(ws, "run.sh")); fi.Mode().Perm() != 0o755 {
		t.Errorf("mode %v", fi.Mode())
	}
	got, rr, err := readFile(t, c, "src/deep/a.txt", 65536)
	if err != nil || got != "again\n" || rr.Size != 6 || rr.Truncated {
		t.Errorf("read %q %+v %v", got, rr, err)
	}
	got, rr, _ = readFile(t, c, "src/deep/a.txt", 2)
	if got != "ag" || !rr.Truncated {
		t.Errorf("capped read %q %+v", got, rr)
	}
	// No temporary file is left behind.
	var entries []string
	_, err = c.ListFiles(t.Context(), agentproto.FileListRequest{Path: "/workspace", Recursive: true}, func(e api.FileEntry) error {
		entries = append(entries, e.Path+" "+e.Type+" "+e.Mode)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"/workspace/run.sh file 0755", "/workspace/src directory 0755", "/workspace/src/deep directory 0755", "/workspace/src/deep/a.txt file 0600"}
	if d := cmp.Diff(want, entries); d != "" {
		t.Errorf("list (-want +got)\n%s", d)
	}
	// A cap truncates; a file lists as itself.
	l, _ := c.ListFiles(t.Context(), agentproto.FileListRequest{Path: "", Recursive: true, MaxEntries: 2}, func(api.FileEntry) error { return nil })
	if l.Count != 2 || !l.Truncated {
		t.Errorf("capped list %+v", l)
	}
	var one []api.FileEntry
	c.ListFiles(t.Context(), agentproto.FileListRequest{Path: "run.sh"}, func(e api.FileEntry) error { one = append(one, e); return nil })
	if len(one) != 1 || one[0].Path != "/workspace/run.sh" || one[0].Size != 10 {
		t.Errorf("list of a file %+v", one)
	}
}

func TestFileConfinement(t *testing.T) {
	c, ws, _ := serveFiles(t)
	write(t, ws, map[string]string{
		"ok.txt":        "fine\n",
		"in/link":       "->../ok.txt",
		"abs-in":        "->/workspace/ok.txt",
		"shadow":        "->/etc/shadow",
		"up":            "->..",
		"chain/a":       "->b",
		"chain/b":       "->../../etc",
		"dangling":      "->made/here.txt",
		"dangling-out":  "->/etc/new",
		"dir/inner.txt": "x",
	})
	syscall.Mkfifo(filepath.Join(ws, "fifo"), 0o644)
	tests := []struct {
		path    string
		want    string // content, or the error's text
		code    error
		message string
	}{
		{path: "ok.txt", want: "fine\n"},
		{path: "in/link", want: "fine\n"},
		{path: "abs-in", want: "fine\n"},
		{path: "in/../ok.txt", want: "fine\n"},
		{path: "../etc/shadow", code: errdefs.ErrInvalidArgument, message: "is outside /workspace"},
		{path: "/etc/shadow", code: errdefs.ErrInvalidArgument, message: "/etc/shadow is outside /workspace"},
		{path: "/workspace/../etc/shadow", code: errdefs.ErrInvalidArgument, message: "outside /workspace"},
		{path: "shadow", code: errdefs.ErrInvalidArgument, message: "/workspace/shadow leads out of /workspace (to /etc/shadow)"},
		{path: "up/etc/shadow", code: errdefs.ErrInvalidArgument, message: "through the symlink /workspace/up"},
		{path: "chain/a/shadow", code: errdefs.ErrInvalidArgument, message: "through the symlink /workspace/chain/b"},
		{path: "nope.txt", code: errdefs.ErrNotFound, message: "/workspace/nope.txt does not exist"},
		{path: "dir", code: errdefs.ErrInvalidArgument, message: "is a directory"},
		{path: "fifo", code: errdefs.ErrInvalidArgument, message: "not a regular file"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			got, _, err := readFile(t, c, tt.path, 1000)
			if tt.code == nil {
				if err != nil || got != tt.want {
					t.Fatalf("read %q: %q %v", tt.path, got, err)
				}
				return
			}
			if !errors.Is(err, tt.code) || !strings.Contains(err.Error(), tt.message) {
				t.Fatalf("read %q: %v, want %v containing %q", tt.path, err, tt.code, tt.message)
			}
			if strings.Contains(got, "secret") {
				t.Fatal("read the target of a link out of /workspace")
			}
		})
	}
	// Writes: through an inside link (dangling: creates its target), never out.
	if _, err := c.WriteFile(t.Context(), agentproto.FileWriteRequest{Path: "dangling"}, strings.NewReader("made\n")); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(ws, "made/here.txt")); string(b) != "made\n" {
		t.Errorf("write through a dangling inside link: %q", b)
	}
	for _, p := range []string{"dangling-out", "shadow", "../x", "/tmp/x", "up/x"} {
		if _, err := c.WriteFile(t.Context(), agentproto.FileWriteRequest{Path: p}, strings.NewReader("evil")); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("write %s: %v", p, err)
		}
	}
	root := filepath.Dir(ws)
	if b, _ := os.ReadFile(filepath.Join(root, "etc", "shadow")); string(b) != "root:secret\n" {
		t.Errorf("shadow changed: %q", b)
	}
	if _, err := os.Stat(filepath.Join(root, "etc", "new")); err == nil {
		t.Error("a write went out of /workspace")
	}
}

func TestFileReadSparseWithDefaultCap(t *testing.T) {
	c, ws, _ := serveFiles(t)
	f, _ := os.Create(filepath.Join(ws, "sparse"))
	f.Truncate(2 << 30)
	f.Close()
	got, r, err := readFile(t, c, "sparse", api.DefaultFileReadBytes)
	if err != nil || len(got) != api.DefaultFileReadBytes || r.Size != 2<<30 || !r.Truncated {
		t.Fatalf("read %d bytes, %+v, %v", len(got), r, err)
	}
}

func applyPatch(t *testing.T, c *agentproto.Client, patch string) (*agentproto.PatchResult, error) {
	return c.ApplyPatch(t.Context(), agentproto.PatchRequest{}, strings.NewReader(patch))
}

func tree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || p == dir {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			out[rel] = "->" + l
		case fi.IsDir():
			out[rel+"/"] = fi.Mode().Perm().String()
		default:
			b, _ := os.ReadFile(p)
			out[rel] = string(b) + " " + fi.Mode().Perm().String()
		}
		return nil
	})
	return out
}

const threeFiles = `diff --git a/new.txt b/new.txt
new file mode 100644
--- /dev/null
+++ b/new.txt
@@ -0,0 +1,2 @@
+one
+two
diff --git a/calc.sh b/calc.sh
--- a/calc.sh
+++ b/calc.sh
@@ -1,3 +1,3 @@
 #!/bin/sh
-add() { echo $(($1 - $2)); }
+add() { echo $(($1 + $2)); }
 echo done
diff --git a/old/gone.txt b/old/gone.txt
deleted file mode 100644
--- a/old/gone.txt
+++ /dev/null
@@ -1 +0,0 @@
-bye
`

func TestPatchApply(t *testing.T) {
	c, ws, _ := serveFiles(t)
	write(t, ws, map[string]string{"calc.sh": "#!/bin/sh\nadd() { echo $(($1 - $2)); }\necho done\n", "old/gone.txt": "bye\n"})
	r, err := applyPatch(t, c, threeFiles)
	if err != nil {
		t.Fatal(err)
	}
	want := []api.PatchFile{{Path: "new.txt", Status: "added", Insertions: 2}, {Path: "calc.sh", Status: "modified", Insertions: 1, Deletions: 1},
		{Path: "old/gone.txt", Status: "deleted", Deletions: 1}}
	if d := cmp.Diff(want, r.Files); d != "" {
		t.Errorf("result (-want +got)\n%s", d)
	}
	wantTree := map[string]string{"new.txt": "one\ntwo\n -rw-r--r--", "calc.sh": "#!/bin/sh\nadd() { echo $(($1 + $2)); }\necho done\n -rw-r--r--"}
	if d := cmp.Diff(wantTree, tree(t, ws)); d != "" {
		t.Errorf("tree (-want +got)\n%s", d)
	}
}

func TestPatchAllOrNothing(t *testing.T) {
	c, ws, _ := serveFiles(t)
	write(t, ws, map[string]string{"a.txt": "1\n2\n3\n", "b.txt": "x\ny\nz\n"})
	before := tree(t, ws)
	patch := `--- a/a.txt
+++ b/a.txt
@@ -1,3 +1,3 @@
 1
-2
+two
 3
--- a/b.txt
+++ b/b.txt
@@ -1,3 +1,3 @@
 x
-Y
+why
 z
`
	_, err := applyPatch(t, c, patch)
	if !errors.Is(err, errdefs.ErrConflict) {
		t.Fatalf("err %v", err)
	}
	for _, s := range []string{"/workspace/b.txt", "hunk 1 of 1 (@@ -1,3 +1,3 @@)", `line 2 is "y", the patch expects "Y"`} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q lacks %q", err, s)
		}
	}
	if d := cmp.Diff(before, tree(t, ws)); d != "" {
		t.Errorf("a failed patch changed the tree (-before +after)\n%s", d)
	}
	// Each bad input changes nothing either.
	for name, p := range map[string]string{
		"not a diff": "hello\n",
		"outside":    "--- /dev/null\n+++ b/../evil\n@@ -0,0 +1 @@\n+x\n",
		"absolute":   "--- /dev/null\n+++ /etc/evil\n@@ -0,0 +1 @@\n+x\n",
		"exists":     "diff --git a/a.txt b/a.txt\nnew file mode 100644\n--- /dev/null\n+++ b/a.txt\n@@ -0,0 +1 @@\n+x\n",
		"missing":    "--- a/nope.txt\n+++ b/nope.txt\n@@ -1 +1 @@\n-a\n+b\n",
		"short":      "--- a/a.txt\n+++ b/a.txt\n@@ -3,3 +3,3 @@\n 3\n-4\n+four\n 5\n",
	} {
		if _, err := applyPatch(t, c, p); err == nil {
			t.Errorf("%s: applied", name)
		}
	}
	if d := cmp.Diff(before, tree(t, ws)); d != "" {
		t.Errorf("bad patches changed the tree (-before +after)\n%s", d)
	}
}

func TestPatchOffsetsRenamesModesLinks(t *testing.T) {
	c, ws, _ := serveFiles(t)
	write(t, ws, map[string]string{"f.txt": "a\nb\nc\nd\ne\nf\ng\n", "m.sh": "echo\n", "r/from.txt": "moved\n"})
	// The hunk says line 1, the lines are at 3: found, as git apply does.
	patch := `diff --git a/f.txt b/f.txt
--- a/f.txt
+++ b/f.txt
@@ -1,3 +1,3 @@
 c
-d
+D
 e
diff --git a/m.sh b/m.sh
old mode 100644
new mode 100755
diff --git a/r/from.txt b/r2/to.txt
similarity index 100%
rename from r/from.txt
rename to r2/to.txt
diff --git a/l b/l
new file mode 120000
--- /dev/null
+++ b/l
@@ -0,0 +1 @@
+f.txt
\ No newline at end of file
`
	r, err := applyPatch(t, c, patch)
	if err != nil {
		t.Fatal(err)
	}
	var st []string
	for _, f := range r.Files {
		st = append(st, f.Path+":"+f.Status)
	}
	if d := cmp.Diff([]string{"f.txt:modified", "m.sh:mode_changed", "r2/to.txt:renamed", "l:added"}, st); d != "" {
		t.Errorf("statuses (-want +got)\n%s", d)
	}
	want := map[string]string{"f.txt": "a\nb\nc\nD\ne\nf\ng\n -rw-r--r--", "m.sh": "echo\n -rwxr-xr-x", "r2/": "-rwxr-xr-x",
		"r2/to.txt": "moved\n -rw-r--r--", "l": "->f.txt"}
	if d := cmp.Diff(want, tree(t, ws)); d != "" {
		t.Errorf("tree (-want +got)\n%s", d)
	}
}

// setDiffTrees makes a baseline and a changed workspace covering every
// kind of change.
func setDiffTrees(t *testing.T, base, ws string) {
	common := map[string]string{"same.txt": "same\n", "dir/keep.txt": "keep\n", "mod.sh": "echo hi\n", "link": "->same.txt"}
	write(t, base, common)
	write(t, ws, common)
	write(t, base, map[string]string{"f.txt": "1\n2\n3\n4\n5\n6\n7\n8\n9\n", "gone.txt": "bye\n", "old/only.txt": "o\n", "tc": "file\n",
		"bin.dat": "a\x00b", "sp ace.txt": "x\n"})
	write(t, ws, map[string]string{"f.txt": "1\n2\nthree\n4\n5\n6\n7\n8\n9\nten", "new.txt": "new\n", "empty": "", "tc": "->f.txt",
		"bin.dat": "a\x00c", "new/deep/n.txt": "n\n", "sp ace.txt": "y\n"})
	os.Chmod(filepath.Join(ws, "mod.sh"), 0o755)
	os.Symlink("dir", filepath.Join(base, "link2"))
	os.Symlink("dir/keep.txt", filepath.Join(ws, "link2"))
}

func diff(t *testing.T, c *agentproto.Client, req agentproto.DiffRequest) []api.DiffEntry {
	var out []api.DiffEntry
	if _, err := c.Diff(t.Context(), req, func(e api.DiffEntry) error { out = append(out, e); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestDiff(t *testing.T) {
	c, ws, base := serveFiles(t)
	setDiffTrees(t, base, ws)
	var got []string
	for _, e := range diff(t, c, agentproto.DiffRequest{}) {
		got = append(got, strings.Join([]string{e.Path, e.Status, e.OldMode, e.NewMode}, " "))
		if e.Path == "bin.dat" && (!e.Binary || !strings.Contains(e.Patch, "Binary files a/bin.dat and b/bin.dat differ")) {
			t.Errorf("binary entry %+v", e)
		}
		if e.Path == "f.txt" && (e.Insertions != 2 || e.Deletions != 1) {
			t.Errorf("f.txt counts %+v", e)
		}
	}
	want := []string{
		"bin.dat modified  ", "empty added  100644", "f.txt modified  ", "gone.txt deleted 100644 ", "link2 modified  ",
		"mod.sh mode_changed 100644 100755", "new.txt added  100644", "new/deep/n.txt added  100644", "old/only.txt deleted 100644 ",
		"sp ace.txt modified  ", "tc type_changed 100644 120000",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("entries (-want +got)\n%s", d)
	}
	// Limited to paths; name-only carries no patch.
	sub := diff(t, c, agentproto.DiffRequest{Paths: []string{"new", "/workspace/f.txt"}, NameOnly: true})
	if len(sub) != 2 || sub[0].Path != "f.txt" || sub[1].Path != "new/deep/n.txt" || sub[0].Patch != "" {
		t.Errorf("paths %+v", sub)
	}
	if _, err := c.Diff(t.Context(), agentproto.DiffRequest{Paths: []string{"nosuch"}}, func(api.DiffEntry) error { return nil }); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("nosuch: %v", err)
	}
	if _, err := c.Diff(t.Context(), agentproto.DiffRequest{Paths: []string{"/etc"}}, func(api.DiffEntry) error { return nil }); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("/etc: %v", err)
	}
}

// TestDiffRoundTrip: the diff's patch turns the baseline into the
// workspace, through git apply and through patch_apply (text changes;
// git needs the full index to apply a binary change).
func TestDiffRoundTrip(t *testing.T) {
	c, ws, base := serveFiles(t)
	setDiffTrees(t, base, ws)
	os.Remove(filepath.Join(base, "bin.dat"))
	os.Remove(filepath.Join(ws, "bin.dat"))
	var patch strings.Builder
	for _, e := range diff(t, c, agentproto.DiffRequest{}) {
		patch.WriteString(e.Patch)
	}
	want := tree(t, ws)
	delete(want, "old/") // git has no empty directories
	if git, err := exec.LookPath("git"); err == nil {
		dir := t.TempDir()
		exec.Command("cp", "-a", base+"/.", dir).Run()
		cmd := exec.Command(git, "apply", "-")
		cmd.Dir, cmd.Stdin = dir, strings.NewReader(patch.String())
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git apply: %v\n%s\n%s", err, out, patch.String())
		}
		if d := cmp.Diff(want, tree(t, dir)); d != "" {
			t.Errorf("git apply of the diff (-workspace +result)\n%s", d)
		}
	}
	// patch_apply of it onto the baseline's content gives the workspace.
	os.RemoveAll(ws)
	exec.Command("cp", "-a", base, ws).Run()
	if _, err := applyPatch(t, c, patch.String()); err != nil {
		t.Fatalf("patch_apply: %v\n%s", err, patch.String())
	}
	if d := cmp.Diff(want, tree(t, ws)); d != "" {
		t.Errorf("patch_apply of the diff (-want +got)\n%s", d)
	}
}

func TestGetArchive(t *testing.T) {
	c, ws, _ := serveFiles(t)
	write(t, ws, map[string]string{"out/a.txt": "a\n", "out/sub/b.txt": "b\n", "out/in": "->a.txt", "out/abs": "->/workspace/out/sub/b.txt",
		"out/shadow": "->/etc/shadow", "out/up": "->../other.txt", "other.txt": "o\n"})
	syscall.Mkfifo(filepath.Join(ws, "out/fifo"), 0o644)
	var buf bytes.Buffer
	r, err := c.GetArchive(t.Context(), agentproto.GetArchiveRequest{Path: "out"}, &buf, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	var members []string
	tr := tar.NewReader(&buf)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		m := h.Name
		if h.Linkname != "" {
			m += " -> " + h.Linkname
		}
		members = append(members, m)
	}
	want := []string{"a.txt", "abs -> sub/b.txt", "in -> a.txt", "sub/", "sub/b.txt"}
	if d := cmp.Diff(want, members); d != "" {
		t.Errorf("members (-want +got)\n%s", d)
	}
	var skipped []string
	for _, s := range r.Skipped {
		skipped = append(skipped, s.Path)
	}
	sort.Strings(skipped)
	if d := cmp.Diff([]string{"/workspace/out/fifo", "/workspace/out/shadow", "/workspace/out/up"}, skipped); d != "" {
		t.Errorf("skipped (-want +got)\n%s", d)
	}
	if r.Type != api.FileTypeDirectory || r.Entries != 5 || r.Bytes != 4 {
		t.Errorf("result %+v", r)
	}
	// One file; a link alone is never followed.
	buf.Reset()
	if r, err := c.GetArchive(t.Context(), agentproto.GetArchiveRequest{Path: "/workspace/other.txt"}, &buf, 1<<30); err != nil || r.Type != "file" || r.Entries != 1 {
		t.Errorf("single: %+v %v", r, err)
	}
	buf.Reset()
	r, err = c.GetArchive(t.Context(), agentproto.GetArchiveRequest{Path: "out/shadow"}, &buf, 1<<30)
	if err != nil || r.Entries != 0 || len(r.Skipped) != 1 || strings.Contains(buf.String(), "secret") {
		t.Errorf("a link alone: %+v %v", r, err)
	}
}

// TestFileMethodsClassPathErrorsAlike: the file methods that take one path
// share their preamble, so a bad path is the same class whichever asks.
func TestFileMethodsClassPathErrorsAlike(t *testing.T) {
	c, ws, _ := serveFiles(t)
	write(t, ws, map[string]string{"shadow": "->/etc/shadow"})
	methods := map[string]func(p string) error{
		"list": func(p string) error {
			_, err := c.ListFiles(t.Context(), agentproto.FileListRequest{Path: p}, func(api.FileEntry) error { return nil })
			return err
		},
		"read": func(p string) error {
			_, _, err := readFile(t, c, p, 10)
			return err
		},
		"write": func(p string) error {
			_, err := c.WriteFile(t.Context(), agentproto.FileWriteRequest{Path: p}, strings.NewReader("x"))
			return err
		},
		"export": func(p string) error {
			_, err := c.GetArchive(t.Context(), agentproto.GetArchiveRequest{Path: p}, io.Discard, 1<<20)
			return err
		},
	}
	tests := []struct {
		path    string
		code    error
		message string
		skip    string // the method for which the path is not an error
	}{
		{path: "../etc/shadow", code: errdefs.ErrInvalidArgument, message: "is outside /workspace"},
		{path: "/etc", code: errdefs.ErrInvalidArgument, message: "/etc is outside /workspace"},
		{path: "nope/x", code: errdefs.ErrNotFound, message: "/workspace/nope/x does not exist", skip: "write"},
	}
	for _, tt := range tests {
		for name, call := range methods {
			if name == tt.skip {
				continue
			}
			t.Run(name+"/"+tt.path, func(t *testing.T) {
				if err := call(tt.path); !errors.Is(err, tt.code) || !strings.Contains(err.Error(), tt.message) {
					t.Fatalf("%v, want %v containing %q", err, tt.code, tt.message)
				}
			})
		}
	}
}
