package engine

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/pyro-mcp/pyro/api"
	"github.com/pyro-mcp/pyro/internal/errdefs"
)

func TestSnapshotNames(t *testing.T) {
	for _, tc := range []struct {
		name     string
		creating bool
		ok       bool
	}{
		{"before-upgrade", true, true}, {"v1.2_rc", true, true}, {"A", true, true},
		{"baseline", true, false}, {"baseline", false, true},
		{"", true, false}, {"-x", true, false}, {".hidden", true, false}, {"../x", true, false},
		{"a/b", true, false}, {"with space", true, false}, {strings.Repeat("x", 64), true, true},
		{strings.Repeat("x", 65), true, false}, {"é", true, false},
	} {
		err := checkSnapshotName(tc.name, tc.creating)
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, errdefs.ErrInvalidArgument)) {
			t.Errorf("checkSnapshotName(%q, %v) = %v", tc.name, tc.creating, err)
		}
	}
}

// Resets mark the entries they rolled back, and only those.
func TestMarkResets(t *testing.T) {
	e := func(kind string, seq, snapSeq int) api.LogEntry {
		return api.LogEntry{Kind: kind, Sequence: seq, SnapshotSequence: snapSeq}
	}
	entries := []api.LogEntry{
		e(api.LogExec, 1, 0), e(api.LogExec, 2, 0), e(api.LogSnapshot, 3, 0), e(api.LogExec, 4, 0),
		e(api.LogReset, 5, 3), // back to the snapshot at 3: rolls back 4
		e(api.LogExec, 6, 0),
		e(api.LogReset, 7, 0), // back to the baseline: rolls back 1, 2, 3 and 6 (4 already was)
		e(api.LogExec, 8, 0),
	}
	markResets(entries)
	var got []int
	for _, en := range entries {
		got = append(got, en.ResetBy)
	}
	if diff := cmp.Diff([]int{7, 7, 7, 5, 7, 7, 0, 0}, got); diff != "" {
		t.Errorf("reset_by (-want +got):\n%s", diff)
	}
}

// An exec entry keeps 2.4's shape plus kind; other kinds carry only
// their own fields.
func TestLogEntryJSON(t *testing.T) {
	keys := func(v any) []string {
		b, _ := json.Marshal(v)
		var m map[string]any
		json.Unmarshal(b, &m)
		var out []string
		for k := range m {
			out = append(out, k)
		}
		return sorted(out)
	}
	exec := api.LogEntry{Sequence: 1, Command: []string{"true"}, Cwd: "/workspace"}
	if diff := cmp.Diff(sorted([]string{"kind", "sequence", "command", "cwd", "exit_code", "stdout", "stderr", "stdout_truncated",
		"stderr_truncated", "timed_out", "started_at", "duration_ms"}), keys(exec)); diff != "" {
		t.Errorf("exec entry keys (-want +got):\n%s", diff)
	}
	reset := api.LogEntry{Kind: api.LogReset, Sequence: 5, Snapshot: "one", SnapshotSequence: 3}
	if diff := cmp.Diff(sorted([]string{"kind", "sequence", "snapshot", "snapshot_sequence", "started_at", "duration_ms"}), keys(reset)); diff != "" {
		t.Errorf("reset entry keys (-want +got):\n%s", diff)
	}
	// A 2.4 line reads back as an exec entry.
	var old api.LogEntry
	json.Unmarshal([]byte(`{"sequence":1,"command":["ls"],"cwd":"/workspace","exit_code":0}`), &old)
	if old.Kind != "" || old.Sequence != 1 {
		t.Errorf("2.4 entry %+v", old)
	}
}

func sorted(s []string) []string { slices.Sort(s); return s }

func TestDiskPaths(t *testing.T) {
	l2 := &vmRecord{Workspace: &wsState{Disk: &wsDisk{Layout: api.LayoutData}}}
	l1 := &vmRecord{Workspace: &wsState{}}
	for _, tc := range []struct {
		rec        *vmRecord
		guest      string
		disk, path string
	}{
		{l2, "/workspace", diskWorkspace, "/"},
		{l2, "/workspace/a/b", diskWorkspace, "/a/b"},
		{l2, "/workspacex", diskRoot, "/workspacex"},
		{l2, "/etc/hostname", diskRoot, "/etc/hostname"},
		{l1, "/workspace/a", diskRoot, "/workspace/a"},
	} {
		d, p := diskOf(tc.rec, tc.guest)
		if d != tc.disk || p != tc.path {
			t.Errorf("diskOf(%q) = %s %s, want %s %s", tc.guest, d, p, tc.disk, tc.path)
		}
		if back := guestPathOf(d, p); back != tc.guest {
			t.Errorf("guestPathOf(%s, %s) = %s", d, p, back)
		}
	}
	for in, want := range map[string]string{"": "/workspace", "a/../b": "/workspace/b", "/etc/../etc/x": "/etc/x", "../../etc": "/etc"} {
		if got, err := cleanGuestPath(in); err != nil || got != want {
			t.Errorf("cleanGuestPath(%q) = %q %v, want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"/run/pyro-secrets/token", "/run/pyro", "/var/lib/pyro/services/x", `/a"b`} {
		if _, err := cleanGuestPath(bad); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("cleanGuestPath(%q): %v", bad, err)
		}
	}
}

// Host-compat workspaces have no disk layer: the disk operations say so
// and change nothing.
func TestSnapshotHostCompat(t *testing.T) {
	e := newEngine(t, BackendHostCompat)
	ctx := t.Context()
	ws, err := e.CreateWorkspace(ctx, api.CreateWorkspaceOptions{Environment: "debian:12", Shape: hostOnly})
	if err != nil {
		t.Fatal(err)
	}
	if ws.Disk != nil || ws.SnapshotCount != 0 {
		t.Errorf("host_compat workspace %+v", ws)
	}
	if _, err := e.CreateSnapshot(ctx, ws.WorkspaceID, "x"); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("snapshot: %v", err)
	}
	if _, err := e.ResetWorkspace(ctx, ws.WorkspaceID, ""); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("reset: %v", err)
	}
	if _, err := e.ForkWorkspace(ctx, ws.WorkspaceID, api.ForkOptions{}); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("fork: %v", err)
	}
	if _, err := e.ListWorkspaceDisk(ctx, ws.WorkspaceID, "", false); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("disk list: %v", err)
	}
	if _, err := e.CreateSnapshot(ctx, "ffffffffffffffff", "x"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("snapshot of nothing: %v", err)
	}
	if l, err := e.ListSnapshots(ctx, ws.WorkspaceID); err != nil || l.Count != 0 {
		t.Errorf("list %+v %v", l, err)
	}
}
