package api

import "time"

// File operations on a running workspace: list, read, write, patch, diff,
// export, summary. Every path names something under WorkspaceRoot in the
// guest, after `..` and symlinks are resolved there; relative paths are
// under WorkspaceRoot.

// Limits and defaults of the file operations.
const (
	// DefaultFileReadBytes caps a file read that names no limit.
	DefaultFileReadBytes = 65536
	// MaxFileListEntries caps one listing; past it the list is truncated.
	MaxFileListEntries = 20000
	// MaxPatchBytes bounds one patch's text.
	MaxPatchBytes = 16 << 20
	// MaxFileWriteBytes bounds one file write (the limit of a sync push).
	MaxFileWriteBytes = 2 << 30
	// MaxDiffTextBytes bounds the text of one file a diff shows line by
	// line; a larger file is summarised like a binary one.
	MaxDiffTextBytes = 8 << 20
	// MaxDiffPatchBytes bounds the patch text of one diff: past it,
	// entries keep their counts but lose their patch (patch_omitted).
	MaxDiffPatchBytes = 64 << 20
)

// File types, as FileEntry.Type reports them.
const (
	FileTypeFile      = "file"
	FileTypeDirectory = "directory"
	FileTypeSymlink   = "symlink"
	FileTypeOther     = "other" // a device, FIFO or socket
)

// Content encodings of FileRead.Encoding and FileWriteOptions.Encoding.
const (
	EncodingUTF8   = "utf-8"
	EncodingBase64 = "base64"
)

// FileEntry is one entry of a listing.
type FileEntry struct {
	Path       string    `json:"path"` // absolute guest path
	Type       string    `json:"type"` // FileTypeFile, FileTypeDirectory, FileTypeSymlink or FileTypeOther
	Size       int64     `json:"size"`
	Mode       string    `json:"mode"` // permission bits in octal, e.g. "0644"
	MTime      time.Time `json:"mtime"`
	LinkTarget string    `json:"link_target,omitempty"`
}

// FileList is `pyro workspace file list --json`, workspace_file_list.
type FileList struct {
	WorkspaceID string      `json:"workspace_id"`
	Path        string      `json:"path"`
	Recursive   bool        `json:"recursive"`
	Entries     []FileEntry `json:"entries"`
	Count       int         `json:"count"`
	// Truncated says the listing stopped at MaxFileListEntries.
	Truncated bool `json:"truncated,omitempty"`
}

// FileRead is `pyro workspace file read --json`, workspace_file_read.
type FileRead struct {
	WorkspaceID string `json:"workspace_id"`
	Path        string `json:"path"`
	Size        int64  `json:"size"`     // the whole file's
	Content     string `json:"content"`  // at most max_bytes of it
	Encoding    string `json:"encoding"` // EncodingUTF8 or EncodingBase64
	Truncated   bool   `json:"truncated"`
	SHA256      string `json:"sha256"` // of the bytes returned
}

// FileWriteOptions tune a file write. A nil *FileWriteOptions is valid.
type FileWriteOptions struct {
	// Mode is the file's permission bits, e.g. 0o755; 0 keeps an existing
	// file's mode, and gives a new file 0644.
	Mode uint32 `json:"mode,omitempty"`
}

// FileWriteResult is `pyro workspace file write --json`, workspace_file_write.
type FileWriteResult struct {
	WorkspaceID string `json:"workspace_id"`
	Path        string `json:"path"`
	Bytes       int64  `json:"bytes"`
	SHA256      string `json:"sha256"` // of the new content
	Mode        string `json:"mode"`
	Created     bool   `json:"created"` // the file did not exist before
}

// Statuses of a patched file (PatchFile.Status) and of a changed one
// (DiffEntry.Status).
const (
	StatusAdded       = "added"
	StatusModified    = "modified"
	StatusDeleted     = "deleted"
	StatusRenamed     = "renamed"
	StatusCopied      = "copied"
	StatusTypeChanged = "type_changed" // a file became a symlink, say
	StatusModeChanged = "mode_changed" // only the permission bits changed
)

// PatchFile is one file a patch changed.
type PatchFile struct {
	Path       string `json:"path"` // relative to /workspace
	OldPath    string `json:"old_path,omitempty"`
	Status     string `json:"status"`
	Insertions int64  `json:"insertions"`
	Deletions  int64  `json:"deletions"`
}

// PatchResult is `pyro workspace patch apply --json`, workspace_patch_apply.
type PatchResult struct {
	WorkspaceID string      `json:"workspace_id"`
	Files       []PatchFile `json:"files"`
	Count       int         `json:"count"`
	Insertions  int64       `json:"insertions"`
	Deletions   int64       `json:"deletions"`
}

// ExportOptions tune an export. A nil *ExportOptions is valid.
type ExportOptions struct {
	// Force replaces an existing output (a file, a symlink or a
	// directory); it never writes through a symlink.
	Force bool `json:"force,omitempty"`
}

// Export formats, as ExportResult.Format reports them.
const (
	ExportFile      = "file"      // a single file (or symlink) at the output path
	ExportDirectory = "directory" // a directory tree at the output path
	ExportTar       = "tar"       // a .tar archive
	ExportTarGz     = "tar.gz"    // a .tar.gz or .tgz archive
)

// SkippedEntry is something an export left out, and why.
type SkippedEntry struct {
	Path   string `json:"path"`
	Reason string `json:"reason"`
}

// ExportResult is `pyro workspace export --json`, workspace_export.
type ExportResult struct {
	WorkspaceID string         `json:"workspace_id"`
	Path        string         `json:"path"` // the guest path exported
	OutputPath  string         `json:"output_path"`
	Format      string         `json:"format"`
	Entries     int            `json:"entries"`
	Bytes       int64          `json:"bytes"` // of file content
	Skipped     []SkippedEntry `json:"skipped"`
	DurationMs  int64          `json:"duration_ms"`
}

// DiffOptions tune a diff. A nil *DiffOptions is valid.
type DiffOptions struct {
	// Paths limit the diff to these files or directories (relative ones
	// are under /workspace); none means all of /workspace.
	Paths []string `json:"paths,omitempty"`
	// Stat and NameOnly leave out the patch text (counts and names only).
	Stat     bool `json:"stat,omitempty"`
	NameOnly bool `json:"name_only,omitempty"`
}

// DiffEntry is one changed file (directories show through their files,
// as in git).
type DiffEntry struct {
	Path       string `json:"path"` // relative to /workspace
	Status     string `json:"status"`
	Binary     bool   `json:"binary"`
	Insertions int64  `json:"insertions"`
	Deletions  int64  `json:"deletions"`
	OldMode    string `json:"old_mode,omitempty"` // git's notation: "100644", "100755", "120000"
	NewMode    string `json:"new_mode,omitempty"`
	// OldSize and NewSize are given for binary files.
	OldSize int64 `json:"old_size,omitempty"`
	NewSize int64 `json:"new_size,omitempty"`
	// Patch is the entry's git-style unified diff (empty with stat or
	// name_only); PatchOmitted says it was left out past MaxDiffPatchBytes.
	Patch        string `json:"patch,omitempty"`
	PatchOmitted bool   `json:"patch_omitted,omitempty"`
}

// Diff is `pyro workspace diff --json`, workspace_diff: what changed in
// /workspace since the baseline snapshot.
type Diff struct {
	WorkspaceID string      `json:"workspace_id"`
	Baseline    string      `json:"baseline"` // BaselineSnapshot
	Paths       []string    `json:"paths,omitempty"`
	Entries     []DiffEntry `json:"entries"`
	Count       int         `json:"count"`
	Insertions  int64       `json:"insertions"`
	Deletions   int64       `json:"deletions"`
}

// SummaryStart says where a summary begins: the workspace's creation or
// its last reset.
type SummaryStart struct {
	Event    string    `json:"event"` // "create" or "reset"
	Sequence int       `json:"sequence"`
	At       time.Time `json:"at"`
	Snapshot string    `json:"snapshot,omitempty"` // the snapshot a reset went back to
}

// SummaryExport is one export a summary lists.
type SummaryExport struct {
	Sequence   int       `json:"sequence"`
	Path       string    `json:"path"`
	OutputPath string    `json:"output_path"`
	Entries    int       `json:"entries"`
	Bytes      int64     `json:"bytes"`
	At         time.Time `json:"at"`
}

// SummaryChanges is what changed in /workspace since the baseline, as a
// diff's stat: no contents.
type SummaryChanges struct {
	// Available is false when there is no baseline to compare with (a
	// workspace made by pyro 2.4, or one on the host); Note says why.
	Available  bool        `json:"available"`
	Note       string      `json:"note,omitempty"`
	Files      []DiffEntry `json:"files"`
	Count      int         `json:"count"`
	Insertions int64       `json:"insertions"`
	Deletions  int64       `json:"deletions"`
}

// WorkspaceSummary is `pyro workspace summary --json`, workspace_summary:
// a review card of what happened since the workspace was created or last
// reset.
type WorkspaceSummary struct {
	WorkspaceID string           `json:"workspace_id"`
	Since       SummaryStart     `json:"since"`
	Commands    []CommandSummary `json:"commands"`
	// CommandCount counts Commands; FailedCommands those that exited
	// non-zero, timed out or could not run.
	CommandCount   int             `json:"command_count"`
	FailedCommands int             `json:"failed_commands"`
	FileWrites     int             `json:"file_writes"`
	Patches        int             `json:"patches"`
	Syncs          int             `json:"syncs"`
	Exports        []SummaryExport `json:"exports"`
	Changes        SummaryChanges  `json:"changes"`
}

// FileEvent holds the fields of the log entries of the file operations
// (LogFileWrite, LogPatch, LogSync, LogExport): what and how much, never
// any content.
type FileEvent struct {
	Path       string      `json:"path,omitempty"`
	Bytes      int64       `json:"bytes,omitempty"`
	SHA256     string      `json:"sha256,omitempty"`
	Entries    int         `json:"entries,omitempty"`
	SourcePath string      `json:"source_path,omitempty"` // sync
	Dest       string      `json:"dest,omitempty"`        // sync
	OutputPath string      `json:"output_path,omitempty"` // export
	Files      []PatchFile `json:"files,omitempty"`       // patch
	Skipped    int         `json:"skipped,omitempty"`     // export
}

// Kinds of the file operations' log entries (LogEntry.Kind).
const (
	LogFileWrite = "file_write" // a file written: path, bytes, sha256
	LogPatch     = "patch"      // a patch applied: files
	LogSync      = "sync"       // a sync push: source_path, dest, entries, bytes
	LogExport    = "export"     // an export to the host: path, output_path, entries, bytes, skipped
)
