package archive

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/pyro-mcp/pyro/internal/errdefs"
)

// Extract unpacks a normalised tar stream (what Write produces) into dir,
// an empty directory private to the caller, on the host: this is how a
// workspace's seed becomes a disk image without a guest or the host's tar.
// It checks every member again as it goes, whatever produced the stream:
// names stay under dir; no member is written through a symlink or a
// non-directory made by an earlier member; hard links name an earlier
// regular file; only directories, regular files and symlinks are made,
// with permission bits only (no setuid, no owner). Symlinks are made as
// links and never followed. onEntry, when set, hears the count of members
// so far.
func Extract(ctx context.Context, r io.Reader, dir string, lim Limits, onEntry func(n int64)) (Stats, error) {
	tr := tar.NewReader(r)
	c := &counter{lim: lim}
	kinds := map[string]byte{".": tar.TypeDir}
	type dirTime struct {
		path  string
		mode  fs.FileMode
		mtime time.Time
	}
	var dirs []dirTime
	err := eachMember(ctx, tr, func(err error) error {
		return errdefs.Wrap(errdefs.ErrInvalidArgument, err, "check the archive is a valid tar", "reading the seed")
	}, func(hdr *tar.Header, m Member) error {
		name := m.Name
		if err := parentsMade(name, func(p string) bool { return kinds[p] == tar.TypeDir }); err != nil {
			return err
		}
		dst := filepath.Join(dir, filepath.FromSlash(name))
		perm := fs.FileMode(hdr.Mode) & fs.ModePerm
		prev, exists := kinds[name]
		typ := hdr.Typeflag
		if typ == tar.TypeRegA {
			typ = tar.TypeReg
		}
		if exists && (prev == tar.TypeDir) != (typ == tar.TypeDir) {
			return reject(name, "appears twice in the archive, once as a directory")
		}
		var size int64
		if typ == tar.TypeReg {
			size = hdr.Size
		}
		// The limits hold before anything of the member is written.
		if err := c.add(name, size); err != nil {
			return err
		}
		switch typ {
		case tar.TypeDir:
			if perm == 0 {
				perm = 0o755
			}
			if !exists {
				// Owner-writable while its children are made; the real
				// mode is set at the end.
				if err := os.Mkdir(dst, 0o700); err != nil {
					return fmt.Errorf("staging %s: %w", name, err)
				}
			}
			dirs = append(dirs, dirTime{dst, perm, hdr.ModTime})
		case tar.TypeReg:
			if perm == 0 {
				perm = 0o644
			}
			if exists {
				os.Remove(dst)
			}
			if err := writeFile(dst, tr, hdr.Size, perm); err != nil {
				return fmt.Errorf("staging %s: %w", name, err)
			}
			os.Chtimes(dst, hdr.ModTime, hdr.ModTime)
		case tar.TypeSymlink:
			if exists {
				os.Remove(dst)
			}
			if err := os.Symlink(m.Linkname, dst); err != nil {
				return fmt.Errorf("staging %s: %w", name, err)
			}
		case tar.TypeLink:
			target := m.Linkname
			if kinds[target] != tar.TypeReg {
				return reject(name, fmt.Sprintf("hard link to %q, which is not a regular file earlier in the archive", hdr.Linkname))
			}
			if exists {
				os.Remove(dst)
			}
			if err := os.Link(filepath.Join(dir, filepath.FromSlash(target)), dst); err != nil {
				return fmt.Errorf("staging %s: %w", name, err)
			}
			typ = tar.TypeReg
		default:
			return reject(name, "device nodes, FIFOs and other special files are not allowed")
		}
		kinds[name] = typ
		if onEntry != nil {
			onEntry(int64(c.st.Entries))
		}
		return nil
	})
	if err != nil {
		return Stats{}, err
	}
	// Deepest first, so that setting a directory's time is not undone by
	// a child's.
	for i := len(dirs) - 1; i >= 0; i-- {
		d := dirs[i]
		if err := os.Chmod(d.path, d.mode); err != nil {
			return Stats{}, err
		}
		os.Chtimes(d.path, d.mtime, d.mtime)
	}
	return c.st, nil
}

// writeFile creates path (which must not exist; never through a link) with
// exactly n bytes from r.
func writeFile(path string, r io.Reader, n int64, perm fs.FileMode) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY|syscall.O_NOFOLLOW, perm)
	if err != nil {
		return err
	}
	if err := copyContent(f, r, n); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	// The umask may have narrowed perm.
	return os.Chmod(path, perm)
}
