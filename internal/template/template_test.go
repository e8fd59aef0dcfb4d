package template

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func testKey() Key {
	return Key{Format: FormatVersion, Kind: KindVM, Backend: "qemu", Accel: "tcg", Environment: "debian:12",
		Kernel: "sha256:k", Modules: "sha256:m", Rootfs: "sha256:r", Agent: "a", Initramfs: "i", VMM: "q:1:2",
		VCPUs: 1, MemMiB: 1024, Drives: []Drive{{Role: "root", SizeBytes: 4 << 30}}, Machine: "args"}
}

// Every field of the key names a different template.
func TestKeyID(t *testing.T) {
	base := testKey()
	if base.ID() != testKey().ID() || len(base.ID()) != 32 {
		t.Fatalf("ID is not stable: %s", base.ID())
	}
	for name, change := range map[string]func(*Key){
		"env":      func(k *Key) { k.Rootfs = "sha256:other" },
		"kernel":   func(k *Key) { k.Kernel = "sha256:other" },
		"agent":    func(k *Key) { k.Agent = "b" },
		"initrd":   func(k *Key) { k.Initramfs = "j" },
		"vmm":      func(k *Key) { k.VMM = "q:1:3" },
		"accel":    func(k *Key) { k.Accel = "kvm" },
		"vcpus":    func(k *Key) { k.VCPUs = 2 },
		"memory":   func(k *Key) { k.MemMiB = 512 },
		"network":  func(k *Key) { k.Network = true },
		"kind":     func(k *Key) { k.Kind = KindWorkspace },
		"drives":   func(k *Key) { k.Drives = append(k.Drives, Drive{Role: "data", SizeBytes: 1 << 30}) },
		"size":     func(k *Key) { k.Drives = []Drive{{Role: "root", SizeBytes: 5 << 30}} },
		"machine":  func(k *Key) { k.Machine = "other" },
		"format":   func(k *Key) { k.Format++ },
		"backend":  func(k *Key) { k.Backend = "firecracker" },
		"net mode": func(k *Key) { k.NetMode = "passt" },
	} {
		k := testKey()
		change(&k)
		if k.ID() == base.ID() {
			t.Errorf("changing the %s keeps the template's id", name)
		}
	}
}

// commitBuild writes a build with the three files and commits it.
func commitBuild(t *testing.T, s *Store, k Key, state string) *Template {
	t.Helper()
	id := k.ID()
	build, dir, err := s.NewBuild(id)
	if err != nil {
		t.Fatal(err)
	}
	backing := filepath.Join(t.TempDir(), "rootfs")
	for name, data := range map[string]string{StateFile: state, MemoryFile: "memory!", RootFile: "root", "../rootfs": ""} {
		if name == "../rootfs" {
			os.WriteFile(backing, nil, 0o600)
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	sum, _ := FileSHA256(filepath.Join(dir, StateFile))
	m := Meta{ID: id, Key: k, Build: build, CreatedAt: time.Now(), StateSHA256: sum, StateBytes: int64(len(state)),
		MemoryBytes: 7, RootBytes: 4, RootBacking: backing}
	if err := s.Commit(m); err != nil {
		t.Fatal(err)
	}
	tm, err := s.Current(id)
	if err != nil {
		t.Fatal(err)
	}
	return tm
}

func TestStore(t *testing.T) {
	s := Open(t.TempDir())
	k := testKey()
	if _, err := s.Current(k.ID()); !errors.Is(err, ErrMissing) {
		t.Fatalf("Current of nothing = %v, want ErrMissing", err)
	}
	first := commitBuild(t, s, k, "state one")
	if first.Rebuild != "" || first.Key.ID() != k.ID() {
		t.Fatalf("first build: %+v", first)
	}

	// A rebuild replaces the build; the old directory is gone, the new
	// one is current.
	second := commitBuild(t, s, k, "state two")
	if second.Build == first.Build {
		t.Fatal("a rebuild reused the build directory")
	}
	if _, err := os.Stat(first.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the replaced build %s is still there", first.Dir)
	}

	// Marked for rebuild: still returned, with the reason; a commit clears it.
	s.MarkRebuild(k.ID(), "restore failed: boom")
	got, err := s.Current(k.ID())
	if err != nil || got.Rebuild != "restore failed: boom" {
		t.Fatalf("after MarkRebuild: %+v, %v", got, err)
	}
	third := commitBuild(t, s, k, "state three")
	if third.Rebuild != "" {
		t.Errorf("a commit kept the rebuild mark %q", third.Rebuild)
	}

	// Corruption: a changed state, a truncated memory file, a missing root.
	for name, damage := range map[string]func(){
		"state":   func() { os.WriteFile(third.StatePath(), []byte("state thre3"), 0o600) },
		"memory":  func() { os.Truncate(third.MemoryPath(), 3) },
		"root":    func() { os.Remove(third.RootPath()) },
		"backing": func() { os.Remove(third.RootBacking) },
	} {
		fresh := commitBuild(t, s, k, "state three")
		third = fresh
		damage()
		if _, err := s.Current(k.ID()); !errors.Is(err, ErrCorrupt) {
			t.Errorf("damaged %s: Current = %v, want ErrCorrupt", name, err)
		}
	}

	// List and Remove.
	k2 := testKey()
	k2.MemMiB = 512
	commitBuild(t, s, k2, "other")
	os.MkdirAll(filepath.Join(s.Dir, "0123456789abcdef0123456789abcdef"), 0o700) // an interrupted first build
	ts, broken, err := s.List()
	if err != nil || len(ts) != 2 || len(broken) != 1 {
		t.Fatalf("List = %d templates, broken %v, %v", len(ts), broken, err)
	}
	if _, err := s.Remove(k2.ID()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Current(k2.ID()); !errors.Is(err, ErrMissing) {
		t.Errorf("after Remove: %v", err)
	}
}
