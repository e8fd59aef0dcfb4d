package pyro_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/pyro-mcp/pyro"
	"github.com/pyro-mcp/pyro/internal/guesttest"
)

// The file operations through the Go SDK on a real guest: write (also
// streamed), read (also streamed), list, a three-file patch and a patch
// that fails on its second file, export, diff, summary; hostile paths.
func TestWorkspaceFilesSDK(t *testing.T) {
	c := newClient(t)
	guesttest.Need(t)
	ctx := t.Context()
	seed := t.TempDir()
	for name, body := range map[string]string{"calc.sh": "add() { echo $(($1 - $2)); }\n", "a.txt": "1\n2\n3\n", "b.txt": "x\ny\nz\n", "old.txt": "bye\n"} {
		os.WriteFile(filepath.Join(seed, name), []byte(body), 0o644)
	}
	ws, err := c.CreateWorkspace(ctx, pyro.CreateWorkspaceOptions{Environment: "debian:12", SeedPath: seed, Shape: pyro.Shape{MemMiB: 512}, DiskGiB: 1})
	if err != nil {
		t.Fatalf("%v (hint: %s)", err, pyro.ErrorHint(err))
	}
	id := ws.WorkspaceID
	t.Cleanup(func() { c.DeleteWorkspace(context.Background(), id) })

	w, err := c.WriteWorkspaceFile(ctx, id, "dir/new.txt", strings.NewReader("new\n"), nil)
	if err != nil || w.Bytes != 4 || !w.Created || w.Path != "/workspace/dir/new.txt" {
		t.Fatalf("write %+v %v", w, err)
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB, streamed both ways
	if _, err := c.WriteWorkspaceFile(ctx, id, "big.bin", bytes.NewReader(big), &pyro.FileWriteOptions{Mode: 0o600}); err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	r, err := c.StreamWorkspaceFile(ctx, id, "big.bin", &got, 2<<20)
	if err != nil || !bytes.Equal(got.Bytes(), big) || r.Size != int64(len(big)) || r.Truncated {
		t.Fatalf("stream %d bytes %+v %v", got.Len(), r, err)
	}
	rd, err := c.ReadWorkspaceFile(ctx, id, "big.bin", 0)
	if err != nil || len(rd.Content) != pyro.DefaultFileReadBytes || !rd.Truncated || rd.Encoding != "utf-8" {
		t.Fatalf("capped read %d %+v %v", len(rd.Content), rd.Truncated, err)
	}
	l, err := c.ListWorkspaceFiles(ctx, id, "", false)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range l.Entries {
		names = append(names, e.Path+" "+e.Type+" "+e.Mode)
	}
	want := []string{"/workspace/a.txt file 0644", "/workspace/b.txt file 0644", "/workspace/big.bin file 0600", "/workspace/calc.sh file 0644",
		"/workspace/dir directory 0755", "/workspace/old.txt file 0644"}
	if d := cmp.Diff(want, names); d != "" {
		t.Errorf("list (-want +got)\n%s", d)
	}

	three := "--- a/calc.sh\n+++ b/calc.sh\n@@ -1 +1 @@\n-add() { echo $(($1 - $2)); }\n+add() { echo $(($1 + $2)); }\n" +
		"--- /dev/null\n+++ b/added.txt\n@@ -0,0 +1 @@\n+added\n" +
		"--- a/old.txt\n+++ /dev/null\n@@ -1 +0,0 @@\n-bye\n"
	p, err := c.ApplyWorkspacePatch(ctx, id, three)
	if err != nil || p.Count != 3 || p.Files[1].Status != "added" || p.Files[2].Status != "deleted" {
		t.Fatalf("patch %+v %v", p, err)
	}
	bad := "--- a/a.txt\n+++ b/a.txt\n@@ -1,3 +1,3 @@\n 1\n-2\n+two\n 3\n--- a/b.txt\n+++ b/b.txt\n@@ -1,3 +1,3 @@\n x\n-Y\n+why\n z\n"
	_, err = c.ApplyWorkspacePatch(ctx, id, bad)
	if !errors.Is(err, pyro.ErrConflict) || !strings.Contains(err.Error(), `/workspace/b.txt: hunk 1 of 1`) {
		t.Fatalf("failing patch: %v", err)
	}
	if a, _ := c.ReadWorkspaceFile(ctx, id, "a.txt", 0); a.Content != "1\n2\n3\n" {
		t.Errorf("the first file of a failed patch changed: %q", a.Content)
	}

	for _, p := range []string{"../etc/passwd", "/etc/shadow", "dir/../../etc"} {
		if _, err := c.ReadWorkspaceFile(ctx, id, p, 0); !errors.Is(err, pyro.ErrInvalidArgument) || !strings.Contains(err.Error(), "outside /workspace") {
			t.Errorf("read %s: %v", p, err)
		}
	}

	out := filepath.Join(t.TempDir(), "ws")
	ex, err := c.ExportWorkspace(ctx, id, "/workspace", out, nil)
	if err != nil || ex.Format != "directory" || ex.Entries != 7 {
		t.Fatalf("export %+v %v", ex, err)
	}
	if b, _ := os.ReadFile(filepath.Join(out, "big.bin")); !bytes.Equal(b, big) {
		t.Error("exported big.bin differs")
	}
	if _, err := c.ExportWorkspace(ctx, id, "/workspace", out, nil); !errors.Is(err, pyro.ErrAlreadyExists) {
		t.Errorf("export over an existing output: %v", err)
	}

	d, err := c.DiffWorkspace(ctx, id, &pyro.DiffOptions{Stat: true})
	if err != nil {
		t.Fatal(err)
	}
	var changed []string
	for _, e := range d.Entries {
		changed = append(changed, e.Path+":"+e.Status)
	}
	if diff := cmp.Diff([]string{"added.txt:added", "big.bin:added", "calc.sh:modified", "dir/new.txt:added", "old.txt:deleted"}, changed); diff != "" {
		t.Errorf("diff (-want +got)\n%s", diff)
	}
	s, err := c.SummarizeWorkspace(ctx, id)
	if err != nil || s.FileWrites != 2 || s.Patches != 1 || len(s.Exports) != 1 || s.Changes.Count != 5 || s.Since.Event != "create" {
		t.Fatalf("summary %+v %v", s, err)
	}
	logs, err := c.LogsWorkspace(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, e := range logs.Entries {
		kinds = append(kinds, e.Kind)
	}
	if diff := cmp.Diff([]string{pyro.LogFileWrite, pyro.LogFileWrite, pyro.LogPatch, pyro.LogPatch, pyro.LogExport}, kinds); diff != "" {
		t.Errorf("log kinds (-want +got)\n%s", diff)
	}
	if logs.Entries[3].Error == "" || logs.Entries[4].FileEvent == nil || logs.Entries[4].OutputPath != out {
		t.Errorf("log entries %+v %+v", logs.Entries[3], logs.Entries[4])
	}
}
