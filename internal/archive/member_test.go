package archive

import (
	"archive/tar"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/internal/errdefs"
)

func hdr(name string, typ byte, link string) *tar.Header {
	return &tar.Header{Name: name, Typeflag: typ, Linkname: link}
}

// addAll feeds members to a tree and returns the first refusal (Finish
// included).
func addAll(t *Tree, hs ...*tar.Header) error {
	for _, h := range hs {
		if _, _, err := t.Add(h); err != nil {
			return err
		}
	}
	return t.Finish()
}

func TestTreeLinks(t *testing.T) {
	const (
		dir  = tar.TypeDir
		reg  = tar.TypeReg
		sym  = tar.TypeSymlink
		hard = tar.TypeLink
	)
	tests := []struct {
		name     string
		dest     string
		existing map[string]string // symlinks already on disk
		members  []*tar.Header
		wantErr  string // "" accepts; else the refused member and reason fragment
	}{
		{"plain tree", "", nil, []*tar.Header{hdr("a/", dir, ""), hdr("a/f", reg, ""), hdr("l", sym, "a/f"), hdr("h", hard, "a/f")}, ""},
		{"link up inside", "", nil, []*tar.Header{hdr("a/b/", dir, ""), hdr("a/b/l", sym, "../../x")}, ""},
		{"link up out", "", nil, []*tar.Header{hdr("a/l", sym, "../..")}, `"a/l": link to ../.. leaves`},
		{"chained: a/l -> .. then b -> a/l/..", "", nil, []*tar.Header{hdr("a/", dir, ""), hdr("a/l", sym, ".."), hdr("b", sym, "a/l/..")}, `"b": link to a/l/.. leaves`},
		{"chain built in reverse order", "", nil, []*tar.Header{hdr("b", sym, "a/l/.."), hdr("a/", dir, ""), hdr("a/l", sym, "..")}, `"b": link to a/l/.. leaves`},
		{"chain through a link to a link", "", nil, []*tar.Header{hdr("a/", dir, ""), hdr("a/up", sym, ".."), hdr("a/up2", sym, "up"), hdr("c", sym, "a/up2/..")}, `"c"`},
		{"link through link down stays", "", nil, []*tar.Header{hdr("d/e/", dir, ""), hdr("s", sym, "d/e"), hdr("t", sym, "s/..")}, ""},
		{"link redefined after a chain through it", "", nil, []*tar.Header{hdr("a/sub/", dir, ""), hdr("a/l", sym, "sub"), hdr("b", sym, "a/l/../.."), hdr("a/l", sym, "..")}, `"b"`},
		{"loop", "", nil, []*tar.Header{hdr("x", sym, "y"), hdr("y", sym, "x"), hdr("z", sym, "x/..")}, "too many levels"},
		{"absolute target without dest", "", nil, []*tar.Header{hdr("l", sym, "/etc")}, "absolute path /etc"},
		{"absolute target under dest", "/workspace/app", nil, []*tar.Header{hdr("s/", dir, ""), hdr("s/l", sym, "/workspace/app/x")}, ""},
		{"absolute target above dest", "/workspace/app", nil, []*tar.Header{hdr("l", sym, "/workspace")}, "leaves"},
		{"existing link on disk chained", "/workspace", map[string]string{"up": ".."}, []*tar.Header{hdr("b", sym, "up/x")}, `"b"`},
		{"existing absolute link on disk", "/workspace", map[string]string{"etc": "/etc"}, []*tar.Header{hdr("b", sym, "etc/passwd")}, `"b"`},
		{"existing link inside is fine", "/workspace", map[string]string{"src": "lib"}, []*tar.Header{hdr("b", sym, "src/x")}, ""},
		{"member through archive symlink", "", nil, []*tar.Header{hdr("in", sym, "."), hdr("in/x", reg, "")}, `"in/x": its parent "in" is a symlink`},
		{"member under a file", "", nil, []*tar.Header{hdr("f", reg, ""), hdr("f/x", reg, "")}, "not a directory"},
		{"type change", "", nil, []*tar.Header{hdr("x/", dir, ""), hdr("x", sym, ".")}, "another type"},
		{"hard link to a later file", "", nil, []*tar.Header{hdr("h", hard, "f"), hdr("f", reg, "")}, "not a regular file earlier"},
		{"hard link to a symlink", "", nil, []*tar.Header{hdr("l", sym, "x"), hdr("h", hard, "l")}, "not a regular file earlier"},
		{"hard link dotdot", "", nil, []*tar.Header{hdr("h", hard, "../etc/passwd")}, "escapes"},
		{"empty link", "", nil, []*tar.Header{hdr("l", sym, "")}, "empty link target"},
		{"dot file", "", nil, []*tar.Header{hdr("./", reg, "")}, "not a valid file name"},
		{"dot dir skipped", "", nil, []*tar.Header{hdr("./", dir, "")}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var existing Existing
			if tt.existing != nil {
				existing = func(rel string) (bool, string, bool) {
					target, ok := tt.existing[rel]
					return ok, target, ok
				}
			}
			err := addAll(NewTree(TreeOptions{Dest: tt.dest, Existing: existing}), tt.members...)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var me *MemberError
			if !errors.As(err, &me) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want a MemberError containing %q", err, tt.wantErr)
			}
		})
	}
}

// Links that each name the previous one twice must not cost 2^n steps:
// the hop budget is shared by the whole resolution.
func TestTreeNestedLinksAreBounded(t *testing.T) {
	hs := []*tar.Header{hdr("x0/", tar.TypeDir, "")}
	for i := 1; i < 60; i++ {
		hs = append(hs, hdr(fmt.Sprintf("x%d", i), tar.TypeSymlink, fmt.Sprintf("x%d/x%d", i-1, i-1)))
	}
	start := time.Now()
	err := addAll(NewTree(TreeOptions{}), hs...)
	if err == nil || !strings.Contains(err.Error(), "too many levels") {
		t.Fatalf("err = %v, want too many levels", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("took %s", d)
	}
}

func TestTreeRewritesAbsoluteTargets(t *testing.T) {
	tr := NewTree(TreeOptions{Dest: "/workspace/app"})
	m, _, err := tr.Add(hdr("a/b/l", tar.TypeSymlink, "/workspace/app/src"))
	if err != nil {
		t.Fatal(err)
	}
	if m.Linkname != "../../src" {
		t.Fatalf("target = %q, want ../../src", m.Linkname)
	}
}

// The host's directory walk resolves chains too.
func TestDirectoryLinkChain(t *testing.T) {
	dir := t.TempDir()
	must(t, os.Mkdir(filepath.Join(dir, "a"), 0o755))
	must(t, os.Symlink("..", filepath.Join(dir, "a", "l")))
	must(t, os.Symlink("a/l/..", filepath.Join(dir, "b")))
	if _, err := Check(t.Context(), dir, DefaultLimits); err == nil || !strings.Contains(err.Error(), `refusing "b"`) {
		t.Fatalf("err = %v, want b refused", err)
	}
}

// A file swapped for a FIFO, a symlink or another file between the check
// and the read is refused at once, never read and never waited on.
func TestOpenCheckedRefusesSwaps(t *testing.T) {
	tests := []struct {
		name    string
		swap    func(t *testing.T, p string)
		wantErr string
	}{
		{"fifo", func(t *testing.T, p string) { must(t, syscall.Mkfifo(p, 0o644)) }, "no longer a regular file"},
		{"symlink", func(t *testing.T, p string) { must(t, os.Symlink("/etc/passwd", p)) }, "became a symlink"},
		{"parent became a symlink", nil, "a directory above it"},
		{"other file", func(t *testing.T, p string) { must(t, os.WriteFile(p, []byte("same"), 0o644)) }, "another file"},
		{"grown", nil, "size went"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			must(t, os.Mkdir(filepath.Join(root, "d"), 0o755))
			rel := "d/f"
			p := filepath.Join(root, rel)
			must(t, os.WriteFile(p, []byte("same"), 0o644))
			fi, err := os.Lstat(p)
			must(t, err)
			switch {
			case tt.name == "parent became a symlink":
				// d is swapped for a link to a directory holding a file
				// that looks just like the one checked (same inode: a
				// hard link), which only the path walk can catch.
				elsewhere := filepath.Join(t.TempDir(), "e")
				must(t, os.Mkdir(elsewhere, 0o755))
				must(t, os.Link(p, filepath.Join(elsewhere, "f")))
				must(t, os.Rename(filepath.Join(root, "d"), filepath.Join(root, "d.old")))
				must(t, os.Symlink(elsewhere, filepath.Join(root, "d")))
			case tt.swap != nil:
				// Keep the checked file alive elsewhere so its inode is not reused.
				must(t, os.Rename(p, p+".old"))
				tt.swap(t, p)
			default:
				must(t, os.WriteFile(p, []byte("longer now"), 0o644))
			}
			done := make(chan error, 1)
			go func() {
				f, err := openChecked(root, rel, p, fi)
				closeFile(f)
				done <- err
			}()
			select {
			case err := <-done:
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, errdefs.ErrConflict) {
					t.Fatalf("err = %v, want conflict %q", err, tt.wantErr)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("openChecked blocked")
			}
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
