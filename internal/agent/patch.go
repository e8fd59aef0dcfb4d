package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
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
