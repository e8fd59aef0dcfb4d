package layers

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func needQEMUImg(t *testing.T) {
	t.Helper()
	for _, b := range []string{"qemu-img", "qemu-io"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("no %s", b)
		}
	}
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

// chain builds a raw base (outside the pool) and n overlays over it, each
// writing its own 64 KiB, and returns the overlay names, bottom first.
func chain(t *testing.T, p *Pool, n int) (string, []string) {
	t.Helper()
	base := filepath.Join(t.TempDir(), "base.raw")
	f, _ := os.Create(base)
	f.Truncate(64 << 20)
	f.Close()
	run(t, "qemu-io", "-f", "raw", "-c", "write -P 0x11 0 64k", base)
	var names []string
	parent := base
	for i := range n {
		name := NewName(ExtQCOW2)
		if err := p.NewOverlay(context.Background(), name, parent, 64<<20); err != nil {
			t.Fatal(err)
		}
		run(t, "qemu-io", "-f", "qcow2", "-c", fmt.Sprintf("write -P %d %d 64k", i+1, (i+1)*65536), p.Path(name))
		names = append(names, name)
		parent = name
	}
	return base, names
}

func TestChainDepthFlatten(t *testing.T) {
	needQEMUImg(t)
	p, err := Open(filepath.Join(t.TempDir(), "layers"))
	if err != nil {
		t.Fatal(err)
	}
	base, names := chain(t, p, 20)
	top := names[len(names)-1]
	c, outside, err := p.Chain(top)
	if err != nil || len(c) != 20 || outside != base || c[19] != names[0] {
		t.Fatalf("chain %v outside %q err %v", c, outside, err)
	}
	if d, _ := p.Depth(top); d != 20 {
		t.Errorf("depth %d", d)
	}
	for _, n := range names {
		fi, _ := os.Stat(p.Path(n))
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v", n, fi.Mode().Perm())
		}
	}
	// Flattening keeps the content and leaves a chain of one.
	ref := filepath.Join(t.TempDir(), "ref.raw")
	run(t, "qemu-img", "convert", "-O", "raw", p.Path(top), ref)
	if err := p.Flatten(context.Background(), top, base); err != nil {
		t.Fatal(err)
	}
	if d, _ := p.Depth(top); d != 1 {
		t.Errorf("depth after flatten %d", d)
	}
	run(t, "qemu-img", "compare", "-q", "-f", "qcow2", "-F", "raw", p.Path(top), ref)
}

// Sweep keeps every layer a root's chain reaches, and nothing else.
func TestSweep(t *testing.T) {
	needQEMUImg(t)
	p, err := Open(filepath.Join(t.TempDir(), "layers"))
	if err != nil {
		t.Fatal(err)
	}
	_, a := chain(t, p, 3) // a[0] <- a[1] <- a[2]
	_, b := chain(t, p, 2)
	stray := NewName(ExtRaw)
	f, _ := p.Create(stray)
	f.Close()
	os.WriteFile(filepath.Join(p.Dir, "not-a-layer"), nil, 0o600)
	res, err := p.Sweep(func() ([]string, error) { return []string{a[1], "", "missing0000000000.qcow2"}, nil })
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(res.Freed)
	want := []string{a[2], b[0], b[1], stray}
	slices.Sort(want)
	if !slices.Equal(res.Freed, want) || res.Kept != 2 {
		t.Errorf("freed %v kept %d, want %v kept 2", res.Freed, res.Kept, want)
	}
	if _, err := os.Stat(filepath.Join(p.Dir, "not-a-layer")); err != nil {
		t.Errorf("a file that is not a layer was touched: %v", err)
	}
	n, bytes := p.Usage([]string{a[1], a[0]})
	if n != 2 || bytes <= 0 {
		t.Errorf("usage %d layers %d bytes", n, bytes)
	}
}

func TestValid(t *testing.T) {
	for name, want := range map[string]bool{
		"0123456789abcdef.qcow2": true, "0123456789abcdef.raw": true, "0123456789abcdef.img": false,
		"../123456789abcdef.raw": false, "0123456789ABCDEF.raw": false, ".lock": false,
	} {
		if Valid(name) != want {
			t.Errorf("Valid(%q) = %v", name, !want)
		}
	}
}

// A layer written by writeOverlay is what qemu-img create makes: qemu-img
// check finds nothing wrong, the parent's data shows through, writes land
// in the layer, and it converts to the same bytes as an overlay qemu-img
// made.
func TestOverlayFormat(t *testing.T) {
	needQEMUImg(t)
	p, err := Open(filepath.Join(t.TempDir(), "layers"))
	if err != nil {
		t.Fatal(err)
	}
	for _, size := range []int64{64 << 20, 4<<30 + 12345<<9, 10 << 30} {
		base := filepath.Join(t.TempDir(), "base.raw")
		f, _ := os.Create(base)
		f.Truncate(size)
		f.Close()
		run(t, "qemu-io", "-f", "raw", "-c", "write -P 0x5a 1m 64k", base)
		name := NewName(ExtQCOW2)
		if err := p.NewOverlay(context.Background(), name, base, size); err != nil {
			t.Fatal(err)
		}
		run(t, "qemu-img", "check", "-q", p.Path(name))
		out, err := exec.Command("qemu-img", "info", "--output=json", p.Path(name)).Output()
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{fmt.Sprintf(`"virtual-size": %d`, size), `"backing-filename": "` + base + `"`, `"backing-filename-format": "raw"`, `"compat": "1.1"`} {
			if !strings.Contains(string(out), want) {
				t.Errorf("size %d: qemu-img info lacks %s:\n%s", size, want, out)
			}
		}
		run(t, "qemu-io", "-f", "qcow2", "-c", "read -P 0x5a 1m 64k", "-c", "write -P 0x33 2m 64k", "-c", "read -P 0x33 2m 64k", p.Path(name))
		run(t, "qemu-img", "check", "-q", p.Path(name))
		// The same, made by qemu-img, reads the same.
		ref := filepath.Join(t.TempDir(), "ref.qcow2")
		run(t, "qemu-img", "create", "-q", "-f", "qcow2", "-b", base, "-F", "raw", ref, fmt.Sprint(size))
		run(t, "qemu-io", "-f", "qcow2", "-c", "write -P 0x33 2m 64k", ref)
		run(t, "qemu-img", "compare", "-q", p.Path(name), ref)
	}
	// A qcow2 parent in the pool, by its relative name.
	parent := NewName(ExtQCOW2)
	base := filepath.Join(t.TempDir(), "b.raw")
	f, _ := os.Create(base)
	f.Truncate(64 << 20)
	f.Close()
	if err := p.NewOverlay(context.Background(), parent, base, 64<<20); err != nil {
		t.Fatal(err)
	}
	child := NewName(ExtQCOW2)
	if err := p.NewOverlay(context.Background(), child, parent, 64<<20); err != nil {
		t.Fatal(err)
	}
	if b, _ := Backing(p.Path(child)); b != parent {
		t.Errorf("backing %q, want %q", b, parent)
	}
	run(t, "qemu-img", "check", "-q", p.Path(child))
	run(t, "qemu-io", "-f", "qcow2", "-c", "write -P 1 0 4k", p.Path(child))
}
