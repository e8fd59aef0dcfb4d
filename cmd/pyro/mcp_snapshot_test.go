package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The disk layer through a real MCP client over stdio: snapshots, reset,
// fork, stop and start, and the offline disk tools, with the same JSON
// shapes as the CLI and the SDK.
func TestMCPSnapshots(t *testing.T) {
	needGuestHere(t)
	m := startMCP(t)
	ws := m.ok(t, "workspace_create", map[string]any{"environment": "debian:12", "mem_mib": 512, "disk_gib": 1})
	id, _ := ws["workspace_id"].(string)
	disk, _ := ws["disk"].(map[string]any)
	if id == "" || disk["layout"] != 2.0 || disk["size_gib"] != 1.0 || ws["snapshot_count"] != 1.0 {
		t.Fatalf("workspace_create: %v", ws)
	}
	exec := func(id, cmd string) string {
		t.Helper()
		r := m.ok(t, "workspace_exec", map[string]any{"workspace_id": id, "command": cmd})
		if r["exit_code"] != 0.0 {
			t.Fatalf("%s: %v", cmd, r)
		}
		s, _ := r["stdout"].(string)
		return s
	}
	exec(id, "echo one > f.txt")
	if s := m.ok(t, "snapshot_create", map[string]any{"workspace_id": id, "name": "one"}); s["name"] != "one" || s["workspace_id"] != id {
		t.Errorf("snapshot_create: %v", s)
	}
	res, _ := m.call(t, t.Context(), "snapshot_create", map[string]any{"workspace_id": id, "name": "one"}, nil)
	if !res.IsError || !strings.Contains(contentText(res), "already_exists") {
		t.Errorf("duplicate snapshot: %s", contentText(res))
	}
	res, _ = m.call(t, t.Context(), "snapshot_create", map[string]any{"workspace_id": id, "name": "../bad"}, nil)
	if !res.IsError || !strings.Contains(contentText(res), "invalid_argument") {
		t.Errorf("bad snapshot name: %s", contentText(res))
	}
	exec(id, "echo two > f.txt")
	if r := m.ok(t, "workspace_reset", map[string]any{"workspace_id": id, "snapshot": "one"}); r["running"] != true || r["workspace_id"] != id {
		t.Errorf("workspace_reset: %v", r)
	}
	if got := exec(id, "cat f.txt"); got != "one\n" {
		t.Errorf("after reset: %q", got)
	}
	l := m.ok(t, "snapshot_list", map[string]any{"workspace_id": id})
	if l["count"] != 2.0 {
		t.Errorf("snapshot_list: %v", l)
	}
	f := m.ok(t, "workspace_fork", map[string]any{"workspace_id": id, "snapshot": "one"})
	fid, _ := f["workspace_id"].(string)
	if origin, _ := f["fork_of"].(map[string]any); fid == "" || origin["workspace_id"] != id || origin["snapshot"] != "one" {
		t.Fatalf("workspace_fork: %v", f)
	}
	res, _ = m.call(t, t.Context(), "snapshot_delete", map[string]any{"workspace_id": id, "name": "one"}, nil)
	if !res.IsError || !strings.Contains(contentText(res), "conflict") || !strings.Contains(contentText(res), fid) {
		t.Errorf("deleting a forked snapshot: %s", contentText(res))
	}
	exec(fid, "mkdir -p d && printf 'from the fork' > d/x.txt")
	if st := m.ok(t, "workspace_stop", map[string]any{"workspace_id": fid}); st["running"] != false {
		t.Errorf("workspace_stop: %v", st)
	}
	dl := m.ok(t, "workspace_disk_list", map[string]any{"workspace_id": fid, "recursive": true})
	if dl["count"] != 3.0 {
		t.Errorf("workspace_disk_list: %v", dl)
	}
	if r := m.ok(t, "workspace_disk_read", map[string]any{"workspace_id": fid, "path": "d/x.txt"}); r["content"] != "from the fork" || r["encoding"] != "utf-8" {
		t.Errorf("workspace_disk_read: %v", r)
	}
	// Under the server's working directory: host paths from MCP are
	// confined to it (no client roots here).
	out := filepath.Join(m.dir, "fork.img")
	if r := m.ok(t, "workspace_disk_export", map[string]any{"workspace_id": fid, "output_path": out}); r["disk"] != "workspace" || r["output_path"] != out {
		t.Errorf("workspace_disk_export: %v", r)
	}
	if b, err := exec_("debugfs", "-R", "cat /d/x.txt", out); err != nil || b != "from the fork" {
		t.Errorf("debugfs of the export: %q %v", b, err)
	}
	res, _ = m.call(t, t.Context(), "workspace_disk_export", map[string]any{"workspace_id": fid, "output_path": out}, nil)
	if !res.IsError || !strings.Contains(contentText(res), "force: true") {
		t.Errorf("export over a file: %s", contentText(res))
	}
	if st := m.ok(t, "workspace_start", map[string]any{"workspace_id": fid}); st["running"] != true {
		t.Errorf("workspace_start: %v", st)
	}
	if got := exec(fid, "cat f.txt d/x.txt"); got != "one\nfrom the fork" {
		t.Errorf("fork after start: %q", got)
	}
	m.ok(t, "workspace_delete", map[string]any{"workspace_id": id})
	m.ok(t, "workspace_delete", map[string]any{"workspace_id": fid})
	os.Remove(out)
}

func exec_(name string, args ...string) (string, error) {
	b, err := exec.Command(name, args...).Output()
	return string(b), err
}
