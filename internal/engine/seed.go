package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/pyro-mcp/pyro/api"
	"github.com/pyro-mcp/pyro/internal/archive"
	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/progress"
)

// Steps of the seed phase.
const (
	stepStage = "stage" // the seed is checked and unpacked on the host
	stepImage = "image" // mkfs.ext4 builds the seed layer from it
)

// buildSeedLayer makes the pool layer name: a sparse raw ext4 filesystem
// of sizeGiB that holds the seed (src: a directory or an archive, "" for
// an empty workspace), built on the host. The seed goes through the same
// checks as a sync push: archive.Write reads the source (a directory with
// the hardened walk, an archive member by member) into a normalised tar
// stream, and archive.Extract checks it again while unpacking it into a
// private staging directory; mkfs.ext4 -d then copies that directory,
// which only pyro has written, into the image. The host's tar is never
// run. It returns the stream's stats (its digest is workspace_seed's).
func (e *Engine) buildSeedLayer(ctx context.Context, name string, sizeGiB int, src string, total int) (*archive.Stats, error) {
	f, err := e.layers.Create(name)
	if err != nil {
		return nil, fmt.Errorf("creating the seed layer: %w", err)
	}
	err = f.Truncate(int64(sizeGiB) << 30)
	f.Close()
	if err != nil {
		return nil, errdefs.Wrap(errdefs.ErrFailedPrecondition, err, "use a smaller `disk_gib` or free disk space", "sizing the workspace disk")
	}
	var st *archive.Stats
	stage := ""
	if src != "" {
		dir, err := os.MkdirTemp(e.layers.Dir, ".seed-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		stage = filepath.Join(dir, "workspace")
		if err := os.Mkdir(stage, 0o755); err != nil {
			return nil, err
		}
		if st, err = stageSeed(ctx, src, stage, total); err != nil {
			return nil, err
		}
	}
	progress.From(ctx).PhaseStep(phaseSeed, stepImage)
	if err := mkfsWorkspace(ctx, e.layers.Path(name), stage); err != nil {
		return nil, err
	}
	if st == nil {
		st = &archive.Stats{Mode: api.SeedEmpty}
	}
	return st, nil
}

// stageSeed unpacks src into dir through archive.Write and archive.Extract.
func stageSeed(ctx context.Context, src, dir string, total int) (*archive.Stats, error) {
	op := progress.From(ctx)
	op.PhaseStep(phaseSeed, stepStage)
	pr, pw := io.Pipe()
	var st archive.Stats
	done := make(chan error, 1)
	go func() {
		var err error
		st, err = archive.Write(ctx, src, pw, archive.DefaultLimits)
		pw.CloseWithError(err)
		done <- err
	}()
	_, xerr := archive.Extract(ctx, pr, dir, archive.DefaultLimits, func(n int64) { op.Count(api.UnitFiles, n, int64(total)) })
	pr.CloseWithError(io.ErrClosedPipe)
	werr := <-done
	if werr != nil {
		return nil, werr
	}
	if xerr != nil {
		if errors.Is(xerr, errdefs.ErrInvalidArgument) {
			return nil, xerr
		}
		return nil, errdefs.Wrap(errdefs.ErrInternal, xerr, "check free disk space in pyro's state directory", "staging the seed")
	}
	return &st, nil
}

// mkfsWorkspace formats image as /workspace's filesystem, filled from dir
// when set. The image is a fresh sparse file, so the journal need not be
// zeroed (lazy_journal_init: its blocks already read as zeros), which
// keeps an empty 10 GiB disk at ~4 MiB and ~30 ms; the inode tables are
// zeroed by discard, so the guest has no lazy init to do. lost+found is
// removed so /workspace lists only the user's files (e2fsck -n is clean
// without it).
func mkfsWorkspace(ctx context.Context, image, dir string) error {
	args := []string{"-q", "-F", "-t", "ext4", "-m", "0", "-L", "workspace", "-E", "lazy_journal_init=1,root_owner=0:0"}
	if dir != "" {
		args = append(args, "-d", dir)
	}
	out, err := exec.CommandContext(ctx, "mkfs.ext4", append(args, image)...).CombinedOutput()
	if err != nil {
		return errdefs.Wrap(errdefs.ErrInternal, err, "install e2fsprogs; check free disk space and 'pyro doctor'",
			"building the workspace disk: %s", bytes.TrimSpace(out))
	}
	if dir != "" {
		if _, err := os.Lstat(filepath.Join(dir, "lost+found")); err == nil {
			return nil // the seed has its own
		}
	}
	out, err = exec.CommandContext(ctx, "debugfs", "-w", "-R", "rmdir lost+found", image).CombinedOutput()
	if err != nil {
		return errdefs.Wrap(errdefs.ErrInternal, err, "install e2fsprogs", "building the workspace disk: %s", bytes.TrimSpace(out))
	}
	return nil
}
