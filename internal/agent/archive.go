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
	"os/exec"
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
// rejected archive leaves the tree as it was: every step up to the last
// only reads the input and writes a private spool file.
//
//  1. archiveTarget checks Dest and Root.
//  2. spoolArchive reads the whole archive, checks every member against
//     the shared member policy (internal/archive) and writes a normalised
//     copy to a spool file beside the destination.
//  3. checkExisting compares the members with what is on disk.
//  4. extractSpool unpacks the spool with the guest's own tar, many times
//     faster per file than creating files one by one from here (system
//     calls are expensive in an emulated guest).
func (h *Handler) putArchive(ctx context.Context, req agentproto.PutArchiveRequest, in io.Reader) (*agentproto.PutArchiveResult, error) {
	// Whatever happens, consume the input so the host's sender finishes.
	defer io.Copy(io.Discard, in)

	t, err := h.archiveTarget(req)
	if err != nil {
		return nil, err
	}
	tarBin, ok := lookPath("tar", envGet(h.cfg.BaseEnv, "PATH"))
	if !ok {
		return nil, errdefs.New(errdefs.ErrFailedPrecondition, "use an environment that has tar (every pyro environment does)", "put_archive: no tar in the guest")
	}
	stage, err := os.MkdirTemp(t.hostRoot, ".pyro-stage-")
	if err != nil {
		return nil, errdefs.Wrap(errdefs.ErrInternal, err, "", "put_archive: staging")
	}
	defer os.RemoveAll(stage)
	spoolPath := filepath.Join(stage, "archive.tar")
	sp, err := spoolArchive(ctx, in, spoolPath, t)
	if err != nil {
		return nil, err
	}
	for _, m := range sp.members {
		if err := checkExisting(t.hostDest, m); err != nil {
			return nil, err
		}
	}
	if err := h.extractSpool(tarBin, spoolPath, t); err != nil {
		return nil, err
	}
	return &agentproto.PutArchiveResult{Bytes: sp.bytes, Entries: len(sp.members)}, nil
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

// spooled is what spoolArchive accepted.
type spooled struct {
	members []archive.Member
	bytes   int64
}

// spoolArchive reads the whole archive from in, checks every member and
// writes a normalised copy (clean relative names, relative symlinks,
// permission bits only) to spoolPath. Nothing under the destination is
// touched.
func spoolArchive(ctx context.Context, in io.Reader, spoolPath string, t archiveTarget) (*spooled, error) {
	spool, err := os.OpenFile(spoolPath, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, errdefs.Wrap(errdefs.ErrInternal, err, "", "put_archive: staging")
	}
	defer spool.Close()
	sw := bufio.NewWriterSize(spool, 1<<20)
	tw := tar.NewWriter(sw)

	br := bufio.NewReader(in)
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
	sp := &spooled{}
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
		out := normalised(m, hdr)
		if m.Type == tar.TypeReg {
			sp.bytes += hdr.Size
			if sp.bytes > t.maxBytes {
				return nil, badMember(hdr.Name, "archive exceeds the %d-byte limit", t.maxBytes)
			}
		}
		if err := tw.WriteHeader(out); err != nil {
			return nil, errdefs.Wrap(errdefs.ErrInternal, err, "", "put_archive: staging %q", hdr.Name)
		}
		if out.Typeflag == tar.TypeReg {
			if _, err := io.Copy(tw, tr); err != nil {
				if errors.Is(err, syscall.ENOSPC) {
					return nil, errdefs.Wrap(errdefs.ErrFailedPrecondition, err, "free space in the workspace", "put_archive: staging %q", hdr.Name)
				}
				return nil, errdefs.Wrap(errdefs.ErrInvalidArgument, err, "send a valid tar archive", "put_archive: reading %q", hdr.Name)
			}
		}
		sp.members = append(sp.members, m)
	}
	if err := tree.Finish(); err != nil {
		return nil, refused(err)
	}
	if err := tw.Close(); err != nil {
		return nil, errdefs.Wrap(errdefs.ErrInternal, err, "", "put_archive: staging")
	}
	if err := sw.Flush(); err != nil {
		return nil, errdefs.Wrap(errdefs.ErrInternal, err, "", "put_archive: staging")
	}
	if err := spool.Close(); err != nil {
		return nil, errdefs.Wrap(errdefs.ErrInternal, err, "", "put_archive: staging")
	}
	return sp, nil
}

// normalised is the spool's header for an accepted member: permission bits
// only (with defaults when the archive has none), no owners.
func normalised(m archive.Member, hdr *tar.Header) *tar.Header {
	mode := int64(fs.FileMode(hdr.Mode) & fs.ModePerm)
	out := &tar.Header{Name: m.Name, Typeflag: m.Type, Linkname: m.Linkname, Mode: mode, ModTime: hdr.ModTime, Format: tar.FormatPAX}
	switch m.Type {
	case tar.TypeDir:
		out.Name = m.Name + "/"
		if out.Mode == 0 {
			out.Mode = 0o755
		}
	case tar.TypeReg:
		out.Size = hdr.Size
		if out.Mode == 0 {
			out.Mode = 0o644
		}
	case tar.TypeSymlink:
		out.Mode = 0o777
	}
	return out
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

// extractSpool unpacks the checked spool into the destination.
func (h *Handler) extractSpool(tarBin, spoolPath string, t archiveTarget) error {
	if err := os.MkdirAll(t.hostDest, 0o755); err != nil {
		return errdefs.Wrap(errdefs.ErrInternal, err, "", "put_archive: creating %s", t.dest)
	}
	if out, err := h.runTool(tarBin, "-x", "-f", spoolPath, "-C", t.hostDest, "--no-same-owner"); err != nil {
		return errdefs.Wrap(errdefs.ErrInternal, err, "check free space in the workspace",
			"put_archive: extracting into %s: %s", t.dest, out)
	}
	return nil
}

// checkExisting refuses members that would go through an existing symlink
// or replace a directory with a non-directory (or the reverse).
func checkExisting(hostDest string, m archive.Member) error {
	parts := strings.Split(m.Name, "/")
	p := hostDest
	for i, part := range parts {
		p = filepath.Join(p, part)
		fi, err := os.Lstat(p)
		if err != nil {
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

// runTool runs a helper program to completion and returns its combined
// output. As PID 1 the agent reaps every child, so the wait goes through
// startCmd rather than exec.Cmd.Wait.
func (h *Handler) runTool(prog string, args ...string) (string, error) {
	pr, pw, err := os.Pipe()
	if err != nil {
		return "", err
	}
	defer pr.Close()
	cmd := &exec.Cmd{Path: prog, Args: append([]string{prog}, args...), Env: h.cfg.BaseEnv, Stdout: pw, Stderr: pw}
	_, exited, err := h.startCmd(cmd)
	pw.Close()
	if err != nil {
		return "", err
	}
	// Drain everything (a full pipe would block the tool) but keep the start.
	out, _ := io.ReadAll(pr)
	if len(out) > 4<<10 {
		out = out[:4<<10]
	}
	ws := <-exited
	if !ws.Exited() || ws.ExitStatus() != 0 {
		return strings.TrimSpace(string(out)), fmt.Errorf("%s exited with status %d", filepath.Base(prog), ws.ExitStatus())
	}
	return strings.TrimSpace(string(out)), nil
}
