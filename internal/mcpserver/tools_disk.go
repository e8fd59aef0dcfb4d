package mcpserver

import (
	"context"
	"fmt"
	"strings"

	"github.com/pyro-mcp/pyro/api"
)

// SnapshotArgs name one snapshot of a workspace.
type SnapshotArgs struct {
	WorkspaceArgs
	Name string `json:"name" jsonschema:"the snapshot's name: 1 to 64 letters, digits, '.', '_' or '-'; 'baseline' is the one taken at create"`
}

// StopArgs are workspace_stop's arguments.
type StopArgs struct {
	WorkspaceArgs
	Cold bool `json:"cold,omitempty" jsonschema:"power the VM off instead of suspending it: its processes, shells and services end (default false: suspend)"`
}

// ResetArgs are workspace_reset's arguments.
type ResetArgs struct {
	WorkspaceArgs
	Snapshot string `json:"snapshot,omitempty" jsonschema:"the snapshot to go back to (default baseline: the workspace as created)"`
}

// ForkArgs are workspace_fork's arguments.
type ForkArgs struct {
	WorkspaceArgs
	Snapshot string `json:"snapshot,omitempty" jsonschema:"the snapshot to start from (default: one taken now)"`
	Name     string `json:"name,omitempty" jsonschema:"optional name of the new workspace"`
}

// DiskListArgs are workspace_disk_list's arguments.
type DiskListArgs struct {
	WorkspaceArgs
	Path      string `json:"path,omitempty" jsonschema:"guest path of a directory or file (relative paths are under /workspace)"`
	Recursive bool   `json:"recursive,omitempty" jsonschema:"list everything below path"`
}

// DiskReadArgs are workspace_disk_read's arguments.
type DiskReadArgs struct {
	WorkspaceArgs
	Path     string `json:"path" jsonschema:"guest path of a regular file (relative paths are under /workspace)"`
	MaxBytes int    `json:"max_bytes,omitempty" jsonschema:"read at most this many bytes"`
}

// DiskExportArgs are workspace_disk_export's arguments.
type DiskExportArgs struct {
	WorkspaceArgs
	OutputPath string `json:"output_path" jsonschema:"host file to write the raw ext4 image to"`
	Disk       string `json:"disk,omitempty" jsonschema:"workspace (the /workspace disk; the default) or root"`
	Force      bool   `json:"force,omitempty" jsonschema:"replace an existing output file"`
}

func (a DiskExportArgs) hostPathArgs() []string { return []string{a.OutputPath} }

var (
	resetDefaults = map[string]any{"snapshot": api.BaselineSnapshot}
	listDefaults  = map[string]any{"path": api.WorkspaceRoot, "recursive": false}
	readDefaults  = map[string]any{"max_bytes": api.DefaultDiskReadBytes}
	exportDefault = map[string]any{"force": false}
	stopDefaults  = map[string]any{"cold": false}
)

// registerDiskTools adds the tools of the disk layer: start and stop,
// snapshots, reset, fork, and the offline disk tools.
func (s *Server) registerDiskTools() {
	e := s.eng
	addTool(s, toolDef{
		name: "workspace_start", title: "Start a workspace", hints: idempotent, progress: "workspace_start: booting",
		desc: `Resume a suspended workspace (its processes, shells and services still there), or boot a stopped one from its disk. workspace_exec does this by itself when needed.`,
	}, onWorkspace(e.StartWorkspace), wsText("started"))

	addTool(s, toolDef{
		name: "workspace_stop", title: "Stop a workspace", hints: removes, defaults: stopDefaults, progress: "workspace_stop: stopping",
		desc: `Stop a workspace: it is suspended (memory saved next to its disk; workspace_start or the next workspace_exec resumes it ` +
			`with its processes, shells and services still there), or with cold: true powered off (they end). Its files stay on its disk either way. ` +
			`Needed before the workspace_disk_* tools.`,
	}, func(ctx context.Context, in StopArgs) (*api.Workspace, error) {
		return e.StopWorkspace(ctx, in.WorkspaceID, &api.StopOptions{Cold: in.Cold})
	}, wsText("stopped"))

	addTool(s, toolDef{
		name: "snapshot_create", title: "Snapshot a workspace", hints: additive,
		desc: `Take a named checkpoint of a workspace's whole disk (root and /workspace), running or stopped, ` +
			`in well under a second whatever its size: take one before a risky change, then workspace_reset to it if the change goes wrong, ` +
			`or workspace_fork from it to try two ways at once. Commands keep running during it.`,
	}, onNamed[SnapshotArgs](e.CreateSnapshot), func(r *api.Snapshot) string {
		return fmt.Sprintf("snapshot %s of workspace %s created (sequence %d)\n%s", r.Name, r.WorkspaceID, r.Sequence, jsonText(r))
	})

	addTool(s, toolDef{
		name: "snapshot_list", title: "List a workspace's snapshots", hints: readOnly,
		desc: `List a workspace's snapshots, oldest first: the baseline taken at create, then named ones, with the forks made from each.`,
	}, onWorkspace(e.ListSnapshots), func(l *api.SnapshotList) string {
		var names []string
		for _, s := range l.Snapshots {
			names = append(names, s.Name)
		}
		return fmt.Sprintf("workspace %s: %d snapshot(s): %s\n%s", l.WorkspaceID, l.Count, strings.Join(names, ", "), jsonText(l))
	})

	addTool(s, toolDef{
		name: "snapshot_delete", title: "Delete a snapshot", hints: removes,
		desc: `Delete a named snapshot. The baseline cannot be deleted, nor a snapshot a fork was made from (the error lists the forks).`,
	}, onNamed[SnapshotArgs](e.DeleteSnapshot), func(r *api.SnapshotDeleteResult) string {
		return fmt.Sprintf("deleted snapshot %s of workspace %s", r.Name, r.WorkspaceID)
	})

	addTool(s, toolDef{
		name: "workspace_reset", title: "Reset a workspace to a snapshot", hints: rewrites, defaults: resetDefaults, progress: "workspace_reset: resetting and booting",
		desc: `Bring a workspace's whole disk (root and /workspace) back to a snapshot (default: baseline, the workspace as created) and boot it, ` +
			`with the same workspace_id. Running commands end; installed packages and every file change since the snapshot are gone; ` +
			`workspace_logs keeps the history, marking what was rolled back.`,
	}, func(ctx context.Context, in ResetArgs) (*api.Workspace, error) {
		return e.ResetWorkspace(ctx, in.WorkspaceID, in.Snapshot)
	}, wsText("reset"))

	addTool(s, toolDef{
		name: "workspace_fork", title: "Fork a workspace", hints: additive, progress: "workspace_fork: forking and booting",
		desc: `Make and boot a new workspace whose disk starts as a snapshot of this one (default: taken now), sharing its blocks copy-on-write: ` +
			`a cheap branch to try a second approach beside the first. Returns the new workspace_id; both change independently.`,
	}, func(ctx context.Context, in ForkArgs) (*api.Workspace, error) {
		return e.ForkWorkspace(ctx, in.WorkspaceID, api.ForkOptions{Snapshot: in.Snapshot, Name: in.Name})
	}, wsText("forked"))

	addTool(s, toolDef{
		name: "workspace_disk_list", title: "List a stopped workspace's disk", hints: readOnly, defaults: listDefaults, progress: "workspace_disk_list: reading the disk",
		desc: `List files on a STOPPED workspace's disk without booting it (workspace_stop first): type, size, mode, mtime, link target. ` +
			`Secrets and shell or service state are never shown.`,
	}, func(ctx context.Context, in DiskListArgs) (*api.DiskList, error) {
		return e.ListWorkspaceDisk(ctx, in.WorkspaceID, in.Path, in.Recursive)
	}, func(l *api.DiskList) string {
		var b strings.Builder
		fmt.Fprintf(&b, "%s on workspace %s: %d entries\n", l.Path, l.WorkspaceID, l.Count)
		for _, en := range l.Entries {
			fmt.Fprintf(&b, "%s %s %d %s", en.Type, en.Mode, en.Size, en.Path)
			if en.LinkTarget != "" {
				fmt.Fprintf(&b, " -> %s", en.LinkTarget)
			}
			b.WriteString("\n")
		}
		return strings.TrimRight(b.String(), "\n")
	})

	addTool(s, toolDef{
		name: "workspace_disk_read", title: "Read a file of a stopped workspace's disk", hints: readOnly, defaults: readDefaults, progress: "workspace_disk_read: reading the disk",
		desc: `Read a file of a STOPPED workspace's disk without booting it (workspace_stop first); binary content comes back base64.`,
	}, func(ctx context.Context, in DiskReadArgs) (*api.DiskRead, error) {
		return e.ReadWorkspaceDisk(ctx, in.WorkspaceID, in.Path, in.MaxBytes)
	}, func(r *api.DiskRead) string {
		head := fmt.Sprintf("%s (%d bytes, %s", r.Path, r.Size, r.Encoding)
		if r.Truncated {
			head += ", truncated"
		}
		return head + "):\n" + r.Content
	})

	addTool(s, toolDef{
		name: "workspace_disk_export", title: "Export a stopped workspace's disk", hints: additive, defaults: exportDefault, progress: "workspace_disk_export: writing the image",
		desc: `Write a STOPPED workspace's disk to a host file as a raw ext4 image (default: the /workspace disk; disk root for the root filesystem). ` +
			`Never replaces an existing file unless force; secrets and shell or service state are removed from the image.`,
	}, func(ctx context.Context, in DiskExportArgs) (*api.DiskExportResult, error) {
		out, err := s.hostOutputPath(ctx, "output_path", in.OutputPath)
		if err != nil {
			return nil, err
		}
		return e.ExportWorkspaceDisk(ctx, in.WorkspaceID, out, api.DiskExportOptions{Disk: in.Disk, Force: in.Force})
	}, func(r *api.DiskExportResult) string {
		return fmt.Sprintf("exported the %s disk of workspace %s to %s (%d bytes, %d allocated)", r.Disk, r.WorkspaceID, r.OutputPath, r.Bytes, r.AllocatedBytes)
	})
}
