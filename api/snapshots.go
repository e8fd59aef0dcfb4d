package api

import "time"

// BaselineSnapshot is the snapshot every workspace made by this pyro has
// from its creation: /workspace right after the seed, on a fresh root.
// It cannot be deleted; `workspace diff` compares against it.
const BaselineSnapshot = "baseline"

// DefaultDiskGiB bounds a new workspace's data disk (/workspace).
const DefaultDiskGiB = 10

// MaxDiskGiB is the largest data disk a workspace may ask for.
const MaxDiskGiB = 1024

// Disk layouts of a workspace, as WorkspaceDisk.Layout reports them.
const (
	// LayoutRoot is pyro 2.4's: one disk, /workspace a directory on it.
	LayoutRoot = 1
	// LayoutData gives /workspace a disk of its own, and a read-only
	// baseline disk mounted at BaselineMount.
	LayoutData = 2
)

// BaselineMount is where the guest mounts the baseline read-only (layout 2).
const BaselineMount = "/run/pyro/baseline"

// Snapshot is a point a workspace can be reset to, or forked from:
// `pyro workspace snapshot create --json`, snapshot_create.
type Snapshot struct {
	WorkspaceID string    `json:"workspace_id"`
	Name        string    `json:"name"`
	CreatedAt   time.Time `json:"created_at"`
	// Sequence is the snapshot's place in the workspace's history: the
	// commands with a lower sequence had started before it.
	Sequence int `json:"sequence"`
	// SizeBytes is what the snapshot's own layers occupy on disk (blocks
	// it shares with older snapshots are counted there).
	SizeBytes int64 `json:"size_bytes"`
	// Forks lists the workspaces forked from this snapshot; while any
	// exists, the snapshot cannot be deleted.
	Forks []string `json:"forks,omitempty"`
}

// SnapshotList is `pyro workspace snapshot list --json`, snapshot_list.
type SnapshotList struct {
	WorkspaceID string      `json:"workspace_id"`
	Snapshots   []*Snapshot `json:"snapshots"`
	Count       int         `json:"count"`
}

// SnapshotDeleteResult is `pyro workspace snapshot delete --json`.
type SnapshotDeleteResult struct {
	WorkspaceID string `json:"workspace_id"`
	Name        string `json:"name"`
	Deleted     bool   `json:"deleted"`
}

// ForkOptions tune ForkWorkspace. A nil *ForkOptions is valid.
type ForkOptions struct {
	// Snapshot to fork from; "" takes a snapshot of the workspace now.
	Snapshot string `json:"snapshot,omitempty"`
	// Name of the new workspace (unique among workspaces); optional.
	Name string `json:"name,omitempty"`
}

// ForkOrigin says where a forked workspace came from.
type ForkOrigin struct {
	WorkspaceID string `json:"workspace_id"`
	// Snapshot is the source's snapshot it was forked from; "" for a
	// snapshot taken at the moment of the fork.
	Snapshot  string    `json:"snapshot,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// ResetSummary is a workspace's last reset.
type ResetSummary struct {
	Snapshot string    `json:"snapshot"`
	Sequence int       `json:"sequence"`
	At       time.Time `json:"at"`
}

// WorkspaceDisk describes a workspace's disks and what they occupy.
type WorkspaceDisk struct {
	Layout  int `json:"layout"`             // LayoutRoot (made by 2.4) or LayoutData
	SizeGiB int `json:"size_gib,omitempty"` // the bound of /workspace's disk (layout 2)
	// UsedBytes is what the workspace wrote since its last snapshot (its
	// writable layers), on the host's disk.
	UsedBytes int64 `json:"used_bytes"`
	// SnapshotBytes is what the layers under them occupy: its snapshots,
	// its baseline and seed; layers shared with forks are counted in each.
	SnapshotBytes int64 `json:"snapshot_bytes"`
}

// DiskEntry is one file of a stopped workspace's disk, read offline.
type DiskEntry = FileEntry

// DiskList is `pyro workspace disk list --json`, workspace_disk_list.
type DiskList struct {
	WorkspaceID string      `json:"workspace_id"`
	Path        string      `json:"path"`
	Recursive   bool        `json:"recursive"`
	Entries     []DiskEntry `json:"entries"`
	Count       int         `json:"count"`
}

// DefaultDiskReadBytes caps a disk read that names no limit.
const DefaultDiskReadBytes = 65536

// DiskRead is `pyro workspace disk read --json`, workspace_disk_read.
type DiskRead struct {
	WorkspaceID string `json:"workspace_id"`
	Path        string `json:"path"`
	Size        int64  `json:"size"`     // the whole file's
	Content     string `json:"content"`  // at most max_bytes of it
	Encoding    string `json:"encoding"` // "utf-8" or "base64"
	Truncated   bool   `json:"truncated"`
	SHA256      string `json:"sha256"` // of the bytes returned
}

// DiskExportOptions tune ExportWorkspaceDisk.
type DiskExportOptions struct {
	// Disk is "workspace" (the default on layout 2: the /workspace
	// filesystem) or "root" (the root filesystem; the only disk of a
	// layout-1 workspace, whose /workspace is on it).
	Disk string `json:"disk,omitempty"`
	// Force replaces an existing output file.
	Force bool `json:"force,omitempty"`
}

// DiskExportResult is `pyro workspace disk export --json`, workspace_disk_export.
type DiskExportResult struct {
	WorkspaceID string `json:"workspace_id"`
	Disk        string `json:"disk"`
	OutputPath  string `json:"output_path"`
	// Bytes is the image's size; it is sparse, AllocatedBytes is what it
	// occupies.
	Bytes          int64    `json:"bytes"`
	AllocatedBytes int64    `json:"allocated_bytes"`
	Scrubbed       []string `json:"scrubbed"` // runtime-only paths removed from the image
}
