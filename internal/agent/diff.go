package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
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

// diff serves MethodDiff: /workspace against the baseline mounted
// read-only in the guest, both walked here, nothing followed. Directories
// show through their files, as in git, and .git directories are left out.
// A file is unchanged without reading it when its inode, size, mtime and
// ctime are those of the baseline's: /workspace's filesystem is a
// copy-on-write descendant of the baseline's, so an untouched file is the
// very same inode, and any write or chmod moves its ctime.
func (h *Handler) diff(ctx context.Context, s *agentproto.Stream) (any, error) {
	var req agentproto.DiffRequest
	if err := decode(s.Params, &req); err != nil {
		return nil, err
	}
	base := h.baselineDir()
	if base == "" {
		return nil, errdefs.New(errdefs.ErrFailedPrecondition, "", "this guest has no baseline mounted at %s", api.BaselineMount)
	}
	w, err := h.openWorkspace()
	if err != nil {
		return nil, err
	}
	defer w.close()
	bfd, err := h.openTree(base, "the baseline")
	if err != nil {
		return nil, err
	}
	defer unix.Close(bfd)
	rels, err := diffPaths(req.Paths)
	if err != nil {
		return nil, err
	}
	out := bufio.NewWriterSize(s.Stdout(), chunk)
	d := &differ{ctx: ctx, req: req, enc: json.NewEncoder(out)}
	for _, rel := range rels {
		name := rel
		if rel == "." {
			name = ""
		}
		o, n := stat(bfd, name, rel), stat(w.fd, name, rel)
		if !o.ok && !n.ok && rel != "." {
			return nil, errdefs.New(errdefs.ErrNotFound, "", "%s is neither in /workspace nor in its baseline", path.Join(api.WorkspaceRoot, rel))
		}
		if err := d.compare(rel, o, n); err != nil {
			return nil, err
		}
	}
	if err := out.Flush(); err != nil {
		return nil, err
	}
	return &agentproto.DiffResult{Count: d.count}, nil
}

// baselineDir is the guest path of the baseline tree, or "" when there is
// none: Config.Baseline, else BaselineMount when a filesystem is mounted
// there.
func (h *Handler) baselineDir() string {
	if h.cfg.Baseline != "" {
		return h.cfg.Baseline
	}
	var st, parent unix.Stat_t
	if unix.Stat(h.hostPath(api.BaselineMount), &st) != nil || unix.Stat(h.hostPath(path.Dir(api.BaselineMount)), &parent) != nil {
		return ""
	}
	if st.Dev == parent.Dev {
		return ""
	}
	return api.BaselineMount
}

// diffPaths cleans the paths asked for, relative to /workspace, dropping
// those under another; none is the whole of /workspace.
func diffPaths(paths []string) ([]string, error) {
	if len(paths) == 0 {
		return []string{"."}, nil
	}
	var rels []string
	for _, p := range paths {
		g, err := CleanWorkspacePath(p)
		if err != nil {
			return nil, err
		}
		rel, _ := archive.Within(api.WorkspaceRoot, g)
		rels = append(rels, rel)
	}
	slices.Sort(rels)
	var out []string
	for _, r := range rels {
		if len(out) > 0 {
			if _, under := archive.Within("/"+out[len(out)-1], "/"+r); under || out[len(out)-1] == "." {
				continue
			}
		}
		out = append(out, r)
	}
	return out, nil
}

// Kinds of a side of a comparison.
const (
	kindNone = iota
	kindDir
	kindFile
	kindLink
)

// side is what one tree holds at a path: name in the directory dir (a
// descriptor the walk holds open), or, for the roots and the paths asked
// for, a path relative to the tree's root.
type side struct {
	ok   bool
	kind int
	st   unix.Stat_t
	rel  string // relative to the tree's root, for messages
	dir  int
	name string // "" for dir itself
}

type differ struct {
	ctx        context.Context
	req        agentproto.DiffRequest
	enc        *json.Encoder
	count      int
	patchBytes int64
}

// stat looks at name in the directory dir (rel is its path, for
// messages); every component above it is a directory there (the walk only
// enters those). Devices, FIFOs and sockets count as absent.
func stat(dir int, name, rel string) side {
	s := side{rel: rel, dir: dir, name: name}
	var err error
	if name == "" {
		err = unix.Fstatat(dir, "", &s.st, unix.AT_EMPTY_PATH)
	} else {
		err = unix.Fstatat(dir, name, &s.st, unix.AT_SYMLINK_NOFOLLOW)
	}
	if err != nil {
		return s
	}
	switch s.st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		s.kind = kindDir
	case unix.S_IFREG:
		s.kind = kindFile
	case unix.S_IFLNK:
		s.kind = kindLink
	default:
		return s
	}
	s.ok = true
	return s
}

// at is sd's path for the *at calls: its name, or "." for a root.
func (sd side) at() string {
	if sd.name == "" {
		return "."
	}
	return sd.name
}

// compare emits the changes at rel and below it, in git's order (a
// directory sorts as its name followed by "/").
func (d *differ) compare(rel string, o, n side) error {
	if err := d.ctx.Err(); err != nil {
		return err
	}
	if o.kind != kindDir && n.kind != kindDir {
		return d.file(rel, o, n)
	}
	// A file that became a directory, or the reverse: the file first.
	if o.ok && o.kind != kindDir {
		if err := d.file(rel, o, side{}); err != nil {
			return err
		}
	}
	if n.ok && n.kind != kindDir {
		if err := d.file(rel, side{}, n); err != nil {
			return err
		}
	}
	// Each side's directory is opened once; its entries are looked at
	// from it (one path component per lookup).
	names := map[string]bool{}
	var fds [2]int
	for i, sd := range []side{o, n} {
		fds[i] = -1
		if sd.kind != kindDir {
			continue
		}
		fd, list, err := readNames(sd)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		fds[i] = fd
		for _, name := range list {
			names[name] = true
		}
	}
	type child struct {
		key  string
		name string
		o, n side
	}
	kids := make([]child, 0, len(names))
	for name := range names {
		if name == ".git" {
			continue
		}
		crel := name
		if rel != "." {
			crel = rel + "/" + name
		}
		c := child{name: name, key: name}
		if fds[0] >= 0 {
			c.o = stat(fds[0], name, crel)
		}
		if fds[1] >= 0 {
			c.n = stat(fds[1], name, crel)
		}
		if c.o.kind == kindDir || c.n.kind == kindDir {
			c.key += "/"
		}
		kids = append(kids, c)
	}
	slices.SortFunc(kids, func(a, b child) int { return strings.Compare(a.key, b.key) })
	for _, c := range kids {
		crel := c.name
		if rel != "." {
			crel = rel + "/" + c.name
		}
		if err := d.compare(crel, c.o, c.n); err != nil {
			return err
		}
	}
	return nil
}

// readNames opens the directory sd and lists it; the caller closes the
// descriptor.
func readNames(sd side) (int, []string, error) {
	fd, err := unix.Openat(sd.dir, sd.at(), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, nil, errdefs.Wrap(errdefs.ErrInternal, err, "", "diff: opening %s", sd.rel)
	}
	// Read through a copy: an *os.File closes its descriptor when collected.
	dup, err := unix.Dup(fd)
	if err != nil {
		unix.Close(fd)
		return -1, nil, errdefs.Wrap(errdefs.ErrInternal, err, "", "diff: opening %s", sd.rel)
	}
	f := os.NewFile(uintptr(dup), sd.rel)
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		unix.Close(fd)
		return -1, nil, errdefs.Wrap(errdefs.ErrInternal, err, "", "diff: listing %s", sd.rel)
	}
	return fd, names, nil
}

// gitMode is st's mode as git records it.
func gitMode(sd side) string {
	switch {
	case sd.kind == kindLink:
		return "120000"
	case sd.st.Mode&0o100 != 0:
		return "100755"
	}
	return "100644"
}

// file emits the change of a non-directory at rel, if any.
func (d *differ) file(rel string, o, n side) error {
	if !o.ok && !n.ok {
		return nil
	}
	e := api.DiffEntry{Path: rel}
	switch {
	case !o.ok:
		e.Status, e.NewMode = api.StatusAdded, gitMode(n)
	case !n.ok:
		e.Status, e.OldMode = api.StatusDeleted, gitMode(o)
	case o.kind != n.kind:
		e.Status, e.OldMode, e.NewMode = api.StatusTypeChanged, gitMode(o), gitMode(n)
	default:
		same, err := d.sameContent(o, n)
		if err != nil {
			return err
		}
		om, nm := gitMode(o), gitMode(n)
		switch {
		case same && om == nm:
			return nil
		case same:
			e.Status = api.StatusModeChanged
		default:
			e.Status = api.StatusModified
		}
		if om != nm {
			e.OldMode, e.NewMode = om, nm
		}
	}
	d.count++
	if d.req.NameOnly {
		return d.enc.Encode(e)
	}
	if err := d.render(&e, o, n); err != nil {
		return err
	}
	if d.req.NoPatch {
		e.Patch = ""
	} else if d.patchBytes += int64(len(e.Patch)); d.patchBytes > api.MaxDiffPatchBytes {
		e.Patch, e.PatchOmitted = "", true
	}
	return d.enc.Encode(e)
}

// sameContent compares two regular files or two symlinks of the same kind.
func (d *differ) sameContent(o, n side) (bool, error) {
	if o.kind == kindLink {
		a, err1 := readlinkat(o.dir, o.at())
		b, err2 := readlinkat(n.dir, n.at())
		return a == b && err1 == nil && err2 == nil, nil
	}
	if o.st.Size != n.st.Size {
		return false, nil
	}
	if o.st.Ino == n.st.Ino && o.st.Mtim == n.st.Mtim && o.st.Ctim == n.st.Ctim {
		return true, nil
	}
	a, err := openSide(o)
	if err != nil {
		return false, err
	}
	defer a.Close()
	b, err := openSide(n)
	if err != nil {
		return false, err
	}
	defer b.Close()
	ba, bb := make([]byte, chunk), make([]byte, chunk)
	for {
		na, erra := io.ReadFull(a, ba)
		nb, errb := io.ReadFull(b, bb)
		if na != nb || !bytes.Equal(ba[:na], bb[:nb]) {
			return false, nil
		}
		if erra != nil || errb != nil {
			return (erra == io.EOF || erra == io.ErrUnexpectedEOF) && (errb == io.EOF || errb == io.ErrUnexpectedEOF), nil
		}
	}
}

func openSide(sd side) (*os.File, error) {
	fd, err := unix.Openat(sd.dir, sd.at(), unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, errdefs.Wrap(errdefs.ErrInternal, err, "", "diff: opening %s", sd.rel)
	}
	unix.SetNonblock(fd, false)
	return os.NewFile(uintptr(fd), sd.rel), nil
}

// content is what a side holds as diff text: a file's bytes or a link's
// target; big says it is over MaxDiffTextBytes (and not read).
func content(sd side) (data []byte, big bool, err error) {
	if !sd.ok {
		return nil, false, nil
	}
	if sd.kind == kindLink {
		t, err := readlinkat(sd.dir, sd.at())
		return []byte(t), false, err
	}
	if sd.st.Size > api.MaxDiffTextBytes {
		return nil, true, nil
	}
	f, err := openSide(sd)
	if err != nil {
		return nil, false, err
	}
	defer f.Close()
	data, err = io.ReadAll(io.LimitReader(f, api.MaxDiffTextBytes+1))
	if err != nil {
		return nil, false, errdefs.Wrap(errdefs.ErrInternal, err, "", "diff: reading %s", sd.rel)
	}
	return data, len(data) > api.MaxDiffTextBytes, nil
}

// binaryText says data is binary, as git decides it: a NUL byte in its
// first 8000 bytes.
func binaryText(data []byte) bool {
	return bytes.IndexByte(data[:min(len(data), 8000)], 0) >= 0
}
