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
	"github.com/pyro-mcp/pyro/internal/errdefs"
)

// DefaultMaxArchiveBytes bounds an archive whose request names no limit.
const DefaultMaxArchiveBytes = 4 << 30

// member is one validated archive entry.
type member struct {
	name string // clean, relative to Dest
	typ  byte
}

func badMember(name, format string, args ...any) error {
	return errdefs.New(errdefs.ErrInvalidArgument, "fix or rebuild the archive; nothing was written",
		"archive member %q: %s", name, fmt.Sprintf(format, args...))
}

// putArchive extracts a tar (or gzip'd tar) from in under req.Dest in two
// phases: every member is checked and written into a staging directory next
// to the destination, then, only if the whole archive was valid, moved into
// place. A rejected archive leaves the tree as it was.
func (h *Handler) putArchive(ctx context.Context, req agentproto.PutArchiveRequest, in io.Reader) (*agentproto.PutArchiveResult, error) {
	// Whatever happens, consume the input so the host's sender finishes.
	defer io.Copy(io.Discard, in)

	root := req.Root
	if root == "" {
		root = "/workspace"
	}
	dest := req.Dest
	if dest == "" {
		dest = root
	}
	if !path.IsAbs(root) || !path.IsAbs(dest) {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "use an absolute guest path such as /workspace", "put_archive: root %q and dest %q must be absolute", root, dest)
	}
	root, dest = path.Clean(root), path.Clean(dest)
	if rel, ok := within(root, dest); !ok {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "pick a destination under "+root, "put_archive: dest %s is outside %s", dest, root)
	} else if err := h.checkNoSymlinks(root, rel); err != nil {
		return nil, err
	}
	hostRoot := h.hostPath(root)
	if fi, err := os.Stat(hostRoot); err != nil || !fi.IsDir() {
		return nil, errdefs.New(errdefs.ErrNotFound, "", "put_archive: %s does not exist", root)
	}
	max := req.MaxBytes
	if max <= 0 {
		max = DefaultMaxArchiveBytes
	}

	// Phase one reads the whole archive, checks every member and writes a
	// normalised copy to a spool file; nothing under Dest is touched until
	// all of it is known to be valid. Phase three then extracts the spool
	// with the guest's own tar, which is many times faster per file than
	// creating files one by one from here (system calls are expensive in an
	// emulated guest).
	tarBin, ok := lookPath("tar", envGet(h.cfg.BaseEnv, "PATH"))
	if !ok {
		return nil, errdefs.New(errdefs.ErrFailedPrecondition, "use an environment that has tar (every pyro environment does)", "put_archive: no tar in the guest")
	}
	stage, err := os.MkdirTemp(hostRoot, ".pyro-stage-")
	if err != nil {
		return nil, errdefs.Wrap(errdefs.ErrInternal, err, "", "put_archive: staging")
	}
	defer os.RemoveAll(stage)
	spoolPath := filepath.Join(stage, "archive.tar")
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
	var (
		members []member
		total   int64
		kinds   = map[string]byte{} // archive path -> type, as last seen
	)
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
		name, err := cleanMemberName(hdr.Name)
		if err != nil {
			return nil, err
		}
		if name == "." {
			if hdr.Typeflag == tar.TypeDir {
				continue
			}
			return nil, badMember(hdr.Name, "not a valid file name")
		}
		// No member may pass through a symlink, whether the archive made it or it already exists.
		for p := path.Dir(name); p != "."; p = path.Dir(p) {
			if k, ok := kinds[p]; ok && k == tar.TypeSymlink {
				return nil, badMember(hdr.Name, "its parent %q is a symlink in the archive", p)
			} else if ok && k != tar.TypeDir {
				return nil, badMember(hdr.Name, "its parent %q is not a directory in the archive", p)
			}
		}
		m := member{name: name, typ: hdr.Typeflag}
		mode := int64(fs.FileMode(hdr.Mode) & fs.ModePerm)
		out := &tar.Header{Name: name, Mode: mode, ModTime: hdr.ModTime, Format: tar.FormatPAX}
		switch hdr.Typeflag {
		case tar.TypeDir:
			out.Typeflag, out.Name = tar.TypeDir, name+"/"
			if out.Mode == 0 {
				out.Mode = 0o755
			}
		case tar.TypeReg, tar.TypeRegA:
			m.typ = tar.TypeReg
			total += hdr.Size
			if total > max {
				return nil, badMember(hdr.Name, "archive exceeds the %d-byte limit", max)
			}
			out.Typeflag, out.Size = tar.TypeReg, hdr.Size
			if out.Mode == 0 {
				out.Mode = 0o644
			}
		case tar.TypeSymlink:
			t := hdr.Linkname
			var resolved string
			if path.IsAbs(t) {
				rel, ok := within(dest, path.Clean(t))
				if !ok {
					return nil, badMember(hdr.Name, "symlink target %q is outside %s", t, dest)
				}
				resolved = rel
			} else {
				resolved = path.Join(path.Dir(name), t)
			}
			if t == "" || resolved == ".." || strings.HasPrefix(resolved, "../") {
				return nil, badMember(hdr.Name, "symlink target %q is outside %s", t, dest)
			}
			// Store the target relative so it means the same under host-compat's FSRoot.
			if path.IsAbs(t) {
				if t, err = filepath.Rel(path.Dir(name), resolved); err != nil {
					return nil, badMember(hdr.Name, "symlink target %q: %v", hdr.Linkname, err)
				}
			}
			out.Typeflag, out.Linkname, out.Mode = tar.TypeSymlink, t, 0o777
		case tar.TypeLink:
			target, err := cleanMemberName(hdr.Linkname)
			if err != nil || target == "." {
				return nil, badMember(hdr.Name, "hard link target %q is outside %s", hdr.Linkname, dest)
			}
			src := -1
			for j := len(members) - 1; j >= 0; j-- {
				if members[j].name == target {
					src = j
					break
				}
			}
			if src < 0 || members[src].typ != tar.TypeReg {
				return nil, badMember(hdr.Name, "hard link target %q is not a regular file earlier in the archive", hdr.Linkname)
			}
			out.Typeflag, out.Linkname = tar.TypeLink, target
			m.typ = tar.TypeReg
		case tar.TypeChar, tar.TypeBlock:
			return nil, badMember(hdr.Name, "device nodes are not allowed")
		case tar.TypeFifo:
			return nil, badMember(hdr.Name, "FIFOs are not allowed")
		default:
			return nil, badMember(hdr.Name, "unsupported member type %q", hdr.Typeflag)
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
		kinds[name] = m.typ
		members = append(members, m)
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

	// Check against what already exists before touching anything.
	hostDest := h.hostPath(dest)
	for _, m := range members {
		if err := checkExisting(hostDest, m); err != nil {
			return nil, err
		}
	}

	// Phase three: extract the checked copy in place.
	if err := os.MkdirAll(hostDest, 0o755); err != nil {
		return nil, errdefs.Wrap(errdefs.ErrInternal, err, "", "put_archive: creating %s", dest)
	}
	if out, err := h.runTool(tarBin, "-x", "-f", spoolPath, "-C", hostDest, "--no-same-owner"); err != nil {
		return nil, errdefs.Wrap(errdefs.ErrInternal, err, "check free space in the workspace",
			"put_archive: extracting into %s: %s", dest, out)
	}
	res := &agentproto.PutArchiveResult{Bytes: total, Entries: len(members)}
	return res, nil
}

// checkExisting refuses members that would go through an existing symlink
// or replace a directory with a non-directory (or the reverse).
func checkExisting(hostDest string, m member) error {
	parts := strings.Split(m.name, "/")
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
			return badMember(m.name, "its parent %q is an existing symlink", strings.Join(parts[:i+1], "/"))
		case !last && !fi.IsDir():
			return badMember(m.name, "its parent %q exists and is not a directory", strings.Join(parts[:i+1], "/"))
		case last && fi.IsDir() && m.typ != tar.TypeDir:
			return badMember(m.name, "an existing directory is in the way")
		case last && !fi.IsDir() && m.typ == tar.TypeDir:
			return badMember(m.name, "an existing file is in the way of this directory")
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

// cleanMemberName returns a member's clean relative name, refusing
// absolute names and any ".." component.
func cleanMemberName(name string) (string, error) {
	if name == "" {
		return "", badMember(name, "empty name")
	}
	if strings.HasPrefix(name, "/") {
		return "", badMember(name, "absolute names are not allowed")
	}
	for _, part := range strings.Split(name, "/") {
		if part == ".." {
			return "", badMember(name, `".." is not allowed`)
		}
	}
	return path.Clean(name), nil
}

// within reports whether p is base or below it, and p relative to base.
func within(base, p string) (string, bool) {
	if p == base {
		return ".", true
	}
	prefix := strings.TrimSuffix(base, "/") + "/"
	if strings.HasPrefix(p, prefix) {
		return strings.TrimPrefix(p, prefix), true
	}
	return "", false
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
