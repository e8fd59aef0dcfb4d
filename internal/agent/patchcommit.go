package agent

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"path"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// commit puts every staged result in place: deletions first (and the
// directories they leave empty), then new and changed files, parents
// before children.
func (p *patcher) commit() error {
	var gone, made []*pending
	for _, rel := range p.order {
		st := p.plan[rel]
		switch {
		case !st.exists && st.wasThere:
			gone = append(gone, st)
		case st.exists && (!st.onDisk || st.modeSet):
			made = append(made, st)
		}
	}
	slices.SortFunc(gone, func(a, b *pending) int { return strings.Compare(b.rel, a.rel) })
	slices.SortFunc(made, func(a, b *pending) int { return strings.Compare(a.rel, b.rel) })
	for _, st := range gone {
		dir, base := path.Split(st.rel)
		dfd, err := p.w.mkdirs(strings.TrimSuffix(dir, "/"), wsPath{guest: st.guest, rel: st.rel})
		if err != nil {
			return err
		}
		err = unix.Unlinkat(dfd, base, 0)
		unix.Close(dfd)
		if err != nil && !errors.Is(err, unix.ENOENT) {
			return openErr(wsPath{guest: st.guest, rel: st.rel}, err)
		}
		p.removeEmptyParents(st.rel)
	}
	for _, st := range made {
		if err := p.place(st); err != nil {
			return err
		}
	}
	return nil
}

// place renames a staged result into place, or sets a mode.
func (p *patcher) place(st *pending) error {
	wp := wsPath{guest: st.guest, rel: st.rel}
	dir, base := path.Split(st.rel)
	dfd, err := p.w.mkdirs(strings.TrimSuffix(dir, "/"), wp)
	if err != nil {
		return err
	}
	defer unix.Close(dfd)
	switch {
	case st.onDisk:
		if st.kind != kindLink {
			if err := unix.Fchmodat(dfd, base, st.mode, 0); err != nil {
				return openErr(wp, err)
			}
		}
		return nil
	case st.kind == kindLink:
		// Made beside its place, then renamed over it.
		var b [6]byte
		rand.Read(b[:])
		tmp := ".pyro-link-" + hex.EncodeToString(b[:])
		if err := unix.Symlinkat(st.link, dfd, tmp); err != nil {
			return openErr(wp, err)
		}
		return renameOrErr(dfd, tmp, dfd, base, wp)
	}
	if err := unix.Fchmodat(p.stgFD, st.staged, st.mode, 0); err != nil {
		return openErr(wp, err)
	}
	return renameOrErr(p.stgFD, st.staged, dfd, base, wp)
}

func renameOrErr(ofd int, old string, nfd int, name string, wp wsPath) error {
	if err := unix.Renameat(ofd, old, nfd, name); err != nil {
		unix.Unlinkat(ofd, old, 0)
		return openErr(wp, err)
	}
	return nil
}

// removeEmptyParents removes the directories above rel that a deletion
// left empty, as git apply does.
func (p *patcher) removeEmptyParents(rel string) {
	for dir := path.Dir(rel); dir != "."; dir = path.Dir(dir) {
		if err := unix.Unlinkat(p.rootFD(), dir, unix.AT_REMOVEDIR); err != nil {
			return
		}
	}
}

func (p *patcher) rootFD() int {
	if p.root < 0 {
		fd, err := unix.Openat(p.w.fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return -1
		}
		p.root = fd
	}
	return p.root
}
