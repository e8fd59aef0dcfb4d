// Package archive owns turning what a user hands pyro on the host (a
// directory, or a local .tar, .tar.gz or .tgz) into one normalised tar stream
// for the guest, after checking every member: nothing that could escape the
// destination, no devices or FIFOs, nothing beyond the size limits. The guest
// checks again before it writes anything; this side fails early and clearly.
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
	"path"
	"path/filepath"
	"sort"
	"strings"

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
		f, err := os.Open(src)
		if err != nil {
			return "", errdefs.Wrap(errdefs.ErrInvalidArgument, err, "check its permissions", "cannot read source directory %s", src)
		}
		f.Close()
		return ModeDirectory, nil
	}
	lower := strings.ToLower(src)
	if fi.Mode().IsRegular() && (strings.HasSuffix(lower, ".tar") || strings.HasSuffix(lower, ".tar.gz") || strings.HasSuffix(lower, ".tgz")) {
		f, err := os.Open(src)
		if err != nil {
			return "", errdefs.Wrap(errdefs.ErrInvalidArgument, err, "check its permissions", "cannot read archive %s", src)
		}
		f.Close()
		return ModeTarArchive, nil
	}
	return "", errdefs.New(errdefs.ErrInvalidArgument, "give a directory or a .tar, .tar.gz or .tgz archive",
		"%s is neither a directory nor a supported archive", src)
}

// Check validates src completely without producing anything.
func Check(ctx context.Context, src string, lim Limits) (Stats, error) {
	return Write(ctx, src, io.Discard, lim)
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

// checkName validates a member name and returns it cleaned.
func checkName(name string) (string, error) {
	if name == "" {
		return "", reject(name, "empty name")
	}
	if strings.HasPrefix(name, "/") {
		return "", reject(name, "absolute path")
	}
	for _, part := range strings.Split(name, "/") {
		if part == ".." {
			return "", reject(name, "path escapes the destination (..)")
		}
	}
	clean := path.Clean(name)
	if clean == "." {
		return clean, nil
	}
	return clean, nil
}

// checkLink validates that a link target stays inside the destination.
func checkLink(name, target string, hard bool) error {
	if target == "" {
		return reject(name, "empty link target")
	}
	if path.IsAbs(target) {
		return reject(name, fmt.Sprintf("link to absolute path %s leaves the destination", target))
	}
	base := path.Dir(name)
	if hard {
		base = "."
	}
	resolved := path.Join(base, target)
	if resolved == ".." || strings.HasPrefix(resolved, "../") {
		return reject(name, fmt.Sprintf("link to %s leaves the destination", target))
	}
	return nil
}

type counter struct {
	st  Stats
	lim Limits
}

func (c *counter) add(name string, size int64) error {
	c.st.Entries++
	c.st.Bytes += size
	if c.lim.MaxEntries > 0 && c.st.Entries > c.lim.MaxEntries {
		return errdefs.New(errdefs.ErrInvalidArgument, "sync a smaller tree", "more than %d entries (limit)", c.lim.MaxEntries)
	}
	if c.lim.MaxBytes > 0 && c.st.Bytes > c.lim.MaxBytes {
		return errdefs.New(errdefs.ErrInvalidArgument, "sync a smaller tree", "content exceeds the %d-byte limit at %q", c.lim.MaxBytes, name)
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
// disk.
func writeEntries(ctx context.Context, root string, rels []string, tw *tar.Writer, lim Limits) (Stats, error) {
	c := &counter{lim: lim}
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
			hdr.Typeflag, hdr.Name = tar.TypeDir, rel+"/"
		case fi.Mode().IsRegular():
			hdr.Typeflag, hdr.Size = tar.TypeReg, fi.Size()
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return Stats{}, err
			}
			if err := checkLink(rel, target, false); err != nil {
				return Stats{}, err
			}
			hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, target
		default:
			return Stats{}, reject(rel, "not a regular file, directory or symlink (device, FIFO or socket)")
		}
		if err := c.add(rel, hdr.Size); err != nil {
			return Stats{}, err
		}
		if tw == nil {
			continue
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return Stats{}, err
		}
		if hdr.Typeflag == tar.TypeReg {
			f, err := os.Open(p)
			if err != nil {
				return Stats{}, errdefs.Wrap(errdefs.ErrInvalidArgument, err, "", "reading %s", p)
			}
			_, err = io.CopyN(tw, f, hdr.Size)
			f.Close()
			if err != nil {
				return Stats{}, fmt.Errorf("reading %s: %w", p, err)
			}
		}
	}
	return c.st, nil
}

// copyArchive validates (tw == nil) or re-writes a local tar archive.
func copyArchive(ctx context.Context, src string, tw *tar.Writer, lim Limits) (Stats, error) {
	f, err := os.Open(src)
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
	for {
		if err := ctx.Err(); err != nil {
			return Stats{}, err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return Stats{}, errdefs.Wrap(errdefs.ErrInvalidArgument, err, "check the archive is a valid tar", "reading %s", src)
		}
		name, err := checkName(hdr.Name)
		if err != nil {
			return Stats{}, err
		}
		if name == "." {
			continue
		}
		out := &tar.Header{Name: name, Mode: hdr.Mode & 0o7777, ModTime: hdr.ModTime, Format: tar.FormatPAX}
		switch hdr.Typeflag {
		case tar.TypeDir:
			out.Typeflag, out.Name = tar.TypeDir, name+"/"
		case tar.TypeReg, tar.TypeRegA:
			out.Typeflag, out.Size = tar.TypeReg, hdr.Size
		case tar.TypeSymlink:
			if err := checkLink(name, hdr.Linkname, false); err != nil {
				return Stats{}, err
			}
			out.Typeflag, out.Linkname = tar.TypeSymlink, hdr.Linkname
		case tar.TypeLink:
			target, err := checkName(hdr.Linkname)
			if err != nil {
				return Stats{}, reject(name, "hard link "+err.Error())
			}
			if err := checkLink(name, target, true); err != nil {
				return Stats{}, err
			}
			out.Typeflag, out.Linkname = tar.TypeLink, target
		case tar.TypeXGlobalHeader, tar.TypeXHeader:
			continue
		default:
			return Stats{}, reject(name, "device nodes, FIFOs and other special files are not allowed")
		}
		if err := c.add(name, out.Size); err != nil {
			return Stats{}, err
		}
		if tw == nil {
			if out.Typeflag == tar.TypeReg {
				if _, err := io.Copy(io.Discard, tr); err != nil {
					return Stats{}, errdefs.Wrap(errdefs.ErrInvalidArgument, err, "", "reading %s", src)
				}
			}
			continue
		}
		if err := tw.WriteHeader(out); err != nil {
			return Stats{}, err
		}
		if out.Typeflag == tar.TypeReg {
			if _, err := io.CopyN(tw, tr, out.Size); err != nil {
				return Stats{}, errdefs.Wrap(errdefs.ErrInvalidArgument, err, "", "reading %s", src)
			}
		}
	}
	return c.st, nil
}
