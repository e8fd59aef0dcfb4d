// Package archive owns turning what a user hands pyro on the host (a
// directory, or a local .tar, .tar.gz or .tgz) into one normalised tar stream
// for the guest, after checking every member: nothing that could escape the
// destination, no devices or FIFOs, nothing beyond the size limits. It also
// owns that member policy (member.go), which the guest agent applies again
// before it writes anything; this side fails early and clearly.
package archive

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/pyro-mcp/pyro/internal/errdefs"
)

// Source kinds, as reported in workspace_seed.mode.
const (
	ModeDirectory  = "directory"
	ModeTarArchive = "tar_archive"
)

// Limits bound what one seed or sync may carry.
type Limits struct {
	MaxBytes   int64 // total size of regular files
	MaxEntries int
	// Hint is what to do past a limit; "" says to sync a smaller tree.
	Hint string
}

// DefaultLimits are documented in docs/reference/workspace.md.
var DefaultLimits = Limits{MaxBytes: 2 << 30, MaxEntries: 200000}

// Stats describe a stream.
type Stats struct {
	Mode    string `json:"mode"`
	Entries int    `json:"entries"`
	Bytes   int64  `json:"bytes"`
	Digest  string `json:"digest"` // sha256 of the normalised tar stream
}

// Kind tells what src is, or fails with a clear error.
func Kind(src string) (string, error) {
	fi, err := os.Stat(src)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", errdefs.New(errdefs.ErrNotFound, "check the path", "source path %s does not exist", src)
		}
		return "", errdefs.Wrap(errdefs.ErrInvalidArgument, err, "check its permissions", "cannot read source path %s", src)
	}
	if fi.IsDir() {
		f, err := openNonblock(src)
		if err != nil {
			return "", errdefs.Wrap(errdefs.ErrInvalidArgument, err, "check its permissions", "cannot read source directory %s", src)
		}
		f.Close()
		return ModeDirectory, nil
	}
	lower := strings.ToLower(src)
	if fi.Mode().IsRegular() && (strings.HasSuffix(lower, ".tar") || strings.HasSuffix(lower, ".tar.gz") || strings.HasSuffix(lower, ".tgz")) {
		f, err := openNonblock(src)
		if err != nil {
			return "", errdefs.Wrap(errdefs.ErrInvalidArgument, err, "check its permissions", "cannot read archive %s", src)
		}
		f.Close()
		return ModeTarArchive, nil
	}
	return "", errdefs.New(errdefs.ErrInvalidArgument, "give a directory or a .tar, .tar.gz or .tgz archive",
		"%s is neither a directory nor a supported archive", src)
}

// openNonblock opens p for reading without blocking, should a FIFO have
// taken its place since it was looked at (what is read is checked later).
func openNonblock(p string) (*os.File, error) {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: p, Err: err}
	}
	return os.NewFile(uintptr(fd), p), nil
}

// Check validates src completely without producing anything.
func Check(ctx context.Context, src string, lim Limits) (Stats, error) {
	return Write(ctx, src, io.Discard, lim)
}

// Validate checks src under the member policy and limits without reading
// a directory's file contents or hashing anything: a tree's names, types,
// sizes and links, or an archive's members. Its Stats carry no digest.
// Write validates again as it streams, so a tree that changes in between
// is still caught.
func Validate(ctx context.Context, src string, lim Limits) (Stats, error) {
	mode, err := Kind(src)
	if err != nil {
		return Stats{}, err
	}
	walk := walkDir
	if mode == ModeTarArchive {
		walk = copyArchive
	}
	st, err := walk(ctx, src, nil, lim)
	if err != nil {
		return Stats{}, err
	}
	st.Mode = mode
	return st, nil
}

// Write validates src and writes it to w as a normalised tar stream
// (relative names, regular files, directories and safe symlinks only). For
// an archive the whole input is checked before the first byte is written.
func Write(ctx context.Context, src string, w io.Writer, lim Limits) (Stats, error) {
	mode, err := Kind(src)
	if err != nil {
		return Stats{}, err
	}
	walk := walkDir
	if mode == ModeTarArchive {
		walk = copyArchive
	}
	if _, err := walk(ctx, src, nil, lim); err != nil {
		return Stats{}, err
	}
	return emit(w, mode, func(tw *tar.Writer) (Stats, error) { return walk(ctx, src, tw, lim) })
}

// emit writes one normalised tar stream to w and its digest into the
// stats write returns.
func emit(w io.Writer, mode string, write func(*tar.Writer) (Stats, error)) (Stats, error) {
	h := sha256.New()
	bw := bufio.NewWriterSize(io.MultiWriter(w, h), 256<<10)
	tw := tar.NewWriter(bw)
	st, err := write(tw)
	if err != nil {
		return Stats{}, err
	}
	if err := tw.Close(); err != nil {
		return Stats{}, err
	}
	if err := bw.Flush(); err != nil {
		return Stats{}, err
	}
	st.Mode = mode
	st.Digest = "sha256:" + hex.EncodeToString(h.Sum(nil))
	return st, nil
}

func reject(name, why string) error {
	return errdefs.New(errdefs.ErrInvalidArgument, "remove or fix that entry and try again; nothing was written",
		"refusing %q: %s", name, why)
}

// refused turns a member policy error into the host's wording.
func refused(err error) error {
	var me *MemberError
	if errors.As(err, &me) {
		return reject(me.Name, me.Reason)
	}
	return err
}

type counter struct {
	st  Stats
	lim Limits
}

func (c *counter) add(name string, size int64) error {
	c.st.Entries++
	c.st.Bytes += size
	hint := c.lim.Hint
	if hint == "" {
		hint = "sync a smaller tree"
	}
	if c.lim.MaxEntries > 0 && c.st.Entries > c.lim.MaxEntries {
		return errdefs.New(errdefs.ErrInvalidArgument, hint, "more than %d entries (limit)", c.lim.MaxEntries)
	}
	if c.lim.MaxBytes > 0 && c.st.Bytes > c.lim.MaxBytes {
		return errdefs.New(errdefs.ErrInvalidArgument, hint, "content exceeds the %d-byte limit at %q", c.lim.MaxBytes, name)
	}
	return nil
}

// walkDir validates (tw == nil) or writes the tree under root.
func walkDir(ctx context.Context, root string, tw *tar.Writer, lim Limits) (Stats, error) {
	var names []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return errdefs.Wrap(errdefs.ErrInvalidArgument, err, "check permissions in the source tree", "reading %s", p)
		}
		if p != root {
			names = append(names, p)
		}
		return nil
	})
	if err != nil {
		return Stats{}, err
	}
	sort.Strings(names)
	rels := make([]string, len(names))
	for i, p := range names {
		rel, _ := filepath.Rel(root, p)
		rels[i] = filepath.ToSlash(rel)
	}
	return writeEntries(ctx, root, rels, tw, lim)
}

// writeEntries validates (tw == nil) or writes the entries rels (slash
// separated, relative to root, parents before children) as they are on
// disk, under the one member policy (Tree) that the guest applies too.
func writeEntries(ctx context.Context, root string, rels []string, tw *tar.Writer, lim Limits) (Stats, error) {
	c := &counter{lim: lim}
	tree := NewTree(TreeOptions{})
	for _, rel := range rels {
		if err := ctx.Err(); err != nil {
			return Stats{}, err
		}
		p := filepath.Join(root, filepath.FromSlash(rel))
		fi, err := os.Lstat(p)
		if err != nil {
			return Stats{}, errdefs.Wrap(errdefs.ErrInvalidArgument, err, "", "reading %s", p)
		}
		hdr := &tar.Header{Name: rel, Mode: int64(fi.Mode().Perm()), ModTime: fi.ModTime(), Format: tar.FormatPAX}
		switch {
		case fi.IsDir():
			hdr.Typeflag = tar.TypeDir
		case fi.Mode().IsRegular():
			hdr.Typeflag, hdr.Size = tar.TypeReg, fi.Size()
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return Stats{}, err
			}
			hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, target
		default:
			return Stats{}, reject(rel, "not a regular file, directory or symlink (device, FIFO or socket)")
		}
		if _, _, err := tree.Add(hdr); err != nil {
			return Stats{}, refused(err)
		}
		if hdr.Typeflag == tar.TypeDir {
			hdr.Name = rel + "/"
		}
		if err := c.add(rel, hdr.Size); err != nil {
			return Stats{}, err
		}
		if tw == nil {
			continue
		}
		var f *os.File
		if hdr.Typeflag == tar.TypeReg {
			// Open what was checked, not what may have been swapped in
			// since (a symlink, or a FIFO that would block the read).
			if f, err = openChecked(root, rel, p, fi); err != nil {
				return Stats{}, err
			}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			closeFile(f)
			return Stats{}, err
		}
		if f != nil {
			_, err = io.CopyN(tw, f, hdr.Size)
			f.Close()
			if err != nil {
				return Stats{}, fmt.Errorf("reading %s: %w", p, err)
			}
		}
	}
	if err := tree.Finish(); err != nil {
		return Stats{}, refused(err)
	}
	return c.st, nil
}

func closeFile(f *os.File) {
	if f != nil {
		f.Close()
	}
}

// openChecked opens the regular file p (rel under the tree's root) for
// reading without following a symlink in any component of rel and without
// blocking on a FIFO, and refuses it unless it is the very file want
// describes (same device, inode and size). Where the kernel has openat2
// (5.6+), rel is resolved beneath root with RESOLVE_NO_SYMLINKS, so a
// parent directory swapped for a symlink is refused too; elsewhere only
// the last component is protected (O_NOFOLLOW) and the inode check does
// the rest.
func openChecked(root, rel, p string, want fs.FileInfo) (*os.File, error) {
	fd, err := openBeneath(root, rel)
	if errors.Is(err, unix.ENOSYS) {
		fd, err = unix.Open(p, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.EXDEV) {
			return nil, changed(p, "it, or a directory above it, became a symlink")
		}
		return nil, errdefs.Wrap(errdefs.ErrInvalidArgument, err, "check its permissions", "reading %s", p)
	}
	f := os.NewFile(uintptr(fd), p)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		f.Close()
		return nil, fmt.Errorf("reading %s: %w", p, err)
	}
	ws, ok := want.Sys().(*syscall.Stat_t)
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		f.Close()
		return nil, changed(p, "it is no longer a regular file")
	case ok && (uint64(st.Dev) != uint64(ws.Dev) || st.Ino != ws.Ino):
		f.Close()
		return nil, changed(p, "another file took its place")
	case st.Size != want.Size():
		f.Close()
		return nil, changed(p, fmt.Sprintf("its size went from %d to %d bytes", want.Size(), st.Size))
	}
	return f, nil
}

// openBeneath opens rel under the directory root with openat2, refusing
// symlinks in every component and anything outside root.
func openBeneath(root, rel string) (int, error) {
	dfd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	defer unix.Close(dfd)
	return unix.Openat2(dfd, rel, &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_NOFOLLOW | unix.O_NONBLOCK | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
}

func changed(p, why string) error {
	return errdefs.New(errdefs.ErrConflict, "let the source tree settle (or copy it first) and retry",
		"%s changed while it was read: %s", p, why)
}

// copyArchive validates (tw == nil) or re-writes a local tar archive.
func copyArchive(ctx context.Context, src string, tw *tar.Writer, lim Limits) (Stats, error) {
	f, err := openArchive(src)
	if err != nil {
		return Stats{}, err
	}
	defer f.Close()
	var r io.Reader = bufio.NewReaderSize(f, 256<<10)
	lower := strings.ToLower(src)
	if strings.HasSuffix(lower, ".gz") || strings.HasSuffix(lower, ".tgz") {
		gz, err := gzip.NewReader(r)
		if err != nil {
			return Stats{}, errdefs.Wrap(errdefs.ErrInvalidArgument, err, "check the file is a gzip-compressed tar", "reading %s", src)
		}
		defer gz.Close()
		r = gz
	}
	tr := tar.NewReader(r)
	c := &counter{lim: lim}
	err = eachMember(ctx, tr, func(err error) error {
		return errdefs.Wrap(errdefs.ErrInvalidArgument, err, "check the archive is a valid tar", "reading %s", src)
	}, func(hdr *tar.Header, m Member) error {
		out := &tar.Header{Name: m.Name, Typeflag: m.Type, Linkname: m.Linkname, Mode: hdr.Mode & 0o7777, ModTime: hdr.ModTime, Format: tar.FormatPAX}
		switch m.Type {
		case tar.TypeDir:
			out.Name = m.Name + "/"
		case tar.TypeReg:
			out.Size = hdr.Size
		}
		if err := c.add(m.Name, out.Size); err != nil {
			return err
		}
		if tw == nil {
			if out.Typeflag == tar.TypeReg {
				if _, err := io.Copy(io.Discard, tr); err != nil {
					return errdefs.Wrap(errdefs.ErrInvalidArgument, err, "", "reading %s", src)
				}
			}
			return nil
		}
		if err := tw.WriteHeader(out); err != nil {
			return err
		}
		if out.Typeflag == tar.TypeReg {
			if _, err := io.CopyN(tw, tr, out.Size); err != nil {
				return errdefs.Wrap(errdefs.ErrInvalidArgument, err, "", "reading %s", src)
			}
		}
		return nil
	})
	if err != nil {
		return Stats{}, err
	}
	return c.st, nil
}

// openArchive opens the archive file src (a symlink the user named is
// followed) without blocking on a FIFO swapped in after Kind looked, and
// refuses anything but a regular file.
func openArchive(src string) (*os.File, error) {
	fd, err := unix.Open(src, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, errdefs.Wrap(errdefs.ErrInvalidArgument, err, "check its permissions", "cannot read archive %s", src)
	}
	f := os.NewFile(uintptr(fd), src)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		f.Close()
		return nil, changed(src, "it is no longer a regular file")
	}
	return f, nil
}
