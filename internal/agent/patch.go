package agent

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"

	"github.com/bluekeyes/go-gitdiff/gitdiff"
	"golang.org/x/sys/unix"

	"github.com/pyro-mcp/pyro/api"
	"github.com/pyro-mcp/pyro/internal/agentproto"
	"github.com/pyro-mcp/pyro/internal/archive"
	"github.com/pyro-mcp/pyro/internal/errdefs"
)

// patchApply serves MethodPatchApply. It runs here, in the guest, because
// the files it changes are here: only the patch crosses the channel, once,
// and the all-or-nothing promise rests on renames in one filesystem.
//
//  1. The patch is parsed (go-gitdiff: git's format, or a plain unified
//     diff), every path confined to /workspace.
//  2. Every file's result is computed into a staging directory in
//     /workspace, in order, each later change of a path reading the
//     staged result of the earlier one: a hunk that does not apply fails
//     here, naming the file, the hunk and the lines that differ, and the
//     staging directory is removed: nothing changed.
//  3. Only then are the results renamed into place, deletions first.
func (h *Handler) patchApply(ctx context.Context, s *agentproto.Stream) (any, error) {
	defer io.Copy(io.Discard, s)
	var req agentproto.PatchRequest
	if err := decode(s.Params, &req); err != nil {
		return nil, err
	}
	max := req.MaxBytes
	if max <= 0 || max > api.MaxPatchBytes {
		max = api.MaxPatchBytes
	}
	text, err := io.ReadAll(io.LimitReader(readerCtx{ctx, s}, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(text)) > max {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "split it into smaller patches", "the patch is over %d bytes", max)
	}
	files, _, err := gitdiff.Parse(bytes.NewReader(text))
	if err != nil {
		return nil, errdefs.Wrap(errdefs.ErrInvalidArgument, err, "give a unified diff (git diff's format, or diff -u's); nothing was changed", "reading the patch")
	}
	if len(files) == 0 {
		return nil, errdefs.New(errdefs.ErrInvalidArgument,
			"give a unified diff: each file starts with `diff --git a/P b/P` or with --- and +++ lines, then @@ hunks; nothing was changed",
			"the patch changes no file")
	}
	w, err := h.openWorkspace()
	if err != nil {
		return nil, err
	}
	defer w.close()
	p := &patcher{w: w, plan: map[string]*pending{}, strip: stripPrefix(text, files), stgFD: -1, root: -1}
	defer p.cleanup()
	res := &agentproto.PatchResult{}
	for _, f := range files {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		pf, err := p.stage(f)
		if err != nil {
			return nil, err
		}
		res.Files = append(res.Files, pf)
	}
	if err := p.commit(); err != nil {
		return nil, err
	}
	return res, nil
}

// pending is what a path will be once the patch is applied.
type pending struct {
	rel      string // resolved, relative to /workspace
	guest    string
	exists   bool
	kind     int    // kindFile or kindLink
	mode     uint32 // permission bits
	onDisk   bool   // the content is what the disk holds now
	staged   string // a file's new content: a name in the staging directory
	link     string // a symlink's target
	modeSet  bool   // mode differs from the disk's
	wasThere bool   // something was on disk at rel before
	diskDir  bool   // what is on disk at rel is a directory
}

type patcher struct {
	w     *workspace
	plan  map[string]*pending
	order []string
	strip bool
	stgFD int // the staging directory, once made
	stg   string
	root  int // /workspace, opened for writing
}

// stripPrefix says whether the names of a plain (not git) patch carry
// prefixes to drop, as `patch -p1` would: every name's first component is
// a or b (diff -u a/x b/x, or what git diff --no-prefix is not).
func stripPrefix(text []byte, files []*gitdiff.File) bool {
	if bytes.HasPrefix(text, []byte("diff --git ")) || bytes.Contains(text, []byte("\ndiff --git ")) {
		return false // go-gitdiff dropped them already
	}
	for _, f := range files {
		for _, n := range []string{f.OldName, f.NewName} {
			if n != "" && !strings.HasPrefix(n, "a/") && !strings.HasPrefix(n, "b/") {
				return false
			}
		}
	}
	return true
}

// name confines a name of the patch to /workspace and resolves its
// parents (the name itself is never followed).
func (p *patcher) name(n string) (wsPath, error) {
	if p.strip {
		_, n, _ = strings.Cut(n, "/")
	}
	if path.IsAbs(n) {
		if _, ok := archive.Within(api.WorkspaceRoot, path.Clean(n)); !ok {
			return wsPath{}, outsideErr(n, path.Clean(n))
		}
	}
	wp, err := p.w.resolve(n, false)
	if err != nil {
		return wsPath{}, err
	}
	if wp.rel == "." {
		return wsPath{}, errdefs.New(errdefs.ErrInvalidArgument, "", "the patch names /workspace itself")
	}
	return wp, nil
}

// state is what rel holds after the changes staged so far.
func (p *patcher) state(wp wsPath) (*pending, error) {
	if st, ok := p.plan[wp.rel]; ok {
		return st, nil
	}
	st := &pending{rel: wp.rel, guest: wp.guest, onDisk: true}
	sd, err := p.w.statRel(wp.rel)
	switch {
	case err == nil:
		st.exists, st.wasThere, st.mode = true, true, sd.Mode&0o7777
		switch sd.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			st.kind = kindFile
		case unix.S_IFLNK:
			st.kind = kindLink
		case unix.S_IFDIR:
			st.kind, st.diskDir = kindDir, true
		default:
			return nil, conflict(wp.guest, "it is a device, FIFO or socket")
		}
	case errors.Is(err, unix.ENOENT):
	case errors.Is(err, unix.ENOTDIR):
		// A parent is a file: the parent check of a new file says so.
	default:
		return nil, openErr(wp, err)
	}
	p.plan[wp.rel] = st
	p.order = append(p.order, wp.rel)
	return st, nil
}

func conflict(guest, why string) error {
	return errdefs.New(errdefs.ErrConflict, "read the file as it is now (workspace file read) and make the patch against it; nothing was changed",
		"patch does not apply to %s: %s", guest, why)
}

// stage computes one file's change.
func (p *patcher) stage(f *gitdiff.File) (api.PatchFile, error) {
	pf := api.PatchFile{}
	for _, fr := range f.TextFragments {
		pf.Insertions += fr.LinesAdded
		pf.Deletions += fr.LinesDeleted
	}
	var src, dst *pending
	var srcPath, dstPath wsPath
	var err error
	if !f.IsNew {
		if srcPath, err = p.name(f.OldName); err != nil {
			return pf, err
		}
		if src, err = p.state(srcPath); err != nil {
			return pf, err
		}
		if !src.exists {
			return pf, conflict(srcPath.guest, "it does not exist")
		}
		if src.kind == kindDir {
			return pf, conflict(srcPath.guest, "it is a directory")
		}
		if src.kind == kindLink && f.OldMode == 0 && f.NewMode == 0 {
			t, _ := readlinkat(p.w.fd, src.rel)
			return pf, conflict(srcPath.guest, "it is a symlink (to "+t+"); patch the file it points to")
		}
		if want := kindOfMode(f.OldMode); f.OldMode != 0 && want != src.kind {
			return pf, conflict(srcPath.guest, fmt.Sprintf("the patch expects %s, it is %s", kindWord(want), kindWord(src.kind)))
		}
	}
	if !f.IsDelete {
		if dstPath, err = p.name(f.NewName); err != nil {
			return pf, err
		}
		if dst, err = p.state(dstPath); err != nil {
			return pf, err
		}
		if (f.IsNew || f.IsRename || f.IsCopy) && dst.exists && dst != src {
			return pf, conflict(dstPath.guest, "it already exists")
		}
		if dst.exists && dst.kind == kindDir {
			return pf, conflict(dstPath.guest, "it is a directory")
		}
		if err := p.parentsOK(dstPath); err != nil {
			return pf, err
		}
	}
	pf.Path = relOf(dstPath, srcPath)
	switch {
	case f.IsNew:
		pf.Status = api.StatusAdded
	case f.IsDelete:
		pf.Status = api.StatusDeleted
	case f.IsRename:
		pf.Status, pf.OldPath = api.StatusRenamed, srcPath.rel
	case f.IsCopy:
		pf.Status, pf.OldPath = api.StatusCopied, srcPath.rel
	case len(f.TextFragments) == 0 && f.BinaryFragment == nil && f.OldMode != f.NewMode:
		pf.Status = api.StatusModeChanged
	default:
		pf.Status = api.StatusModified
	}
	// The new content, from the old one (or from nothing).
	from := &pending{kind: kindOfMode(f.NewMode)}
	if src != nil {
		from = src
	}
	result, err := p.apply(f, from, relOf(srcPath, dstPath))
	if err != nil {
		return pf, err
	}
	if f.IsDelete {
		if result.size != 0 {
			return pf, conflict(srcPath.guest, "the file has more content than the patch deletes")
		}
		src.exists, src.onDisk, src.staged = false, false, ""
		return pf, nil
	}
	kind := from.kind
	if f.NewMode != 0 {
		kind = kindOfMode(f.NewMode)
	}
	mode := from.mode
	switch {
	case f.NewMode != 0 && (f.IsNew || f.NewMode != f.OldMode):
		mode = uint32(f.NewMode.Perm())
	case f.IsNew || mode == 0:
		mode = 0o644
	}
	if kind == kindLink {
		mode = 0o777
	}
	dst.exists, dst.kind, dst.modeSet = true, kind, dst.mode != mode || !dst.wasThere
	dst.mode = mode
	if result.unchanged && src != dst {
		// A rename or copy as it is: the content moves to its new place.
		if result, err = p.copyOf(from, relOf(srcPath, dstPath)); err != nil {
			return pf, err
		}
	}
	if result.unchanged {
		// Content as it is (a mode change only).
	} else {
		dst.onDisk, dst.staged, dst.link = false, result.staged, result.link
	}
	if f.IsRename && src != dst {
		src.exists, src.onDisk, src.staged = false, false, ""
	}
	return pf, nil
}

func relOf(a, b wsPath) string {
	if a.guest != "" {
		r, _ := archive.Within(api.WorkspaceRoot, a.guest)
		return r
	}
	r, _ := archive.Within(api.WorkspaceRoot, b.guest)
	return r
}

func kindOfMode(m os.FileMode) int {
	if m&os.ModeType == os.ModeSymlink || m&0o170000 == 0o120000 {
		return kindLink
	}
	return kindFile
}

func kindWord(k int) string {
	switch k {
	case kindLink:
		return "a symlink"
	case kindDir:
		return "a directory"
	}
	return "a regular file"
}

// parentsOK checks that the directories above wp are, or will be,
// directories.
func (p *patcher) parentsOK(wp wsPath) error {
	for dir := path.Dir(wp.rel); dir != "."; dir = path.Dir(dir) {
		st, ok := p.plan[dir]
		if ok {
			if st.exists && st.kind != kindDir {
				return conflict(wp.guest, path.Join(api.WorkspaceRoot, dir)+" is not a directory")
			}
			continue
		}
		sd, err := p.w.statRel(dir)
		if err == nil && sd.Mode&unix.S_IFMT != unix.S_IFDIR {
			return conflict(wp.guest, path.Join(api.WorkspaceRoot, dir)+" is not a directory")
		}
	}
	return nil
}

// applied is a staged result.
type applied struct {
	staged    string // a file's content in the staging directory
	link      string // a symlink's target
	size      int64
	unchanged bool // no fragment: the content stays as it is
}

// apply runs f's fragments on from's content.
func (p *patcher) apply(f *gitdiff.File, from *pending, rel string) (*applied, error) {
	guest := path.Join(api.WorkspaceRoot, rel)
	if len(f.TextFragments) == 0 && f.BinaryFragment == nil && !from.exists {
		// A new empty file.
		if kindOfMode(f.NewMode) == kindLink {
			return nil, conflict(guest, "the patch makes a symlink without a target")
		}
		name, out, err := p.stageFile()
		if err != nil {
			return nil, err
		}
		out.Close()
		return &applied{staged: name}, nil
	}
	if len(f.TextFragments) == 0 && f.BinaryFragment == nil {
		res := &applied{unchanged: true, link: from.link}
		if from.exists && from.kind == kindFile {
			src, size, err := p.open(from)
			if err != nil {
				return nil, err
			}
			src.Close()
			res.size = size
		}
		return res, nil
	}
	src, size, err := p.open(from)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	slices.SortStableFunc(f.TextFragments, func(a, b *gitdiff.TextFragment) int { return int(a.OldPosition - b.OldPosition) })
	var lines []string
	if len(f.TextFragments) > 0 && size <= relocateMax {
		if lines, err = readLines(src, size); err != nil {
			return nil, err
		}
		relocate(f.TextFragments, lines)
	}
	toLink := kindOfMode(f.NewMode) == kindLink || f.NewMode == 0 && from.kind == kindLink
	if toLink {
		var b bytes.Buffer
		if err := gitdiff.Apply(&limitedBuffer{&b, 4096}, src, f); err != nil {
			return nil, applyErr(guest, f, err, lines)
		}
		return &applied{link: b.String(), size: int64(b.Len())}, nil
	}
	name, out, err := p.stageFile()
	if err != nil {
		return nil, err
	}
	cw := &countWriter{w: out}
	err = gitdiff.Apply(cw, src, f)
	if cerr := out.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return nil, applyErr(guest, f, err, lines)
	}
	return &applied{staged: name, size: cw.n}, nil
}

// copyOf stages a copy of what from holds.
func (p *patcher) copyOf(from *pending, rel string) (*applied, error) {
	src, size, err := p.open(from)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	if from.kind == kindLink {
		b := make([]byte, size)
		src.ReadAt(b, 0)
		return &applied{link: string(b), size: size}, nil
	}
	name, out, err := p.stageFile()
	if err != nil {
		return nil, err
	}
	n, err := io.Copy(out, io.NewSectionReader(src, 0, size))
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, openErr(wsPath{guest: path.Join(api.WorkspaceRoot, rel), rel: rel}, err)
	}
	return &applied{staged: name, size: n}, nil
}

// relocateMax bounds the files whose hunks may be looked for away from
// the lines they name (and whose lines a failure quotes).
const relocateMax = 16 << 20

// open returns a reader of what from holds now.
func (p *patcher) open(from *pending) (*readerAtCloser, int64, error) {
	switch {
	case !from.exists:
		return &readerAtCloser{ReaderAt: bytes.NewReader(nil)}, 0, nil
	case from.kind == kindLink && from.onDisk:
		t, err := readlinkat(p.w.fd, from.rel)
		if err != nil {
			return nil, 0, openErr(wsPath{guest: from.guest, rel: from.rel}, err)
		}
		return &readerAtCloser{ReaderAt: strings.NewReader(t)}, int64(len(t)), nil
	case from.kind == kindLink:
		return &readerAtCloser{ReaderAt: strings.NewReader(from.link)}, int64(len(from.link)), nil
	case from.onDisk:
		f, st, err := p.w.openRegular(wsPath{guest: from.guest, rel: from.rel})
		if err != nil {
			return nil, 0, err
		}
		return &readerAtCloser{ReaderAt: f, c: f}, st.Size, nil
	}
	fd, err := unix.Openat(p.stgFD, from.staged, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, 0, errdefs.Wrap(errdefs.ErrInternal, err, "", "patch: reading a staged file")
	}
	f := os.NewFile(uintptr(fd), from.staged)
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return &readerAtCloser{ReaderAt: f, c: f}, fi.Size(), nil
}

type readerAtCloser struct {
	io.ReaderAt
	c io.Closer
}

func (r *readerAtCloser) Close() {
	if r.c != nil {
		r.c.Close()
	}
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// limitedBuffer refuses to grow past max (a symlink target).
type limitedBuffer struct {
	b   *bytes.Buffer
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if l.b.Len()+len(p) > l.max {
		return 0, errors.New("symlink target too long")
	}
	return l.b.Write(p)
}

// stageFile creates a new file in the staging directory (made on first use).
func (p *patcher) stageFile() (string, *os.File, error) {
	if p.stg == "" {
		root := p.rootFD()
		if root < 0 {
			return "", nil, errdefs.New(errdefs.ErrInternal, "", "patch: opening /workspace")
		}
		for {
			var b [6]byte
			rand.Read(b[:])
			name := ".pyro-patch-" + hex.EncodeToString(b[:])
			if err := unix.Mkdirat(root, name, 0o700); errors.Is(err, unix.EEXIST) {
				continue
			} else if err != nil {
				return "", nil, openErr(wsPath{guest: api.WorkspaceRoot, rel: "."}, err)
			}
			fd, err := unix.Openat(root, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err != nil {
				unix.Unlinkat(root, name, unix.AT_REMOVEDIR)
				return "", nil, errdefs.Wrap(errdefs.ErrInternal, err, "", "patch: staging")
			}
			p.stg, p.stgFD = name, fd
			break
		}
	}
	name, f, err := createTemp(p.stgFD, "")
	if err != nil {
		return "", nil, openErr(wsPath{guest: api.WorkspaceRoot, rel: "."}, err)
	}
	return name, f, nil
}

// cleanup removes the staging directory and what is left in it.
func (p *patcher) cleanup() {
	defer func() {
		if p.root >= 0 {
			unix.Close(p.root)
		}
	}()
	if p.stg == "" {
		return
	}
	if f := os.NewFile(uintptr(p.stgFD), p.stg); f != nil {
		names, _ := f.Readdirnames(-1)
		for _, n := range names {
			unix.Unlinkat(p.stgFD, n, 0)
		}
		f.Close()
	}
	unix.Unlinkat(p.root, p.stg, unix.AT_REMOVEDIR)
}
