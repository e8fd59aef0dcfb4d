package agentproto

import (
	"bytes"
	"context"
	"encoding/json"
	"io"

	"github.com/pyro-mcp/pyro/api"
	"github.com/pyro-mcp/pyro/internal/errdefs"
)

// The file methods. Every path is a guest path confined to /workspace by
// the guest after it resolved `..` and symlinks (relative paths are under
// /workspace). Results too large for one response frame (listings, diffs)
// stream on TypeStdout as JSON lines, one entry per line; file contents and
// archives stream on TypeStdout as raw bytes; what the host sends (a new
// file's content, a patch) comes as TypeData then TypeEOF.
const (
	// MethodFileList lists a directory (or describes one file). Params
	// FileListRequest; api.FileEntry lines on TypeStdout; result
	// FileListResult.
	MethodFileList = "file_list"
	// MethodFileRead reads a regular file. Params FileReadRequest; at most
	// MaxBytes of it on TypeStdout; result FileReadResult.
	MethodFileRead = "file_read"
	// MethodFileWrite replaces a file atomically (a temporary file in the
	// same directory, renamed over it). Params FileWriteRequest; the
	// content as TypeData; result FileWriteResult.
	MethodFileWrite = "file_write"
	// MethodPatchApply applies a unified diff, all or nothing. Params
	// PatchRequest; the patch as TypeData; result PatchResult.
	MethodPatchApply = "patch_apply"
	// MethodDiff compares /workspace with the baseline mounted read-only
	// in the guest. Params DiffRequest; api.DiffEntry lines on TypeStdout;
	// result DiffResult.
	MethodDiff = "diff"
	// MethodGetArchive streams a file or a directory tree out of
	// /workspace as a tar. Params GetArchiveRequest; the tar on
	// TypeStdout; result GetArchiveResult.
	MethodGetArchive = "get_archive"
)

// FileListRequest lists Path: a directory's entries (everything below it
// with Recursive), or the one entry of anything else.
type FileListRequest struct {
	Path      string `json:"path"`
	Recursive bool   `json:"recursive,omitempty"`
	// MaxEntries stops the listing (Truncated) past this many; 0:
	// api.MaxFileListEntries.
	MaxEntries int `json:"max_entries,omitempty"`
	// Skip names entries that are neither listed nor entered (".git").
	Skip []string `json:"skip,omitempty"`
	// FilesOnly lists regular files only.
	FilesOnly bool `json:"files_only,omitempty"`
}

// FileListResult ends a listing.
type FileListResult struct {
	Count     int  `json:"count"`
	Truncated bool `json:"truncated,omitempty"`
}

// FileReadRequest reads at most MaxBytes of a regular file.
type FileReadRequest struct {
	Path     string `json:"path"`
	MaxBytes int64  `json:"max_bytes"`
}

// FileReadResult ends a read: the file's whole size and how much was sent.
type FileReadResult struct {
	Size      int64 `json:"size"`
	Sent      int64 `json:"sent"`
	Truncated bool  `json:"truncated"`
}

// FileWriteRequest writes the stream's data to Path, creating its parent
// directories. Mode 0 keeps an existing file's permission bits (0644 for a
// new file). More than MaxBytes of data fails the write.
type FileWriteRequest struct {
	Path     string `json:"path"`
	Mode     uint32 `json:"mode,omitempty"`
	MaxBytes int64  `json:"max_bytes"`
}

// FileWriteResult says what was written.
type FileWriteResult struct {
	Path    string `json:"path"` // where it was written, after symlinks
	Bytes   int64  `json:"bytes"`
	Mode    uint32 `json:"mode"`
	Created bool   `json:"created"`
}

// PatchRequest applies the stream's data, a unified diff of at most
// MaxBytes, under /workspace.
type PatchRequest struct {
	MaxBytes int64 `json:"max_bytes"`
}

// PatchResult lists the files the patch changed.
type PatchResult struct {
	Files []api.PatchFile `json:"files"`
}

// DiffRequest compares Paths (none: all of /workspace) with the baseline.
type DiffRequest struct {
	Paths []string `json:"paths,omitempty"`
	// NoPatch leaves out the patch text; NameOnly also the line counts.
	NoPatch  bool `json:"no_patch,omitempty"`
	NameOnly bool `json:"name_only,omitempty"`
}

// DiffResult ends a diff.
type DiffResult struct {
	Count int `json:"count"`
}

// GetArchiveRequest exports Path. A directory's members are named
// relative to it; anything else is one member named after Path's last
// component. Symlinks are members, never followed; devices, FIFOs,
// sockets and symlinks that lead out of the exported tree are left out
// and listed in the result.
type GetArchiveRequest struct {
	Path string `json:"path"`
	// MaxBytes is the most of the tar the host takes (OutputCap).
	MaxBytes int64 `json:"max_bytes,omitempty"`
}

// GetArchiveResult ends an export.
type GetArchiveResult struct {
	Type    string             `json:"type"` // api.FileTypeFile, FileTypeDirectory or FileTypeSymlink
	Entries int                `json:"entries"`
	Bytes   int64              `json:"bytes"`
	Skipped []api.SkippedEntry `json:"skipped"`
}

// maxListBytes bounds the JSON lines of one listing or diff the host takes.
const maxListBytes = 256 << 20

// OutputCap is the most output (TypeStdout, and TypeStderr) a request may
// carry back to the host: the one bound that the client and the
// supervisor's relay both enforce, so that a guest cannot make a call
// carry more. An exec's MaxOutput (DefaultMaxOutput when unset); a read's
// MaxBytes; a listing's or a diff's maxListBytes; an export's MaxBytes;
// DefaultMaxOutput for every other method.
func OutputCap(req Request) int64 {
	var p struct {
		MaxOutput int   `json:"max_output"`
		MaxBytes  int64 `json:"max_bytes"`
	}
	json.Unmarshal(req.Params, &p)
	switch req.Method {
	case MethodExec:
		if p.MaxOutput > 0 {
			return int64(p.MaxOutput)
		}
	case MethodFileRead:
		return max(p.MaxBytes, 0)
	case MethodFileList, MethodDiff:
		return maxListBytes
	case MethodGetArchive:
		if p.MaxBytes > 0 {
			return p.MaxBytes
		}
	}
	return DefaultMaxOutput
}

// maxLine bounds one JSON line (a diff entry with its patch).
const maxLine = 64 << 20

// ListFiles lists a directory; each entry is handed to each as it arrives.
func (c *Client) ListFiles(ctx context.Context, req FileListRequest, each func(api.FileEntry) error) (*FileListResult, error) {
	lw := &lineWriter{each: func(line []byte) error {
		var e api.FileEntry
		if err := json.Unmarshal(line, &e); err != nil {
			return err
		}
		return each(e)
	}}
	var r FileListResult
	if _, err := c.call(ctx, MethodFileList, req, &r, nil, false, lw, nil, maxListBytes); err != nil {
		return nil, err
	}
	if err := lw.finish(MethodFileList); err != nil {
		return nil, err
	}
	return &r, nil
}

// ReadFile reads at most req.MaxBytes of a file into w as it arrives;
// the host drops whatever a guest sends past that.
func (c *Client) ReadFile(ctx context.Context, req FileReadRequest, w io.Writer) (*FileReadResult, error) {
	var r FileReadResult
	if _, err := c.call(ctx, MethodFileRead, req, &r, nil, false, w, nil, req.MaxBytes); err != nil {
		return nil, err
	}
	return &r, nil
}

// WriteFile streams content into a file of the guest.
func (c *Client) WriteFile(ctx context.Context, req FileWriteRequest, content io.Reader) (*FileWriteResult, error) {
	var r FileWriteResult
	if _, err := c.call(ctx, MethodFileWrite, req, &r, content, true, nil, nil, 0); err != nil {
		return nil, err
	}
	return &r, nil
}

// ApplyPatch sends a patch for the guest to apply.
func (c *Client) ApplyPatch(ctx context.Context, req PatchRequest, patch io.Reader) (*PatchResult, error) {
	var r PatchResult
	if _, err := c.call(ctx, MethodPatchApply, req, &r, patch, true, nil, nil, 0); err != nil {
		return nil, err
	}
	return &r, nil
}

// Diff compares /workspace with the baseline; each changed file is handed
// to each as it arrives.
func (c *Client) Diff(ctx context.Context, req DiffRequest, each func(api.DiffEntry) error) (*DiffResult, error) {
	lw := &lineWriter{each: func(line []byte) error {
		var e api.DiffEntry
		if err := json.Unmarshal(line, &e); err != nil {
			return err
		}
		return each(e)
	}}
	var r DiffResult
	if _, err := c.call(ctx, MethodDiff, req, &r, nil, false, lw, nil, maxListBytes); err != nil {
		return nil, err
	}
	if err := lw.finish(MethodDiff); err != nil {
		return nil, err
	}
	return &r, nil
}

// GetArchive streams an export's tar into w, at most maxBytes of it (the
// host's own bound: past it the stream is cut and the tar reader fails).
func (c *Client) GetArchive(ctx context.Context, req GetArchiveRequest, w io.Writer, maxBytes int64) (*GetArchiveResult, error) {
	var r GetArchiveResult
	req.MaxBytes = maxBytes
	if _, err := c.call(ctx, MethodGetArchive, req, &r, nil, false, w, nil, maxBytes); err != nil {
		return nil, err
	}
	return &r, nil
}

// lineWriter splits a stream into lines and hands each to each. The first
// error (a line that does not decode, one too long) sticks: the rest of the
// stream is dropped and finish reports it.
type lineWriter struct {
	each func([]byte) error
	buf  []byte
	err  error
}

func (w *lineWriter) Write(p []byte) (int, error) {
	n := len(p)
	for w.err == nil && len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			w.buf = append(w.buf, p...)
			if len(w.buf) > maxLine {
				w.err = errLongLine
			}
			break
		}
		line := p[:i]
		if len(w.buf) > 0 {
			w.buf = append(w.buf, line...)
			line = w.buf
		}
		if err := w.each(line); err != nil {
			w.err = err
		}
		w.buf = w.buf[:0]
		p = p[i+1:]
	}
	return n, nil
}

var errLongLine = errdefs.New(errdefs.ErrUnavailable, "", "an entry longer than the host accepts")

func (w *lineWriter) finish(method string) error {
	if w.err == nil && len(w.buf) > 0 {
		w.err = io.ErrUnexpectedEOF
	}
	if w.err != nil {
		return errdefs.Wrap(errdefs.ErrUnavailable, w.err, "the guest agent sent what the host cannot read; if the guest runs untrusted code, treat it as hostile",
			"agent %s: bad answer", method)
	}
	return nil
}
