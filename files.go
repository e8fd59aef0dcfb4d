package pyro

import (
	"context"
	"io"
	"strings"

	"github.com/pyro-mcp/pyro/api"
)

// Files in and out of a running workspace. Every path is confined to
// /workspace in the guest, after `..` and symlinks are resolved there
// (relative paths are under /workspace); a stopped workspace is booted
// first. Writes, patches and exports are kept in the workspace's log
// (without contents).

// The file operations' types, defined in package api.
type (
	// FileEntry is one entry of a listing.
	FileEntry = api.FileEntry
	// FileList is the outcome of ListWorkspaceFiles.
	FileList = api.FileList
	// FileRead is the outcome of ReadWorkspaceFile and StreamWorkspaceFile.
	FileRead = api.FileRead
	// FileWriteOptions tune WriteWorkspaceFile. A nil *FileWriteOptions is valid.
	FileWriteOptions = api.FileWriteOptions
	// FileWriteResult is the outcome of WriteWorkspaceFile.
	FileWriteResult = api.FileWriteResult
	// PatchFile is one file a patch changed.
	PatchFile = api.PatchFile
	// PatchResult is the outcome of ApplyWorkspacePatch.
	PatchResult = api.PatchResult
	// ExportOptions tune ExportWorkspace. A nil *ExportOptions is valid.
	ExportOptions = api.ExportOptions
	// ExportResult is the outcome of ExportWorkspace.
	ExportResult = api.ExportResult
	// SkippedEntry is something an export left out, and why.
	SkippedEntry = api.SkippedEntry
	// DiffOptions tune DiffWorkspace. A nil *DiffOptions is valid.
	DiffOptions = api.DiffOptions
	// Diff is the outcome of DiffWorkspace.
	Diff = api.Diff
	// DiffEntry is one changed file of a Diff.
	DiffEntry = api.DiffEntry
	// WorkspaceSummary is the outcome of SummarizeWorkspace.
	WorkspaceSummary = api.WorkspaceSummary
	// FileEvent holds the fields of the file operations' log entries.
	FileEvent = api.FileEvent
)

// Limits and defaults of the file operations, and their log kinds.
const (
	DefaultFileReadBytes = api.DefaultFileReadBytes
	MaxPatchBytes        = api.MaxPatchBytes
	MaxFileWriteBytes    = api.MaxFileWriteBytes
	MaxDiffPatchBytes    = api.MaxDiffPatchBytes
	LogFileWrite         = api.LogFileWrite
	LogPatch             = api.LogPatch
	LogSync              = api.LogSync
	LogExport            = api.LogExport
)

// ListWorkspaceFiles lists path (a directory, or the one entry of a file;
// "" is /workspace) of a workspace, everything below it with recursive.
func (c *Client) ListWorkspaceFiles(ctx context.Context, workspaceID, path string, recursive bool) (*FileList, error) {
	return c.eng.ListWorkspaceFiles(ctx, workspaceID, path, recursive)
}

// ReadWorkspaceFile reads up to maxBytes (0: DefaultFileReadBytes) of a
// regular file of a workspace; content that is not UTF-8 comes back
// base64 (Encoding). Size is the whole file's.
func (c *Client) ReadWorkspaceFile(ctx context.Context, workspaceID, path string, maxBytes int) (*FileRead, error) {
	return c.eng.ReadWorkspaceFile(ctx, workspaceID, path, maxBytes)
}

// StreamWorkspaceFile copies up to maxBytes of a regular file of a
// workspace to w as it arrives, without holding it in memory; the result
// has no Content.
func (c *Client) StreamWorkspaceFile(ctx context.Context, workspaceID, path string, w io.Writer, maxBytes int64) (*FileRead, error) {
	return c.eng.StreamWorkspaceFile(ctx, workspaceID, path, w, maxBytes)
}

// WriteWorkspaceFile replaces or creates a file of a workspace with what r
// holds (streamed; at most MaxFileWriteBytes), atomically (a temporary
// file renamed over it in the guest), creating its parent directories. A
// nil *FileWriteOptions is valid.
func (c *Client) WriteWorkspaceFile(ctx context.Context, workspaceID, path string, r io.Reader, opts *FileWriteOptions) (*FileWriteResult, error) {
	var o FileWriteOptions
	if opts != nil {
		o = *opts
	}
	return c.eng.WriteWorkspaceFile(ctx, workspaceID, path, r, o)
}

// ApplyWorkspacePatch applies a unified diff (git's format, or diff -u's:
// added, modified, deleted, renamed files, mode changes) under /workspace,
// all or nothing: when a hunk does not apply, the error names the file,
// the hunk and the lines that differ, and nothing was changed.
func (c *Client) ApplyWorkspacePatch(ctx context.Context, workspaceID, patch string) (*PatchResult, error) {
	return c.eng.ApplyWorkspacePatch(ctx, workspaceID, strings.NewReader(patch))
}

// ExportWorkspace copies path (a file or directory of a workspace) to
// outputPath on the host, as itself or, when the name ends in .tar,
// .tar.gz or .tgz, as that archive. Symlinks come out as symlinks (one
// that leads out of what is exported is left out), devices and FIFOs are
// left out; Skipped lists both. It never replaces an existing output
// unless opts.Force. A nil *ExportOptions is valid.
func (c *Client) ExportWorkspace(ctx context.Context, workspaceID, path, outputPath string, opts *ExportOptions) (*ExportResult, error) {
	var o ExportOptions
	if opts != nil {
		o = *opts
	}
	return c.eng.ExportWorkspace(ctx, workspaceID, path, outputPath, o)
}

// DiffWorkspace reports what changed in /workspace since the workspace's
// baseline (its state right after create): git's unified diff per file,
// which `git apply` and ApplyWorkspacePatch take. A workspace made by
// pyro 2.4 has no baseline (ErrFailedPrecondition). A nil *DiffOptions is
// valid.
func (c *Client) DiffWorkspace(ctx context.Context, workspaceID string, opts *DiffOptions) (*Diff, error) {
	var o DiffOptions
	if opts != nil {
		o = *opts
	}
	return c.eng.DiffWorkspace(ctx, workspaceID, o)
}

// SummarizeWorkspace is a review card of a workspace since it was created
// or last reset: commands and exit codes, writes, patches, syncs, exports,
// and the files changed since the baseline.
func (c *Client) SummarizeWorkspace(ctx context.Context, workspaceID string) (*WorkspaceSummary, error) {
	return c.eng.SummarizeWorkspace(ctx, workspaceID)
}
