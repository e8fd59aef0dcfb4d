package agent

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path"
	"slices"
	"strings"

	"github.com/bluekeyes/go-gitdiff/gitdiff"
	"golang.org/x/sys/unix"

	"github.com/pyro-mcp/pyro/api"
	"github.com/pyro-mcp/pyro/internal/errdefs"
)

// Step 2 of patchApply (patch.go): each file's new content, made in the
// staging directory from what the path holds so far.

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
	err = gitdiff.Apply(out, src, f)
	var written int64
	if err == nil {
		written, err = out.Seek(0, io.SeekCurrent) // the file is new: its offset is what was written
	}
	if cerr := out.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return nil, applyErr(guest, f, err, lines)
	}
	return &applied{staged: name, size: written}, nil
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
