package ext4image

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pyro-mcp/pyro/internal/errdefs"
)

// image builds a small ext4 image from a tree with a file, a nested
// directory, fast and slow symlinks and a name with a space.
func image(t *testing.T) string {
	t.Helper()
	for _, b := range []string{"mkfs.ext4", "debugfs", "e2fsck"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("no %s", b)
		}
	}
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "d/e"), 0o750)
	os.WriteFile(filepath.Join(src, "d/e/f.txt"), []byte("hello ext4"), 0o600)
	os.WriteFile(filepath.Join(src, "sp ace"), []byte("x"), 0o644)
	os.Symlink("d/e/f.txt", filepath.Join(src, "fast"))
	os.Symlink(strings.Repeat("long/", 20)+"target", filepath.Join(src, "slow"))
	img := filepath.Join(t.TempDir(), "img.raw")
	f, _ := os.Create(img)
	f.Truncate(32 << 20)
	f.Close()
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-d", src, img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs: %v %s", err, out)
	}
	return img
}

func TestListStatRead(t *testing.T) {
	img := image(t)
	ctx := context.Background()
	ents, err := List(ctx, img, "/", true, func(p string) bool { return p == "/lost+found" })
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Entry{}
	for _, e := range ents {
		got[e.Path] = e
	}
	if len(ents) != 6 {
		t.Errorf("entries %v", ents)
	}
	if e := got["/d/e/f.txt"]; !e.IsRegular() || e.Size != 10 || e.Mode&0o777 != 0o600 || e.MTime.IsZero() {
		t.Errorf("f.txt %+v", e)
	}
	if e := got["/d/e"]; !e.IsDir() || e.Mode&0o777 != 0o750 {
		t.Errorf("d/e %+v", e)
	}
	if e := got["/fast"]; !e.IsSymlink() || e.Link != "d/e/f.txt" {
		t.Errorf("fast %+v", e)
	}
	if e := got["/slow"]; !e.IsSymlink() || e.Link != strings.Repeat("long/", 20)+"target" {
		t.Errorf("slow %+v", e)
	}
	if _, ok := got["/sp ace"]; !ok {
		t.Errorf("no /sp ace in %v", ents)
	}
	st, err := Stat(ctx, img, "/d/e/f.txt")
	if err != nil {
		t.Fatal(err)
	}
	b, err := Read(ctx, img, st, 5)
	if err != nil || string(b) != "hello" {
		t.Errorf("read %q %v", b, err)
	}
	if _, err := Stat(ctx, img, "/nope"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("stat of a missing file: %v", err)
	}
	if _, err := Stat(ctx, img, `/bad"name`); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("stat of a quoted name: %v", err)
	}
}

func TestRemove(t *testing.T) {
	img := image(t)
	ctx := context.Background()
	if ok, err := Remove(ctx, img, "/d"); !ok || err != nil {
		t.Fatalf("remove /d: %v %v", ok, err)
	}
	if ok, err := Remove(ctx, img, "/d"); ok || err != nil {
		t.Errorf("remove /d again: %v %v", ok, err)
	}
	if out, err := exec.Command("e2fsck", "-fn", img).CombinedOutput(); err != nil {
		t.Errorf("e2fsck after remove: %v\n%s", err, out)
	}
	ents, _ := List(ctx, img, "/", false, nil)
	for _, e := range ents {
		if e.Path == "/d" {
			t.Errorf("/d is still listed")
		}
	}
}
