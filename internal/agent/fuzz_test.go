package agent_test

import (
	"archive/tar"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/pyro-mcp/pyro/internal/agentproto"
	"github.com/pyro-mcp/pyro/internal/archive"
)

// fuzzTar builds a tar from the fuzzers' compact notation: one member per
// line, "KIND NAME [TARGET]", KIND d, f, l or h (or a raw type flag).
func fuzzTar(spec string) *bytes.Buffer {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	n := 0
	for _, line := range strings.Split(spec, "\n") {
		f := strings.SplitN(line, " ", 3)
		if len(f) < 2 || f[0] == "" || n >= 32 {
			continue
		}
		n++
		h := &tar.Header{Name: f[1], Mode: 0o644, Typeflag: f[0][0]}
		switch f[0] {
		case "d":
			h.Typeflag = tar.TypeDir
		case "f":
			h.Typeflag, h.Size = tar.TypeReg, 1
		case "l":
			h.Typeflag = tar.TypeSymlink
		case "h":
			h.Typeflag = tar.TypeLink
		}
		if len(f) == 3 {
			h.Linkname = f[2]
		}
		if tw.WriteHeader(h) != nil {
			continue
		}
		if h.Size == 1 {
			tw.Write([]byte("x"))
		}
	}
	tw.Close()
	return &buf
}

// FuzzPutArchive drives the guest's put_archive with arbitrary archives
// into a destination that already holds hostile symlinks. Accepted or not,
// nothing outside the destination may change, and every symlink under it
// must resolve inside it (or nowhere).
func FuzzPutArchive(f *testing.F) {
	for _, seed := range []string{
		"d a\nf a/f\nl l a/f\nh h a/f",
		"d a\nl a/l ..\nl b a/l/..",
		"l b up/x",
		"l b etc/passwd",
		"f etc/passwd",
		"l in .\nf in/x",
		"l abs /workspace/d/a\nf abs/x",
		"l abs /workspace",
		"d a\nl a/up ..\nl a/up2 up\nl c a/up2/..",
		"f x\nl x .\nl y x/..",
	} {
		f.Add(seed)
	}
	c, root := serve(f)
	ws := filepath.Join(root, "workspace")
	os.WriteFile(filepath.Join(root, "outside.txt"), []byte("outside"), 0o644)
	var n atomic.Int64
	f.Fuzz(func(t *testing.T, spec string) {
		dest := fmt.Sprintf("d%d", n.Add(1))
		hostDest := filepath.Join(ws, dest)
		os.MkdirAll(hostDest, 0o755)
		os.Symlink("..", filepath.Join(hostDest, "up"))
		os.Symlink("/etc", filepath.Join(hostDest, "etc"))
		defer os.RemoveAll(hostDest)
		before := snapshotExcept(t, root, hostDest)
		req := agentproto.PutArchiveRequest{Dest: "/workspace/" + dest, Root: "/workspace", MaxBytes: 1 << 20}
		_, err := c.PutArchive(t.Context(), req, fuzzTar(spec))
		if d := cmp.Diff(before, snapshotExcept(t, root, hostDest)); d != "" {
			t.Fatalf("archive %q (err %v) changed the tree outside its destination:\n%s", spec, err, d)
		}
		if err != nil {
			return
		}
		realDest, _ := filepath.EvalSymlinks(hostDest)
		filepath.WalkDir(hostDest, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.Type()&os.ModeSymlink == 0 || p == filepath.Join(hostDest, "up") || p == filepath.Join(hostDest, "etc") {
				return nil
			}
			r, err := filepath.EvalSymlinks(p)
			if err != nil {
				return nil
			}
			if _, ok := archive.Within(realDest, r); !ok {
				t.Fatalf("archive %q: %s resolves to %s, outside the destination", spec, p, r)
			}
			return nil
		})
	})
}

func snapshotExcept(t *testing.T, root, skip string) []string {
	var out []string
	for _, line := range snapshot(t, root) {
		rel, _ := filepath.Rel(root, skip)
		if line == rel || strings.HasPrefix(line, rel+"/") || strings.HasPrefix(line, rel+" ") {
			continue
		}
		// Directory sizes and mtimes move with the destination beside them.
		if strings.HasPrefix(line, "workspace ") || strings.HasPrefix(line, ". ") {
			continue
		}
		out = append(out, line)
	}
	return out
}
