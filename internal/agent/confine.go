package agent

import (
	"encoding/json"
	"errors"
	"io/fs"
	"path"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pyro-mcp/pyro/api"
	"github.com/pyro-mcp/pyro/internal/archive"
	"github.com/pyro-mcp/pyro/internal/errdefs"
)

// Every file method reaches only what is under /workspace. A path is
// cleaned (relative ones are under /workspace) and refused when it names
// something outside; then its symlinks are resolved here, component by
// component, as the kernel would, with its budget of 40, and a link that
// leads out of /workspace is refused with the path and where it leads.
// What is opened is the resolved path, with openat2 RESOLVE_BENEATH and
// RESOLVE_NO_SYMLINKS from /workspace itself: a directory swapped for a
// symlink meanwhile fails the open, and nothing above /workspace is ever
// reached.

// maxHops is the kernel's bound on the symlinks one resolution follows.
const maxHops = 40

// wsPath is a path under /workspace, cleaned and resolved.
type wsPath struct {
	guest string // as asked, cleaned and absolute: /workspace/a/l/b
	rel   string // resolved, relative to /workspace, symlink-free: "a/real/b" ("." for /workspace)
}

// where is the resolved path as a guest path.
func (p wsPath) where() string { return path.Join(api.WorkspaceRoot, p.rel) }

// workspace is an open /workspace: every file method works from it.
type workspace struct {
	h  *Handler
	fd int // O_PATH directory
}

// openWorkspace opens /workspace (under FSRoot).
func (h *Handler) openWorkspace() (*workspace, error) {
	fd, err := h.openTree(api.WorkspaceRoot, "/workspace")
	if err != nil {
		return nil, err
	}
	return &workspace{h: h, fd: fd}, nil
}

// openTree opens the directory guest (under FSRoot) as an O_PATH
// descriptor; what names it in the error.
func (h *Handler) openTree(guest, what string) (int, error) {
	fd, err := unix.Open(h.hostPath(guest), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, errdefs.Wrap(errdefs.ErrFailedPrecondition, err, "", "opening %s", what)
	}
	return fd, nil
}

func (w *workspace) close() { unix.Close(w.fd) }

// How openTarget takes its path.
type resolveHow int

const (
	followLast resolveHow = 1 << iota // the last component's symlink is followed too
	mustExist                         // lstat what the path names: it must exist
)

// openTarget is the preamble of every file method that works on one path:
// it decodes params into req, opens /workspace, resolves asked (a field of
// req, read once req is decoded) beneath it and, with mustExist, lstats
// what it names. Errors keep their classes: bad params or a path outside
// /workspace InvalidArgument, no /workspace FailedPrecondition, a stat's
// error as openErr classes it (a missing path NotFound). The caller closes
// w.
func (h *Handler) openTarget(params json.RawMessage, req any, asked *string, how resolveHow) (*workspace, wsPath, unix.Stat_t, error) {
	var st unix.Stat_t
	if err := decode(params, req); err != nil {
		return nil, wsPath{}, st, err
	}
	w, err := h.openWorkspace()
	if err != nil {
		return nil, wsPath{}, st, err
	}
	p, err := w.resolve(*asked, how&followLast != 0)
	if err == nil && how&mustExist != 0 {
		if st, err = w.statRel(p.rel); err != nil {
			err = openErr(p, err)
		}
	}
	if err != nil {
		w.close()
		return nil, wsPath{}, st, err
	}
	return w, p, st, nil
}

// CleanWorkspacePath makes p an absolute guest path under /workspace, or
// refuses it: the one lexical rule of the file operations, which the host
// applies too, to fail early (the guest resolves symlinks on top of it).
func CleanWorkspacePath(p string) (string, error) {
	if p == "" {
		p = api.WorkspaceRoot
	}
	if strings.ContainsRune(p, 0) {
		return "", errdefs.New(errdefs.ErrInvalidArgument, "", "path %q has a NUL byte", p)
	}
	abs := p
	if !path.IsAbs(p) {
		abs = path.Join(api.WorkspaceRoot, p)
	}
	c := path.Clean(abs)
	if _, ok := archive.Within(api.WorkspaceRoot, c); !ok {
		return "", outsideErr(p, c)
	}
	return c, nil
}

func outsideErr(asked, clean string) error {
	what := asked
	if clean != asked {
		what = asked + " (" + clean + ")"
	}
	return errdefs.New(errdefs.ErrInvalidArgument, "file operations reach only what is under /workspace; give a path there (relative ones are under it)",
		"%s is outside /workspace", what)
}

// resolve cleans p and resolves its symlinks beneath /workspace: the last
// component's too when followLast. Components that do not exist are kept
// as they are (a file or directories to create).
func (w *workspace) resolve(p string, followLast bool) (wsPath, error) {
	guest, err := CleanWorkspacePath(p)
	if err != nil {
		return wsPath{}, err
	}
	rel, _ := archive.Within(api.WorkspaceRoot, guest)
	hops := 0
	stack, err := w.walk(nil, rel, followLast, &hops, guest, "", "")
	if err != nil {
		return wsPath{}, err
	}
	out := wsPath{guest: guest, rel: "."}
	if len(stack) > 0 {
		out.rel = strings.Join(stack, "/")
	}
	return out, nil
}

// walk resolves the components of p (relative) onto stack (resolved,
// symlink-free components), as the kernel does. via and viaTarget name the
// symlink being expanded, for the error when it leads out.
func (w *workspace) walk(stack []string, p string, followLast bool, hops *int, guest, via, viaTarget string) ([]string, error) {
	parts := strings.Split(p, "/")
	for i, c := range parts {
		last := i == len(parts)-1
		switch c {
		case "", ".":
			continue
		case "..":
			if len(stack) == 0 {
				return nil, leadsOut(guest, via, viaTarget)
			}
			stack = stack[:len(stack)-1]
			continue
		}
		cur := append(stack[:len(stack):len(stack)], c)
		rel := strings.Join(cur, "/")
		var st unix.Stat_t
		if err := unix.Fstatat(w.fd, rel, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if errors.Is(err, unix.ENOENT) {
				// Nothing further can be a link: keep the rest as it is.
				rest := strings.Join(parts[i+1:], "/")
				if rest == "" {
					return cur, nil
				}
				if path.Clean(rest) != rest || strings.HasPrefix(rest, "../") || rest == ".." {
					return nil, errdefs.New(errdefs.ErrNotFound, "", "%s does not exist", path.Join(api.WorkspaceRoot, rel))
				}
				return append(cur, strings.Split(rest, "/")...), nil
			}
			if errors.Is(err, unix.ENOTDIR) {
				return nil, errdefs.New(errdefs.ErrInvalidArgument, "", "%s: %s is not a directory", guest, path.Join(api.WorkspaceRoot, strings.Join(stack, "/")))
			}
			return nil, errdefs.Wrap(errdefs.ErrInvalidArgument, err, "", "%s", guest)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFLNK || (last && !followLast) {
			stack = cur
			continue
		}
		if *hops++; *hops > maxHops {
			return nil, errdefs.New(errdefs.ErrInvalidArgument, "", "%s: too many levels of symlinks", guest)
		}
		target, err := readlinkat(w.fd, rel)
		if err != nil {
			return nil, errdefs.Wrap(errdefs.ErrInvalidArgument, err, "", "%s", guest)
		}
		link := path.Join(api.WorkspaceRoot, rel)
		next, sub := stack, target
		if path.IsAbs(target) {
			inside, ok := archive.Within(api.WorkspaceRoot, path.Clean(target))
			if !ok {
				return nil, leadsOut(guest, link, target)
			}
			next, sub = nil, inside
		}
		if stack, err = w.walk(append([]string(nil), next...), sub, true, hops, guest, link, target); err != nil {
			return nil, err
		}
	}
	return stack, nil
}

func leadsOut(guest, link, target string) error {
	msg := guest + " leads out of /workspace"
	if link != "" && link != guest {
		msg += " through the symlink " + link
	}
	if target != "" {
		msg += " (to " + target + ")"
	}
	return errdefs.New(errdefs.ErrInvalidArgument,
		"file operations reach only what is under /workspace; a symlink that leaves it is never followed", "%s", msg)
}

func readlinkat(dirfd int, rel string) (string, error) {
	buf := make([]byte, 256)
	for {
		n, err := unix.Readlinkat(dirfd, rel, buf)
		if err != nil {
			return "", err
		}
		if n < len(buf) {
			return string(buf[:n]), nil
		}
		buf = make([]byte, 2*len(buf))
	}
}

// openat opens rel (resolved, symlink-free) beneath /workspace. flags get
// O_CLOEXEC and O_NOFOLLOW; a symlink in any component fails the open.
func (w *workspace) openat(rel string, flags int, mode uint32) (int, error) {
	if rel == "." || rel == "" {
		rel = "."
	}
	fd, err := unix.Openat2(w.fd, rel, &unix.OpenHow{
		Flags:   uint64(flags | unix.O_CLOEXEC | unix.O_NOFOLLOW),
		Mode:    uint64(mode),
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	if errors.Is(err, unix.ENOSYS) {
		// Kernels before 5.6: the resolution above found no symlink, and
		// the last component is still protected.
		fd, err = unix.Openat(w.fd, rel, flags|unix.O_CLOEXEC|unix.O_NOFOLLOW, mode)
	}
	return fd, err
}

// openErr words an open's failure for the guest path p.
func openErr(p wsPath, err error) error {
	switch {
	case errors.Is(err, unix.ENOENT):
		return errdefs.New(errdefs.ErrNotFound, "list the directory first (workspace file list)", "%s does not exist", p.guest)
	case errors.Is(err, unix.ELOOP), errors.Is(err, unix.EXDEV):
		return errdefs.New(errdefs.ErrConflict, "retry: something in the workspace changed it meanwhile", "%s changed while it was opened (a symlink appeared)", p.guest)
	case errors.Is(err, unix.EISDIR):
		return errdefs.New(errdefs.ErrInvalidArgument, "list a directory with workspace file list", "%s is a directory", p.guest)
	case errors.Is(err, unix.ENOTDIR):
		return errdefs.New(errdefs.ErrInvalidArgument, "", "%s: a component of it is not a directory", p.guest)
	case errors.Is(err, unix.ENOSPC), errors.Is(err, unix.EDQUOT):
		return errdefs.Wrap(errdefs.ErrFailedPrecondition, err, "free space in the workspace (its disk is full)", "%s", p.guest)
	}
	return errdefs.Wrap(errdefs.ErrInvalidArgument, err, "", "%s", p.guest)
}

// entryOf describes st as a listing entry at guest path p.
func entryOf(p string, st *unix.Stat_t, link string) api.FileEntry {
	e := api.FileEntry{Path: p, Size: st.Size, Mode: modeString(st.Mode),
		MTime: timeOf(st.Mtim).UTC()}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		e.Type = api.FileTypeFile
	case unix.S_IFDIR:
		e.Type = api.FileTypeDirectory
	case unix.S_IFLNK:
		e.Type, e.LinkTarget = api.FileTypeSymlink, link
	default:
		e.Type = api.FileTypeOther
	}
	return e
}

func modeString(m uint32) string {
	const digits = "01234567"
	m &= 0o7777
	return string([]byte{digits[m>>9&7], digits[m>>6&7], digits[m>>3&7], digits[m&7]})
}

// fileMode is st's permission bits as an fs.FileMode.
func fileMode(st *unix.Stat_t) fs.FileMode { return fs.FileMode(st.Mode & 0o777) }

// statRel lstats rel beneath /workspace.
func (w *workspace) statRel(rel string) (unix.Stat_t, error) {
	var st unix.Stat_t
	if rel == "." {
		rel = ""
		return st, unix.Fstatat(w.fd, rel, &st, unix.AT_EMPTY_PATH)
	}
	return st, unix.Fstatat(w.fd, rel, &st, unix.AT_SYMLINK_NOFOLLOW)
}

// timeOf converts a stat time.
func timeOf(ts unix.Timespec) time.Time { return time.Unix(ts.Sec, ts.Nsec) }
