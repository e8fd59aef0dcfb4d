package archive

import (
	"archive/tar"
	"fmt"
	"path"
	"strings"
)

// This file is the one policy for archive members, used on the host (a seed
// or sync source, before anything is sent) and in the guest (put_archive,
// before anything is written): which names, types and links a member may
// have so that extracting the archive under a destination directory never
// writes, or leaves a link, outside it.

// MemberError says why a member was refused. Each side words the sentence
// around it ("refusing %q: ..." on the host, "archive member %q: ..." in
// the guest).
type MemberError struct {
	Name   string // the member's name as the archive spells it
	Reason string
}

func (e *MemberError) Error() string { return fmt.Sprintf("%q: %s", e.Name, e.Reason) }

func refuse(name, format string, args ...any) error {
	return &MemberError{Name: name, Reason: fmt.Sprintf(format, args...)}
}

// maxLinkHops bounds how many symlinks one resolution follows, as the
// kernel's ELOOP does (40).
const maxLinkHops = 40

// Member is an accepted member, normalised.
type Member struct {
	Name     string // clean, relative to the destination; never "." or empty
	Type     byte   // tar.TypeDir, tar.TypeReg, tar.TypeSymlink or tar.TypeLink
	Linkname string // symlink target (always relative) or hard link target (a clean member name)
}

// Existing describes what is already on disk at a path relative to the
// destination (the guest extracting into a tree that has content). ok is
// false when nothing is there.
type Existing func(rel string) (symlink bool, target string, ok bool)

// TreeOptions configures a Tree.
type TreeOptions struct {
	// Dest is the destination's absolute path where it is known (the
	// guest): a symlink to an absolute target under Dest is accepted and
	// rewritten relative. Empty (the host): absolute targets are refused.
	Dest string
	// Existing, when set, is consulted for paths the archive does not
	// define while resolving links.
	Existing Existing
}

type node struct {
	typ    byte // tar.TypeDir, tar.TypeReg (files and hard links) or tar.TypeSymlink
	target string
}

// Tree checks the members of one archive in order, remembering what the
// archive makes so that links are resolved against the archive's own tree
// (and what exists already), not textually: `a/l -> ..` followed by
// `b -> a/l/..` is refused although each looks harmless alone. Call Add
// for each member, then Finish once the archive ended.
type Tree struct {
	opts  TreeOptions
	nodes map[string]node
	links []string // symlink names, in order
}

// NewTree starts checking an archive.
func NewTree(opts TreeOptions) *Tree {
	return &Tree{opts: opts, nodes: map[string]node{}}
}

// CleanName returns a member name cleaned, refusing empty and absolute
// names and any ".." component. The result may be "." (the destination).
func CleanName(name string) (string, error) {
	if name == "" {
		return "", refuse(name, "empty name")
	}
	if strings.HasPrefix(name, "/") {
		return "", refuse(name, "absolute path is not allowed")
	}
	if strings.ContainsRune(name, 0) {
		return "", refuse(name, "NUL in the name")
	}
	for _, part := range strings.Split(name, "/") {
		if part == ".." {
			return "", refuse(name, "path escapes the destination (..)")
		}
	}
	return path.Clean(name), nil
}

// Add checks one member. skip is true for members that carry nothing to
// extract (the destination itself, PAX global headers).
func (t *Tree) Add(hdr *tar.Header) (m Member, skip bool, err error) {
	if hdr.Typeflag == tar.TypeXGlobalHeader || hdr.Typeflag == tar.TypeXHeader {
		return Member{}, true, nil
	}
	name, err := CleanName(hdr.Name)
	if err != nil {
		return Member{}, false, err
	}
	if name == "." {
		if hdr.Typeflag == tar.TypeDir {
			return Member{}, true, nil
		}
		return Member{}, false, refuse(hdr.Name, "not a valid file name")
	}
	m = Member{Name: name}
	switch hdr.Typeflag {
	case tar.TypeDir:
		m.Type = tar.TypeDir
	case tar.TypeReg, tar.TypeRegA:
		m.Type = tar.TypeReg
	case tar.TypeSymlink:
		m.Type = tar.TypeSymlink
		if m.Linkname, err = t.symlinkTarget(hdr.Name, name, hdr.Linkname); err != nil {
			return Member{}, false, err
		}
	case tar.TypeLink:
		m.Type = tar.TypeLink
		target, err := CleanName(hdr.Linkname)
		if err != nil {
			return Member{}, false, refuse(hdr.Name, "hard link target %q escapes the destination (..) or is absolute", hdr.Linkname)
		}
		if n, ok := t.nodes[target]; !ok || n.typ != tar.TypeReg {
			return Member{}, false, refuse(hdr.Name, "hard link target %q is not a regular file earlier in the archive", hdr.Linkname)
		}
		m.Linkname = target
	case tar.TypeChar, tar.TypeBlock:
		return Member{}, false, refuse(hdr.Name, "device nodes are not allowed")
	case tar.TypeFifo:
		return Member{}, false, refuse(hdr.Name, "FIFOs are not allowed")
	default:
		return Member{}, false, refuse(hdr.Name, "unsupported member type %q", hdr.Typeflag)
	}
	// No member may be written through a symlink or a file, whether the
	// archive made it or not (Existing parents are the caller's to check,
	// since it knows the tree it writes into).
	for p := path.Dir(name); p != "."; p = path.Dir(p) {
		if n, ok := t.nodes[p]; ok && n.typ == tar.TypeSymlink {
			return Member{}, false, refuse(hdr.Name, "its parent %q is a symlink in the archive", p)
		} else if ok && n.typ != tar.TypeDir {
			return Member{}, false, refuse(hdr.Name, "its parent %q is not a directory in the archive", p)
		}
	}
	kind := m.Type
	if kind == tar.TypeLink {
		kind = tar.TypeReg
	}
	if prev, ok := t.nodes[name]; ok && prev.typ != kind {
		return Member{}, false, refuse(hdr.Name, "an earlier member of another type has the same name")
	}
	t.nodes[name] = node{typ: kind, target: m.Linkname}
	if kind == tar.TypeSymlink {
		t.links = append(t.links, name)
		// Early answer; Finish decides once the whole tree is known.
		if err := t.checkLink(hdr.Name, name, m.Linkname); err != nil {
			return Member{}, false, err
		}
	}
	return m, false, nil
}

// symlinkTarget validates a symlink's target textually and returns it in
// the relative form that is stored.
func (t *Tree) symlinkTarget(orig, name, target string) (string, error) {
	if target == "" {
		return "", refuse(orig, "empty link target")
	}
	if strings.ContainsRune(target, 0) {
		return "", refuse(orig, "NUL in the link target")
	}
	if !path.IsAbs(target) {
		return target, nil
	}
	rel, ok := t.underDest(path.Clean(target))
	if !ok {
		return "", refuse(orig, "link to absolute path %s leaves the destination", target)
	}
	// Stored relative so that it means the same wherever the destination
	// is mounted (host-compat's root is not the guest's /).
	return RelativeTo(path.Dir(name), rel), nil
}

// underDest returns abs relative to Dest, when it is Dest or below it.
func (t *Tree) underDest(abs string) (string, bool) {
	if t.opts.Dest == "" {
		return "", false
	}
	return Within(path.Clean(t.opts.Dest), abs)
}

// Finish re-checks every symlink against the final tree: a member added
// after a link can change where the link leads.
func (t *Tree) Finish() error {
	for _, name := range t.links {
		n := t.nodes[name]
		if n.typ != tar.TypeSymlink {
			continue
		}
		if err := t.checkLink(name, name, n.target); err != nil {
			return err
		}
	}
	return nil
}

func (t *Tree) checkLink(orig, name, target string) error {
	hops := 0
	if _, err := t.resolve(path.Dir(name)+"/"+target, &hops); err != nil {
		if err == errLoop {
			return refuse(orig, "link to %s: too many levels of symlinks", target)
		}
		return refuse(orig, "link to %s leaves the destination", target)
	}
	return nil
}

type resolveError string

func (e resolveError) Error() string { return string(e) }

const (
	errEscape = resolveError("leaves the destination")
	errLoop   = resolveError("too many levels of symlinks")
)

// resolve follows p (relative to the destination) component by component
// as the kernel would, through symlinks the archive defines or that exist,
// and returns the components of the path it names. A ".." above the
// destination is errEscape. Components nobody defines are taken as plain
// directories: a path through them fails to open, it cannot escape.
// hops counts the symlinks followed over the whole resolution, nested ones
// included, as the kernel counts them: without a shared budget, links
// that each name the previous one twice would cost 2^n steps.
func (t *Tree) resolve(p string, hops *int) ([]string, error) {
	var stack []string
	for _, c := range strings.Split(p, "/") {
		switch c {
		case "", ".":
			continue
		case "..":
			if len(stack) == 0 {
				return nil, errEscape
			}
			stack = stack[:len(stack)-1]
			continue
		}
		stack = append(stack, c)
		target, isLink := t.link(strings.Join(stack, "/"))
		if !isLink {
			continue
		}
		if *hops++; *hops > maxLinkHops {
			return nil, errLoop
		}
		var next string
		if path.IsAbs(target) {
			rel, ok := t.underDest(path.Clean(target))
			if !ok {
				return nil, errEscape
			}
			next = rel
		} else {
			next = strings.Join(stack[:len(stack)-1], "/") + "/" + target
		}
		var err error
		if stack, err = t.resolve(next, hops); err != nil {
			return nil, err
		}
	}
	return stack, nil
}

// link reports whether rel is a symlink, in the archive or on disk.
func (t *Tree) link(rel string) (string, bool) {
	if n, ok := t.nodes[rel]; ok {
		return n.target, n.typ == tar.TypeSymlink
	}
	if t.opts.Existing != nil {
		if symlink, target, ok := t.opts.Existing(rel); ok && symlink {
			return target, true
		}
	}
	return "", false
}

// Within reports whether p is base or below it (both clean and absolute),
// and p relative to base.
func Within(base, p string) (string, bool) {
	if p == base {
		return ".", true
	}
	prefix := strings.TrimSuffix(base, "/") + "/"
	if strings.HasPrefix(p, prefix) {
		return strings.TrimPrefix(p, prefix), true
	}
	return "", false
}

// RelativeTo returns the relative path from dir to target (both clean and
// relative to the same root): how a symlink at dir/x names target.
func RelativeTo(dir, target string) string {
	var from, to []string
	if dir != "." {
		from = strings.Split(dir, "/")
	}
	if target != "." {
		to = strings.Split(target, "/")
	}
	i := 0
	for i < len(from) && i < len(to) && from[i] == to[i] {
		i++
	}
	parts := make([]string, 0, len(from)-i+len(to)-i)
	for range from[i:] {
		parts = append(parts, "..")
	}
	parts = append(parts, to[i:]...)
	if len(parts) == 0 {
		return "."
	}
	return strings.Join(parts, "/")
}
