package mcpserver

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/pyro-mcp/pyro/api"
	"github.com/pyro-mcp/pyro/internal/errdefs"
)

// FileListArgs are workspace_file_list's arguments.
type FileListArgs struct {
	WorkspaceArgs
	Path      string `json:"path,omitempty" jsonschema:"a directory (or file) under /workspace; relative paths are under /workspace"`
	Recursive bool   `json:"recursive,omitempty" jsonschema:"list everything below path"`
}

// FileReadArgs are workspace_file_read's arguments.
type FileReadArgs struct {
	WorkspaceArgs
	Path     string `json:"path" jsonschema:"a regular file under /workspace, e.g. src/main.go (relative paths are under /workspace)"`
	MaxBytes int    `json:"max_bytes,omitempty" jsonschema:"read at most this many bytes; size in the result is the whole file's"`
}

// FileWriteArgs are workspace_file_write's arguments.
type FileWriteArgs struct {
	WorkspaceArgs
	Path     string `json:"path" jsonschema:"the file to write under /workspace; missing parent directories are created"`
	Text     string `json:"text" jsonschema:"the file's whole new content"`
	Encoding string `json:"encoding,omitempty" jsonschema:"utf-8 (the default) or base64, for binary content"`
	Mode     string `json:"mode,omitempty" jsonschema:"permission bits in octal, e.g. 0755; default: an existing file's, 0644 for a new one"`
}

// PatchApplyArgs are workspace_patch_apply's arguments.
type PatchApplyArgs struct {
	WorkspaceArgs
	Patch string `json:"patch" jsonschema:"a unified diff (git diff's format, or diff -u's) with paths relative to /workspace: each file starts with 'diff --git a/P b/P' or '--- a/P' and '+++ b/P', then @@ hunks with 3 lines of context"`
}

// DiffArgs are workspace_diff's arguments.
type DiffArgs struct {
	WorkspaceArgs
	Paths    []string `json:"paths,omitempty" jsonschema:"limit the diff to these files or directories under /workspace"`
	Stat     bool     `json:"stat,omitempty" jsonschema:"names and line counts only, no patch text"`
	NameOnly bool     `json:"name_only,omitempty" jsonschema:"names only"`
}

// ExportArgs are workspace_export's arguments.
type ExportArgs struct {
	WorkspaceArgs
	Path       string `json:"path" jsonschema:"the file or directory under /workspace to copy out (relative paths are under /workspace)"`
	OutputPath string `json:"output_path" jsonschema:"the host path to write, in a directory this server may write to; a name ending in .tar, .tar.gz or .tgz makes an archive"`
	Force      bool   `json:"force,omitempty" jsonschema:"replace an existing output"`
}

func (a ExportArgs) hostPathArgs() []string { return []string{a.OutputPath} }

var (
	fileListDefaults = map[string]any{"path": api.WorkspaceRoot, "recursive": false}
	fileReadDefaults = map[string]any{"max_bytes": api.DefaultFileReadBytes}
	fileWriteDefault = map[string]any{"encoding": api.EncodingUTF8}
	diffDefaults     = map[string]any{"stat": false, "name_only": false}
	exportDefaults   = map[string]any{"force": false}
)

// registerFileTools adds the file tools of a running workspace.
func (s *Server) registerFileTools() {
	e := s.eng
	addTool(s, toolDef{
		name: "workspace_file_list", title: "List a workspace's files", hints: readOnly, defaults: fileListDefaults,
		desc: `List a directory of a workspace (default /workspace): each entry's type, mode, size, mtime and symlink target. ` +
			`recursive lists everything below it.`,
	}, func(ctx context.Context, in FileListArgs) (*api.FileList, error) {
		return e.ListWorkspaceFiles(ctx, in.WorkspaceID, in.Path, in.Recursive)
	}, fileListText)

	addTool(s, toolDef{
		name: "workspace_file_read", title: "Read a workspace file", hints: readOnly, defaults: fileReadDefaults,
		desc: `Read a file of a workspace (at most max_bytes of it; size is the whole file's, truncated says it was cut). ` +
			`Content that is not UTF-8 comes back base64 (encoding). Paths are confined to /workspace.`,
	}, func(ctx context.Context, in FileReadArgs) (*api.FileRead, error) {
		return e.ReadWorkspaceFile(ctx, in.WorkspaceID, in.Path, in.MaxBytes)
	}, func(r *api.FileRead) string {
		head := fmt.Sprintf("%s (%d bytes, %s", r.Path, r.Size, r.Encoding)
		if r.Truncated {
			head += fmt.Sprintf(", truncated to %d", len(r.Content))
		}
		return head + "):\n" + r.Content
	})

	addTool(s, toolDef{
		name: "workspace_file_write", title: "Write a workspace file", hints: overwrites, defaults: fileWriteDefault,
		desc: `Replace (or create) a file of a workspace with text, atomically, creating missing parent directories. ` +
			`For a small change to a big file prefer workspace_patch_apply.`,
	}, func(ctx context.Context, in FileWriteArgs) (*api.FileWriteResult, error) {
		var r io.Reader = strings.NewReader(in.Text)
		switch in.Encoding {
		case "", api.EncodingUTF8:
		case api.EncodingBase64:
			data, err := base64.StdEncoding.DecodeString(in.Text)
			if err != nil {
				return nil, errdefs.Wrap(errdefs.ErrInvalidArgument, err, "give `text` as standard base64", "decoding text")
			}
			r = strings.NewReader(string(data))
		default:
			return nil, errdefs.New(errdefs.ErrInvalidArgument, `use "utf-8" or "base64"`, "unknown encoding %q", in.Encoding)
		}
		var o api.FileWriteOptions
		if in.Mode != "" {
			m, err := strconv.ParseUint(in.Mode, 8, 32)
			if err != nil || m > 0o7777 {
				return nil, errdefs.New(errdefs.ErrInvalidArgument, `give permission bits in octal, e.g. "0644" or "0755"`, "mode %q is not a file mode", in.Mode)
			}
			o.Mode = uint32(m)
		}
		return e.WriteWorkspaceFile(ctx, in.WorkspaceID, in.Path, r, o)
	}, func(r *api.FileWriteResult) string {
		verb := "wrote"
		if r.Created {
			verb = "created"
		}
		return fmt.Sprintf("%s %s in workspace %s: %d bytes, mode %s, sha256 %s", verb, r.Path, r.WorkspaceID, r.Bytes, r.Mode, r.SHA256)
	})

	addTool(s, toolDef{
		name: "workspace_patch_apply", title: "Patch a workspace's files", hints: rewrites,
		desc: `Apply a unified diff to a workspace's files, all or nothing: added, modified, deleted and renamed files, mode changes. ` +
			`Every hunk is checked before anything is written; when one does not apply, the error names the file, the hunk and the line ` +
			`the file has against the one the patch expects, and nothing changed: read the file and make the patch again.`,
	}, func(ctx context.Context, in PatchApplyArgs) (*api.PatchResult, error) {
		if strings.TrimSpace(in.Patch) == "" {
			return nil, errdefs.New(errdefs.ErrInvalidArgument, "pass the unified diff in `patch`", "empty patch")
		}
		return e.ApplyWorkspacePatch(ctx, in.WorkspaceID, strings.NewReader(in.Patch))
	}, patchText)

	addTool(s, toolDef{
		name: "workspace_diff", title: "Diff a workspace against its baseline", hints: readOnly, defaults: diffDefaults, progress: "workspace_diff: comparing",
		desc: `Show what changed in a workspace's /workspace since it was created (its baseline, right after the seed): git's unified diff ` +
			`per text file (git apply and workspace_patch_apply take it), one line per binary file, mode and type changes. ` +
			`stat or name_only for a short overview first.`,
	}, func(ctx context.Context, in DiffArgs) (*api.Diff, error) {
		return e.DiffWorkspace(ctx, in.WorkspaceID, api.DiffOptions{Paths: in.Paths, Stat: in.Stat, NameOnly: in.NameOnly})
	}, diffText)

	addTool(s, toolDef{
		name: "workspace_export", title: "Export workspace files to the host", hints: additive, defaults: exportDefaults, progress: "workspace_export: copying",
		desc: `Copy a file or directory out of a workspace's /workspace to a host path this server may write to, as itself or as a ` +
			`.tar/.tar.gz archive when output_path's name says so. Never replaces an existing output unless force; symlinks come out as ` +
			`symlinks (never followed), devices and FIFOs are skipped and listed.`,
	}, func(ctx context.Context, in ExportArgs) (*api.ExportResult, error) {
		out, err := s.hostOutputPath(ctx, "output_path", in.OutputPath)
		if err != nil {
			return nil, err
		}
		return e.ExportWorkspace(ctx, in.WorkspaceID, in.Path, out, api.ExportOptions{Force: in.Force})
	}, func(r *api.ExportResult) string {
		var b strings.Builder
		fmt.Fprintf(&b, "exported %s of workspace %s to %s (%s): %d entries, %d bytes", r.Path, r.WorkspaceID, r.OutputPath, r.Format, r.Entries, r.Bytes)
		for _, sk := range r.Skipped {
			fmt.Fprintf(&b, "\nskipped %s: %s", sk.Path, sk.Reason)
		}
		return b.String()
	})

	addTool(s, toolDef{
		name: "workspace_summary", title: "Summarize a workspace", hints: readOnly, progress: "workspace_summary: comparing",
		desc: `A review card of a workspace since it was created or last reset: the commands run with their exit codes, ` +
			`file writes, patches, syncs, exports, and the files changed since the baseline with their line counts. Call it at the end of a task.`,
	}, onWorkspace(e.SummarizeWorkspace), summaryText)
}

// hostOutputPath decides an output path the client names: its directory
// must be one hostPath accepts (resolved, under an allowed root); the last
// component is kept as it is, never resolved, so that a symlink there is
// replaced (with force), never written through.
func (s *Server) hostOutputPath(ctx context.Context, arg, p string) (string, error) {
	if p == "" {
		return "", errdefs.New(errdefs.ErrInvalidArgument, "give the host path to write to (`output_path`)", "no %s", arg)
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", errdefs.Wrap(errdefs.ErrInvalidArgument, err, "", "%s %q", arg, p)
	}
	base := filepath.Base(abs)
	if base == "/" || base == "." || base == ".." {
		return "", errdefs.New(errdefs.ErrInvalidArgument, "name a file or directory to create", "%s %s names no file", arg, p)
	}
	dir, err := s.hostPath(ctx, arg, filepath.Dir(abs))
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, base), nil
}

func fileListText(l *api.FileList) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s in workspace %s: %d entries", l.Path, l.WorkspaceID, l.Count)
	if l.Truncated {
		b.WriteString(" (truncated)")
	}
	for _, en := range l.Entries {
		fmt.Fprintf(&b, "\n%s %s %d %s", en.Type, en.Mode, en.Size, en.Path)
		if en.LinkTarget != "" {
			fmt.Fprintf(&b, " -> %s", en.LinkTarget)
		}
	}
	return b.String()
}

func patchText(r *api.PatchResult) string {
	var b strings.Builder
	fmt.Fprintf(&b, "patched workspace %s: %d file(s), +%d -%d", r.WorkspaceID, r.Count, r.Insertions, r.Deletions)
	for _, f := range r.Files {
		name := f.Path
		if f.OldPath != "" {
			name = f.OldPath + " => " + f.Path
		}
		fmt.Fprintf(&b, "\n%s %s (+%d -%d)", f.Status, name, f.Insertions, f.Deletions)
	}
	return b.String()
}

func diffText(d *api.Diff) string {
	var b strings.Builder
	fmt.Fprintf(&b, "workspace %s against its baseline: %d file(s) changed, +%d -%d\n", d.WorkspaceID, d.Count, d.Insertions, d.Deletions)
	for _, en := range d.Entries {
		if en.Patch == "" || en.PatchOmitted {
			fmt.Fprintf(&b, "%s %s (+%d -%d)", en.Status, en.Path, en.Insertions, en.Deletions)
			if en.Binary {
				b.WriteString(" binary")
			}
			if en.PatchOmitted {
				b.WriteString(" (patch omitted: the diff is too big; diff this path alone)")
			}
			b.WriteString("\n")
			continue
		}
		b.WriteString(en.Patch)
	}
	return strings.TrimRight(b.String(), "\n")
}

func summaryText(s *api.WorkspaceSummary) string {
	var b strings.Builder
	since := "its creation"
	if s.Since.Event == "reset" {
		since = fmt.Sprintf("its reset to %s (#%d)", s.Since.Snapshot, s.Since.Sequence)
	}
	fmt.Fprintf(&b, "workspace %s since %s\ncommands: %d (%d failed)\n", s.WorkspaceID, since, s.CommandCount, s.FailedCommands)
	for _, c := range s.Commands {
		status := fmt.Sprintf("exit %d", c.ExitCode)
		if c.TimedOut {
			status = "timed out"
		}
		fmt.Fprintf(&b, "  #%d %s: %s\n", c.Sequence, status, strings.Join(c.Command, " "))
	}
	fmt.Fprintf(&b, "file writes: %d, patches: %d, syncs: %d, exports: %d\n", s.FileWrites, s.Patches, s.Syncs, len(s.Exports))
	for _, x := range s.Exports {
		fmt.Fprintf(&b, "  #%d %s -> %s\n", x.Sequence, x.Path, x.OutputPath)
	}
	if !s.Changes.Available {
		fmt.Fprintf(&b, "changes since the baseline: not available: %s", s.Changes.Note)
		return b.String()
	}
	fmt.Fprintf(&b, "changes since the baseline: %d file(s), +%d -%d", s.Changes.Count, s.Changes.Insertions, s.Changes.Deletions)
	for _, f := range s.Changes.Files {
		fmt.Fprintf(&b, "\n  %s %s (+%d -%d)", f.Status, f.Path, f.Insertions, f.Deletions)
	}
	return b.String()
}
