package agent

import (
	"archive/tar"
	"bufio"
	"context"
	"errors"
	"io"
	"os"
	"path"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/pyro-mcp/pyro/api"
	"github.com/pyro-mcp/pyro/internal/agentproto"
	"github.com/pyro-mcp/pyro/internal/archive"
	"github.com/pyro-mcp/pyro/internal/errdefs"
)

// getArchive serves MethodGetArchive: Path as a tar on stdout. Nothing is
// followed: a symlink is a member (its target rewritten relative when it
// is absolute), and one that leads out of what is exported, through any
// chain of links, is left out like devices, FIFOs and sockets, and listed,
// so that the host never receives a link into its own files.
func (h *Handler) getArchive(ctx context.Context, s *agentproto.Stream) (any, error) {
	var req agentproto.GetArchiveRequest
	w, p, st, err := h.openTarget(s.Params, &req, &req.Path, mustExist)
	if err != nil {
		return nil, err
	}
	defer w.close()
	out := bufio.NewWriterSize(s.Stdout(), chunk)
	x := &exporter{ctx: ctx, w: w, tw: tar.NewWriter(out), root: p.rel, guest: p.guest,
		res: &agentproto.GetArchiveResult{Skipped: []api.SkippedEntry{}}, buf: make([]byte, chunk)}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		x.res.Type = api.FileTypeDirectory
		fd, err := w.openat(p.rel, unix.O_RDONLY|unix.O_DIRECTORY, 0)
		if err != nil {
			return nil, openErr(p, err)
		}
		err = x.dir(fd, "")
		unix.Close(fd)
		if err != nil {
			return nil, err
		}
	} else {
		// One member named after the path; what it may link to is only
		// itself, so any symlink leads out of the export.
		x.root = path.Dir(p.rel)
		x.single = true
		dfd, err := w.openat(x.root, unix.O_RDONLY|unix.O_DIRECTORY, 0)
		if err != nil {
			return nil, openErr(p, err)
		}
		err = x.member(dfd, path.Base(p.rel), "", &st)
		unix.Close(dfd)
		if err != nil {
			return nil, err
		}
		x.res.Type = api.FileTypeFile
		if st.Mode&unix.S_IFMT == unix.S_IFLNK {
			x.res.Type = api.FileTypeSymlink
		}
	}
	if err := x.tw.Close(); err != nil {
		return nil, err
	}
	if err := out.Flush(); err != nil {
		return nil, err
	}
	return x.res, nil
}

type exporter struct {
	ctx    context.Context
	w      *workspace
	tw     *tar.Writer
	root   string // the exported tree, resolved, relative to /workspace
	guest  string // the exported path as asked
	single bool   // exporting one non-directory
	res    *agentproto.GetArchiveResult
	buf    []byte
}

func (x *exporter) skip(rel, reason string) {
	p := x.guest
	if rel != "" && !x.single {
		p = path.Join(x.guest, rel)
	}
	x.res.Skipped = append(x.res.Skipped, api.SkippedEntry{Path: p, Reason: reason})
}

// dir writes the entries of the directory dfd, rel (relative to the
// export's root, "" for the root itself), sorted, depth first.
func (x *exporter) dir(dfd int, rel string) error {
	// The caller owns dfd: read the names through a copy this owns, so
	// that no *os.File's finalizer ever closes dfd's number again.
	dup, err := unix.Dup(dfd)
	if err != nil {
		return errdefs.Wrap(errdefs.ErrInternal, err, "", "exporting %s", path.Join(x.guest, rel))
	}
	f := os.NewFile(uintptr(dup), rel)
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return errdefs.Wrap(errdefs.ErrInternal, err, "", "exporting %s", path.Join(x.guest, rel))
	}
	slices.Sort(names)
	for _, name := range names {
		if err := x.ctx.Err(); err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Fstatat(dfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			continue // gone meanwhile
		}
		if err := x.member(dfd, name, path.Join(rel, name), &st); err != nil {
			return err
		}
	}
	return nil
}

// member writes one entry of the directory dfd: name there, rel in the
// archive ("" for a single exported file, which is named name).
func (x *exporter) member(dfd int, name, rel string, st *unix.Stat_t) error {
	member := rel
	if member == "" {
		member = name
	}
	hdr := &tar.Header{Name: member, Mode: int64(st.Mode & 0o777), ModTime: timeOf(st.Mtim), Format: tar.FormatPAX}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		hdr.Typeflag, hdr.Name = tar.TypeDir, member+"/"
		if err := x.tw.WriteHeader(hdr); err != nil {
			return err
		}
		x.res.Entries++
		fd, err := unix.Openat(dfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			x.skip(rel, "could not be opened: "+err.Error())
			return nil
		}
		defer unix.Close(fd)
		return x.dir(fd, rel)
	case unix.S_IFLNK:
		target, err := readlinkat(dfd, name)
		if err != nil {
			x.skip(rel, "could not be read: "+err.Error())
			return nil
		}
		stored, why := x.linkTarget(rel, target)
		if why != "" {
			x.skip(rel, why)
			return nil
		}
		hdr.Typeflag, hdr.Linkname, hdr.Mode = tar.TypeSymlink, stored, 0o777
		if err := x.tw.WriteHeader(hdr); err != nil {
			return err
		}
		x.res.Entries++
		return nil
	case unix.S_IFREG:
		return x.file(dfd, name, rel, hdr)
	}
	x.skip(rel, "not a regular file, directory or symlink (a device, FIFO or socket)")
	return nil
}

// file writes a regular file's member, streaming its content.
func (x *exporter) file(dfd int, name, rel string, hdr *tar.Header) error {
	fd, err := unix.Openat(dfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		x.skip(rel, "could not be opened: "+err.Error())
		return nil
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		x.skip(rel, "it changed while it was exported")
		return nil
	}
	unix.SetNonblock(fd, false)
	hdr.Typeflag, hdr.Size = tar.TypeReg, st.Size
	if err := x.tw.WriteHeader(hdr); err != nil {
		return err
	}
	n, err := io.CopyBuffer(x.tw, io.LimitReader(f, st.Size), x.buf)
	if err == nil && n < st.Size {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return errdefs.New(errdefs.ErrConflict, "retry once what writes it has finished", "%s shrank while it was exported", path.Join(x.guest, rel))
		}
		return errdefs.Wrap(errdefs.ErrInternal, err, "", "exporting %s", path.Join(x.guest, rel))
	}
	x.res.Entries++
	x.res.Bytes += n
	return nil
}

// linkTarget decides a symlink member rel (relative to the export's root)
// whose target is target: the target to store, relative, or why it is left
// out. The link is resolved in the real tree, through every link on the
// way, and must end up inside the exported directory.
func (x *exporter) linkTarget(rel, target string) (string, string) {
	if x.single {
		return "", "a symlink (to " + target + "): symlinks are never followed, and one exported alone can only lead out of what is exported"
	}
	dir := path.Dir(path.Join(x.root, rel))
	var start []string
	if dir != "." {
		start = strings.Split(dir, "/")
	}
	sub := target
	if path.IsAbs(target) {
		inside, ok := archive.Within(api.WorkspaceRoot, path.Clean(target))
		if !ok {
			return "", "a symlink to " + target + ", outside /workspace"
		}
		start, sub = nil, inside
	}
	hops := 0
	end, err := x.w.walk(start, sub, true, &hops, path.Join(x.guest, rel), "", "")
	if err != nil {
		return "", "a symlink to " + target + " that leads out of /workspace, or cannot be resolved"
	}
	dest := "."
	if len(end) > 0 {
		dest = strings.Join(end, "/")
	}
	if _, ok := archive.Within(x.root, dest); !ok && x.root != "." {
		return "", "a symlink to " + target + ", which leads out of what is exported"
	}
	if !path.IsAbs(target) {
		return target, ""
	}
	// Absolute: stored relative to the link's directory, so that it means
	// the same wherever the export lands.
	inside, _ := archive.Within(api.WorkspaceRoot, path.Clean(target))
	return archive.RelativeTo(dir, inside), ""
}
