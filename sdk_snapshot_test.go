package pyro_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pyro-mcp/pyro"
	"github.com/pyro-mcp/pyro/internal/guesttest"
	"github.com/pyro-mcp/pyro/internal/layers"
)

// e2fsckClean exports a stopped workspace's disk and checks it with
// e2fsck -n on the host.
func e2fsckClean(t *testing.T, c *pyro.Client, id, disk string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), disk+".img")
	res, err := c.ExportWorkspaceDisk(t.Context(), id, out, &pyro.DiskExportOptions{Disk: disk})
	if err != nil {
		t.Fatalf("export %s: %v", disk, err)
	}
	if res.OutputPath != out || res.Bytes == 0 {
		t.Errorf("export %+v", res)
	}
	if b, err := exec.Command("e2fsck", "-fn", out).CombinedOutput(); err != nil {
		t.Fatalf("e2fsck -n %s: %v\n%s", disk, err, b)
	}
	return out
}

// The snapshot flow on a real guest: write, snapshot, change, reset; the
// baseline takes back what was installed on the root; a fork diverges on
// its own and outlives its source; the disk tools read a stopped
// workspace; every disk passes e2fsck -n.
func TestSnapshotResetFork(t *testing.T) {
	c := newClient(t)
	guesttest.Need(t)
	ctx := t.Context()
	seed := t.TempDir()
	os.WriteFile(filepath.Join(seed, "hello.txt"), []byte("seeded\n"), 0o644)
	ws, err := c.CreateWorkspace(ctx, pyro.CreateWorkspaceOptions{Environment: "debian:12", SeedPath: seed, Shape: pyro.Shape{MemMiB: 512}, DiskGiB: 2})
	if err != nil {
		t.Fatalf("%v (hint: %s)", err, pyro.ErrorHint(err))
	}
	id := ws.WorkspaceID
	t.Cleanup(func() { c.DeleteWorkspace(context.Background(), id) })
	if ws.Disk == nil || ws.Disk.Layout != 2 || ws.Disk.SizeGiB != 2 || ws.SnapshotCount != 1 {
		t.Fatalf("new workspace disk %+v snapshots %d", ws.Disk, ws.SnapshotCount)
	}
	run := func(id, cmd string) string {
		t.Helper()
		r, err := c.ExecWorkspace(ctx, id, pyro.ExecOptions{Command: cmd})
		if err != nil {
			t.Fatal(err)
		}
		if r.ExitCode != 0 {
			t.Fatalf("%q exited %d: %s", cmd, r.ExitCode, r.Stderr)
		}
		return r.Stdout
	}
	if got := run(id, "cat hello.txt; df -P /workspace | tail -1 | awk '{print $2}'; mountpoint -q /run/pyro/baseline && cat /run/pyro/baseline/hello.txt"); !strings.HasPrefix(got, "seeded\n") || !strings.HasSuffix(got, "seeded\n") {
		t.Errorf("seeded workspace: %q", got)
	}
	run(id, "echo one > state.txt && echo installed > /usr/local/bin/tool")
	s, err := c.CreateSnapshot(ctx, id, "one")
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != "one" || s.Sequence != 3 {
		t.Errorf("snapshot %+v", s)
	}
	run(id, "echo two > state.txt && rm hello.txt")
	r, err := c.ResetWorkspace(ctx, id, "one")
	if err != nil {
		t.Fatal(err)
	}
	if r.WorkspaceID != id || !r.Running || r.LastReset == nil || r.LastReset.Snapshot != "one" {
		t.Errorf("reset %+v", r)
	}
	if got := run(id, "cat state.txt hello.txt /usr/local/bin/tool"); got != "one\nseeded\ninstalled\n" {
		t.Errorf("after reset to one: %q", got)
	}
	if _, err := c.ResetWorkspace(ctx, id, ""); err != nil {
		t.Fatal(err)
	}
	if got := run(id, "ls /workspace; test -e /usr/local/bin/tool && echo tool-still-there; true"); got != "hello.txt\n" {
		t.Errorf("after reset to the baseline: %q", got)
	}
	logs, err := c.LogsWorkspace(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	kinds := []string{}
	for _, e := range logs.Entries {
		kinds = append(kinds, e.Kind)
	}
	if strings.Join(kinds, ",") != "exec,exec,snapshot,exec,reset,exec,reset,exec" || logs.Entries[3].ResetBy != logs.Entries[4].Sequence || logs.Entries[1].ResetBy != logs.Entries[6].Sequence {
		t.Errorf("log kinds %v; entries %+v", kinds, logs.Entries)
	}

	// Fork of a snapshot: each side sees only its own files.
	run(id, "echo base > shared.txt")
	if _, err := c.CreateSnapshot(ctx, id, "two"); err != nil {
		t.Fatal(err)
	}
	f, err := c.ForkWorkspace(ctx, id, &pyro.ForkOptions{Snapshot: "two", Name: "the-fork"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.DeleteWorkspace(context.Background(), f.WorkspaceID) })
	if f.ForkOf == nil || f.ForkOf.WorkspaceID != id || f.ForkOf.Snapshot != "two" || f.Name != "the-fork" || !f.Running {
		t.Errorf("fork %+v", f)
	}
	run(id, "echo source > only-source.txt")
	run(f.WorkspaceID, "echo fork > only-fork.txt")
	if got := run(id, "ls"); got != "hello.txt\nonly-source.txt\nshared.txt\n" {
		t.Errorf("source sees %q", got)
	}
	if got := run(f.WorkspaceID, "ls; cat shared.txt"); got != "hello.txt\nonly-fork.txt\nshared.txt\nbase\n" {
		t.Errorf("fork sees %q", got)
	}
	if _, err := c.DeleteSnapshot(ctx, id, "two"); !errors.Is(err, pyro.ErrConflict) || !strings.Contains(err.Error(), f.WorkspaceID) {
		t.Errorf("deleting a forked snapshot: %v", err)
	}
	if _, err := c.DeleteSnapshot(ctx, id, "baseline"); !errors.Is(err, pyro.ErrFailedPrecondition) {
		t.Errorf("deleting the baseline: %v", err)
	}
	// A fork of the moment, then the source goes away: the forks live on.
	now, err := c.ForkWorkspace(ctx, id, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.DeleteWorkspace(context.Background(), now.WorkspaceID) })
	if _, err := c.DeleteWorkspace(ctx, id); err != nil {
		t.Fatal(err)
	}
	if got := run(f.WorkspaceID, "cat only-fork.txt shared.txt"); got != "fork\nbase\n" {
		t.Errorf("fork after its source's delete: %q", got)
	}
	if _, err := c.StopWorkspace(ctx, now.WorkspaceID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.StartWorkspace(ctx, now.WorkspaceID); err != nil {
		t.Fatal(err)
	}
	if got := run(now.WorkspaceID, "cat only-source.txt; cat /run/pyro/baseline/only-source.txt"); got != "source\nsource\n" {
		t.Errorf("fork of the moment after its source's delete: %q", got)
	}
	if _, err := c.ResetWorkspace(ctx, f.WorkspaceID, "baseline"); err != nil {
		t.Fatal(err)
	}
	if got := run(f.WorkspaceID, "ls"); got != "hello.txt\nshared.txt\n" {
		t.Errorf("fork reset to its baseline (the snapshot it came from): %q", got)
	}

	// The disk tools read a stopped workspace offline.
	run(f.WorkspaceID, "mkdir -p d && printf 'disk bytes' > d/file.txt && ln -s d/file.txt link")
	if _, err := c.ReadWorkspaceDisk(ctx, f.WorkspaceID, "d/file.txt", 0); !errors.Is(err, pyro.ErrFailedPrecondition) {
		t.Errorf("disk read of a running workspace: %v", err)
	}
	if _, err := c.StopWorkspace(ctx, f.WorkspaceID); err != nil {
		t.Fatal(err)
	}
	l, err := c.ListWorkspaceDisk(ctx, f.WorkspaceID, "", true)
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, e := range l.Entries {
		paths = append(paths, e.Path+":"+e.Type)
	}
	if got := strings.Join(paths, " "); got != "/workspace/d:directory /workspace/d/file.txt:file /workspace/hello.txt:file /workspace/link:symlink /workspace/shared.txt:file" {
		t.Errorf("disk list: %s", got)
	}
	rd, err := c.ReadWorkspaceDisk(ctx, f.WorkspaceID, "/workspace/d/file.txt", 4)
	if err != nil || rd.Content != "disk" || rd.Size != 10 || !rd.Truncated || rd.Encoding != "utf-8" {
		t.Errorf("disk read %+v %v", rd, err)
	}
	if _, err := c.ReadWorkspaceDisk(ctx, f.WorkspaceID, "/usr/local/bin/tool", 0); !errors.Is(err, pyro.ErrNotFound) {
		t.Errorf("reading a file the reset removed: %v", err)
	}
	if rd, err := c.ReadWorkspaceDisk(ctx, f.WorkspaceID, "/etc/hostname", 0); err != nil || rd.Size == 0 {
		t.Errorf("reading the root disk: %+v %v", rd, err)
	}
	img := e2fsckClean(t, c, f.WorkspaceID, "workspace")
	if b, err := exec.Command("debugfs", "-R", "cat /d/file.txt", img).Output(); err != nil || string(b) != "disk bytes" {
		t.Errorf("the export read with debugfs: %q %v", b, err)
	}
	if _, err := c.ExportWorkspaceDisk(ctx, f.WorkspaceID, img, nil); !errors.Is(err, pyro.ErrAlreadyExists) {
		t.Errorf("export over an existing file: %v", err)
	}
	e2fsckClean(t, c, f.WorkspaceID, "root")
}

// A chain of snapshots longer than layers.MaxChainDepth is flattened on the
// next boot, and the disk's content does not change.
func TestLongChainFlattened(t *testing.T) {
	guesttest.Need(t)
	run, err := os.MkdirTemp("", "pyro-sdk-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(run) })
	stateDir := t.TempDir()
	c, err := pyro.New(&pyro.Options{CacheDir: os.Getenv("PYRO_TEST_CACHE_DIR"), StateDir: stateDir, RuntimeDir: run})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	ws, err := c.CreateWorkspace(ctx, pyro.CreateWorkspaceOptions{Environment: "debian:12", Shape: pyro.Shape{MemMiB: 512}, DiskGiB: 1})
	if err != nil {
		t.Fatal(err)
	}
	id := ws.WorkspaceID
	t.Cleanup(func() { c.DeleteWorkspace(context.Background(), id) })
	depth := func() int {
		t.Helper()
		var rec struct {
			Workspace struct {
				Disk struct {
					Data string `json:"data"`
				} `json:"disk"`
			} `json:"workspace"`
		}
		b, err := os.ReadFile(filepath.Join(stateDir, "workspaces", id, "record.json"))
		if err != nil {
			t.Fatal(err)
		}
		json.Unmarshal(b, &rec)
		p := &layers.Pool{Dir: filepath.Join(stateDir, "layers")}
		d, err := p.Depth(rec.Workspace.Disk.Data)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	n := layers.MaxChainDepth + 2
	for i := range n {
		if _, err := c.ExecWorkspace(ctx, id, pyro.ExecOptions{Command: fmt.Sprintf("echo %d >> f.txt", i)}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.CreateSnapshot(ctx, id, fmt.Sprintf("s%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if d := depth(); d != n+1 {
		t.Errorf("depth before the boot %d, want %d", d, n+1)
	}
	if _, err := c.StopWorkspace(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := c.StartWorkspace(ctx, id); err != nil {
		t.Fatal(err)
	}
	if d := depth(); d != 1 {
		t.Errorf("depth after the boot %d, want 1", d)
	}
	r, err := c.ExecWorkspace(ctx, id, pyro.ExecOptions{Command: "wc -l < f.txt; tail -1 f.txt"})
	if err != nil || r.Stdout != fmt.Sprintf("%d\n%d\n", n, n-1) {
		t.Errorf("after flattening: %+v %v", r, err)
	}
	// Snapshots under the flattened chain still reset.
	if _, err := c.ResetWorkspace(ctx, id, "s2"); err != nil {
		t.Fatal(err)
	}
	if r, err := c.ExecWorkspace(ctx, id, pyro.ExecOptions{Command: "wc -l < f.txt"}); err != nil || r.Stdout != "3\n" {
		t.Errorf("reset to s2: %+v %v", r, err)
	}
}
