package engine

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/pyro-mcp/pyro/api"
	"github.com/pyro-mcp/pyro/internal/agent"
	"github.com/pyro-mcp/pyro/internal/agentproto"
	"github.com/pyro-mcp/pyro/internal/archive"
	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/progress"
)

// phaseExport copies a workspace's files out to the host.
const phaseExport = "export"

// exportLimits are a sync push's limits, enforced on the host while the
// export is written.
var exportLimits = archive.Limits{MaxBytes: archive.DefaultLimits.MaxBytes, MaxEntries: archive.DefaultLimits.MaxEntries,
	Hint: "export a smaller directory, or the parts of it you need one by one; nothing was written"}

// ExportWorkspace copies path (a file or a directory under /workspace)
// out to the host at output: as the file or directory itself, or as a
// .tar / .tar.gz / .tgz archive when the output's name says so. The guest
// streams a tar; the host checks every member with the archive policy and
// the limits of a sync push while it writes into a private directory
// beside output, and renames the result into place only when all of it is
// there. It never replaces an existing output without o.Force, and never
// writes through a symlink at output (it is replaced, with Force, itself).
func (e *Engine) ExportWorkspace(ctx context.Context, ref, p, output string, o api.ExportOptions) (*api.ExportResult, error) {
	defer e.enter()()
	ctx, op := e.start(ctx, "workspace export", phaseBoot, phaseExport)
	guest, err := agent.CleanWorkspacePath(p)
	if err != nil {
		return nil, err
	}
	if output == "" {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "give the host path to write to (`output_path`)", "no output path")
	}
	out, err := filepath.Abs(output)
	if err != nil {
		return nil, errdefs.Wrap(errdefs.ErrInvalidArgument, err, "", "output path %q", output)
	}
	if err := checkOutput(out, o.Force); err != nil {
		return nil, err
	}
	fop, err := e.beginFileOp(ref)
	if err != nil {
		return nil, err
	}
	defer fop.end()
	res := &api.ExportResult{Path: guest, OutputPath: out, Format: archiveFormat(out), Skipped: []api.SkippedEntry{}}
	rec, err := e.onGuest(ctx, fop.id, false, func(ctx context.Context, c *agentproto.Client, _ *vmRecord, touch func()) error {
		op.Phase(phaseExport)
		return e.export(ctx, c, guest, out, o.Force, res, touch)
	})
	ev := &api.FileEvent{Path: guest, OutputPath: out, Entries: res.Entries, Bytes: res.Bytes, Skipped: len(res.Skipped)}
	if err := fop.log(api.LogExport, ev, err); err != nil {
		return nil, err
	}
	res.WorkspaceID, res.DurationMs = rec.ID, op.Elapsed().Milliseconds()
	op.Done()
	return res, nil
}

// archiveFormat is the export format output's name asks for, or "" for
// the file or directory itself.
func archiveFormat(out string) string {
	lower := strings.ToLower(out)
	switch {
	case strings.HasSuffix(lower, ".tar.gz"), strings.HasSuffix(lower, ".tgz"):
		return api.ExportTarGz
	case strings.HasSuffix(lower, ".tar"):
		return api.ExportTar
	}
	return ""
}

// checkOutput refuses an output that exists (without force) or whose
// directory does not.
func checkOutput(out string, force bool) error {
	if _, err := os.Lstat(out); err == nil && !force {
		return errdefs.New(errdefs.ErrAlreadyExists, "pick another path, or replace it with `force`", "%s already exists", out)
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return errdefs.Wrap(errdefs.ErrInvalidArgument, err, "", "checking %s", out)
	}
	if fi, err := os.Stat(filepath.Dir(out)); err != nil || !fi.IsDir() {
		return errdefs.New(errdefs.ErrInvalidArgument, "create the directory first, or give a path in one that exists",
			"the directory of %s does not exist", out)
	}
	return nil
}

// export runs one export: the guest's tar into a private staging
// directory beside out, checked as it is written, then into place.
func (e *Engine) export(ctx context.Context, c *agentproto.Client, guest, out string, force bool, res *api.ExportResult, touch func()) error {
	stage, err := os.MkdirTemp(filepath.Dir(out), ".pyro-export-")
	if err != nil {
		return errdefs.Wrap(errdefs.ErrInvalidArgument, err, "give a path in a directory you can write", "writing %s", out)
	}
	defer os.RemoveAll(stage)
	op := progress.From(ctx)
	onEntry := func(_, n int64) { op.Count(api.UnitBytes, n, 0) }
	// The consumer's failure cancels the guest's side.
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pr, pw := io.Pipe()
	type outcome struct {
		st  archive.Stats
		err error
	}
	done := make(chan outcome, 1)
	root := filepath.Join(stage, "root")
	tarPath := filepath.Join(stage, "export.tar")
	go func() {
		var o outcome
		if res.Format != "" {
			o.st, o.err = writeTar(cctx, pr, tarPath, res.Format == api.ExportTarGz, onEntry)
		} else if o.err = os.Mkdir(root, 0o755); o.err == nil {
			o.st, o.err = archive.Extract(cctx, pr, root, exportLimits, func(int64) {})
		}
		if o.err != nil {
			cancel()
		}
		pr.CloseWithError(io.ErrClosedPipe)
		done <- o
	}()
	maxStream := exportLimits.MaxBytes + int64(exportLimits.MaxEntries)*2048 + 1<<20
	gr, gerr := c.GetArchive(cctx, agentproto.GetArchiveRequest{Path: guest}, &touchWriter{w: pw, touch: touch}, maxStream)
	if gerr != nil {
		pw.CloseWithError(gerr)
	} else {
		pw.Close()
	}
	got := <-done
	if gerr != nil {
		if got.err != nil && cctx.Err() != nil && ctx.Err() == nil {
			return exportErr(out, got.err) // the host refused what came, and stopped the guest
		}
		return gerr
	}
	if got.err != nil {
		return exportErr(out, got.err)
	}
	res.Entries, res.Bytes, res.Skipped = got.st.Entries, got.st.Bytes, gr.Skipped
	if res.Format == "" {
		res.Format = api.ExportDirectory
		if gr.Type != api.FileTypeDirectory {
			res.Format = api.ExportFile
		}
	}
	if got.st.Entries == 0 && gr.Type != api.FileTypeDirectory {
		why := "it could not be read"
		if len(gr.Skipped) > 0 {
			why = gr.Skipped[0].Reason
		}
		return errdefs.New(errdefs.ErrInvalidArgument, "export a regular file or a directory", "nothing exported from %s: %s", guest, why)
	}
	src := tarPath
	switch res.Format {
	case api.ExportDirectory:
		src = root
	case api.ExportFile:
		src = filepath.Join(root, path.Base(guest))
	}
	return place(src, out, force, stage)
}

// writeTar copies the checked members to a new tar (gzipped with gz).
func writeTar(ctx context.Context, r io.Reader, dst string, gz bool, onEntry func(entries, bytes int64)) (archive.Stats, error) {
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return archive.Stats{}, err
	}
	defer f.Close()
	var w io.Writer = f
	var zw *gzip.Writer
	if gz {
		zw = gzip.NewWriter(f)
		w = zw
	}
	tw := tar.NewWriter(w)
	st, err := archive.Copy(ctx, r, tw, exportLimits, onEntry)
	if err != nil {
		return st, err
	}
	if err := tw.Close(); err != nil {
		return st, err
	}
	if zw != nil {
		if err := zw.Close(); err != nil {
			return st, err
		}
	}
	return st, f.Close()
}

func exportErr(out string, err error) error {
	switch {
	case errors.Is(err, unix.ENOSPC):
		return errdefs.Wrap(errdefs.ErrUnavailable, err, "free space on the host where you export to; nothing was written", "writing %s", out)
	case errdefs.ClassOf(err) != errdefs.ErrInternal:
		return err
	}
	return errdefs.Wrap(errdefs.ErrInternal, err, "", "writing %s", out)
}

// place renames src to out: never over an existing out without force;
// with force the old out (a file, a directory, or a symlink itself, never
// what it points to) is moved into the staging directory first.
func place(src, out string, force bool, stage string) error {
	if force {
		if _, err := os.Lstat(out); err == nil {
			if err := os.Rename(out, filepath.Join(stage, "old")); err != nil {
				return errdefs.Wrap(errdefs.ErrInvalidArgument, err, "", "replacing %s", out)
			}
		}
	}
	err := unix.Renameat2(unix.AT_FDCWD, src, unix.AT_FDCWD, out, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		// A filesystem without RENAME_NOREPLACE: check, then rename.
		if _, lerr := os.Lstat(out); lerr == nil {
			err = unix.EEXIST
		} else {
			err = os.Rename(src, out)
		}
	}
	if errors.Is(err, unix.EEXIST) {
		return errdefs.New(errdefs.ErrAlreadyExists, "pick another path, or replace it with `force`", "%s already exists", out)
	}
	if err != nil {
		return errdefs.Wrap(errdefs.ErrInvalidArgument, err, "", "writing %s", out)
	}
	return nil
}

// touchWriter calls touch on every write.
type touchWriter struct {
	w     io.Writer
	touch func()
}

func (t *touchWriter) Write(p []byte) (int, error) {
	t.touch()
	return t.w.Write(p)
}
