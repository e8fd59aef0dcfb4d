package archive

import (
	"archive/tar"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// parseMembers reads the fuzzers' compact archive notation: one member per
// line, "KIND NAME [TARGET]" with KIND d (directory), f (file), l
// (symlink) or h (hard link); any other KIND is taken as a raw type flag.
func parseMembers(s string) []*tar.Header {
	var hs []*tar.Header
	for _, line := range strings.Split(s, "\n") {
		f := strings.SplitN(line, " ", 3)
		if len(f) < 2 || f[0] == "" || len(hs) >= 64 {
			continue
		}
		h := &tar.Header{Name: f[1], Mode: 0o644}
		switch f[0] {
		case "d":
			h.Typeflag = tar.TypeDir
		case "f":
			h.Typeflag = tar.TypeReg
		case "l":
			h.Typeflag = tar.TypeSymlink
		case "h":
			h.Typeflag = tar.TypeLink
		default:
			h.Typeflag = f[0][0]
		}
		if len(f) == 3 {
			h.Linkname = f[2]
		}
		hs = append(hs, h)
	}
	return hs
}

// FuzzTree checks the member policy against the kernel: whatever the tree
// accepts is materialised under dest, and then every symlink under dest
// must either fail to resolve or resolve inside dest, and nothing may
// appear beside dest.
func FuzzTree(f *testing.F) {
	for _, seed := range []string{
		"d a\nf a/f\nl l a/f\nh h a/f",
		"d a\nl a/l ..\nl b a/l/..",
		"l b a/l/..\nd a\nl a/l ..",
		"d a\nl a/up ..\nl a/up2 up\nl c a/up2/..",
		"l x y\nl y x\nl z x/..",
		"d d\nd d/e\nl s d/e\nl t s/..\nl u t/..",
		"l in .\nf in/x",
		"l l /etc",
		"f ../x",
		"h h ../etc/passwd",
		"d a\nd a/b\nl a/b/l ../../x\nl m a/b/l/../..",
		"l a .\nl b a/a/a/..",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		hs := parseMembers(spec)
		tr := NewTree(TreeOptions{})
		var ms []Member
		for _, h := range hs {
			m, skip, err := tr.Add(h)
			if err != nil {
				return
			}
			if !skip {
				ms = append(ms, m)
			}
		}
		if tr.Finish() != nil {
			return
		}
		top := t.TempDir()
		dest := filepath.Join(top, "dest")
		if err := os.Mkdir(dest, 0o755); err != nil {
			t.Fatal(err)
		}
		materialise(dest, ms)
		ents, _ := os.ReadDir(top)
		if len(ents) != 1 {
			t.Fatalf("accepted %q wrote beside dest: %v", spec, ents)
		}
		realDest, _ := filepath.EvalSymlinks(dest)
		filepath.WalkDir(dest, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.Type()&os.ModeSymlink == 0 {
				return nil
			}
			r, err := filepath.EvalSymlinks(p)
			if err != nil {
				return nil // dangling or a loop: leads nowhere
			}
			if _, ok := Within(realDest, r); !ok {
				t.Fatalf("accepted %q: %s resolves to %s, outside dest", spec, p, r)
			}
			return nil
		})
	})
}

// materialise extracts members the way tar would, ignoring what fails.
func materialise(dest string, ms []Member) {
	for _, m := range ms {
		p := filepath.Join(dest, m.Name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		switch m.Type {
		case tar.TypeDir:
			os.Mkdir(p, 0o755)
		case tar.TypeReg:
			os.Remove(p)
			os.WriteFile(p, []byte("x"), 0o644)
		case tar.TypeSymlink:
			os.Remove(p)
			os.Symlink(m.Linkname, p)
		case tar.TypeLink:
			os.Remove(p)
			os.Link(filepath.Join(dest, m.Linkname), p)
		}
	}
}
