package initramfs

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/internal/cpio"
	"github.com/pyro-mcp/pyro/internal/errdefs"
)

// staticBin builds a tiny static Go program (the test's own toolchain) to
// stand in for the agent.
func staticBin(t *testing.T, cgo string) string {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "main.go")
	os.WriteFile(src, []byte("package main\nimport \"os\"\nfunc main() { os.Exit(0) }\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module x\n"), 0o644)
	out := filepath.Join(dir, "bin")
	cmd := exec.Command("go", "build", "-o", out, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED="+cgo)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	return out
}

func modulesCpio(t *testing.T) string {
	var buf bytes.Buffer
	cw := cpio.NewWriter(&buf, 0)
	cw.File("lib/modules/6.1.0-test/kernel/drivers/virtio/virtio.ko", 0o644, []byte("fake module"))
	if err := cw.Close(); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "modules.cpio")
	os.WriteFile(p, buf.Bytes(), 0o644)
	return p
}

func TestBuild(t *testing.T) {
	if _, err := exec.LookPath("cpio"); err != nil {
		t.Skip("cpio not installed")
	}
	bin := staticBin(t, "0")
	mods := modulesCpio(t)
	cache := t.TempDir()

	p, err := Build(t.Context(), cache, bin, mods)
	if err != nil {
		t.Fatal(err)
	}
	// GNU cpio reads concatenated archives one at a time: list both.
	f, _ := os.Open(p)
	defer f.Close()
	var names []string
	for range 2 {
		cmd := exec.Command("cpio", "-t", "--quiet")
		cmd.Stdin = f
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("cpio -t: %v", err)
		}
		names = append(names, strings.Fields(string(out))...)
	}
	for _, want := range []string{"init", "dev", "proc", "sys", "newroot", "lib/modules/6.1.0-test/kernel/drivers/virtio/virtio.ko"} {
		found := false
		for _, n := range names {
			found = found || n == want
		}
		if !found {
			t.Errorf("initramfs lacks %s; has %v", want, names)
		}
	}

	// Cache hit: same path, file untouched.
	fi1, _ := os.Stat(p)
	time.Sleep(10 * time.Millisecond)
	start := time.Now()
	p2, err := Build(t.Context(), cache, bin, mods)
	if err != nil || p2 != p {
		t.Fatalf("second build = %q, %v; want cache hit %q", p2, err, p)
	}
	if fi2, _ := os.Stat(p2); !fi2.ModTime().Equal(fi1.ModTime()) {
		t.Errorf("cache hit rewrote the file")
	}
	t.Logf("cache hit in %v", time.Since(start))

	// Different modules: different file.
	os.WriteFile(mods, []byte("other"), 0o644)
	if p3, err := Build(t.Context(), cache, bin, mods); err != nil || p3 == p {
		t.Errorf("changed input gave %q, %v", p3, err)
	}
}

func TestDynamicBinaryRejected(t *testing.T) {
	// Debian's /bin/ls is dynamically linked (it has a PT_INTERP).
	err := CheckStatic("/bin/ls")
	if !errors.Is(err, errdefs.ErrFailedPrecondition) || !strings.Contains(err.Error(), "dynamically linked") {
		t.Fatalf("CheckStatic(/bin/ls) = %v", err)
	}
	if _, err := AgentBinary("/bin/ls"); err == nil {
		t.Fatal("AgentBinary accepted a dynamic binary")
	}
}
