package vmlinux

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pyro-mcp/pyro/internal/catalog"
)

// installedKernel is debian:12's bzImage from the real cache, or skips.
func installedKernel(t *testing.T) string {
	t.Helper()
	s, err := catalog.Open(catalog.Options{Registry: "none"})
	if err != nil {
		t.Skipf("no pyro cache: %v", err)
	}
	inst, err := s.Resolve(context.Background(), "debian:12")
	if err != nil {
		t.Skipf("debian:12 is not installed in the pyro cache (run 'pyro env pull debian:12'): %v", err)
	}
	return inst.KernelPath
}

func TestInstalledKernel(t *testing.T) {
	kernel := installedKernel(t)
	img, err := os.ReadFile(kernel)
	if err != nil {
		t.Fatal(err)
	}
	p, err := Locate(img)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("boot protocol %#x, payload %d bytes at %d, %s", p.ProtocolVersion, p.Length, p.Offset, p.Compression)
	if p.Compression != LZ4 {
		t.Errorf("Debian's cloud kernel is LZ4-compressed, got %s", p.Compression)
	}
	cache := t.TempDir()
	out, err := Cached(cache, kernel)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out, filepath.Join(cache, "vmlinux")+"/") {
		t.Errorf("cached at %s, want under %s", out, cache)
	}
	again, err := Cached(cache, kernel)
	if err != nil || again != out {
		t.Errorf("second Cached = %q, %v; want %q", again, err, out)
	}
	if same, _ := Cached(cache, out); same != out {
		t.Errorf("an ELF kernel should be used as is, got %q", same)
	}

	f, err := elf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Class != elf.ELFCLASS64 || f.Machine != elf.EM_X86_64 || f.Type != elf.ET_EXEC || f.Data != elf.ELFDATA2LSB {
		t.Fatalf("vmlinux is %v %v %v %v, want 64-bit LSB x86-64 executable", f.Class, f.Data, f.Machine, f.Type)
	}
	seg := EntrySegment(f)
	if seg == nil {
		t.Fatalf("e_entry %#x lies in no PT_LOAD segment", f.Entry)
	}
	// vmlinux's e_entry is startup_64's physical address, which is where
	// the kernel asks to be loaded: CONFIG_PHYSICAL_START (16 MiB on
	// Debian), the first PT_LOAD's paddr, executable.
	first := firstLoad(f)
	if f.Entry != first.Paddr || seg != first {
		t.Errorf("e_entry %#x, want the first PT_LOAD's paddr %#x", f.Entry, first.Paddr)
	}
	if seg.Flags&elf.PF_X == 0 {
		t.Errorf("entry segment is not executable: %v", seg.Flags)
	}
	if f.Entry != 0x1000000 {
		t.Logf("note: e_entry %#x is not the usual 16 MiB CONFIG_PHYSICAL_START", f.Entry)
	}
	// Firecracker also accepts the PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY,
	// type 18) when the kernel has one; check it points into the image.
	if pvh, ok := pvhEntry(t, f); ok {
		t.Logf("PVH entry %#x", pvh)
		if pvh < first.Paddr || pvh >= first.Paddr+first.Memsz {
			t.Errorf("PVH entry %#x outside the first PT_LOAD [%#x, %#x)", pvh, first.Paddr, first.Paddr+first.Memsz)
		}
	}
	if fileTool, err := exec.LookPath("file"); err == nil {
		desc, _ := exec.Command(fileTool, "-b", out).Output()
		t.Logf("file: %s", bytes.TrimSpace(desc))
		if !bytes.Contains(desc, []byte("ELF 64-bit LSB executable, x86-64")) {
			t.Errorf("file(1) says %q", desc)
		}
	}
}

func firstLoad(f *elf.File) *elf.Prog {
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD {
			return p
		}
	}
	return nil
}

func pvhEntry(t *testing.T, f *elf.File) (uint64, bool) {
	for _, p := range f.Progs {
		if p.Type != elf.PT_NOTE {
			continue
		}
		data := make([]byte, p.Filesz)
		if _, err := p.ReadAt(data, 0); err != nil {
			t.Fatal(err)
		}
		for len(data) >= 12 {
			nsz, dsz, typ := binary.LittleEndian.Uint32(data), binary.LittleEndian.Uint32(data[4:]), binary.LittleEndian.Uint32(data[8:])
			name := data[12 : 12+nsz]
			off := 12 + align4(nsz)
			desc := data[off : off+dsz]
			if strings.TrimRight(string(name), "\x00") == "Xen" && typ == 18 {
				if dsz == 4 {
					return uint64(binary.LittleEndian.Uint32(desc)), true
				}
				return binary.LittleEndian.Uint64(desc), true
			}
			data = data[off+align4(dsz):]
		}
	}
	return 0, false
}

func align4(n uint32) uint32 { return (n + 3) &^ 3 }

func TestLocateRejects(t *testing.T) {
	for name, img := range map[string][]byte{
		"short":   []byte("MZ"),
		"no HdrS": make([]byte, 4096),
		"old":     withHeader(0x0206, 0, 0),
		"outside": withHeader(0x020f, 0, 1<<20),
		"bad zip": append(withHeader(0x020f, 0, 16), bytes.Repeat([]byte{0x42}, 16)...),
		"not elf": nil,
	} {
		if img == nil {
			continue
		}
		if _, _, err := Extract(img); err == nil {
			t.Errorf("%s: Extract succeeded", name)
		}
	}
}

// withHeader is a minimal bzImage: setup_sects 1, payload right after.
func withHeader(version uint16, off, length uint32) []byte {
	img := make([]byte, 1024)
	img[offSetupSects] = 1
	copy(img[offHeaderMagic:], "HdrS")
	binary.LittleEndian.PutUint16(img[offVersion:], version)
	binary.LittleEndian.PutUint32(img[offPayloadOffset:], off)
	binary.LittleEndian.PutUint32(img[offPayloadLength:], length)
	return img
}
