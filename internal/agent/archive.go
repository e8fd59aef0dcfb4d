package agent

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/pyro-mcp/pyro/internal/agentproto"
	"github.com/pyro-mcp/pyro/internal/archive"
	"github.com/pyro-mcp/pyro/internal/errdefs"
)

// DefaultMaxArchiveBytes bounds an archive whose request names no limit.
const DefaultMaxArchiveBytes = 4 << 30

func badMember(name, format string, args ...any) error {
	return errdefs.New(errdefs.ErrInvalidArgument, "fix or rebuild the archive; nothing was written",
		"archive member %q: %s", name, fmt.Sprintf(format, args...))
}

// refused turns a member policy error (internal/archive) into the guest's
// wording.
func refused(err error) error {
	var me *archive.MemberError
	if errors.As(err, &me) {
		return badMember(me.Name, "%s", me.Reason)
	}
	return err
}

// putArchive extracts a tar (or gzip'd tar) from in under req.Dest. A
// rejected archive leaves the tree as it was: nothing is written outside a
// private staging directory until the whole archive has been accepted.
//
//  1. archiveTarget checks Dest and Root.
//  2. stageArchive reads the archive as it streams, checks every member
//     against the shared member policy (internal/archive) and writes it
//     into a fresh staging directory under Root (stage.go).
//  3. existing.check compares the members with what is on disk.
//  4. the staging tree is moved into the destination by renames, merging
//     into directories that exist (a re-push updates a tree), and the
//     archive's directories get their modes and times.
//
// Each byte is copied once from the channel into its file: no spool to
// write and read back, no second program (copies and system calls are
// what an emulated guest pays for).
func (h *Handler) putArchive(ctx context.Context, req agentproto.PutArchiveRequest, in io.Reader) (*agentproto.PutArchiveResult, error) {
	// Whatever happens, consume the input so the host's sender finishes.
	defer io.Copy(io.Discard, in)

	t, err := h.archiveTarget(req)
	if err != nil {
		return nil, err
	}
	st, err := newStage(t.hostRoot)
	if err != nil {
		return nil, errdefs.Wrap(errdefs.ErrInternal, err, "", "put_archive: staging")
	}
	defer st.remove()
	res, err := stageArchive(ctx, in, st, t)
	if err != nil {
		return nil, err
	}
	ex := newExisting(t.hostDest)
	for _, m := range res.members {
		if err := ex.check(m); err != nil {
			return nil, err
		}
	}
	if err := st.moveInto(t.hostDest); err != nil {
		return nil, errdefs.Wrap(errdefs.ErrInternal, err, "check free space in the workspace", "put_archive: moving into %s", t.dest)
	}
	st.setDirs(t.hostDest)
	return &agentproto.PutArchiveResult{Bytes: res.bytes, Entries: len(res.members)}, nil
}

// archiveTarget is where one put_archive writes.
type archiveTarget struct {
	dest     string // clean absolute guest path
	hostRoot string // Root under FSRoot
	hostDest string // Dest under FSRoot
	maxBytes int64
}

// archiveTarget checks Dest (absolute, Root or under it, reached through
// real directories only) and Root (an existing directory).
func (h *Handler) archiveTarget(req agentproto.PutArchiveRequest) (archiveTarget, error) {
	root := req.Root
	if root == "" {
		root = "/workspace"
	}
	dest := req.Dest
	if dest == "" {
		dest = root
	}
	if !path.IsAbs(root) || !path.IsAbs(dest) {
		return archiveTarget{}, errdefs.New(errdefs.ErrInvalidArgument, "use an absolute guest path such as /workspace", "put_archive: root %q and dest %q must be absolute", root, dest)
	}
	root, dest = path.Clean(root), path.Clean(dest)
	rel, ok := archive.Within(root, dest)
	if !ok {
		return archiveTarget{}, errdefs.New(errdefs.ErrInvalidArgument, "pick a destination under "+root, "put_archive: dest %s is outside %s", dest, root)
	}
	if err := h.checkNoSymlinks(root, rel); err != nil {
		return archiveTarget{}, err
	}
	t := archiveTarget{dest: dest, hostRoot: h.hostPath(root), hostDest: h.hostPath(dest), maxBytes: req.MaxBytes}
	if fi, err := os.Stat(t.hostRoot); err != nil || !fi.IsDir() {
		return archiveTarget{}, errdefs.New(errdefs.ErrNotFound, "", "put_archive: %s does not exist", root)
	}
	if t.maxBytes <= 0 {
		t.maxBytes = DefaultMaxArchiveBytes
	}
	return t, nil
}

// staged is what stageArchive accepted.
type staged struct {
	members []archive.Member
	bytes   int64
}

// stageArchive reads the whole archive from in, checks every member and
// writes it under the stage (clean relative names, relative symlinks,
// permission bits only, modification times kept). Nothing under the
// destination is touched.
func stageArchive(ctx context.Context, in io.Reader, st *stage, t archiveTarget) (*staged, error) {
	br := bufio.NewReaderSize(in, 64<<10)
	var r io.Reader = br
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, errdefs.Wrap(errdefs.ErrInvalidArgument, err, "", "put_archive: reading gzip")
		}
		r = zr
	}
	tr := tar.NewReader(r)
	tree := archive.NewTree(archive.TreeOptions{Dest: t.dest, Existing: existingLinks(t.hostDest)})
	sp := &staged{}
	for {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, errdefs.Wrap(errdefs.ErrInvalidArgument, err, "send a valid tar archive", "put_archive: reading tar")
		}
		m, skip, err := tree.Add(hdr)
		if err != nil {
			return nil, refused(err)
		}
		if skip {
			continue
		}
		if m.Type == tar.TypeReg {
			sp.bytes += hdr.Size
			if sp.bytes > t.maxBytes {
				return nil, badMember(hdr.Name, "archive exceeds the %d-byte limit", t.maxBytes)
			}
		}
		if err := st.add(m, permBits(m.Type, hdr.Mode), hdr.ModTime, tr, hdr.Size); err != nil {
			var rerr readError
			switch {
			case errors.As(err, &rerr):
				return nil, errdefs.Wrap(errdefs.ErrInvalidArgument, rerr.error, "send a valid tar archive", "put_archive: reading %q", hdr.Name)
			case errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT):
				return nil, errdefs.Wrap(errdefs.ErrFailedPrecondition, err, "free space in the workspace", "put_archive: writing %q", hdr.Name)
			}
			return nil, errdefs.Wrap(errdefs.ErrInternal, err, "", "put_archive: staging %q", hdr.Name)
		}
		sp.members = append(sp.members, m)
	}
	if err := tree.Finish(); err != nil {
		return nil, refused(err)
	}
	return sp, nil
}

// permBits is the mode an accepted member gets: permission bits only, with
// defaults when the archive has none.
func permBits(typ byte, mode int64) uint32 {
	perm := uint32(fs.FileMode(mode) & fs.ModePerm)
	if perm == 0 {
		switch typ {
		case tar.TypeDir:
			perm = 0o755
		case tar.TypeReg:
			perm = 0o644
		}
	}
	return perm
}

// existingLinks lets link resolution see the symlinks already under
// hostDest.
func existingLinks(hostDest string) archive.Existing {
	return func(rel string) (bool, string, bool) {
		p := filepath.Join(hostDest, filepath.FromSlash(rel))
		fi, err := os.Lstat(p)
		if err != nil {
			return false, "", false
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			return false, "", true
		}
		target, err := os.Readlink(p)
		if err != nil {
			return true, "/", true // unreadable: treat as leading out
		}
		return true, target, true
	}
}

// existing answers the questions put_archive asks about the destination,
// remembering what it saw: most members of an archive share their parent
// directories, and system calls are expensive in an emulated guest.
type existing struct {
	hostDest string
	seen     map[string]fs.FileInfo // nil value: nothing there
}

func newExisting(hostDest string) *existing {
	return &existing{hostDest: hostDest, seen: map[string]fs.FileInfo{}}
}

func (e *existing) lstat(rel string) fs.FileInfo {
	if fi, ok := e.seen[rel]; ok {
		return fi
	}
	fi, err := os.Lstat(filepath.Join(e.hostDest, filepath.FromSlash(rel)))
	if err != nil {
		fi = nil
	}
	e.seen[rel] = fi
	return fi
}

// check refuses a member that would go through an existing symlink or
// replace a directory with a non-directory (or the reverse).
func (e *existing) check(m archive.Member) error {
	parts := strings.Split(m.Name, "/")
	for i := range parts {
		fi := e.lstat(strings.Join(parts[:i+1], "/"))
		if fi == nil {
			return nil // does not exist yet: nothing below it does either
		}
		last := i == len(parts)-1
		switch {
		case !last && fi.Mode()&fs.ModeSymlink != 0:
			return badMember(m.Name, "its parent %q is an existing symlink", strings.Join(parts[:i+1], "/"))
		case !last && !fi.IsDir():
			return badMember(m.Name, "its parent %q exists and is not a directory", strings.Join(parts[:i+1], "/"))
		case last && fi.IsDir() && m.Type != tar.TypeDir:
			return badMember(m.Name, "an existing directory is in the way")
		case last && !fi.IsDir() && m.Type == tar.TypeDir:
			return badMember(m.Name, "an existing file is in the way of this directory")
		}
	}
	return nil
}

// checkNoSymlinks refuses a destination reached through a symlink under
// root (rel is dest relative to root).
func (h *Handler) checkNoSymlinks(root, rel string) error {
	p := h.hostPath(root)
	if rel == "." {
		return nil
	}
	for _, part := range strings.Split(rel, "/") {
		p = filepath.Join(p, part)
		fi, err := os.Lstat(p)
		if err != nil {
			return nil
		}
		if !fi.IsDir() {
			return errdefs.New(errdefs.ErrInvalidArgument, "pick a destination that is a real directory", "put_archive: %s is not a directory (or is a symlink)", p)
		}
	}
	return nil
}
