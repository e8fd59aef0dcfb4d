package qemu

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/internal/cpio"
	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/guesttest"
	"github.com/pyro-mcp/pyro/internal/vmm"
)

// testKernel is the guest kernel of the one gate for guest tests
// (guesttest), or $PYRO_TEST_KERNEL when set.
func testKernel(t *testing.T) string {
	t.Helper()
	p := guesttest.Need(t)
	if k := os.Getenv("PYRO_TEST_KERNEL"); k != "" {
		return k
	}
	return p.Kernel
}

// testInitrd builds a newc initramfs whose /init is testdata/init.
func testInitrd(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "init")
	cmd := exec.Command("go", "build", "-o", bin, "./testdata/init")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building test init: %v\n%s", err, out)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w := cpio.NewWriter(&buf, 0)
	w.File("init", 0o755, data)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "initrd")
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func shortDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "pq-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// TestStartBootsUnderTCG boots a real kernel with a tiny init and checks the
// whole lifecycle: start-up, the agent socket, the console file, the kernel
// arguments reaching /init and a clean exit when the guest reboots.
func TestStartBootsUnderTCG(t *testing.T) {
	kernel := testKernel(t)
	if _, err := FindBinary(""); err != nil {
		t.Skip(err)
	}
	dir := shortDir(t)
	initrd := testInitrd(t, dir)
	b, err := New(Options{Accel: "tcg"})
	if err != nil {
		t.Fatal(err)
	}
	console := filepath.Join(dir, "console.log")
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	start := time.Now()
	m, err := b.Start(ctx, vmm.MachineSpec{
		ID: "t1", Dir: dir, Kernel: kernel, Initrd: initrd, Cmdline: "pyro_test=42",
		VCPUs: 1, MemMiB: 256, Console: console,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Kill()
	if m.Pid() <= 0 {
		t.Errorf("Pid() = %d", m.Pid())
	}
	conn, err := m.AgentConn(ctx)
	if err != nil {
		t.Fatalf("AgentConn: %v", err)
	}
	defer conn.Close()
	waited := make(chan error, 1)
	go func() { waited <- m.Wait() }()
	select {
	case err := <-waited:
		if err != nil {
			t.Fatalf("Wait: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("guest did not reboot within 60 s")
	}
	t.Logf("start to guest exit: %s", time.Since(start))
	out, _ := os.ReadFile(console)
	if !strings.Contains(string(out), "PYRO-TEST-INIT-OK") || !strings.Contains(string(out), "pyro_test=42") {
		t.Fatalf("console lacks the init's marker and argument:\n%s", out)
	}
	if err := m.Kill(); err != nil {
		t.Errorf("Kill after exit: %v", err)
	}
}

// TestStartReportsQEMUError checks that a start QEMU refuses surfaces
// QEMU's own message.
func TestStartReportsQEMUError(t *testing.T) {
	if _, err := FindBinary(""); err != nil {
		t.Skip(err)
	}
	dir := shortDir(t)
	kernel := filepath.Join(dir, "not-a-kernel")
	os.WriteFile(kernel, []byte("nope"), 0o644)
	b, err := New(Options{Accel: "tcg"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.Start(t.Context(), vmm.MachineSpec{ID: "t2", Dir: dir, Kernel: kernel,
		Disks: []vmm.Disk{{Path: filepath.Join(dir, "missing.img"), Format: "raw"}}})
	if !errors.Is(err, errdefs.ErrUnavailable) || !strings.Contains(err.Error(), "missing.img") {
		t.Fatalf("got %v, want ErrUnavailable quoting qemu's message about missing.img", err)
	}
}

// TestKillStopsRunningGuest starts a guest that would run for a while and
// kills it.
func TestKillStopsRunningGuest(t *testing.T) {
	kernel := testKernel(t)
	dir := shortDir(t)
	b, err := New(Options{Accel: "tcg"})
	if err != nil {
		t.Fatal(err)
	}
	// No initrd and no panic timeout change: the kernel would boot then
	// reboot on panic after ~2 s; Kill comes first.
	m, err := b.Start(t.Context(), vmm.MachineSpec{ID: "t3", Dir: dir, Kernel: kernel, MemMiB: 128})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := m.Wait(); err == nil {
		t.Error("Wait after Kill returned nil, want the kill signal")
	}
}
