package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/pyro-mcp/pyro/api"
	"github.com/pyro-mcp/pyro/internal/archive"
	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/progress"
)

// stepImage is the step of the disk phase where mkfs.ext4 builds
// /workspace's filesystem.
const stepImage = "image"

// stagedSeed is a seed checked and unpacked on the host, in a private
// directory, ready for mkfs.
type stagedSeed struct {
	dir   string // holds "workspace", the tree
	stats archive.Stats
}

func (s *stagedSeed) tree() string {
	if s == nil {
		return ""
	}
	return filepath.Join(s.dir, "workspace")
}

func (s *stagedSeed) remove() {
	if s != nil {
		os.RemoveAll(s.dir)
	}
}

// stageSeed checks src and unpacks it into a private staging directory:
// archive.Write reads the source (a directory with the hardened walk, an
// archive member by member) into a normalised tar stream, and
// archive.Extract checks it again while unpacking it; the host's tar is
// never run. Nothing outside the staging directory is created, so a bad
// seed changes nothing. Its stats are the stream's (the digest is
// workspace_seed's, as a sync push would report it).
func (e *Engine) stageSeed(ctx context.Context, src string) (*stagedSeed, error) {
	op := progress.From(ctx)
	op.Phase(phaseSeed)
	total := countEntries(src)
	dir, err := os.MkdirTemp(stagingDir(e.layers.Dir), ".pyro-seed-")
	if err != nil {
		return nil, fmt.Errorf("staging the seed: %w", err)
	}
	s := &stagedSeed{dir: dir}
	if err := os.Mkdir(s.tree(), 0o755); err != nil {
		s.remove()
		return nil, err
	}
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		var err error
		s.stats, err = archive.Write(ctx, src, pw, archive.DefaultLimits)
		pw.CloseWithError(err)
		done <- err
	}()
	n, xerr := archive.Extract(ctx, pr, s.tree(), archive.DefaultLimits, func(n int64) { op.Count(api.UnitFiles, n, total) })
	pr.CloseWithError(io.ErrClosedPipe)
	werr := <-done
	switch {
	case werr != nil:
		s.remove()
		return nil, werr
	case xerr != nil && errors.Is(xerr, errdefs.ErrInvalidArgument):
		s.remove()
		return nil, xerr
	case xerr != nil:
		s.remove()
		return nil, errdefs.Wrap(errdefs.ErrInternal, xerr, "check free space in /dev/shm or pyro's state directory", "staging the seed")
	}
	op.Count(api.UnitFiles, int64(n.Entries), int64(n.Entries))
	return s, nil
}

// countEntries counts what a directory seed holds, for progress: names
// only (no stat), a fraction of the time the staging takes. 0 for an
// archive (known once read) or on any error.
func countEntries(src string) int64 {
	var n int64
	fi, err := os.Stat(src)
	if err != nil || !fi.IsDir() {
		return 0
	}
	if filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != src {
			n++
		}
		return nil
	}) != nil {
		return 0
	}
	return n
}

// stagingDir is where seeds are unpacked before mkfs copies them: memory
// (/dev/shm) when it has room for the largest seed four times over, since
// creating files is what staging does and a disk makes each one cost
// (10,000 files: ~0.5 s on tmpfs, 4-7 s on this host's disk under load);
// else beside the pool. Either way the directory is private (MkdirTemp: a
// fresh name, mode 0700) and removed as soon as the image is built.
func stagingDir(fallback string) string {
	const shm = "/dev/shm"
	var st unix.Statfs_t
	if unix.Statfs(shm, &st) != nil || st.Type != unix.TMPFS_MAGIC {
		return fallback
	}
	if int64(st.Bavail)*st.Bsize < 4*archive.DefaultLimits.MaxBytes {
		return fallback
	}
	return shm
}

// buildSeedLayer makes the pool layer name: a sparse raw ext4 filesystem
// of sizeGiB built on the host from a staged seed (nil: empty).
func (e *Engine) buildSeedLayer(ctx context.Context, name string, sizeGiB int, staged *stagedSeed) error {
	f, err := e.layers.Create(name)
	if err != nil {
		return fmt.Errorf("creating the seed layer: %w", err)
	}
	err = f.Truncate(int64(sizeGiB) << 30)
	f.Close()
	if err != nil {
		return errdefs.Wrap(errdefs.ErrFailedPrecondition, err, "use a smaller `disk_gib` or free disk space", "sizing the workspace disk")
	}
	progress.From(ctx).PhaseStep(phaseDisk, stepImage)
	return mkfsWorkspace(ctx, e.layers.Path(name), staged.tree())
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
