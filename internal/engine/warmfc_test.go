package engine

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/internal/vmm"
)

// A Firecracker clone's scratch disk restores only until something
// writes it: the copy bears fcPristineTime, which a write replaces.
func TestPristineDiskFirecracker(t *testing.T) {
	dir := t.TempDir()
	disk := filepath.Join(dir, "scratch.ext4")
	if err := os.WriteFile(disk, make([]byte, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		edit func()
		want bool
	}{
		{"a fresh empty disk", func() {}, false},
		{"a clone's copy", func() { os.Chtimes(disk, fcPristineTime, fcPristineTime) }, true},
		{"written by a guest", func() {
			f, _ := os.OpenFile(disk, os.O_WRONLY, 0)
			f.WriteAt([]byte("x"), 100)
			f.Close()
		}, false},
		{"missing", func() { os.Remove(disk) }, false},
	} {
		tc.edit()
		if got := pristineDisk(vmm.KindFirecracker, disk); got != tc.want {
			t.Errorf("%s: pristine %v, want %v", tc.name, got, tc.want)
		}
	}
	// QEMU's rule is unchanged: a small qcow2 layer.
	small := filepath.Join(dir, "layer.qcow2")
	os.WriteFile(small, make([]byte, 1024), 0o600)
	os.Chtimes(small, time.Now(), time.Now())
	if !pristineDisk(vmm.KindQEMU, small) {
		t.Error("an empty QEMU layer is not pristine")
	}
}

// Both faces of a save pick the machine's backend.
func TestQuiesceMountsByBackend(t *testing.T) {
	if got := quiesceMounts(vmm.KindFirecracker, []string{"/"}); len(got) != 0 {
		t.Errorf("firecracker freezes %v; its overlayfs root cannot be frozen", got)
	}
	if got := quiesceMounts(vmm.KindQEMU, []string{"/workspace", "/"}); len(got) != 2 {
		t.Errorf("qemu freezes %v", got)
	}
}
