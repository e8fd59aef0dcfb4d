package layers

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
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
